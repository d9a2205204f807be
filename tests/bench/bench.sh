#!/bin/bash
# `make bench` driver: start-up (tests/bench/startup.sh), VMM memory
# (tests/bench/vmm-memory.sh; tests/bench/vmm-memory-builds.sh for the
# shared-glibc and `make static` builds) and Linux boot to /init
# (tests/bench/linux-boot.sh), dvmm against QEMU on the same guest, into
# $DVMM_BUILD/bench/report.md.
#
# All need /dev/kvm.  Where it is usable they run here; otherwise the whole
# benchmark runs inside ONE boot of the nested KVM host (tests/lib/nested.sh),
# so dvmm and QEMU are measured under the same conditions.  The Linux boot
# needs a /dev/kvm that runs a stock kernel: on a PVM one it takes its own
# boot of the nested host.  Numbers never fail the benchmark: exit 1 only
# when it could not run at all.
#
# Options: --bins "PATH..." lists other engineers' benchmark binaries
# (make's BENCH_BINS) in the report; --run-bins also runs them through their
# `make bench-NAME` targets (they need no KVM, so they run here, outside the
# nested host).  Knobs, DVMM_* so that the nested host sees them:
# DVMM_BENCH_RUNS (20), DVMM_BENCH_MEM_RUNS (3), DVMM_BENCH_STARTUP_MEM
# (256M), DVMM_BENCH_RUN_TIMEOUT (180 s per run), DVMM_BENCH_QEMU,
# DVMM_BENCH_LINUX_RUNS (3; the other DVMM_BENCH_LINUX_* knobs are in
# linux-boot.sh) and DVMM_NESTED_TIMEOUT (3600 s here: ~80 VMM runs at
# seconds each and a dozen Linux boots at half a minute under TCG).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-lib.sh"
. "$BENCH_REPO/tests/lib/kvm-env.sh"     # kvm_usable, nested_run

bins="" run_bins=0 inner=0
while [ "$#" -gt 0 ]; do
    case $1 in
        --bins) bins=$2; shift 2 ;;
        --run-bins) run_bins=1; shift ;;
        --inner) inner=1; shift ;;
        *) echo "usage: $0 [--bins \"PATH...\"] [--run-bins]" >&2; exit 2 ;;
    esac
done
mkdir -p "$BENCH_OUT" || exit 1
REPORT=$BENCH_OUT/report.md

# The measuring half: runs where /dev/kvm works, writes report.md.
measure() {
    local rc=0 started
    started=$(date -u '+%Y-%m-%d %H:%M UTC')
    rm -f "$BENCH_OUT/startup.md" "$BENCH_OUT/vmm-memory.md" "$BENCH_OUT/linux-boot.md" \
        "$BENCH_OUT/vmm-memory-builds.md"
    "$here/startup.sh" || rc=1
    "$here/vmm-memory.sh" || rc=1
    "$here/vmm-memory-builds.sh" || rc=1
    # Goes to the nested host by itself where this /dev/kvm is PVM's.
    "$here/linux-boot.sh" || rc=1
    {
        echo "# dvmm benchmarks"
        echo
        echo "Taken $started by \`make bench\` (tests/bench/bench.sh) from commit $(git -C "$BENCH_REPO" rev-parse --short HEAD 2>/dev/null || echo '?')."
        echo
        [ -n "${DVMM_BENCH_OUTER:-}" ] && echo "- outer host: $DVMM_BENCH_OUTER"
        bench_machine | sed 's/^/- /'
        echo
        for part in startup vmm-memory vmm-memory-builds linux-boot; do
            if [ -f "$BENCH_OUT/$part.md" ]; then
                cat "$BENCH_OUT/$part.md"
            else
                echo "## $part: could not run (see make's output)"
            fi
            echo
        done
    } >"$REPORT"
    return "$rc"
}

if [ "$inner" = 1 ] || kvm_usable; then
    measure
    rc=$?
    [ "$inner" = 1 ] && exit "$rc"
elif [ -n "${DVMM_NESTED:-}" ]; then
    echo "bench: inside the nested KVM host but /dev/kvm is not usable" >&2
    exit 1
else
    why=$(nested_unavailable_reason)
    if [ -n "$why" ]; then
        echo "bench: no usable /dev/kvm here and $why: nothing measured" >&2
        exit 1
    fi
    rm -f "$REPORT"
    # The Linux boot's initramfs is built here, on the fast side.
    "$BENCH_REPO/tests/linux/smoke-initramfs.sh" >/dev/null ||
        echo "bench: cannot build the smoke initramfs; the Linux boot part will say so" >&2
    echo "bench: no usable /dev/kvm here; running the whole benchmark in one boot of the nested KVM host (QEMU TCG + nested SVM; slow)" >&2
    DVMM_NESTED_TIMEOUT=${DVMM_NESTED_TIMEOUT:-3600} DVMM_BENCH_OUTER="$(nproc) CPU(s) ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r), no usable /dev/kvm ($( [ -d /sys/module/kvm_pvm ] && echo 'kvm_pvm loaded but not bound' || echo 'no KVM')); the numbers below were taken in a nested KVM host booted on it under QEMU TCG" \
        nested_run "$here/bench.sh" --inner
    rc=$?
    if [ ! -f "$REPORT" ]; then
        echo "bench: the nested run failed (status $rc)${NESTED_FAILURE:+: $NESTED_FAILURE}" >&2
        exit 1
    fi
fi

# Other benchmarks (make's BENCH_BINS): blk-bench -> make bench-blk.
if [ -n "$bins" ]; then
    {
        echo "## Other benchmarks"
        echo
        echo "Built by \`make bench\`; each has its own target and prints its own ratio against a reference taken in the same run."
        echo
        for b in $bins; do
            name=$(basename "$b")
            echo "- \`$b\`: \`make bench-${name%-bench}\`"
        done
    } >>"$REPORT"
    if [ "$run_bins" = 1 ]; then
        for b in $bins; do
            name=$(basename "$b")
            echo "bench: make bench-${name%-bench}" >&2
            {
                echo
                echo "### make bench-${name%-bench}"
                echo
                echo '```'
                make -s -C "$BENCH_REPO" BUILD="${DVMM_BUILD:-build}" "bench-${name%-bench}" 2>&1 ||
                    echo "(exit status $?)"
                echo '```'
            } >>"$REPORT"
        done
    fi
fi

cat "$REPORT"
echo "bench: report in $REPORT" >&2
exit "${rc:-0}"
