# Shared by tests/bench/startup.sh and tests/bench/vmm-memory.sh (sourced).
# Sets BENCH_REPO, BENCH_BUILD (absolute), BENCH_DVMM, BENCH_GUEST,
# BENCH_OUT (the report directory) and the QEMU command prefix.

BENCH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$BENCH_REPO/tests/lib/kvm-env.sh"     # kvm_usable
case ${DVMM_BUILD:-build} in
    /*) BENCH_BUILD=$DVMM_BUILD ;;
    *) BENCH_BUILD=$BENCH_REPO/${DVMM_BUILD:-build} ;;
esac
BENCH_DVMM=$BENCH_BUILD/dvmm
BENCH_GUEST=$BENCH_BUILD/testguest.elf
BENCH_OUT=$BENCH_BUILD/bench
BENCH_QEMU=${DVMM_BENCH_QEMU:-qemu-system-x86_64}
# One run must never hang the benchmark; nested KVM under TCG is slow.
BENCH_RUN_TIMEOUT=${DVMM_BENCH_RUN_TIMEOUT:-180}

# The QEMU side of every comparison: same guest, same exit device, KVM, no
# default devices, and a serial port as dvmm has one (output discarded by
# the caller, as dvmm's is).  Machine type and -m are added per use.
bench_qemu_args() {
    printf '%s\n' -enable-kvm -nodefaults -no-user-config -nographic \
        -monitor none -serial stdio -smp 1 \
        -kernel "$BENCH_GUEST" -append dvmmtest=none \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04
}

# bench_dvmm_ini FILE MEMORY: dvmm's config for the same guest.
bench_dvmm_ini() {
    cat >"$1" <<INI
[vm]
name = bench
vcpus = 1
memory = $2
kernel = $BENCH_GUEST
cmdline = dvmmtest=none
on_reset = exit
[console]
input = no
[control]
enabled = no
INI
}

bench_require() {
    local f
    for f in "$BENCH_DVMM" "$BENCH_GUEST"; do
        [ -e "$f" ] || { echo "bench: $f missing: run make first" >&2; return 1; }
    done
    command -v "$BENCH_QEMU" >/dev/null ||
        { echo "bench: no $BENCH_QEMU (package qemu-system-x86)" >&2; return 1; }
    kvm_usable || { echo "bench: /dev/kvm is not usable here" >&2; return 1; }
    mkdir -p "$BENCH_OUT"
}

# Median of the numbers on stdin (one a line); empty input prints "-".
bench_median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2];
        else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

bench_min() { sort -g | head -n 1; }
bench_max() { sort -g | tail -n 1; }

# bench_ratio A B: A/B to 3 decimals, or "-" when either is missing.
bench_ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.3f\n", a / b }'
}

# Where and on what the numbers were taken, for the report.
bench_machine() {
    local cpu
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    echo "$(nproc) CPU(s) ($cpu), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
    if [ -n "${DVMM_NESTED:-}" ]; then
        echo "inside the nested KVM host (tests/lib/nested.sh: Debian's kernel in QEMU TCG with nested SVM); absolute times are inflated by the nesting, the dvmm/QEMU ratios are taken in the same run"
    else
        echo "on this host's /dev/kvm"
    fi
    echo "$("$BENCH_QEMU" --version | head -n 1)"
}
