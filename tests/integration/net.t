#!/bin/bash
# dvmm's virtio-net over a TAP, judged by the test guest's net check (the
# driver qemu-net.t first holds to QEMU's device), every run in a network
# namespace of its own with its own TAP (tests/lib/net-ns-run: only
# 10.0.2.0/24 inside it, both removed afterwards; nothing leaves the
# machine):
#   - 1, 2 and 4 vCPUs with queues = 8 (clamped to the vCPUs with a warning
#     naming both numbers): each CPU's ARP request and ICMP echo to the
#     TAP's address answered on its own queue pair, every queue's
#     interrupts on its own CPU only, a reset with frames in flight;
#   - the MAC: the derived default `dvmm check` prints, and a given one;
#   - `dvmm ctl SOCK link net.0 down|up`: the guest sees config interrupts
#     and the STATUS field change; `status` shows the link and per-queue
#     packet, byte, drop and interrupt counters;
#   - a missing TAP is created and gone after dvmm exits; an existing
#     single-queue TAP takes one pair and refuses two naming net.0.tap;
#   - bad [net.0] values and vhost = yes without /dev/vhost-net are one
#     line and exit 2; vhost = auto falls back, saying so once;
#   - hostcheck reports the TAP's multi-queue support and vhost-net.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
# Inside a nested KVM host /dev/net/tun needs the module.
export DVMM_NESTED_MODULES="${DVMM_NESTED_MODULES:+$DVMM_NESTED_MODULES }tun"
. tests/lib/kvm-env.sh
need_kvm "$@"
. tests/lib/dvmm-test.sh
dt_require_build
NSRUN=tests/lib/net-ns-run
for t in ip unshare python3; do
    command -v "$t" >/dev/null 2>&1 || tap_skip_all "$t not installed"
done
why=$("$NSRUN" --tap dvprobe0 -- true 2>&1) ||
    tap_skip_all "cannot make a network namespace with a TAP here: ${why:-net-ns-run failed}"

tap_plan 20
tap_diag "running on $KVM_WHERE"

TAPDEV=dvnet0
GUEST_NET="net_host=10.0.2.1 net_ip=10.0.2.15"

# net_ini NAME VCPUS CHECK-OPTS: the config, with a control socket.
net_ini() {
    cat >"$DT_OUT/$1.ini" <<INI
[vm]
name = $1
vcpus = $2
memory = 128M
kernel = $DT_GUEST
cmdline = dvmmtest=net $GUEST_NET $3
on_reset = exit
[console]
input = no
[control]
socket = $DT_OUT/$1.sock
[net.0]
tap = $TAPDEV
queues = 8
INI
}

# net_run NAME VCPUS "CHECK OPTS" [NS-RUN OPTIONS] -- [dvmm options]: the
# net check in a namespace whose TAP is $TAPDEV (unless NS-RUN options
# say otherwise); console in NAME.out, stderr in NAME.err, status in DT_RC.
net_run() {
    local name=$1 vcpus=$2 opts=$3 ns=()
    shift 3
    while [ $# -gt 0 ] && [ "$1" != -- ]; do ns+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    [ ${#ns[@]} -eq 0 ] && ns=(--tap "$TAPDEV")
    net_ini "$name" "$vcpus" "$opts"
    run_with_timeout "$DT_TIMEOUT" "$NSRUN" "${ns[@]}" -- \
        "$DT_DVMM" run "$DT_OUT/$name.ini" "$@" >"$DT_OUT/$name.out" 2>"$DT_OUT/$name.err" </dev/null
    DT_RC=$?
    grep -E '^# net: (negotiated|pair|device|link)' "$DT_OUT/$name.out" | tap_diag -
}

# --- one pair per vCPU ----------------------------------------------------------
for vcpus in 1 2 4; do
    name=net-${vcpus}cpu
    net_run "$name" "$vcpus" "net_pairs=$vcpus"
    dt_guest_passed "$name" "$vcpus vCPU(s), queues = 8: $vcpus pair(s), ARP and ICMP answered on each CPU's own pair, per-CPU vectors, reset in flight"
    if [ "$vcpus" -gt 1 ]; then
        if grep -q "net\.0\.queues = 8 is more than the $vcpus vCPUs; using $vcpus queue pairs" "$DT_OUT/$name.err"; then
            tap_ok "$vcpus vCPUs: the clamp warning names 8 and $vcpus"
        else
            tap_not_ok "$vcpus vCPUs: the clamp warning names 8 and $vcpus" "$(tail -n 5 "$DT_OUT/$name.err")"
        fi
        n=$(grep -Ec '^# net: pair [0-9]+ on APIC [0-9]+: ARP and echo replies on its own queue .* [1-9][0-9]* RX and [1-9][0-9]* TX interrupts' "$DT_OUT/$name.out")
        tap_is "$n" "$vcpus" "$vcpus vCPUs: every pair reports replies on its own queue with RX and TX interrupts"
    fi
done

# --- MAC ----------------------------------------------------------------------------
name=net-mac
net_ini "$name" 1 ""
mac=$("$DT_DVMM" check "$DT_OUT/$name.ini" 2>/dev/null | sed -n 's/^net\.0: .*mac \([0-9a-f:]*\) (derived).*/\1/p')
case $mac in
    02:??:??:??:??:??) tap_ok "dvmm check prints a derived, locally administered MAC ($mac)" ;;
    *) tap_not_ok "dvmm check prints a derived, locally administered MAC" "got '$mac'" ;;
esac
net_run "$name" 1 "net_mac=$mac net_reset=0"
dt_guest_passed "$name" "the derived MAC is what the guest reads"
net_run net-mac2 1 "net_mac=52:54:00:12:ab:cd net_reset=0" -- --set net.0.mac=52:54:00:12:AB:CD
dt_guest_passed net-mac2 "net.0.mac = 52:54:00:12:AB:CD is what the guest reads"

# --- link down/up over the control socket, and status --------------------------------
name=net-link
net_ini "$name" 2 "net_link=1 net_reset=0"
sock=$DT_OUT/$name.sock
run_with_timeout "$DT_TIMEOUT" "$NSRUN" --tap "$TAPDEV" -- \
    "$DT_DVMM" run "$DT_OUT/$name.ini" >"$DT_OUT/$name.out" 2>"$DT_OUT/$name.err" </dev/null &
pid=$!
# wait_line REGEX: until the console has it (60 s) or dvmm is gone.
wait_line() {
    local i
    for i in $(seq 600); do
        grep -Eq -- "$1" "$DT_OUT/$name.out" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
status_json=""
if wait_line '^# net: waiting for the host to take the link down'; then
    status_json=$("$DT_DVMM" ctl "$sock" status 2>&1)
    "$DT_DVMM" ctl "$sock" link net.0 down >"$DT_OUT/$name.ctl" 2>&1
    wait_line '^# net: link down seen' &&
        down_json=$("$DT_DVMM" ctl "$sock" status 2>&1) &&
        wait_line '^# net: waiting for the host to take the link up' &&
        "$DT_DVMM" ctl "$sock" link dev=net.0 state=up >>"$DT_OUT/$name.ctl" 2>&1
fi
wait "$pid"
DT_RC=$?
grep -E '^# net: link' "$DT_OUT/$name.out" | tap_diag -
dt_guest_passed "$name" "link net.0 down, then up: the guest sees each as a config interrupt with STATUS changed"
check_status() {
    python3 - "$1" "$2" <<'PY'
import json, sys
d = json.loads(sys.argv[1])
n = d["nets"][0]
want = sys.argv[2]
assert n["link"] == want, "link is %s" % n["link"]
assert n["dev"] == "net.0" and n["tap"] == "dvnet0" and n["queue_pairs"] == 2, n
assert n["active_pairs"] == 2, n["active_pairs"]
for q in n["queues"]:
    for d in ("rx", "tx"):
        c = q[d]
        assert c["packets"] >= 2 and c["bytes"] >= 84 and c["interrupts"] >= 1, (q["pair"], d, c)
        assert c["drops"] == 0, (q["pair"], d, c)
assert set(n["drops"]) >= {"runt", "oversize", "bad_gso", "link_down", "rx_no_room"}, n["drops"]
assert n["ctrl_ok"] >= 1, n
PY
}
tap_check "status while the link is up: link, pairs, per-queue packets, bytes, drops, interrupts" \
    check_status "$status_json" up
tap_check "status after link net.0 down says down" check_status "${down_json:-{\}}" down

# --- TAPs dvmm makes, and TAPs it finds -------------------------------------------------
name=net-create
net_ini "$name" 1 ""
sed -i 's/^cmdline = .*/cmdline = dvmmtest=none/' "$DT_OUT/$name.ini"
run_with_timeout 60 "$NSRUN" -- sh -c '"$@" && ! ip link show dvnew0 2>/dev/null' sh \
    "$DT_DVMM" run "$DT_OUT/$name.ini" --set net.0.tap=dvnew0 -v >"$DT_OUT/$name.out" 2>"$DT_OUT/$name.err"
rc=$?
if [ "$rc" -eq 0 ] && grep -q 'TAP dvnew0 (created, multi-queue)' "$DT_OUT/$name.err"; then
    tap_ok "a missing TAP is created (multi-queue) and is gone once dvmm exits"
else
    tap_not_ok "a missing TAP is created (multi-queue) and is gone once dvmm exits" "exit status $rc" \
        "$(tail -n 5 "$DT_OUT/$name.err")"
fi

net_run net-sq2 2 "" --tap "$TAPDEV" --single-queue -- --set net.0.queues=2
msg=$(grep -c . "$DT_OUT/net-sq2.err")
if [ "$DT_RC" -eq 2 ] && [ "$msg" -eq 1 ] &&
    grep -q "net\.0\.tap = '$TAPDEV': the interface exists but is not a TAP that takes 2 queues.*multi_queue" "$DT_OUT/net-sq2.err"; then
    tap_ok "two pairs on an existing single-queue TAP: one line naming net.0.tap and multi_queue, exit 2"
else
    tap_not_ok "two pairs on an existing single-queue TAP: one line naming net.0.tap and multi_queue, exit 2" \
        "exit status $DT_RC" "$(cat "$DT_OUT/net-sq2.err")"
fi
net_run net-sq1 1 "net_pairs=1 net_reset=0" --tap "$TAPDEV" --single-queue --
dt_guest_passed net-sq1 "one pair on an existing single-queue TAP works"

# --- errors -------------------------------------------------------------------------------
net_run net-badmac 1 "" -- --set net.0.mac=01:00:5e:00:00:01
if [ "$DT_RC" -eq 2 ] && [ "$(grep -c . "$DT_OUT/net-badmac.err")" -eq 1 ] &&
    grep -q "net\.0\.mac = '01:00:5e:00:00:01': a multicast address" "$DT_OUT/net-badmac.err"; then
    tap_ok "a multicast MAC: one line naming net.0.mac, exit 2"
else
    tap_not_ok "a multicast MAC: one line naming net.0.mac, exit 2" "exit status $DT_RC" \
        "$(cat "$DT_OUT/net-badmac.err")"
fi
if [ -e /dev/vhost-net ]; then
    tap_skip "this host has /dev/vhost-net (net-vhost.t covers vhost)" 1
else
    net_run net-vhost-yes 1 "" -- --set net.0.vhost=yes
    if [ "$DT_RC" -eq 2 ] && grep -q "net\.0\.vhost = yes: cannot open /dev/vhost-net: No such file or directory" "$DT_OUT/net-vhost-yes.err"; then
        tap_ok "vhost = yes without /dev/vhost-net: the error names net.0.vhost and the device, exit 2"
    else
        tap_not_ok "vhost = yes without /dev/vhost-net: the error names net.0.vhost and the device, exit 2" \
            "exit status $DT_RC" "$(cat "$DT_OUT/net-vhost-yes.err")"
    fi
fi
net_run net-vhost-auto 2 "net_pairs=2 net_reset=0" -- --set net.0.vhost=auto -v
if [ -e /dev/vhost-net ]; then
    dt_guest_passed net-vhost-auto "vhost = auto with /dev/vhost-net: the guest passes on vhost-net"
else
    n=$(grep -c 'vhost = auto: cannot open /dev/vhost-net.*using the user-space datapath' "$DT_OUT/net-vhost-auto.err")
    if [ "$DT_RC" -eq 0 ] && [ "$n" -eq 1 ]; then
        tap_ok "vhost = auto without /dev/vhost-net: falls back, says so once, the guest passes"
    else
        tap_not_ok "vhost = auto without /dev/vhost-net: falls back, says so once, the guest passes" \
            "exit status $DT_RC, $n fallback lines" "$(tail -n 8 "$DT_OUT/net-vhost-auto.err")"
    fi
fi

# --- hostcheck -------------------------------------------------------------------------------
hc=$("$DT_DVMM" hostcheck 2>&1)
if printf '%s\n' "$hc" | grep -Eq '^(OK|WARN) +tun-multiqueue +TUNGETFEATURES 0x[0-9a-f]+' &&
    printf '%s\n' "$hc" | grep -Eq '^(OK|WARN) +vhost-net +/dev/vhost-net'; then
    tap_ok "hostcheck reports tun-multiqueue and vhost-net"
else
    tap_not_ok "hostcheck reports tun-multiqueue and vhost-net" "$(printf '%s\n' "$hc" | tail -n 6)"
fi

tap_done
