#!/bin/bash
# The command line: every option of every subcommand is accepted before and
# after the positional arguments (the usage promises any position), and
# --help works anywhere.  No KVM needed: `run` is given a config whose
# kernel does not exist, so a parsed command line ends in that config error
# (exit 2 naming vm.kernel) and a rejected one in a usage error.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/dvmm-test.sh
[ -x "$DT_DVMM" ] || tap_bail_out "$DT_DVMM missing: run make first"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-cli.XXXXXX") || tap_bail_out "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
ini=$tmp/vm.ini
printf '[vm]\nmemory = 64M\nkernel = %s/no-such-kernel\n[control]\nenabled = no\n' "$tmp" >"$ini"

# cli_is DESCRIPTION WANT_RC REGEX CMD...: exit status WANT_RC and a line of
# stdout+stderr matching REGEX.
cli_is() {
    local desc=$1 want=$2 re=$3 out rc
    shift 3
    out=$(run_with_timeout 30 "$DT_DVMM" "$@" 2>&1 </dev/null)
    rc=$?
    if [ "$rc" -eq "$want" ] && grep -Eq -- "$re" <<<"$out"; then
        tap_ok "$desc"
    else
        tap_not_ok "$desc" "dvmm $*" "exit $rc (want $want), want a line /$re/:" "$(head -n 5 <<<"$out")"
    fi
}

kernel_err='vm\.kernel'
for cmd in run check; do
    cli_is "$cmd: --set before the file" 2 "$kernel_err" "$cmd" --set vm.vcpus=1 "$ini"
    cli_is "$cmd: --set after the file" 2 "$kernel_err" "$cmd" "$ini" --set vm.vcpus=1
    cli_is "$cmd: --set=VALUE after the file" 2 "$kernel_err" "$cmd" "$ini" --set=vm.vcpus=1
    for opt in -v --verbose -q --quiet; do
        cli_is "$cmd: $opt before the file" 2 "$kernel_err" "$cmd" "$opt" "$ini"
        cli_is "$cmd: $opt after the file" 2 "$kernel_err" "$cmd" "$ini" "$opt"
    done
    cli_is "$cmd: --help before the file" 0 "^usage: dvmm $cmd" "$cmd" --help "$ini"
    cli_is "$cmd: --help after the file" 0 "^usage: dvmm $cmd" "$cmd" "$ini" --help
    cli_is "$cmd: a second file is a usage error" 2 "unexpected argument" "$cmd" "$ini" "$ini"
    cli_is "$cmd: an unknown option is a usage error" 2 "^usage: dvmm $cmd" "$cmd" "$ini" --no-such-option
done
for opt in --memstat --trace-startup; do
    cli_is "run: $opt before the file" 2 "$kernel_err" run "$opt" "$ini"
    cli_is "run: $opt after the file" 2 "$kernel_err" run "$ini" "$opt"
    cli_is "check: $opt is only for run" 2 "only for \`dvmm run\`" check "$ini" "$opt"
done
cli_is "run: options on both sides of the file" 2 "$kernel_err" \
    run -v "$ini" --memstat --set vm.vcpus=1 --trace-startup

# ctl: --help anywhere; hostcheck: its options in any order.
cli_is "ctl: --help first" 0 "^usage: dvmm ctl" ctl --help
cli_is "ctl: --help after the socket and command" 0 "^usage: dvmm ctl" ctl "$tmp/none.sock" status --help
cli_is "hostcheck: --json --root" 0 '"checks"' hostcheck --json --root tests/fixtures/hostcheck/vtx
cli_is "hostcheck: --root --json" 0 '"checks"' hostcheck --root tests/fixtures/hostcheck/vtx --json
cli_is "hostcheck: --help after other options" 0 "^usage: dvmm hostcheck" hostcheck --json --help
cli_is "dvmm --help" 0 "^usage: dvmm" --help

tap_done
