#!/bin/bash
# Start-up benchmark: wall time from exec to exit of the test guest in its
# exit-at-once mode (dvmmtest=none), DVMM_BENCH_RUNS (20) runs of each VMM taken
# in turn (dvmm, QEMU microvm, QEMU pc) so that load on the machine hits all
# three alike.  dvmm runs with --trace-startup and its stage times are
# reported as medians per stage.  Knobs (DVMM_* so that they reach the
# nested host): DVMM_BENCH_RUNS, DVMM_BENCH_STARTUP_MEM (256M),
# DVMM_BENCH_BASE_DVMM (another dvmm binary, e.g. a build of an earlier
# commit: timed as "dvmm-base" in the same rounds, with its own stage
# table, so that a change is measured before and after in one run).  Needs a
# usable /dev/kvm (tests/bench/bench.sh finds one); writes
# $DVMM_BUILD/bench/startup.md.  Never fails on a number:
# exit 1 only when it could not run at all.
set -u
. "$(dirname "$0")/bench-lib.sh"
bench_require || exit 1

RUNS=${DVMM_BENCH_RUNS:-20}
MEM=${DVMM_BENCH_STARTUP_MEM:-256M}
work=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-startup.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
bench_dvmm_ini "$work/bench.ini" "$MEM"
mapfile -t qargs < <(bench_qemu_args)

declare -A CMD
CMD[dvmm]="$BENCH_DVMM run --trace-startup $work/bench.ini"
CMD[qemu-microvm]="$BENCH_QEMU -M microvm -m $MEM ${qargs[*]}"
CMD[qemu-pc]="$BENCH_QEMU -M pc -m $MEM ${qargs[*]}"
# A passing guest: dvmm exits 0, QEMU's isa-debug-exit gives 0*2+1.
# Process load alone (exec, dynamic linking, exit, no VM): in the nested
# host every binary and library is read over 9p, which inflates this part,
# and QEMU has far more libraries to load than dvmm.
CMD[dvmm-exec]="$BENCH_DVMM help"
CMD[qemu-exec]="$BENCH_QEMU -version"
declare -A PASS=([dvmm]=0 [qemu-microvm]=1 [qemu-pc]=1 [dvmm-exec]=0 [qemu-exec]=0)
ALL=(dvmm qemu-microvm qemu-pc dvmm-exec qemu-exec)
BASE=${DVMM_BENCH_BASE_DVMM:-}
if [ -n "$BASE" ]; then
    [ -x "$BASE" ] || { echo "startup: DVMM_BENCH_BASE_DVMM=$BASE is not executable" >&2; exit 1; }
    CMD[dvmm-base]="$BASE run --trace-startup $work/bench.ini"
    PASS[dvmm-base]=0
    ALL=(dvmm dvmm-base qemu-microvm qemu-pc dvmm-exec qemu-exec)
fi

# run_one VMM N: one timed run; appends ms to $work/VMM.ms, or a failure line.
run_one() {
    local vmm=$1 n=$2 t0 t1 rc
    t0=$EPOCHREALTIME
    # Unquoted on purpose: the command lines hold no spaces inside words.
    timeout --kill-after=5 "$BENCH_RUN_TIMEOUT" ${CMD[$vmm]} \
        </dev/null >/dev/null 2>"$work/$vmm.$n.err"
    rc=$?
    t1=$EPOCHREALTIME
    if [ "$rc" -ne "${PASS[$vmm]}" ]; then
        echo "run $n: exit status $rc: $(tail -n 3 "$work/$vmm.$n.err" | tr '\n' ' ')" \
            >>"$work/$vmm.fail"
        return
    fi
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }' >>"$work/$vmm.ms"
    case $vmm in
        dvmm | dvmm-base)
            sed -nE 's/^dvmm: startup: (.*[^ ]) +([0-9.]+) ms +\(at +([0-9.]+) ms\)$/\1\t\2\t\3/p' \
                "$work/$vmm.$n.err" >>"$work/$vmm.stages.tsv" ;;
    esac
}

# stage_table VMM: dvmm's --trace-startup stages, median per stage, in the
# order dvmm prints them (whatever names that build has).
stage_table() {
    local tsv=$work/$1.stages.tsv total st m at outside
    echo "| stage | median ms | median ends at ms | share of dvmm's own total |"
    echo "| --- | ---: | ---: | ---: |"
    if [ ! -s "$tsv" ]; then
        echo "| (no --trace-startup lines: no $1 run passed) | - | - | - |"
        return
    fi
    # The last stage (teardown) ends at dvmm's own total.
    total=$(awk -F'\t' '$1 == "teardown" { print $3 }' "$tsv" | bench_median)
    awk -F'\t' '!seen[$1]++ { print $1 }' "$tsv" | while IFS= read -r st; do
        m=$(awk -F'\t' -v s="$st" '$1 == s { print $2 }' "$tsv" | bench_median)
        at=$(awk -F'\t' -v s="$st" '$1 == s { print $3 }' "$tsv" | bench_median)
        printf '| %s | %s | %s | %s |\n' "$st" "$m" "$at" \
            "$(awk -v m="$m" -v t="$total" 'BEGIN { if (t > 0) printf "%.0f %%", 100 * m / t; else print "-" }')"
    done
    outside=$(awk -v w="${MED[$1]}" -v t="$total" 'BEGIN {
        if (w == "-" || t == "-") print "-"; else printf "%.3f", w - t }')
    echo
    echo "$1's own clock (main() to the end of teardown): median $total ms; the rest of the ${MED[$1]} ms wall time ($outside ms) is exec, dynamic linking and process exit (where the kernel tears the VM down), outside main()."
}

# One untimed run each first: the binaries, libraries and firmware come into
# the page cache (over 9p in the nested host) before anything is timed.
for vmm in "${ALL[@]}"; do
    run_one "$vmm" warmup
done
rm -f "$work"/*.ms "$work"/*.fail "$work"/*.stages.tsv

echo "startup: $RUNS runs each of ${ALL[*]}" >&2
for ((i = 1; i <= RUNS; i++)); do
    for vmm in "${ALL[@]}"; do
        run_one "$vmm" "$i"
    done
    printf 'startup: round %d/%d done\n' "$i" "$RUNS" >&2
done

declare -A MED
for vmm in "${ALL[@]}"; do
    touch "$work/$vmm.ms"
    MED[$vmm]=$(bench_median <"$work/$vmm.ms")
done
ratio_micro=$(bench_ratio "${MED[dvmm]}" "${MED[qemu-microvm]}")
ratio_pc=$(bench_ratio "${MED[dvmm]}" "${MED[qemu-pc]}")
# Issue 16's goal for exec to exit, against QEMU microvm in the same run.
goal=$(awk -v r="$ratio_micro" 'BEGIN {
    if (r == "-") print "not measured"; else if (r <= 0.12) print "met"; else print "not met" }')

{
    echo "## Start-up: exec to exit, test guest with dvmmtest=none"
    echo
    echo "$RUNS runs each, taken in turn (${ALL[*]}), after one untimed warm-up run each; 1 vCPU, $MEM RAM."
    echo "Wall time is measured by the shell around the exec (bash \$EPOCHREALTIME), so it includes exec, dynamic linking and exit."
    echo
    echo "| VMM | median ms | min ms | max ms | runs ok | failed | dvmm / this |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    for vmm in "${ALL[@]}"; do
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$vmm" "${MED[$vmm]}" \
            "$(bench_min <"$work/$vmm.ms")" "$(bench_max <"$work/$vmm.ms")" \
            "$(wc -l <"$work/$vmm.ms")" \
            "$( [ -f "$work/$vmm.fail" ] && wc -l <"$work/$vmm.fail" || echo 0)" \
            "$(case $vmm in *-exec) echo - ;; *) bench_ratio "${MED[dvmm]}" "${MED[$vmm]}" ;; esac)"
    done
    echo
    echo "**dvmm / QEMU microvm = $ratio_micro** (goal ≤ 0.12: $goal); dvmm / QEMU pc = $ratio_pc."
    [ -n "$BASE" ] &&
        echo "dvmm-base ($BASE) / QEMU microvm = $(bench_ratio "${MED[dvmm-base]}" "${MED[qemu-microvm]}"); dvmm / dvmm-base = $(bench_ratio "${MED[dvmm]}" "${MED[dvmm-base]}")."
    echo
    echo "dvmm-exec (\`dvmm help\`) and qemu-exec (\`qemu-system-x86_64 -version\`) start no VM: they time exec, dynamic linking and exit alone, which the nested host inflates (its root and the repo are 9p mounts). With those medians taken off, dvmm / QEMU microvm = $(bench_ratio "$(awk -v a="${MED[dvmm]}" -v b="${MED[dvmm-exec]}" 'BEGIN { if (a == "-" || b == "-") print "-"; else print a - b }')" "$(awk -v a="${MED[qemu-microvm]}" -v b="${MED[qemu-exec]}" 'BEGIN { if (a == "-" || b == "-") print "-"; else print a - b }')") and dvmm / QEMU pc = $(bench_ratio "$(awk -v a="${MED[dvmm]}" -v b="${MED[dvmm-exec]}" 'BEGIN { if (a == "-" || b == "-") print "-"; else print a - b }')" "$(awk -v a="${MED[qemu-pc]}" -v b="${MED[qemu-exec]}" 'BEGIN { if (a == "-" || b == "-") print "-"; else print a - b }')") (a difference of medians, so a rough figure)."
    echo
    echo "### dvmm start-up stages (\`--trace-startup\`, median of each stage over the $RUNS runs)"
    echo
    echo "Each stage runs from the end of the one before it on the same thread; the \"loader:\" stages run on dvmm's loader thread alongside KVM set-up, so their shares overlap the others'."
    echo
    stage_table dvmm
    if [ -n "$BASE" ]; then
        echo
        echo "### dvmm-base start-up stages ($BASE, same runs)"
        echo
        stage_table dvmm-base
    fi
    echo
    echo "Commands (stdin /dev/null, stdout discarded):"
    echo
    echo '```'
    for vmm in "${ALL[@]}"; do
        echo "${CMD[$vmm]}"
    done
    echo '```'
    echo
    echo "dvmm config ($work/bench.ini, removed afterwards):"
    echo
    echo '```ini'
    cat "$work/bench.ini"
    echo '```'
    for vmm in "${ALL[@]}"; do
        if [ -f "$work/$vmm.fail" ]; then
            echo
            echo "Failed $vmm runs (left out of the medians):"
            echo
            sed 's/^/    /' "$work/$vmm.fail"
        fi
    done
} >"$BENCH_OUT/startup.md"
echo "startup: wrote $BENCH_OUT/startup.md" >&2
