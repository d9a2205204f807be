#!/bin/bash
# README.md's table of INI keys is the schema's: the lines between its
# config-keys markers must be what cfg_schema_markdown prints from cfg_keys
# (vmm/config.c), so a key, limit or default changed in one place and not
# the other fails here.  To update the README after changing the schema,
# put the output of `$DVMM_BUILD/tests/unit/test_config --markdown` between
# the markers.  No KVM needed.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh

build=${DVMM_BUILD:-build}
bin=$build/tests/unit/test_config
[ -x "$bin" ] || tap_bail_out "$bin missing: run make unit first"

tap_plan 3
begin='^<!-- config-keys begin'
end='^<!-- config-keys end -->$'
nb=$(grep -c -- "$begin" README.md)
ne=$(grep -c -- "$end" README.md)
tap_is "$nb $ne" "1 1" "README.md has one config-keys begin marker and one end marker"

if schema=$("$bin" --markdown); then
    tap_ok "test_config --markdown prints the schema"
else
    tap_not_ok "test_config --markdown prints the schema" "exit status $?"
fi

# The lines strictly between the markers, less the blank line on either
# side that keeps the table a block of its own in Markdown.
readme=$(sed -n "/$begin/,/$end/p" README.md | sed '1d;$d' | sed '1{/^$/d};${/^$/d}')
if [ "$readme" = "$schema" ]; then
    tap_ok "README.md's key table is the schema's"
else
    tap_not_ok "README.md's key table is the schema's" \
        "README.md differs from $bin --markdown (- README, + schema):" \
        "$(diff -u <(printf '%s\n' "$readme") <(printf '%s\n' "$schema") | tail -n +3)"
fi
tap_done
