# The harness the memory-failure tests share (blk-poison.t, net-poison.t,
# blk-poison-dmemfs.t): each boots the test guest with a control socket and
# an MCE log, waits for the guest to name the page its I/O will use, fails
# that page for real, and then reads the guest's verdicts and dvmm's log.
# One copy here, so that the three read the console, the log and the
# control socket the same way.  Source after tap.sh and kvm-env.sh (the
# host functions), and bg-proc.sh and dvmm-test.sh (the run functions).
#
# The run functions work on the one dvmm a test runs at a time, named by
# these variables (poison_files sets them):
#   P_NAME  the VM's name; its files are $DT_OUT/P_NAME.{ini,stdout,ctl.log,ctl.err}
#   P_SOCK  its control socket
#   P_LOG   its MCE log (JSON lines), P_CON its console, P_ERR its stderr
#   P_PID   the timeout(1) that runs it (poison_start), P_RC its exit
#           status once it has ended (empty while it runs)
# and WAIT_S, the seconds any one wait may take.

# poison_need_memory_failure "$@": need_kvm, but in the nested KVM host
# where this host's kernel has no memory-failure handling
# (CONFIG_MEMORY_FAILURE): MADV_HWPOISON and the early-kill AO need it.
poison_need_memory_failure() {
    if [ -z "${DVMM_NESTED:-}" ] && [ ! -e /proc/sys/vm/memory_failure_recovery ]; then
        need_nested_kvm "this host's kernel has no CONFIG_MEMORY_FAILURE" "$@"
    fi
    need_kvm "$@"
}

# poison_need_dmemfs_host GIB "$@": need_kvm on a host with dmemfs, which
# is this one only where it has dmemfs and a usable /dev/kvm; elsewhere the
# nested KVM host booted with GIB GiB reserved for dmemfs, after building
# its kernel side (kernel-support/kernel-build: a failure there is a
# failing test, not a skip).  As dmemfs.t, less its reference boot.
poison_need_dmemfs_host() {
    local gib=$1 kbuild_out
    shift
    if [ -z "${DVMM_NESTED:-}" ] && kvm_usable && grep -qw dmemfs /proc/filesystems; then
        need_kvm "$@"
        return
    fi
    if [ -z "${DVMM_NESTED:-}" ] && [ -z "$(nested_unavailable_reason)" ]; then
        if ! kbuild_out=$(kernel-support/kernel-build 2>&1 >/dev/null); then
            echo "1..1"
            tap_not_ok "kernel-support/kernel-build: patched kvm.ko and dmemfs.ko for the nested host" \
                "$(printf '%s\n' "$kbuild_out" | tail -n 20)"
            exit 1
        fi
    fi
    export DVMM_NESTED_DMEM=${gib}G
    need_nested_kvm "this host's kernel has no dmemfs" "$@"
}

# poison_out_dir NAME: DT_OUT, unless set already, a new directory
# NAME.XXXXXX under the build tree's tests/: the evidence outlives the
# nested host, whose /tmp goes with it.  Before sourcing dvmm-test.sh.
poison_out_dir() {
    [ -n "${DT_OUT:-}" ] && return
    mkdir -p "$(dvmm_build_dir)/tests" &&
        DT_OUT=$(mktemp -d "$(dvmm_build_dir)/tests/$1.XXXXXX") || DT_OUT=
}

# poison_files NAME SOCKET: the P_* variables for a VM called NAME with
# its control socket at SOCKET; empties its console and MCE log.
poison_files() {
    P_NAME=$1
    P_SOCK=$2
    P_LOG=$DT_OUT/$P_NAME.jsonl
    P_CON=$DT_OUT/$P_NAME.out
    P_ERR=$DT_OUT/$P_NAME.err
    : >"$P_CON"
    : >"$P_LOG"
}

# poison_start [WRAPPER...]: runs $DT_OUT/P_NAME.ini in the background
# (through WRAPPER, e.g. net-ns-run, when given) with the control socket,
# the MCE log and the console output at P_SOCK, P_LOG and P_CON.
# timeout(1) directly, not through a shell function, so that P_PID is it.
poison_start() {
    timeout --kill-after=10 "$DT_TIMEOUT" "$@" "$DT_DVMM" run "$DT_OUT/$P_NAME.ini" \
        --set control.socket="$P_SOCK" --set mce.log="$P_LOG" \
        --set console.output="$P_CON" </dev/null >"$DT_OUT/$P_NAME.stdout" 2>"$P_ERR" &
    P_PID=$!
    P_RC=
}

# poison_ctl ARGS...: one control request; reply in CTL_OUT, status in
# CTL_RC; both logged in P_NAME.ctl.log, dvmm ctl's stderr in P_NAME.ctl.err.
poison_ctl() {
    CTL_OUT=$("$DT_DVMM" ctl "$P_SOCK" "$@" 2>>"$DT_OUT/$P_NAME.ctl.err")
    CTL_RC=$?
    printf '$ dvmm ctl %s\n%s\n' "$*" "$CTL_OUT" >>"$DT_OUT/$P_NAME.ctl.log"
}

# poison_wait_page REGEX DESCRIPTION SKIP: 0 once the console has a line
# matching REGEX (the guest naming its page).  Otherwise one failing point
# DESCRIPTION, SKIP skipped points for the checks that needed the page,
# dvmm killed, and 1: the caller gives up on this run.
poison_wait_page() {
    bg_wait_line "$P_PID" P_RC "$P_CON" "$1" "$WAIT_S" && return 0
    tap_not_ok "$2" "exit status: ${P_RC:-running}" \
        "console:" "$(tail -n 15 "$P_CON")" "stderr:" "$(tail -n 10 "$P_ERR")"
    tap_skip "the guest did not reach the poison step" "$3"
    kill "$P_PID" 2>/dev/null
    wait "$P_PID" 2>/dev/null
    return 1
}

# poison_hwpoison GPA PAGE SKIP [PREFIX]: `dvmm ctl hwpoison gpa=GPA`
# (MADV_HWPOISON on the guest page behind GPA); one point, "PREFIX...the
# guest's PAGE page offline".  When the request fails: that point not ok,
# SKIP skipped points, dvmm told to quit, and 1.
poison_hwpoison() {
    local gpa=$1 page=$2 skip=$3 prefix=${4:-}
    poison_ctl hwpoison gpa="$gpa"
    if [ "$CTL_RC" -ne 0 ] || ! printf '%s' "$CTL_OUT" | jq -e '.ok == true' >/dev/null 2>&1; then
        tap_not_ok "${prefix}hwpoison gpa=$gpa took the page offline" "reply (exit $CTL_RC): $CTL_OUT" \
            "$(cat "$DT_OUT/$P_NAME.ctl.err" 2>/dev/null)"
        tap_skip "the page was not poisoned, so there is nothing to survive" "$skip"
        poison_ctl quit
        bg_wait_exit "$P_PID" P_RC "$WAIT_S" || kill "$P_PID" 2>/dev/null
        return 1
    fi
    tap_ok "${prefix}hwpoison gpa=$gpa (MADV_HWPOISON) took the guest's $page page offline"
}

# poison_wait_exit: dvmm's exit status in P_RC, killing it after WAIT_S.
poison_wait_exit() {
    bg_wait_exit "$P_PID" P_RC "$WAIT_S" && return
    kill "$P_PID" 2>/dev/null
    wait "$P_PID"
    P_RC=$?
}

# poison_guest_steps PREFIX STEP...: one point per STEP, "PREFIXguest:
# STEP", ok when the guest's console has "ok N - STEP" (shown).
poison_guest_steps() {
    local prefix=$1 step
    shift
    for step in "$@"; do
        if grep -q "^ok [0-9]* - $step" "$P_CON"; then
            tap_ok "${prefix}guest: $step"
            grep "^ok [0-9]* - $step" "$P_CON" | head -n 1 | tap_diag -
        else
            tap_not_ok "${prefix}guest: $step" "console:" "$(tail -n 15 "$P_CON")" \
                "stderr:" "$(tail -n 10 "$P_ERR")"
        fi
    done
}

# poison_log_has DESCRIPTION JQ-FILTER: one point, ok when some line of
# the MCE log matches JQ-FILTER (the first two shown).
poison_log_has() {
    if jq -e -s "any(.[]; $2)" "$P_LOG" >/dev/null 2>&1; then
        tap_ok "$1"
        jq -c -s ".[] | select($2)" "$P_LOG" 2>/dev/null | head -n 2 | tap_diag -
    else
        tap_not_ok "$1" "no MCE log line matches: $2" "log:" "$(cat "$P_LOG")"
    fi
}

# poison_dump_log: the whole MCE log as diagnostics.
poison_dump_log() {
    tap_diag "MCE log:"
    tap_diag - <"$P_LOG"
}
