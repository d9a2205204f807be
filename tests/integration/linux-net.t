#!/bin/bash
# Debian's stock kernel and its virtio_net driver on dvmm's virtio-net, with
# the user-space datapath and with vhost-net: eth0 has as many queue pairs
# as vCPUs, it pings the TAP's address, `ethtool -L combined 1` and back
# (nettool channels: busybox has no ethtool) go through the control
# queue, and DVMM_LINUX_NET_MB MiB (default 64) cross TCP each way,
# checked by checksum on both sides (tests/linux/nettool.c).  Each run is
# in a network namespace and TAP of its own (tests/lib/net-ns-run).
# A stock kernel needs VT-x/AMD-V: here that is the nested KVM host (tun
# and vhost_net loaded there), minutes per run.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh

build=$(dvmm_build_dir) || tap_bail_out "cannot create the build directory"
mb=${DVMM_LINUX_NET_MB:-64}
vcpus=2
export DVMM_NESTED_TIMEOUT=${DVMM_NESTED_TIMEOUT:-1500}
export DVMM_NESTED_MODULES="${DVMM_NESTED_MODULES:+$DVMM_NESTED_MODULES }tun vhost_net"

initrd=$(tests/linux/net-initramfs.sh) ||
    tap_skip_all "cannot build the Linux network initramfs (Debian's kernel, busybox-static, cpio, gcc -static)"
linux_kernel_fetch >/dev/null 2>&1 || tap_skip_all "Debian's kernel cannot be fetched"

need_kvm_stock_guest "$@"
. tests/lib/dvmm-test.sh
dt_require_build
for t in ip unshare; do
    command -v "$t" >/dev/null 2>&1 || tap_skip_all "$t not installed"
done
why=$(tests/lib/net-ns-run --tap dvprobe0 -- true 2>&1) ||
    tap_skip_all "cannot make a network namespace with a TAP here: ${why:-net-ns-run failed}"
limit=600
if [ -n "${DVMM_NESTED_DEADLINE:-}" ]; then
    left=$(( (DVMM_NESTED_DEADLINE - $(date +%s) - 60) / 2 ))
    [ "$left" -lt "$limit" ] && limit=$((left > 30 ? left : 30))
fi

tap_plan 12
tap_diag "running on $KVM_WHERE; kernel $LINUX_KVER, $vcpus vCPUs, $mb MiB each way, dvmm limit $limit s per run"

tool=$build/linux/nettool
tmp=$(mktemp -d) || tap_bail_out "mktemp failed"
trap 'rm -rf "$tmp"' EXIT

for vhost in no yes; do
    name=linux-net-vhost-$vhost
    if [ "$vhost" = yes ] && [ ! -e /dev/vhost-net ]; then
        tap_skip "no /dev/vhost-net on $KVM_WHERE" 6
        continue
    fi
    cat >"$DT_OUT/$name.ini" <<EOF
[vm]
name = $name
vcpus = $vcpus
memory = 512M
kernel = $LINUX_VMLINUZ
initrd = $initrd
cmdline = "console=ttyS0 reboot=k panic=-1 quiet loglevel=3 dvmm.ip=10.0.2.15/24 dvmm.host=10.0.2.1 dvmm.mb=$mb dvmm.seed=11"
on_reset = exit
[console]
output = $tmp/$name.console
input = no
[control]
enabled = no
[net.0]
tap = dvlnx0
vhost = $vhost
EOF
    # The host end: a sink for the guest's stream, a source for its fetch.
    # shellcheck disable=SC2016 # the inner bash expands its own $1 $2 $3
    run_with_timeout "$limit" tests/lib/net-ns-run --tap dvlnx0 -- bash -c '
        "$1" sink 5001 >"$2/sink" 2>&1 &
        "$1" source 5002 "$3" 22 >"$2/source" 2>&1 &
        "$4" run "$5"
        rc=$?
        kill %1 %2 2>/dev/null
        exit $rc' bash "$tool" "$tmp" "$mb" "$DT_DVMM" "$DT_OUT/$name.ini" \
        >"$DT_OUT/$name.out" 2>"$DT_OUT/$name.err" </dev/null
    rc=$?
    con=$tmp/$name.console
    cp "$con" "$DT_OUT/$name.console" 2>/dev/null
    grep -a '^GUEST-NET' "$con" | tap_diag -
    tap_diag "host: sink $(cat "$tmp/sink" 2>/dev/null); source $(cat "$tmp/source" 2>/dev/null)"
    desc="vhost = $vhost:"
    if [ "$rc" -eq 0 ] && grep -aq '^GUEST-NET-DONE' "$con"; then
        tap_ok "$desc Linux boots, runs every step and dvmm exits 0"
    else
        tap_not_ok "$desc Linux boots, runs every step and dvmm exits 0" "exit status $rc" \
            "$(tail -n 5 "$DT_OUT/$name.err")" "$(tail -n 10 "$con" 2>/dev/null)"
    fi
    if grep -aq "^GUEST-NET-QUEUES rx=$vcpus tx=$vcpus cpus=$vcpus driver=virtio_net" "$con"; then
        tap_ok "$desc eth0 (virtio_net) has $vcpus queue pairs for $vcpus vCPUs"
    else
        tap_not_ok "$desc eth0 (virtio_net) has $vcpus queue pairs for $vcpus vCPUs" "$(grep -a GUEST-NET-QUEUES "$con")"
    fi
    if grep -aq '^GUEST-NET-PING ok' "$con"; then
        tap_ok "$desc the guest pings the TAP's address"
    else
        tap_not_ok "$desc the guest pings the TAP's address" "$(grep -a GUEST-NET-PING "$con")"
    fi
    if grep -aEq "^GUEST-NET-CHANNELS set1: combined=1 max_combined=$vcpus rx=1; back: combined=$vcpus max_combined=$vcpus rx=$vcpus" "$con"; then
        tap_ok "$desc ethtool -L combined 1 and back to $vcpus (VQ_PAIRS_SET)"
    else
        tap_not_ok "$desc ethtool -L combined 1 and back to $vcpus (VQ_PAIRS_SET)" "$(grep -a GUEST-NET-CHANNELS "$con")"
    fi
    g=$(sed -n 's/^GUEST-NET-SEND bytes=\([0-9]*\) fnv=\([0-9a-f]*\).*/\1 \2/p' "$con" | tr -d '\r')
    h=$(sed -n 's/^bytes=\([0-9]*\) fnv=\([0-9a-f]*\).*/\1 \2/p' "$tmp/sink" 2>/dev/null)
    tap_is "$h" "$((mb << 20)) ${g#* }" "$desc $mb MiB guest -> host over TCP, checksums equal"
    g=$(sed -n 's/^GUEST-NET-FETCH bytes=\([0-9]*\) fnv=\([0-9a-f]*\).*/\1 \2/p' "$con" | tr -d '\r')
    h=$(sed -n 's/^bytes=\([0-9]*\) fnv=\([0-9a-f]*\).*/\1 \2/p' "$tmp/source" 2>/dev/null)
    tap_is "$g" "$((mb << 20)) ${h#* }" "$desc $mb MiB host -> guest over TCP, checksums equal"
    rm -f "$tmp/sink" "$tmp/source"
done

tap_done
