#!/bin/sh
# fuzz-tap.sh BINARY CORPUS RUNS: a short deterministic libFuzzer pass as one
# TAP test.  A crash, leak or sanitizer report fails it.
bin=$1 corpus=$2 runs=$3
echo "1..1"
log=$(mktemp)
# New inputs go to a scratch dir so the committed corpus stays as it is.
scratch=$(mktemp -d)
if "$bin" -seed=1 -runs="$runs" "$scratch" "$corpus" >"$log" 2>&1; then
    echo "ok 1 - $(basename "$bin"): $runs seeded runs from $(basename "$corpus") corpus"
    rc=0
else
    echo "not ok 1 - $(basename "$bin") found a crash"
    sed 's/^/# /' "$log" | tail -n 40
    rc=1
fi
rm -rf "$log" "$scratch"
exit $rc
