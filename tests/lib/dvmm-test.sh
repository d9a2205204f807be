# Helpers for integration tests that boot the test guest with dvmm.
# Source after tap.sh and kvm-env.sh.
#
# dvmm_guest NAME VCPUS MEMORY CHECKS [--set k=v ...]
#   Boots build/testguest.elf with `dvmmtest=CHECKS` and stores the console
#   in $DT_OUT/NAME.out, dvmm's stderr in NAME.err and the exit status in
#   DT_RC.  The config is written to NAME.ini so a failure can be replayed
#   by hand.

DVMM_BUILD=${DVMM_BUILD:-build}
DT_ROOT=$(tap_repo_root)
case "$DVMM_BUILD" in
/*) DT_BUILD=$DVMM_BUILD ;;          # the nested host passes it absolute
*) DT_BUILD="$DT_ROOT/$DVMM_BUILD" ;;
esac
DT_DVMM="$DT_BUILD/dvmm"
DT_GUEST="$DT_BUILD/testguest.elf"
# A DT_OUT made here is this test's scratch: gone when it passes, kept
# (and named on stderr) when it fails.  One given by the caller is theirs.
if [ -z "${DT_OUT:-}" ]; then
    DT_OUT=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-test.XXXXXX")
    tap_scratch "$DT_OUT"
fi
DT_TIMEOUT=${DT_TIMEOUT:-300}

dt_require_build() {
    [ -x "$DT_DVMM" ] || tap_bail_out "$DT_DVMM missing: run make first"
    [ -f "$DT_GUEST" ] || tap_bail_out "$DT_GUEST missing: run make first"
}

# dt_ini NAME VCPUS MEMORY CMDLINE [KERNEL] <<INI ... INI
#   Writes $DT_OUT/NAME.ini: the [vm] section (KERNEL, the test guest unless
#   given, CMDLINE, on_reset = exit) and [console] input = no, which every
#   test's config starts with, then the sections read from stdin (always
#   give it: a here-document, or </dev/null for none).
dt_ini() {
    {
        cat <<INI
[vm]
name = $1
vcpus = $2
memory = $3
kernel = ${5:-$DT_GUEST}
cmdline = $4
on_reset = exit
[console]
input = no
INI
        cat
    } >"$DT_OUT/$1.ini"
}

dvmm_guest() {
    local name=$1 vcpus=$2 mem=$3 checks=$4
    shift 4
    dt_ini "$name" "$vcpus" "$mem" "dvmmtest=$checks" <<INI
[control]
enabled = no
INI
    run_with_timeout "$DT_TIMEOUT" "$DT_DVMM" run "$DT_OUT/$name.ini" "$@" \
        >"$DT_OUT/$name.out" 2>"$DT_OUT/$name.err" </dev/null
    DT_RC=$?
}

# dt_guest_passed NAME DESCRIPTION: one TAP line for a guest run: exit 0, a
# plan line, and no "not ok" on the console.
dt_guest_passed() {
    local name=$1 desc=$2
    if [ "$DT_RC" -eq 0 ] && grep -q '^1\.\.[0-9]' "$DT_OUT/$name.out" &&
        ! grep -q '^not ok' "$DT_OUT/$name.out"; then
        tap_ok "$desc"
    else
        tap_not_ok "$desc" "exit status $DT_RC" \
            "console:" "$(tail -n 15 "$DT_OUT/$name.out")" \
            "stderr:" "$(tail -n 15 "$DT_OUT/$name.err")"
    fi
}

# dt_console_has NAME REGEX DESCRIPTION
dt_console_has() {
    if grep -Eq -- "$2" "$DT_OUT/$1.out"; then
        tap_ok "$3"
    else
        tap_not_ok "$3" "no line matching /$2/ in the console:" \
            "$(tail -n 15 "$DT_OUT/$1.out")"
    fi
}

# dt_no_tap_reason: why a test cannot have a TAP in a network namespace of
# its own here (tests/lib/net-ns-run: ip and unshare, and the kernel's
# tun); nothing when it can.
dt_no_tap_reason() {
    local t why
    for t in ip unshare; do
        command -v "$t" >/dev/null 2>&1 || { echo "$t not installed"; return; }
    done
    why=$("$DT_ROOT/tests/lib/net-ns-run" --tap dvprobe0 -- true 2>&1) ||
        echo "cannot make a network namespace with a TAP here: ${why:-net-ns-run failed}"
}
