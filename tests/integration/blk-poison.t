#!/bin/bash
# I/O that survives a memory failure: a virtio-blk request whose data
# buffer is a guest page the host kernel has taken offline must fail with
# IOERR, and dvmm must go on.  The test guest (dvmmtest=blk blk_poison=1)
# names the page on its console; this script poisons it for real
# (`dvmm ctl ... hwpoison`: MADV_HWPOISON, the kernel's memory-failure
# path); the kernel's early-kill AO reaches the guest first (a deferred
# error on AMD, a #MC on Intel).  Then the guest writes from and reads into
# that page: the worker's preadv/pwritev or io_uring gets EFAULT, probes
# the buffer under its guard, finds the failed page and reports it; the
# request fails with IOERR, no second machine check arrives (the page was
# reported once), and a request on another page succeeds.  Checked here:
# the guest's lines, dvmm's JSON MCE log line naming the device, queue and
# buffer, its stderr warning, and its exit status 0.  Once per engine
# (io_uring, threads).
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh
# A real memory failure needs the kernel's memory-failure handling: where
# this host's kernel lacks it, the whole file runs in the nested KVM host.
if [ -z "${DVMM_NESTED:-}" ] && [ ! -e /proc/sys/vm/memory_failure_recovery ]; then
    need_nested_kvm "this host's kernel has no CONFIG_MEMORY_FAILURE" "$@"
fi
need_kvm "$@"
# Evidence outlives the nested host (its /tmp goes with it).
if [ -z "${DT_OUT:-}" ]; then
    mkdir -p "$(dvmm_build_dir)/tests" &&
        DT_OUT=$(mktemp -d "$(dvmm_build_dir)/tests/blk-poison.XXXXXX") || DT_OUT=
fi
. tests/lib/dvmm-test.sh
. tests/lib/bg-proc.sh
dt_require_build
command -v jq >/dev/null 2>&1 || tap_skip_all "jq (for the MCE log) not installed"

WAIT_S=${DVMM_BLK_POISON_WAIT:-120}
ENGINES="io_uring threads"
PER_RUN=10

tap_plan $((PER_RUN * 2))
tap_diag "running on $KVM_WHERE; logs in $DT_OUT"
SOCK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-blkp.XXXXXX")
trap 'rm -rf "$SOCK_DIR"' EXIT

# ctl ARGS...: one control request; reply in CTL_OUT, status in CTL_RC.
ctl() {
    CTL_OUT=$("$DT_DVMM" ctl "$P_SOCK" "$@" 2>>"$DT_OUT/$P_NAME.ctl.err")
    CTL_RC=$?
    printf '$ dvmm ctl %s\n%s\n' "$*" "$CTL_OUT" >>"$DT_OUT/$P_NAME.ctl.log"
}

# log_has DESCRIPTION JQ-FILTER: some line of the MCE log matches.
log_has() {
    if jq -e -s "any(.[]; $2)" "$P_LOG" >/dev/null 2>&1; then
        tap_ok "$1"
        jq -c -s ".[] | select($2)" "$P_LOG" 2>/dev/null | head -n 2 | tap_diag -
    else
        tap_not_ok "$1" "no MCE log line matches: $2" "log:" "$(cat "$P_LOG")"
    fi
}

poison_run() {
    local engine=$1 gpa step
    P_NAME=blkp-$engine
    P_SOCK=$SOCK_DIR/$P_NAME.sock
    P_LOG=$DT_OUT/$P_NAME.jsonl
    P_CON=$DT_OUT/$P_NAME.out
    P_ERR=$DT_OUT/$P_NAME.err
    : >"$P_CON"
    : >"$P_LOG"
    truncate -s 1M "$DT_OUT/$P_NAME.img"
    cat >"$DT_OUT/$P_NAME.ini" <<INI
[vm]
name = $P_NAME
vcpus = 1
memory = 64M
kernel = $DT_GUEST
cmdline = dvmmtest=blk blk_poison=1 blk_queues=1 mce_timeout=$WAIT_S
on_reset = exit
[console]
input = no
[disk.0]
path = $P_NAME.img
engine = $engine
INI
    timeout --kill-after=10 "$DT_TIMEOUT" "$DT_DVMM" run "$DT_OUT/$P_NAME.ini" \
        --set control.socket="$P_SOCK" --set mce.log="$P_LOG" \
        --set console.output="$P_CON" </dev/null >"$DT_OUT/$P_NAME.stdout" 2>"$P_ERR" &
    P_PID=$!
    P_RC=

    if ! bg_wait_line "$P_PID" P_RC "$P_CON" '^# blkpoison: buffer gpa 0x[0-9a-f]+$' "$WAIT_S"; then
        tap_not_ok "$engine: the guest named its buffer page" "exit status: ${P_RC:-running}" \
            "console:" "$(tail -n 15 "$P_CON")" "stderr:" "$(tail -n 10 "$P_ERR")"
        tap_skip "the guest did not reach the poison step" $((PER_RUN - 1))
        kill "$P_PID" 2>/dev/null
        wait "$P_PID" 2>/dev/null
        return
    fi
    gpa=$(sed -n 's/^# blkpoison: buffer gpa \(0x[0-9a-f]*\)$/\1/p' "$P_CON" | head -n 1)
    ctl hwpoison gpa="$gpa"
    if [ "$CTL_RC" -ne 0 ] || ! printf '%s' "$CTL_OUT" | jq -e '.ok == true' >/dev/null 2>&1; then
        tap_not_ok "$engine: hwpoison gpa=$gpa took the page offline" "reply (exit $CTL_RC): $CTL_OUT" \
            "$(cat "$DT_OUT/$P_NAME.ctl.err" 2>/dev/null)"
        tap_skip "the page was not poisoned, so there is nothing to survive" $((PER_RUN - 1))
        ctl quit
        bg_wait_exit "$P_PID" P_RC "$WAIT_S" || kill "$P_PID" 2>/dev/null
        return
    fi
    tap_ok "$engine: hwpoison gpa=$gpa (MADV_HWPOISON) took the guest's buffer page offline"

    bg_wait_exit "$P_PID" P_RC "$WAIT_S" || {
        kill "$P_PID" 2>/dev/null
        wait "$P_PID"
        P_RC=$?
    }
    for step in 'mce ao delivered' 'blkpoison write from the failed page: IOERR' \
        'blkpoison read into the failed page: IOERR' \
        'blkpoison request header on the failed page: IOERR' \
        'blkpoison no second machine check for the page' \
        'blkpoison another page after the failure: write OK, read OK, data intact'; do
        if grep -q "^ok [0-9]* - $step" "$P_CON"; then
            tap_ok "$engine: guest: $step"
            grep "^ok [0-9]* - $step" "$P_CON" | head -n 1 | tap_diag -
        else
            tap_not_ok "$engine: guest: $step" "console:" "$(tail -n 15 "$P_CON")" \
                "stderr:" "$(tail -n 10 "$P_ERR")"
        fi
    done
    log_has "$engine: MCE log: the device's reports of GPA $gpa name virtio-blk.0 queue 0 and the data buffer" \
        ".gpa == \"$gpa\" and (.reason | test(\"^virtio-blk\\\\.0 queue 0: (write|read) buffer: \"))"
    log_has "$engine: MCE log: the worker's own load of the header (SIGBUS caught by its guard) reported GPA $gpa" \
        ".gpa == \"$gpa\" and (.reason | test(\"^virtio-blk\\\\.0 queue 0: request header\"))"
    if [ "$P_RC" = 0 ] && grep -q '^1\.\.[0-9]' "$P_CON" && ! grep -q '^not ok' "$P_CON" &&
        grep -Eq "virtio-blk\.0 queue 0: (write|read) buffer: memory failure at GPA $gpa" "$P_ERR"; then
        tap_ok "$engine: dvmm ran on to the guest's end and exited 0, its stderr naming the page; no guest failure"
    else
        tap_not_ok "$engine: dvmm ran on to the guest's end and exited 0, its stderr naming the page; no guest failure" \
            "exit status ${P_RC:-running}" "console:" "$(tail -n 15 "$P_CON")" \
            "stderr:" "$(tail -n 15 "$P_ERR")"
    fi
}

for engine in $ENGINES; do
    poison_run "$engine"
done
tap_done
