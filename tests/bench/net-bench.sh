#!/bin/bash
# `make bench-net`: virtio-net throughput and latency, dvmm against QEMU,
# with the same Linux guest (Debian's kernel, tests/linux/net-init) and the
# same host-side tool (tests/linux/nettool.c) in a network namespace and
# TAP of its own per run:
#   - TCP guest -> host and host -> guest, DVMM_NET_BENCH_MB MiB each (32);
#   - TCP request/response, DVMM_NET_BENCH_RR one-byte round trips (2000);
#   - four VMMs, taken in turn DVMM_NET_BENCH_RUNS times (2): dvmm
#     (user-space datapath), dvmm (vhost), QEMU virtio-net-pci (user space,
#     vhost=off), QEMU (vhost=on); 2 vCPUs, 2 queue pairs, 512 MiB.
# Guest RAM on transparent huge pages for both (QEMU madvises its RAM
# MADV_HUGEPAGE; dvmm's default is MADV_NOHUGEPAGE, so it gets
# memory.thp = yes): the host page size changes the cost of every guest
# memory access under nested paging, and that would measure the memory
# backend, not the NIC.
# Report: medians and dvmm/QEMU ratios with the same backend, in
# $DVMM_BUILD/bench/net-report.md.  A stock kernel needs VT-x/AMD-V or the
# nested KVM host; where this host has neither (or no /dev/vhost-net) the
# whole benchmark runs inside ONE nested boot, tun and vhost_net loaded, so
# every VMM sees the same conditions.  Never fails on a number; exit 1 only
# when it could not run.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-lib.sh"
. "$BENCH_REPO/tests/lib/kvm-env.sh"
. "$BENCH_REPO/tests/lib/linux-kernel.sh"

runs=${DVMM_NET_BENCH_RUNS:-2}
mb=${DVMM_NET_BENCH_MB:-32}
rr=${DVMM_NET_BENCH_RR:-2000}
REPORT=$BENCH_OUT/net-report.md
# A Linux boot under nested SVM, SeaBIOS for QEMU, and the transfers.
export DVMM_BENCH_RUN_TIMEOUT=${DVMM_BENCH_RUN_TIMEOUT:-400}
BENCH_RUN_TIMEOUT=$DVMM_BENCH_RUN_TIMEOUT
mkdir -p "$BENCH_OUT" || exit 1

if [ "${1:-}" != --inner ]; then
    initrd=$("$BENCH_REPO/tests/linux/net-initramfs.sh") || {
        echo "bench-net: cannot build the Linux guest's initramfs" >&2; exit 1; }
    if [ -z "${DVMM_NESTED:-}" ] && kvm_usable && [ ! -d /sys/module/kvm_pvm ] &&
        [ -e /dev/vhost-net ]; then
        exec "$0" --inner
    fi
    why=$(nested_unavailable_reason)
    [ -n "$why" ] && { echo "bench-net: no VT-x/AMD-V /dev/kvm with vhost-net here and $why" >&2; exit 1; }
    echo "bench-net: running in the nested KVM host (one boot; ~$((runs * 4)) Linux boots under nested SVM, many minutes)" >&2
    export DVMM_NESTED_MODULES="${DVMM_NESTED_MODULES:+$DVMM_NESTED_MODULES }tun vhost_net"
    export DVMM_NESTED_TIMEOUT=${DVMM_NESTED_TIMEOUT:-3600}
    export DVMM_BENCH_OUTER="$(bench_machine | tr '\n' ';')"
    nested_run "$0" --inner
    exit $?
fi

linux_kernel_fetch >/dev/null 2>&1 || { echo "bench-net: no Debian kernel" >&2; exit 1; }
initrd=$("$BENCH_REPO/tests/linux/net-initramfs.sh") || exit 1
tool=$BENCH_BUILD/linux/nettool
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
cmdline="console=ttyS0 reboot=k panic=-1 quiet loglevel=3 dvmm.ip=10.0.2.15/24 dvmm.host=10.0.2.1 dvmm.mb=$mb dvmm.seed=5 dvmm.rr=$rr dvmm.quick=1"

# one VMM BACKEND: boot the guest once, leave its console in $tmp/con and
# the host tool's output in $tmp/{sink,source}.
one() {
    local vmm=$1 backend=$2 cmd
    rm -f "$tmp/con" "$tmp/sink" "$tmp/source"
    if [ "$vmm" = dvmm ]; then
        cat >"$tmp/vm.ini" <<EOF
[vm]
name = netbench
vcpus = 2
memory = 512M
kernel = $LINUX_VMLINUZ
initrd = $initrd
cmdline = "$cmdline"
on_reset = exit
[console]
output = $tmp/con
input = no
[control]
enabled = no
[memory]
thp = yes
[net.0]
tap = nbtap0
vhost = $([ "$backend" = vhost ] && echo yes || echo no)
EOF
        cmd=("$BENCH_DVMM" run "$tmp/vm.ini" -q)
    else
        cmd=("$BENCH_QEMU" -enable-kvm -M pc -cpu host -smp 2 -m 512M -nodefaults -no-user-config
             -display none -monitor none -serial "file:$tmp/con" -no-reboot
             -kernel "$LINUX_VMLINUZ" -initrd "$initrd" -append "$cmdline"
             -netdev "tap,id=n0,ifname=nbtap0,script=no,downscript=no,queues=2,vhost=$([ "$backend" = vhost ] && echo on || echo off)"
             -device virtio-net-pci,netdev=n0,mq=on,vectors=6)
    fi
    timeout --kill-after=10 "$BENCH_RUN_TIMEOUT" "$BENCH_REPO/tests/lib/net-ns-run" --tap nbtap0 -- bash -c '
        "$1" sink 5001 >"$2/sink" 2>&1 &
        "$1" source 5002 "$3" 9 >"$2/source" 2>&1 &
        "$1" rr-server 5003 >/dev/null 2>&1 &
        shift 3
        "$@"
        rc=$?
        kill %1 %2 %3 2>/dev/null
        exit $rc' bash "$tool" "$tmp" "$mb" "${cmd[@]}" >"$tmp/out" 2>&1 </dev/null
}

# field FILE KEY REGEX-PREFIX: the number after KEY= on the line starting so.
field() {
    sed -n "s/^$3.*$2=\([0-9.]*\).*/\1/p" "$1" 2>/dev/null | head -n 1
}

median() {
    sort -n | awk '{ v[NR] = $1 } END { if (!NR) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

configs="dvmm:user dvmm:vhost qemu:user qemu:vhost"
: >"$tmp/results"
for r in $(seq "$runs"); do
    for c in $configs; do
        vmm=${c%%:*} backend=${c#*:}
        [ "$backend" = vhost ] && [ ! -e /dev/vhost-net ] && continue
        one "$vmm" "$backend"
        g2h=$(field "$tmp/con" mbit GUEST-NET-SEND)
        h2g=$(field "$tmp/con" mbit GUEST-NET-FETCH)
        p50=$(field "$tmp/con" p50_us GUEST-NET-RR)
        p99=$(field "$tmp/con" p99_us GUEST-NET-RR)
        ok=yes
        grep -aq '^GUEST-NET-DONE' "$tmp/con" 2>/dev/null || ok=no
        echo "bench-net: run $r $vmm $backend: g2h ${g2h:--} Mbit/s, h2g ${h2g:--} Mbit/s, rr p50 ${p50:--} us p99 ${p99:--} us, complete $ok" >&2
        [ "$ok" = yes ] || tail -n 5 "$tmp/out" "$tmp/con" >&2 2>/dev/null
        echo "$vmm $backend ${g2h:--} ${h2g:--} ${p50:--} ${p99:--} $ok" >>"$tmp/results"
    done
done

med() { awk -v v="$1" -v b="$2" -v k="$3" '$1 == v && $2 == b && $7 == "yes" && $k != "-" { print $k }' "$tmp/results" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f\n", a / b }'; }
{
    echo "# virtio-net: dvmm against QEMU"
    echo
    echo "Taken $(date -u '+%Y-%m-%d %H:%M UTC') by \`make bench-net\` (tests/bench/net-bench.sh), commit $(git -C "$BENCH_REPO" rev-parse --short HEAD 2>/dev/null || echo '?'), $runs run(s) each, taken in turn."
    echo "Guest: Debian $LINUX_KVER, 2 vCPUs, 2 queue pairs, 512 MiB on THP (dvmm memory.thp = yes, QEMU's default); TCP $mb MiB each way, $rr one-byte round trips; host side tests/linux/nettool in the same network namespace."
    echo
    [ -n "${DVMM_BENCH_OUTER:-}" ] && echo "- outer host: $DVMM_BENCH_OUTER"
    bench_machine | sed 's/^/- /'
    echo
    echo "| | guest->host Mbit/s | host->guest Mbit/s | RR p50 us | RR p99 us |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for c in $configs; do
        echo "| ${c%%:*} ${c#*:} | $(med "${c%%:*}" "${c#*:}" 3) | $(med "${c%%:*}" "${c#*:}" 4) | $(med "${c%%:*}" "${c#*:}" 5) | $(med "${c%%:*}" "${c#*:}" 6) |"
    done
    echo
    echo "dvmm / QEMU with the same backend (throughput: higher is better for dvmm above 1; latency: lower is better for dvmm below 1):"
    echo
    echo "| backend | guest->host | host->guest | RR p50 | RR p99 |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for b in user vhost; do
        printf '| %s |' "$b"
        for k in 3 4 5 6; do
            printf ' %s |' "$(ratio "$(med dvmm $b $k)" "$(med qemu $b $k)")"
        done
        echo
    done
    echo
    echo "Raw runs (vmm backend g2h h2g p50 p99 complete):"
    echo
    sed 's/^/    /' "$tmp/results"
} >"$REPORT"
cat "$REPORT"
