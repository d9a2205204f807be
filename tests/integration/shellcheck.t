#!/bin/bash
# The test scripts linted: the sourced helpers tests/lib/*.sh and
# every tests/integration/*.t, this one included, by shellcheck.  The
# .shellcheckrc says how (bash, sources followed) and which check is off
# for all and why; a finding kept on purpose carries its own
# `# shellcheck disable=SCnnnn # why` where it stands.  One point per file,
# with shellcheck's findings as the diagnostics.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh

command -v shellcheck >/dev/null ||
    tap_skip_all "shellcheck not installed (kernel-support/install-deps installs it)"

files=(tests/lib/*.sh tests/integration/*.t)
tap_plan "${#files[@]}"
for f in "${files[@]}"; do
    if out=$(shellcheck -f gcc "$f" 2>&1); then
        tap_ok "shellcheck $f"
    else
        tap_not_ok "shellcheck $f" "$out"
    fi
done
tap_done
