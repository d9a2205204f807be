#!/bin/bash
# VMM memory of dvmm's two builds: the usual one (its libraries static,
# glibc shared) and `make static` (nothing shared).  memprobe.so cannot be
# preloaded into a static binary, so both are measured the same way, from
# outside: a 1 GiB guest (dvmmtest=none) whose exit port is missing keeps
# running; once the control socket answers and the guest has printed its
# plan, /proc/PID/status gives VmHWM, RssAnon and RssFile and
# /proc/PID/smaps the Rss of the guest-RAM mapping; then `quit`.  VMM
# memory = VmHWM - guest RAM touched, as in vmm-memory.sh (whose figures
# are taken at exit, so the two tables differ by what teardown touches).
# Writes $DVMM_BUILD/bench/vmm-memory-builds.md; never fails on a number.
set -u
. "$(dirname "$0")/bench-lib.sh"
bench_require || exit 1

RUNS=${DVMM_BENCH_MEM_RUNS:-3}
MEM_MIB=1024
STATIC=$BENCH_BUILD/dvmm-static
work=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-vmmmem-builds.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

declare -A BIN=([dvmm]=$BENCH_DVMM [dvmm-static]=$STATIC)
BUILDS=(dvmm dvmm-static)

# run_one BUILD N: appends "hwm guest overhead anon file vmm-anon" (KiB)
# to BUILD.kb, or a line to BUILD.fail.
run_one() {
    local b=$1 n=$2 sock=$work/$1.$2.sock pid i hwm guest anon file
    cat >"$work/$b.$n.ini" <<INI
[vm]
name = bench
vcpus = 1
memory = ${MEM_MIB}M
kernel = $BENCH_GUEST
cmdline = dvmmtest=none
on_reset = exit
[console]
output = $work/$b.$n.out
input = no
[debug-exit]
enabled = no
[control]
socket = $sock
INI
    "${BIN[$b]}" run "$work/$b.$n.ini" </dev/null >/dev/null 2>"$work/$b.$n.err" &
    pid=$!
    for i in $(seq 600); do
        grep -q '^1\.\.' "$work/$b.$n.out" 2>/dev/null &&
            "$BENCH_DVMM" ctl "$sock" status >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    file=$(awk '/^RssFile:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    # The Rss of every mapping of at least the guest's size (the guest
    # RAM; the PROT_NONE reserve around it has none).
    guest=$(awk -v min=$((MEM_MIB * 1024)) '/^Size:/ {big = ($2 >= min)}
        /^Rss:/ && big {s += $2} END {print s + 0}' "/proc/$pid/smaps" 2>/dev/null)
    "$BENCH_DVMM" ctl "$sock" quit >/dev/null 2>&1 || kill "$pid" 2>/dev/null
    wait "$pid"
    if ! [[ ${hwm:-} =~ ^[0-9]+$ && ${guest:-} =~ ^[0-9]+$ && ${anon:-} =~ ^[0-9]+$ ]]; then
        echo "run $n: no figures from /proc/$pid ($(tail -n 3 "$work/$b.$n.err" | tr '\n' ' '))" >>"$work/$b.fail"
        return
    fi
    echo "$hwm $guest $((hwm - guest)) $anon ${file:-0} $((anon - guest))" >>"$work/$b.kb"
}

if [ ! -x "$STATIC" ]; then
    echo "vmm-memory-builds: $STATIC missing (make static)" >&2
    BUILDS=(dvmm)
fi
echo "vmm-memory-builds: $RUNS runs each of ${BUILDS[*]}, ${MEM_MIB} MiB guest" >&2
for ((i = 1; i <= RUNS; i++)); do
    for b in "${BUILDS[@]}"; do
        run_one "$b" "$i"
    done
done

col() { touch "$work/$1.kb"; awk -v c="$2" '{ print $c }' "$work/$1.kb" | bench_median; }
kib() { awk -v k="$1" 'BEGIN { if (k == "-" || k == "") print "-"; else printf "%.2f", k / 1024 }'; }

{
    echo "## VMM memory of the two builds: shared glibc and \`make static\`, ${MEM_MIB} MiB guest, running"
    echo
    echo "$RUNS runs each, medians in MiB, read from /proc while the guest (dvmmtest=none, no exit port) runs and the control socket answers; VMM memory is VmHWM minus the Rss of the guest-RAM mapping; VMM anon is RssAnon minus it; RssFile is the file-backed pages (the binary, and the shared libraries of the dynamic build)."
    echo
    echo "| build | binary | peak RSS | guest RAM touched | VMM memory (peak − touched) | VMM anon | RssFile | runs ok |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for b in "${BUILDS[@]}"; do
        printf '| %s | %s | %s | %s | **%s** | %s | %s | %s |\n' "$b" \
            "$(kib $(($(stat -c %s "${BIN[$b]}") / 1024)))" \
            "$(kib "$(col "$b" 1)")" "$(kib "$(col "$b" 2)")" "$(kib "$(col "$b" 3)")" \
            "$(kib "$(col "$b" 6)")" "$(kib "$(col "$b" 5)")" "$(wc -l <"$work/$b.kb")"
    done
    [ "${#BUILDS[@]}" -lt 2 ] && { echo; echo "\`make static\` was not built: no dvmm-static row."; }
    for b in "${BUILDS[@]}"; do
        if [ -f "$work/$b.fail" ]; then
            echo
            echo "Failed $b runs (left out of the medians):"
            echo
            sed 's/^/    /' "$work/$b.fail"
        fi
    done
} >"$BENCH_OUT/vmm-memory-builds.md"
echo "vmm-memory-builds: wrote $BENCH_OUT/vmm-memory-builds.md" >&2
