# Where a KVM-dependent test runs.  Call `need_kvm "$@"` at the top of the
# .t script, after sourcing tap.sh and before printing any TAP:
#   - /dev/kvm usable here: returns, and the test runs here;
#   - otherwise, outside the nested host and with QEMU and Debian's kernel at
#     hand: the same script runs (same args, DVMM_* and prove's variables)
#     inside the nested KVM host; its TAP comes out unchanged on our stdout
#     and its exit status is ours, so need_kvm never returns;
#   - otherwise: `1..0 # SKIP` with the reason.
# After it returns, KVM_WHERE says where the test runs (for a "#" line).

# shellcheck disable=SC2034 # KVM_WHERE is read by the scripts that source this
. "$(dirname "${BASH_SOURCE[0]}")/nested.sh"

kvm_usable() {
    [ -c /dev/kvm ] && { : <>/dev/kvm; } 2>/dev/null
}

# Why /dev/kvm is not usable on this machine, as precisely as we can tell.
kvm_absent_reason() {
    local why
    if [ -e /dev/kvm ]; then
        echo "/dev/kvm exists but cannot be opened read-write by $(id -un)"
        return
    fi
    why="no /dev/kvm on this host"
    if [ -d /sys/module/kvm_pvm ]; then
        why="$why (kvm_pvm loaded but not bound)"
    elif [ -d /sys/module/kvm ]; then
        why="$why (kvm loaded, no vendor module bound)"
    elif ! grep -qw -E 'vmx|svm' /proc/cpuinfo; then
        why="$why (CPU has no VT-x/AMD-V)"
    fi
    echo "$why"
}

need_kvm() {
    if kvm_usable; then
        if [ -n "${DVMM_NESTED:-}" ]; then
            KVM_WHERE="nested KVM host (QEMU TCG with nested SVM, kernel $(uname -r))"
        else
            KVM_WHERE="this host's /dev/kvm"
        fi
        return 0
    fi
    # The nested host exists to provide /dev/kvm: without it the harness is
    # broken, which must not look like a skip.
    [ -n "${DVMM_NESTED:-}" ] &&
        tap_bail_out "inside the nested KVM host but $(kvm_absent_reason)"
    _kvm_env_go_nested "$(kvm_absent_reason)" "$@"
}

# need_kvm_stock_guest "$@": need_kvm for a test that boots a stock (non-PVM)
# kernel.  A PVM /dev/kvm does not count: such a kernel stops in KVM's
# instruction emulator there, so the test goes to the nested KVM host.
need_kvm_stock_guest() {
    if [ -z "${DVMM_NESTED:-}" ] && kvm_usable && [ -d /sys/module/kvm_pvm ]; then
        need_nested_kvm "/dev/kvm here is PVM, where a stock kernel stops in KVM's instruction emulator" "$@"
    fi
    need_kvm "$@"
}

# need_nested_kvm WHY "$@": like need_kvm, but always in the nested KVM host,
# even where this host has a usable /dev/kvm: for tests that need the
# nested host's own kernel side (dmemfs and the patched KVM; WHY says
# which).  Inside the nested host it returns.
need_nested_kvm() {
    local what=$1
    shift
    if [ -n "${DVMM_NESTED:-}" ]; then
        kvm_usable || tap_bail_out "inside the nested KVM host but $(kvm_absent_reason)"
        KVM_WHERE="nested KVM host (QEMU TCG with nested SVM, kernel $(uname -r))"
        return 0
    fi
    _kvm_env_go_nested "$what" "$@"
}

# _kvm_env_go_nested WHY "$@": run this script in the nested host and exit
# with its status, or skip all (saying WHY this host cannot run it and why
# the nested host cannot either).
_kvm_env_go_nested() {
    local why script rc what=$1
    shift
    why=$(nested_unavailable_reason)
    [ -n "$why" ] && tap_skip_all "$what and $why"
    nested_prepare >/dev/null 2>&1 ||
        tap_skip_all "$what and Debian's kernel for a nested KVM host cannot be fetched with apt"

    script=$(readlink -f "$0")
    nested_run "$script" "$@"
    rc=$?
    if [ -n "$NESTED_FAILURE" ]; then
        if [ "${NESTED_OUT_BYTES:-0}" -eq 0 ]; then
            # Nothing came back: one failing test keeps prove honest.
            echo "1..1"
            echo "not ok 1 - $(basename "$0") ran in the nested KVM host"
            tap_diag "$NESTED_FAILURE"
            [ -n "${NESTED_FAILURE_LOG:-}" ] && tap_diag "$NESTED_FAILURE_LOG"
        else
            # Some TAP came back: add one failing point (unnumbered, so it
            # never collides) rather than a Bail out!, which would stop
            # every later test file too.
            echo "not ok - the nested KVM host failed: $NESTED_FAILURE"
            [ -n "${NESTED_FAILURE_LOG:-}" ] && tap_diag "$NESTED_FAILURE_LOG"
        fi
        [ "$rc" -eq 0 ] && rc=1
    fi
    tap_scratch_end "$rc"
    exit "$rc"
}
