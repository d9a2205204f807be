#!/bin/bash
# virtio-net frames on a failed guest page are dropped, not fatal.  The
# test guest (dvmmtest=net net_poison=1, one pair, in a network namespace
# of its own with its own TAP: tests/lib/net-ns-run) writes two ARP
# requests into one page and names it on its console; this script poisons
# it for real (`dvmm ctl ... hwpoison`: MADV_HWPOISON); the kernel's
# early-kill AO reaches the guest first.  Then the guest sends a frame whose
# virtio-net header lies on the page (the worker's own load faults: its
# guard catches the SIGBUS) and one whose header is elsewhere and whose
# Ethernet frame lies on the page (the TAP writev gets EFAULT, traced by
# probing): each chain must come back, no second machine check may arrive,
# and ARP and ICMP echo on the same pair must still work.  Pair 0's first
# RX buffer lies on the page too: the first reply meets it (tun's readv
# ignores its failed copy; dvmm's own store of the virtio-net header into
# the buffer faults, caught by the guard), is dropped and its chain comes
# back empty.  Checked here: the
# guest's lines, dvmm's MCE log lines naming virtio-net.0, the queue and
# the buffer, `status` counting the memory_failure drops, exit status 0.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
# Inside a nested KVM host /dev/net/tun needs the module.
export DVMM_NESTED_MODULES="${DVMM_NESTED_MODULES:+$DVMM_NESTED_MODULES }tun"
. tests/lib/kvm-env.sh
# A real memory failure needs the kernel's memory-failure handling: where
# this host's kernel lacks it, the whole file runs in the nested KVM host.
if [ -z "${DVMM_NESTED:-}" ] && [ ! -e /proc/sys/vm/memory_failure_recovery ]; then
    need_nested_kvm "this host's kernel has no CONFIG_MEMORY_FAILURE" "$@"
fi
need_kvm "$@"
if [ -z "${DT_OUT:-}" ]; then
    mkdir -p "$(dvmm_build_dir)/tests" &&
        DT_OUT=$(mktemp -d "$(dvmm_build_dir)/tests/net-poison.XXXXXX") || DT_OUT=
fi
. tests/lib/dvmm-test.sh
. tests/lib/bg-proc.sh
dt_require_build
NSRUN=tests/lib/net-ns-run
for t in ip unshare jq; do
    command -v "$t" >/dev/null 2>&1 || tap_skip_all "$t not installed"
done
why=$("$NSRUN" --tap dvprobe0 -- true 2>&1) ||
    tap_skip_all "cannot make a network namespace with a TAP here: ${why:-net-ns-run failed}"

WAIT_S=${DVMM_NET_POISON_WAIT:-120}
PLAN=11
tap_plan $PLAN
tap_diag "running on $KVM_WHERE; logs in $DT_OUT"
SOCK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-netp.XXXXXX")
trap 'rm -rf "$SOCK_DIR"' EXIT

P_NAME=netp
P_SOCK=$SOCK_DIR/$P_NAME.sock
P_LOG=$DT_OUT/$P_NAME.jsonl
P_CON=$DT_OUT/$P_NAME.out
P_ERR=$DT_OUT/$P_NAME.err
: >"$P_CON"
: >"$P_LOG"
cat >"$DT_OUT/$P_NAME.ini" <<INI
[vm]
name = $P_NAME
vcpus = 1
memory = 64M
kernel = $DT_GUEST
cmdline = dvmmtest=net net_host=10.0.2.1 net_ip=10.0.2.15 net_poison=1 net_reset=0 mce_timeout=$WAIT_S
on_reset = exit
[console]
input = no
[net.0]
tap = dvnetp0
queues = 1
INI

ctl() {
    CTL_OUT=$("$DT_DVMM" ctl "$P_SOCK" "$@" 2>>"$DT_OUT/$P_NAME.ctl.err")
    CTL_RC=$?
    printf '$ dvmm ctl %s\n%s\n' "$*" "$CTL_OUT" >>"$DT_OUT/$P_NAME.ctl.log"
}

log_has() {
    if jq -e -s "any(.[]; $2)" "$P_LOG" >/dev/null 2>&1; then
        tap_ok "$1"
        jq -c -s ".[] | select($2)" "$P_LOG" 2>/dev/null | head -n 2 | tap_diag -
    else
        tap_not_ok "$1" "no MCE log line matches: $2" "log:" "$(cat "$P_LOG")"
    fi
}

timeout --kill-after=10 "$DT_TIMEOUT" "$NSRUN" --tap dvnetp0 -- \
    "$DT_DVMM" run "$DT_OUT/$P_NAME.ini" --set control.socket="$P_SOCK" \
    --set mce.log="$P_LOG" --set console.output="$P_CON" \
    </dev/null >"$DT_OUT/$P_NAME.stdout" 2>"$P_ERR" &
P_PID=$!
P_RC=

if ! bg_wait_line "$P_PID" P_RC "$P_CON" '^# netpoison: frame gpa 0x[0-9a-f]+$' "$WAIT_S"; then
    tap_not_ok "the guest named its frame page" "exit status: ${P_RC:-running}" \
        "console:" "$(tail -n 15 "$P_CON")" "stderr:" "$(tail -n 10 "$P_ERR")"
    tap_skip "the guest did not reach the poison step" $((PLAN - 1))
    kill "$P_PID" 2>/dev/null
    wait "$P_PID" 2>/dev/null
    tap_done
    exit
fi
gpa=$(sed -n 's/^# netpoison: frame gpa \(0x[0-9a-f]*\)$/\1/p' "$P_CON" | head -n 1)
ctl hwpoison gpa="$gpa"
if [ "$CTL_RC" -ne 0 ] || ! printf '%s' "$CTL_OUT" | jq -e '.ok == true' >/dev/null 2>&1; then
    tap_not_ok "hwpoison gpa=$gpa took the page offline" "reply (exit $CTL_RC): $CTL_OUT" \
        "$(cat "$DT_OUT/$P_NAME.ctl.err" 2>/dev/null)"
    tap_skip "the page was not poisoned, so there is nothing to survive" $((PLAN - 1))
    ctl quit
    bg_wait_exit "$P_PID" P_RC "$WAIT_S" || kill "$P_PID" 2>/dev/null
    tap_done
    exit
fi
tap_ok "hwpoison gpa=$gpa (MADV_HWPOISON) took the guest's frame page offline"

# The drop counters, read while the guest checks the pair still works.
bg_wait_line "$P_PID" P_RC "$P_CON" '^(not )?ok [0-9]+ - netpoison no second machine check' "$WAIT_S"
ctl status
status_json=$CTL_OUT

bg_wait_exit "$P_PID" P_RC "$WAIT_S" || {
    kill "$P_PID" 2>/dev/null
    wait "$P_PID"
    P_RC=$?
}
for step in 'mce ao delivered' \
    'netpoison TX frame with its header on the failed page: chain given back' \
    'netpoison TX frame body on the failed page: chain given back' \
    'netpoison no second machine check for the page' \
    'netpoison ARP and ICMP echo on pair 0 after the failure' \
    'netpoison RX frame into the failed page: dropped, chain given back empty'; do
    if grep -q "^ok [0-9]* - $step" "$P_CON"; then
        tap_ok "guest: $step"
    else
        tap_not_ok "guest: $step" "console:" "$(tail -n 15 "$P_CON")" "stderr:" "$(tail -n 10 "$P_ERR")"
    fi
done
log_has "MCE log: the header's failure (the worker's own load, caught by its guard) names virtio-net.0 pair 0 queue 1: TX frame" \
    ".gpa == \"$gpa\" and (.reason | test(\"^virtio-net\\\\.0 pair 0 queue 1: TX frame: \"))"
log_has "MCE log: the frame body's failure (TAP writev EFAULT, found by probing) names virtio-net.0 pair 0 queue 1: TX buffer" \
    ".gpa == \"$gpa\" and (.reason | test(\"^virtio-net\\\\.0 pair 0 queue 1: TX buffer: \"))"
log_has "MCE log: the RX frame's failure (the worker's own store of the header: tun's readv ignores its copy error) names virtio-net.0 pair 0 queue 0: RX buffer" \
    ".gpa == \"$gpa\" and (.reason | test(\"^virtio-net\\\\.0 pair 0 queue 0: RX buffer: \"))"
if [ "$P_RC" = 0 ] && ! grep -q '^not ok' "$P_CON" &&
    printf '%s' "$status_json" | jq -e '[.. | objects | select(has("memory_failure")) | .memory_failure] | any(. >= 2)' >/dev/null 2>&1 &&
    grep -q "virtio-net.0 pair 0 queue 1: TX buffer: memory failure at GPA $gpa" "$P_ERR"; then
    tap_ok "dvmm counted the TX memory_failure drops, named the page on stderr and exited 0"
else
    tap_not_ok "dvmm counted the TX memory_failure drops, named the page on stderr and exited 0" \
        "exit status ${P_RC:-running}" "status: $status_json" "stderr:" "$(tail -n 15 "$P_ERR")" \
        "console:" "$(tail -n 10 "$P_CON")"
fi
tap_diag "MCE log:"
tap_diag - <"$P_LOG"
tap_done
