#!/bin/bash
# dvmm's virtio-net with vhost = yes: each queue pair's rings handed to the
# kernel's vhost-net, judged by the same test-guest net check as net.t, in
# a network namespace and TAP of its own (tests/lib/net-ns-run):
#   - 1 and 2 vCPUs: ARP and ICMP answered on every CPU's own pair, per-CPU
#     vectors (vhost signals each vector's irqfd itself), a reset with
#     frames in flight (backends off, rings left alone) and a restart;
#   - the link taken down and up over the control socket; `status` says
#     vhost and leaves out the counters dvmm cannot see.
# Runs here when this host has /dev/vhost-net and a usable /dev/kvm;
# otherwise in the nested KVM host, with tun and vhost_net loaded there.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh
if [ -z "${DVMM_NESTED:-}" ] && { [ ! -e /dev/vhost-net ] || ! kvm_usable; }; then
    export DVMM_NESTED_MODULES="${DVMM_NESTED_MODULES:+$DVMM_NESTED_MODULES }tun vhost_net"
    need_nested_kvm "$([ -e /dev/vhost-net ] && echo "no usable /dev/kvm here" ||
                       echo "no /dev/vhost-net on this host")" "$@"
else
    need_kvm "$@"
fi
. tests/lib/dvmm-test.sh
dt_require_build
[ -e /dev/vhost-net ] || tap_skip_all "no /dev/vhost-net on $KVM_WHERE"
NSRUN=tests/lib/net-ns-run
for t in ip unshare python3; do
    command -v "$t" >/dev/null 2>&1 || tap_skip_all "$t not installed"
done
why=$("$NSRUN" --tap dvprobe0 -- true 2>&1) ||
    tap_skip_all "cannot make a network namespace with a TAP here: ${why:-net-ns-run failed}"

tap_plan 6
tap_diag "running on $KVM_WHERE"

TAPDEV=dvnet0
net_ini() {
    cat >"$DT_OUT/$1.ini" <<INI
[vm]
name = $1
vcpus = $2
memory = 128M
kernel = $DT_GUEST
cmdline = dvmmtest=net net_host=10.0.2.1 net_ip=10.0.2.15 $3
on_reset = exit
[console]
input = no
[control]
socket = $DT_OUT/$1.sock
[net.0]
tap = $TAPDEV
vhost = yes
INI
}

for vcpus in 1 2; do
    name=vhost-${vcpus}cpu
    net_ini "$name" "$vcpus" "net_pairs=$vcpus"
    run_with_timeout "$DT_TIMEOUT" "$NSRUN" --tap "$TAPDEV" -- \
        "$DT_DVMM" run "$DT_OUT/$name.ini" -v >"$DT_OUT/$name.out" 2>"$DT_OUT/$name.err" </dev/null
    DT_RC=$?
    grep -E '^# net: (negotiated|pair|device)' "$DT_OUT/$name.out" | tap_diag -
    grep -E 'virtio-net|vhost' "$DT_OUT/$name.err" | tap_diag -
    dt_guest_passed "$name" "vhost = yes, $vcpus vCPU(s): ARP and ICMP on each CPU's own pair, reset in flight, restart"
    if grep -q 'virtio-net.0: TAP .*vhost-net' "$DT_OUT/$name.err"; then
        tap_ok "$vcpus vCPU(s): the device runs on vhost-net"
    else
        tap_not_ok "$vcpus vCPU(s): the device runs on vhost-net" "$(grep virtio-net "$DT_OUT/$name.err")"
    fi
done

name=vhost-link
net_ini "$name" 2 "net_pairs=2 net_link=1 net_reset=0"
sock=$DT_OUT/$name.sock
run_with_timeout "$DT_TIMEOUT" "$NSRUN" --tap "$TAPDEV" -- \
    "$DT_DVMM" run "$DT_OUT/$name.ini" >"$DT_OUT/$name.out" 2>"$DT_OUT/$name.err" </dev/null &
pid=$!
wait_line() {
    local i
    for i in $(seq 3000); do
        grep -Eq -- "$1" "$DT_OUT/$name.out" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
status_json="{}"
if wait_line '^# net: waiting for the host to take the link down'; then
    status_json=$("$DT_DVMM" ctl "$sock" status 2>&1)
    "$DT_DVMM" ctl "$sock" link net.0 down >/dev/null 2>&1
    wait_line '^# net: waiting for the host to take the link up' &&
        "$DT_DVMM" ctl "$sock" link net.0 up >/dev/null 2>&1
fi
wait "$pid"
DT_RC=$?
grep -E '^# net: link' "$DT_OUT/$name.out" | tap_diag -
dt_guest_passed "$name" "vhost: link net.0 down, then up, seen by the guest"
check_status() {
    python3 - "$1" <<'PY'
import json, sys
n = json.loads(sys.argv[1])["nets"][0]
assert n["vhost"] is True, n
assert n["active_pairs"] == 2, n
for q in n["queues"]:
    for d in ("rx", "tx"):
        # With MSI-X, vhost signals KVM itself: dvmm sees no interrupt.
        assert "interrupts" not in q[d], (q["pair"], d, q[d])
        assert "packets" not in q[d], "vhost: packets are the kernel's to count"
PY
}
tap_check "status: vhost true, both pairs active, no dvmm-side packet or interrupt counters" \
    check_status "$status_json"

tap_done
