#!/bin/bash
# VMM-memory benchmark: what the VMM process itself costs, i.e. peak RSS
# minus the guest RAM the guest touched, for a 1 GiB guest that exits at
# once (dvmmtest=none, so the guest's memory check is off), dvmm against
# QEMU microvm and pc.  Both figures come from memprobe.so (LD_PRELOAD): VmHWM
# at exit, and the Rss of the guest-RAM mapping at the last moment it is
# mapped (dvmm: its munmap in teardown; QEMU: exit).  Guest RAM touched is
# measured, not assumed.  Writes $DVMM_BUILD/bench/vmm-memory.md; never
# fails on a number.
set -u
. "$(dirname "$0")/bench-lib.sh"
bench_require || exit 1
PROBE=$BENCH_OUT/memprobe.so
[ -f "$PROBE" ] || { echo "vmm-memory: $PROBE missing: run make bench" >&2; exit 1; }

RUNS=${DVMM_BENCH_MEM_RUNS:-3}
MEM_MIB=1024
work=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-vmmmem.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
bench_dvmm_ini "$work/bench.ini" "${MEM_MIB}M"
mapfile -t qargs < <(bench_qemu_args)

declare -A CMD
CMD[dvmm]="$BENCH_DVMM run $work/bench.ini"
CMD[qemu-microvm]="$BENCH_QEMU -M microvm -m ${MEM_MIB}M ${qargs[*]}"
CMD[qemu-pc]="$BENCH_QEMU -M pc -m ${MEM_MIB}M ${qargs[*]}"
declare -A PASS=([dvmm]=0 [qemu-microvm]=1 [qemu-pc]=1)
VMMS=(dvmm qemu-microvm qemu-pc)

# probe_val FILE KEY: the probe's last value for KEY (a process that forked
# children could leave more than one record; the VMM's own comes last).
probe_val() { sed -n "s/^$2=//p" "$1" 2>/dev/null | tail -n 1; }

# run_one VMM N: appends "hwm guest overhead rssanon rssfile where vmm-anon"
# (KiB) to VMM.kb.
run_one() {
    local vmm=$1 n=$2 rc f=$work/$1.$2.probe hwm guest anon file
    rm -f "$f"
    # Unquoted on purpose: the command lines hold no spaces inside words.
    # Preloaded into the VMM only (env execs it), not into timeout.
    timeout --kill-after=5 "$BENCH_RUN_TIMEOUT" \
        env DVMM_MEMPROBE_OUT="$f" DVMM_MEMPROBE_MIN=$((MEM_MIB << 20)) LD_PRELOAD="$PROBE" \
        ${CMD[$vmm]} </dev/null >/dev/null 2>"$work/$vmm.$n.err"
    rc=$?
    if [ "$rc" -ne "${PASS[$vmm]}" ]; then
        echo "run $n: exit status $rc: $(tail -n 3 "$work/$vmm.$n.err" | tr '\n' ' ')" >>"$work/$vmm.fail"
        return
    fi
    hwm=$(probe_val "$f" vmhwm_kb)
    guest=$(probe_val "$f" guest_rss_kb)
    if ! [[ $hwm =~ ^[0-9]+$ && $guest =~ ^[0-9]+$ ]]; then
        echo "run $n: the probe saw no VmHWM or no ${MEM_MIB} MiB guest-RAM mapping ($(cat "$f" 2>/dev/null | tr '\n' ' '))" >>"$work/$vmm.fail"
        return
    fi
    anon=$(probe_val "$f" rss_anon_kb)
    file=$(probe_val "$f" rss_file_kb)
    [[ $anon =~ ^[0-9]+$ ]] || anon=$guest
    echo "$hwm $guest $((hwm - guest)) $anon ${file:--} $(probe_val "$f" guest_rss_at) $((anon - guest))" >>"$work/$vmm.kb"
}

echo "vmm-memory: $RUNS runs each of ${VMMS[*]}, ${MEM_MIB} MiB guest" >&2
for ((i = 1; i <= RUNS; i++)); do
    for vmm in "${VMMS[@]}"; do
        run_one "$vmm" "$i"
    done
done

# col VMM N: median of column N of VMM.kb.
col() { touch "$work/$1.kb"; awk -v c="$2" '{ print $c }' "$work/$1.kb" | bench_median; }
kib() { awk -v k="$1" 'BEGIN { if (k == "-") print "-"; else printf "%.2f", k / 1024 }'; }

declare -A OVH
for vmm in "${VMMS[@]}"; do
    OVH[$vmm]=$(col "$vmm" 3)
done
goal=$(awk -v k="${OVH[dvmm]}" 'BEGIN {
    if (k == "-") print "not measured"; else if (k < 2048) print "met"; else print "not met" }')

{
    echo "## VMM memory: peak RSS minus guest RAM touched, ${MEM_MIB} MiB guest, dvmmtest=none"
    echo
    echo "$RUNS runs each, medians in MiB. Peak RSS is VmHWM at exit; guest RAM touched is the Rss of the ${MEM_MIB} MiB guest-RAM mapping at the last moment it is mapped (dvmm: just before its teardown munmap; QEMU: at exit), both read by tests/bench/memprobe.c loaded with LD_PRELOAD. dvmm: anonymous memory, no prealloc, no THP (the defaults). VMM anon is RssAnon minus guest RAM touched and RssFile is the file-backed pages (the VMM binary and its shared libraries, shared with every process that maps them), both read at the guest-RAM snapshot."
    echo
    echo "| VMM | peak RSS | guest RAM touched | VMM memory (peak − touched) | VMM anon (at snapshot) | RssFile (at snapshot) | runs ok | dvmm / this |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for vmm in "${VMMS[@]}"; do
        printf '| %s | %s | %s | **%s** | %s | %s | %s | %s |\n' "$vmm" \
            "$(kib "$(col "$vmm" 1)")" "$(kib "$(col "$vmm" 2)")" "$(kib "${OVH[$vmm]}")" \
            "$(kib "$(col "$vmm" 7)")" "$(kib "$(col "$vmm" 5)")" \
            "$(wc -l <"$work/$vmm.kb")" "$(bench_ratio "${OVH[dvmm]}" "${OVH[$vmm]}")"
    done
    echo
    echo "**dvmm VMM memory: $(kib "${OVH[dvmm]}") MiB** (goal < 2 MiB: $goal); dvmm / QEMU microvm = $(bench_ratio "${OVH[dvmm]}" "${OVH[qemu-microvm]}"), dvmm / QEMU pc = $(bench_ratio "${OVH[dvmm]}" "${OVH[qemu-pc]}")."
    echo
    echo "Commands (each run as \`DVMM_MEMPROBE_OUT=FILE DVMM_MEMPROBE_MIN=$((MEM_MIB << 20)) LD_PRELOAD=$PROBE CMD\`, stdin /dev/null):"
    echo
    echo '```'
    for vmm in "${VMMS[@]}"; do
        echo "${CMD[$vmm]}"
    done
    echo '```'
    for vmm in "${VMMS[@]}"; do
        if [ -f "$work/$vmm.fail" ]; then
            echo
            echo "Failed $vmm runs (left out of the medians):"
            echo
            sed 's/^/    /' "$work/$vmm.fail"
        fi
    done
} >"$BENCH_OUT/vmm-memory.md"
echo "vmm-memory: wrote $BENCH_OUT/vmm-memory.md" >&2
