# TAP helpers for the bash integration tests (tests/integration/*.t).
# Source it:  . "$(dirname "$0")/../lib/tap.sh"
# Output is TAP 13 as prove expects; diagnostics go to stdout as "# ..." lines
# so they stay in order with the test lines.

# A test script runs with `set -u` in mind: every variable here has a default.
TAP_N=0          # number of the last test emitted
TAP_FAILED=0     # how many "not ok" (TODO excluded)
TAP_PLANNED=""   # the plan, once printed

tap_plan() {
    TAP_PLANNED=$1
    echo "1..$1"
}

# Print each line of the arguments (or stdin with "-") as a diagnostic.
tap_diag() {
    if [ "$#" -eq 1 ] && [ "$1" = "-" ]; then
        sed 's/^/# /'
    else
        printf '%s\n' "$*" | sed 's/^/# /'
    fi
}

tap_ok() {
    TAP_N=$((TAP_N + 1))
    echo "ok $TAP_N - $*"
}

# tap_not_ok DESCRIPTION [DIAGNOSTIC...]: each extra argument becomes a "#" line.
# The failure and its diagnostics also go to stderr: `prove --failures`
# (make test, CI) shows stderr but not "#" lines, and a flaky failure seen
# only in CI must still say why.
tap_not_ok() {
    local desc=$1 d diag
    shift
    TAP_N=$((TAP_N + 1))
    TAP_FAILED=$((TAP_FAILED + 1))
    echo "not ok $TAP_N - $desc"
    diag=$(for d in "$@"; do tap_diag "$d"; done)
    [ -n "$diag" ] && printf '%s\n' "$diag"
    { echo "not ok $TAP_N - $desc"; [ -n "$diag" ] && printf '%s\n' "$diag"; } >&2
    return 0
}

# tap_check DESCRIPTION CMD...: ok when CMD succeeds; on failure its output
# (stdout+stderr, last 20 lines) becomes the diagnostic.
tap_check() {
    local desc=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -eq 0 ]; then
        tap_ok "$desc"
    else
        tap_not_ok "$desc" "command: $*" "exit status $rc" \
            "$(printf '%s\n' "$out" | tail -n 20)"
    fi
    return "$rc"
}

# tap_is GOT EXPECTED DESCRIPTION
tap_is() {
    if [ "$1" = "$2" ]; then
        tap_ok "$3"
    else
        tap_not_ok "$3" "got:      '$1'" "expected: '$2'"
        return 1
    fi
}

# tap_skip REASON [COUNT]: COUNT tests (default 1) skipped with REASON.
tap_skip() {
    local reason=$1 count=${2:-1} i
    for ((i = 0; i < count; i++)); do
        TAP_N=$((TAP_N + 1))
        echo "ok $TAP_N # SKIP $reason"
    done
}

# The whole file cannot run here: say why and stop.  Only valid before any
# test line or plan has been printed.
tap_skip_all() {
    echo "1..0 # SKIP $*"
    tap_scratch_end 0
    exit 0
}

tap_bail_out() {
    echo "Bail out! $*"
    tap_scratch_end 255
    exit 255
}

# Directories given to tap_scratch DIR are the test's scratch: removed when
# it ends well (tap_scratch_end 0), kept and named on stderr as the evidence
# of a failure.  tap_done, tap_skip_all and tap_bail_out call it.
TAP_SCRATCH=()
tap_scratch() { TAP_SCRATCH+=("$1"); }
tap_scratch_end() {
    [ "${#TAP_SCRATCH[@]}" -gt 0 ] || return 0
    if [ "$1" -eq 0 ]; then
        rm -rf "${TAP_SCRATCH[@]}"
    else
        echo "$(basename "$0"): evidence kept in ${TAP_SCRATCH[*]}" >&2
    fi
    TAP_SCRATCH=()
}

# Print the plan when it was not given up front (done_testing style) and exit
# non-zero when any test failed or the count differs from the plan.
tap_done() {
    local bad=0
    if [ -z "$TAP_PLANNED" ]; then
        echo "1..$TAP_N"
    elif [ "$TAP_PLANNED" -ne "$TAP_N" ]; then
        tap_diag "planned $TAP_PLANNED tests but ran $TAP_N"
        bad=255
    fi
    [ "$bad" -eq 0 ] && [ "$TAP_FAILED" -ne 0 ] && bad=1
    tap_scratch_end "$bad"
    exit "$bad"
}

# run_with_timeout SECONDS CMD...: CMD's status, or 124 when it ran too long.
# KILL follows TERM after 10 s so a wedged child never hangs the suite.
run_with_timeout() {
    local secs=$1
    shift
    timeout --kill-after=10 "$secs" "$@"
}

# Repo root (the directory holding Makefile and tests/), whatever the cwd.
tap_repo_root() {
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || return 1
    echo "$here"
}
