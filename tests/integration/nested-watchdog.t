#!/bin/bash
# The nested host's watchdog: a job that stops the heartbeat (as a wedged
# nested kernel does) is killed after DVMM_NESTED_STALL seconds and run once
# more from the start, and only the second attempt's output comes back;
# before killing it, the watchdog records where each CPU was.  The short
# stall limit starts at the job's first heartbeat, so a slow boot of the
# nested host on a loaded machine does not count as a stall.
# Runs on this host; it boots the nested host twice.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh

[ -n "${DVMM_NESTED:-}" ] && tap_skip_all "already inside the nested KVM host"
why=$(nested_unavailable_reason)
[ -n "$why" ] && tap_skip_all "no nested KVM host here: $why"
nested_prepare >/dev/null 2>&1 || tap_skip_all "the nested KVM host cannot be prepared (kernel fetch)"

build=$(dvmm_build_dir) || tap_bail_out "cannot create the build directory"
mkdir -p "$build/nested" || tap_bail_out "cannot create $build/nested"
marker=$build/nested/watchdog-marker.$$
err=$(mktemp "${TMPDIR:-/tmp}/nested-watchdog.XXXXXX")
rm -f "$marker"
tap_plan 5

# First attempt: say so, stop the heartbeat loop, hang.  Second: finish.
# shellcheck disable=SC2016 # the job's shell in the nested host expands it
job='if [ ! -e "$1" ]; then
    : >"$1"
    echo first-attempt
    kill -STOP "$(cat "$DVMM_NESTED_JOB/heartbeat.pid")"
    sleep 600
fi
echo second-attempt'
out=$(DVMM_NESTED_STALL=20 nested_run bash -c "$job" watchdog "$marker" 2>"$err")
rc=$?

tap_is "$rc" 0 "the job's second attempt exits 0"
if [ "$out" = second-attempt ]; then
    tap_ok "only the second attempt's output comes back"
else
    tap_not_ok "only the second attempt's output comes back" "stdout: $out"
fi
if grep -q "(no heartbeat for 20 s); running the job again from the start" "$err"; then
    tap_ok "stderr says the nested host stopped and the job runs again"
    grep -E "nested-run: (nested KVM host stopped|the nested host stopped)" "$err" | tap_diag -
else
    tap_not_ok "stderr says the nested host stopped and the job runs again" "$(tail -n 20 "$err")"
fi
if [ -e "$marker" ]; then
    tap_ok "the first attempt ran (its marker exists)"
else
    tap_not_ok "the first attempt ran (its marker exists)"
fi
if grep -Eq '^  -- CPU#0 RIP [0-9a-f]{16} = [a-z_]' "$err" &&
    grep -q "nested-run: QEMU's view of the stopped host" "$err"; then
    tap_ok "the watchdog recorded each CPU's RIP, named from the kernel's symbols, before the kill"
    grep -E '^  -- CPU#[0-9]+ RIP' "$err" | tap_diag -
else
    tap_not_ok "the watchdog recorded each CPU's RIP, named from the kernel's symbols, before the kill" \
        "$(grep -A8 "QEMU's view" "$err" | head -n 12)"
fi
rm -f "$marker" "$err"
tap_done
