#!/bin/bash
# Linux boot benchmark: wall time from exec to the first line of the
# initramfs's /init on the console, Debian's stock kernel and the smoke
# initramfs (tests/linux/smoke-initramfs.sh: its /init prints
# DVMM-LINUX-BOOTED cpus=N, then resets), dvmm against QEMU -M microvm and
# -M pc with the same kernel, initramfs, command line, vCPUs and RAM (and
# microvm with its RTC on: see below), taken in turn so that load on the
# machine hits all alike.  The VMM
# is stopped (SIGTERM) once the line is seen: what is timed is the boot to
# /init, not the reset (which QEMU microvm, having no reset device a
# `reboot=k` kernel uses, would turn into a second boot).
#
# A stock kernel needs KVM on VT-x or AMD-V: where /dev/kvm is missing or
# PVM's (which runs a stock kernel into KVM's instruction emulator), the
# script runs itself in one boot of the nested KVM host (tests/lib/nested.sh),
# so all three VMMs share its conditions.  Knobs (DVMM_* so that they reach
# the nested host): DVMM_BENCH_LINUX_RUNS (3), DVMM_BENCH_LINUX_VCPUS (2),
# DVMM_BENCH_LINUX_MEM (256M), DVMM_BENCH_LINUX_CMDLINE, DVMM_BENCH_LINUX_TIMEOUT
# (s per boot, 300).  Writes $DVMM_BUILD/bench/linux-boot.md.  Never fails on
# a number: exit 1 only when it could not run at all.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-lib.sh"

RUNS=${DVMM_BENCH_LINUX_RUNS:-3}
VCPUS=${DVMM_BENCH_LINUX_VCPUS:-2}
MEM=${DVMM_BENCH_LINUX_MEM:-256M}
LIMIT=${DVMM_BENCH_LINUX_TIMEOUT:-300}
# quiet: the console is an 8250, an exit per byte in every VMM alike; the
# boot is what is measured, not the UART.
CMDLINE=${DVMM_BENCH_LINUX_CMDLINE:-console=ttyS0 quiet reboot=k panic=-1}
MARKER=DVMM-LINUX-BOOTED

# Built on the fast side (outside the nested host), found again inside.
linux_kernel_fetch >&2 || { echo "linux-boot: Debian's kernel cannot be fetched with apt here" >&2; exit 1; }
initrd=$("$BENCH_REPO/tests/linux/smoke-initramfs.sh") ||
    { echo "linux-boot: cannot build the smoke initramfs (busybox-static, cpio)" >&2; exit 1; }

if [ -z "${DVMM_NESTED:-}" ] && { ! kvm_usable || [ -d /sys/module/kvm_pvm ]; }; then
    why=$(nested_unavailable_reason)
    if [ -n "$why" ]; then
        echo "linux-boot: no /dev/kvm that runs a stock kernel here, and $why: nothing measured" >&2
        exit 1
    fi
    echo "linux-boot: /dev/kvm here $(kvm_usable && echo 'is PVM' || echo 'is not usable'); measuring in one boot of the nested KVM host" >&2
    mkdir -p "$BENCH_OUT" || exit 1
    rm -f "$BENCH_OUT/linux-boot.md"
    DVMM_NESTED_TIMEOUT=${DVMM_NESTED_TIMEOUT:-3600} nested_run "$0"
    rc=$?
    [ -f "$BENCH_OUT/linux-boot.md" ] || {
        echo "linux-boot: the nested run failed (status $rc)${NESTED_FAILURE:+: $NESTED_FAILURE}" >&2
        exit 1
    }
    exit 0
fi
bench_require || exit 1

work=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-linuxboot.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
cat >"$work/linux.ini" <<INI
[vm]
name = linux-boot
vcpus = $VCPUS
memory = $MEM
kernel = $LINUX_VMLINUZ
initrd = $initrd
cmdline = "$CMDLINE"
on_reset = exit
[console]
input = no
[control]
enabled = no
INI
qcommon="-enable-kvm -nodefaults -no-user-config -nographic -monitor none -serial stdio -no-reboot -smp $VCPUS -m $MEM -kernel $LINUX_VMLINUZ -initrd $initrd"
declare -A CMD
CMD[dvmm]="$BENCH_DVMM run $work/linux.ini"
CMD[qemu-microvm]="$BENCH_QEMU -M microvm $qcommon"
CMD[qemu-pc]="$BENCH_QEMU -M pc $qcommon"
# QEMU 7.2's microvm has no RTC under KVM unless asked (rtc=auto), and
# Linux's rtc_cmos then spends seconds of the nested boot deciding the CMOS
# is "broken or not accessible"; dvmm has an RTC.  This row is microvm with
# the RTC, for the comparison device for device; the goal stays against the
# default microvm.
CMD[qemu-microvm-rtc]="$BENCH_QEMU -M microvm,rtc=on $qcommon"
ALL=(dvmm qemu-microvm qemu-microvm-rtc qemu-pc)

# run_one VMM N: one boot; appends ms to $work/VMM.ms and the marker line
# to VMM.marker, or a failure line to VMM.fail.  The console goes through a
# FIFO to grep, which returns at the marker.
run_one() {
    local vmm=$1 n=$2 t0 t1="" pid fifo=$work/fifo.$1.$2 args=()
    mkfifo "$fifo" || return
    [ "$vmm" = dvmm ] || args=(-append "$CMDLINE")
    t0=$EPOCHREALTIME
    # Unquoted on purpose: the command lines hold no spaces inside words.
    timeout --kill-after=5 "$LIMIT" ${CMD[$vmm]} "${args[@]}" \
        </dev/null >"$fifo" 2>"$work/$vmm.$n.err" &
    pid=$!
    # grep alone is waited for (a pipeline would wait for its writer too).
    if grep -a -m1 -o "$MARKER.*" < <(tee "$work/$vmm.$n.console" <"$fifo") >"$work/$vmm.$n.marker"; then
        t1=$EPOCHREALTIME
    fi
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rm -f "$fifo"
    if [ -z "$t1" ]; then
        echo "run $n: no $MARKER line (last console line: $(tr -d '\r' <"$work/$vmm.$n.console" | grep -av '^\s*$' | tail -n 1 | cut -c1-100); stderr: $(tail -n 2 "$work/$vmm.$n.err" | tr '\n' ' '))" \
            >>"$work/$vmm.fail"
        return
    fi
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }' >>"$work/$vmm.ms"
    tr -d '\r' <"$work/$vmm.$n.marker" >>"$work/$vmm.markers"
}

# One untimed boot each first: the binaries, libraries, firmware, kernel
# and initramfs come into the page cache (over 9p in the nested host).
for vmm in "${ALL[@]}"; do
    run_one "$vmm" warmup
done
rm -f "$work"/*.ms "$work"/*.fail "$work"/*.markers
echo "linux-boot: $RUNS boots each of ${ALL[*]}, $VCPUS vCPUs, $MEM" >&2
for ((i = 1; i <= RUNS; i++)); do
    for vmm in "${ALL[@]}"; do
        run_one "$vmm" "$i"
    done
    printf 'linux-boot: round %d/%d done\n' "$i" "$RUNS" >&2
done

declare -A MED
for vmm in "${ALL[@]}"; do
    touch "$work/$vmm.ms" "$work/$vmm.markers"
    MED[$vmm]=$(bench_median <"$work/$vmm.ms")
done
ratio_micro=$(bench_ratio "${MED[dvmm]}" "${MED[qemu-microvm]}")
ratio_rtc=$(bench_ratio "${MED[dvmm]}" "${MED[qemu-microvm-rtc]}")
ratio_pc=$(bench_ratio "${MED[dvmm]}" "${MED[qemu-pc]}")
# Load from other work only ever adds time: the fastest boots are the
# steadier comparison on a shared machine.
ratio_min=$(bench_ratio "$(bench_min <"$work/dvmm.ms")" "$(bench_min <"$work/qemu-microvm.ms")")
goal=$(awk -v r="$ratio_micro" 'BEGIN {
    if (r == "-") print "not measured"; else if (r <= 0.5) print "met"; else print "not met" }')

mkdir -p "$BENCH_OUT" || exit 1
{
    echo "## Linux boot to /init: Debian's kernel, smoke initramfs"
    echo
    echo "$RUNS boots each, taken in turn (${ALL[*]}), after one untimed warm-up boot each; kernel $LINUX_KVER, $VCPUS vCPUs, $MEM RAM, command line \`$CMDLINE\`."
    echo "Wall time from exec to the initramfs /init's first console line (\`$MARKER ...\`), measured by the shell (bash \$EPOCHREALTIME) around the exec; the VMM is then stopped."
    echo
    echo "Measured on:"
    echo
    bench_machine | sed 's/^/- /'
    echo
    echo "| VMM | median ms | min ms | max ms | boots ok | failed | dvmm / this | /init saw |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    for vmm in "${ALL[@]}"; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$vmm" "${MED[$vmm]}" \
            "$(bench_min <"$work/$vmm.ms")" "$(bench_max <"$work/$vmm.ms")" \
            "$(wc -l <"$work/$vmm.ms")" \
            "$( [ -f "$work/$vmm.fail" ] && wc -l <"$work/$vmm.fail" || echo 0)" \
            "$(bench_ratio "${MED[dvmm]}" "${MED[$vmm]}")" \
            "$(sort -u "$work/$vmm.markers" | sed "s/^$MARKER //" | head -n 1)"
    done
    echo
    echo "**dvmm / QEMU microvm = $ratio_micro** (medians; goal ≤ 0.5: $goal); of the fastest boots: $ratio_min; dvmm / QEMU microvm with rtc=on = $ratio_rtc; dvmm / QEMU pc = $ratio_pc."
    echo
    echo "Commands (stdin /dev/null, console through a FIFO to \`grep -m1 $MARKER\`):"
    echo
    echo '```'
    echo "${CMD[dvmm]}"
    echo "${CMD[qemu-microvm]} -append \"$CMDLINE\""
    echo "${CMD[qemu-microvm-rtc]} -append \"$CMDLINE\""
    echo "${CMD[qemu-pc]} -append \"$CMDLINE\""
    echo '```'
    echo
    echo "dvmm config ($work/linux.ini, removed afterwards):"
    echo
    echo '```ini'
    cat "$work/linux.ini"
    echo '```'
    for vmm in "${ALL[@]}"; do
        if [ -f "$work/$vmm.fail" ]; then
            echo
            echo "Failed $vmm boots (left out of the medians):"
            echo
            sed 's/^/    /' "$work/$vmm.fail"
        fi
    done
} >"$BENCH_OUT/linux-boot.md"
echo "linux-boot: dvmm ${MED[dvmm]} ms, QEMU microvm ${MED[qemu-microvm]} ms (rtc=on ${MED[qemu-microvm-rtc]} ms), QEMU pc ${MED[qemu-pc]} ms: dvmm / microvm = $ratio_micro" >&2
echo "linux-boot: wrote $BENCH_OUT/linux-boot.md" >&2
