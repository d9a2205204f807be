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
. tests/lib/kvm-env.sh
. tests/lib/poison.sh
# Inside a nested KVM host /dev/net/tun needs the module.
nested_want_modules tun
# A real memory failure needs the kernel's memory-failure handling: where
# this host's kernel lacks it, the whole file runs in the nested KVM host.
poison_need_memory_failure "$@"
poison_out_dir net-poison
. tests/lib/dvmm-test.sh
. tests/lib/bg-proc.sh
dt_require_build
NSRUN=tests/lib/net-ns-run
command -v jq >/dev/null 2>&1 || tap_skip_all "jq not installed"
why=$(dt_no_tap_reason)
[ -z "$why" ] || tap_skip_all "$why"

WAIT_S=${DVMM_NET_POISON_WAIT:-120}
PLAN=11
tap_plan $PLAN
tap_diag "running on $KVM_WHERE; logs in $DT_OUT"
SOCK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-netp.XXXXXX")
trap 'rm -rf "$SOCK_DIR"' EXIT

poison_files netp "$SOCK_DIR/netp.sock"
dt_ini "$P_NAME" 1 64M "dvmmtest=net net_host=10.0.2.1 net_ip=10.0.2.15 net_poison=1 net_reset=0 mce_timeout=$WAIT_S" <<INI
[net.0]
tap = dvnetp0
queues = 1
INI
poison_start "$NSRUN" --tap dvnetp0 --

if ! poison_wait_page '^# netpoison: frame gpa 0x[0-9a-f]+$' "the guest named its frame page" $((PLAN - 1)); then
    tap_done
    exit
fi
gpa=$(sed -n 's/^# netpoison: frame gpa \(0x[0-9a-f]*\)$/\1/p' "$P_CON" | head -n 1)
if ! poison_hwpoison "$gpa" frame $((PLAN - 1)); then
    tap_done
    exit
fi

# The drop counters, read while the guest checks the pair still works.
bg_wait_line "$P_PID" P_RC "$P_CON" '^(not )?ok [0-9]+ - netpoison no second machine check' "$WAIT_S"
poison_ctl status
status_json=$CTL_OUT

poison_wait_exit
poison_guest_steps "" 'mce ao delivered' \
    'netpoison TX frame with its header on the failed page: chain given back' \
    'netpoison TX frame body on the failed page: chain given back' \
    'netpoison no second machine check for the page' \
    'netpoison ARP and ICMP echo on pair 0 after the failure' \
    'netpoison RX frame into the failed page: dropped, chain given back empty'
poison_log_has "MCE log: the header's failure (the worker's own load, caught by its guard) names virtio-net.0 pair 0 queue 1: TX frame" \
    ".gpa == \"$gpa\" and (.reason | test(\"^virtio-net\\\\.0 pair 0 queue 1: TX frame: \"))"
poison_log_has "MCE log: the frame body's failure (TAP writev EFAULT, found by probing) names virtio-net.0 pair 0 queue 1: TX buffer" \
    ".gpa == \"$gpa\" and (.reason | test(\"^virtio-net\\\\.0 pair 0 queue 1: TX buffer: \"))"
poison_log_has "MCE log: the RX frame's failure (the worker's own store of the header: tun's readv ignores its copy error) names virtio-net.0 pair 0 queue 0: RX buffer" \
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
poison_dump_log
tap_done
