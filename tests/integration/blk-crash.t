#!/bin/bash
# Crash consistency of dvmm's virtio-blk: nothing that was flushed is lost.
#
# The test guest's blkcrash check (tests/guest/check_blkcrash.c) writes
# numbered batches of 4 KiB blocks over both queues of a 2-vCPU VM, waits
# for them, sends a FLUSH, and prints "BLKCRASH ack B" once the FLUSH is
# acknowledged.  dvmm's console goes to a file, written with one write(2)
# per byte from the vCPU thread (vmm/serial.c): nothing sits in a user-space
# buffer, so every ack line in the file was really sent before the kill.
# Here dvmm is SIGKILLed at a random moment, and tests/lib/blk-crash-check.py
# checks every sector of the image: each block holds the newest
# acknowledged batch that wrote it (or the one batch that may have been in
# flight), never older data, zeros or a torn sector.  The 4 MiB image wraps
# every 64 batches, so older batches are overwritten as they would be in a
# journal.  Both engines (io_uring, threads) and both cache modes
# (writeback, none = O_DIRECT).
#
# A SIGKILL leaves the host's page cache alive, so this proves that dvmm
# acknowledges nothing before the data reached the host kernel.  That a
# FLUSH is acknowledged only after the image was fdatasync'ed (what a host
# crash needs) is proven in tests/unit/test_blk_flush.c.
#
# DVMM_BLKCRASH_RUNS (default 3): kills per engine and cache mode;
# DVMM_BLKCRASH_SEED: the random seed (printed, so a failure replays);
# DVMM_BLKCRASH_MAX_MS (default 2000): the kill comes 0..this many ms after
# the first acknowledgement.  The run directory is kept and named on
# failure.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh
need_kvm "$@"
. tests/lib/dvmm-test.sh
. tests/lib/bg-proc.sh
dt_require_build
command -v python3 >/dev/null 2>&1 || tap_skip_all "python3 (for the image check) not installed"

CHECK=tests/lib/blk-crash-check.py
RUNS=${DVMM_BLKCRASH_RUNS:-3}
SEED=${DVMM_BLKCRASH_SEED:-$(( $(date +%s%N) % 1000000 ))}
MAX_MS=${DVMM_BLKCRASH_MAX_MS:-2000}
RANDOM=$SEED
FAILED_BEFORE=0

tap_plan $((2 + 4 * (RUNS + 1)))
tap_diag "running on $KVM_WHERE; seed $SEED, $RUNS kill(s) per engine and cache mode, run directory $DT_OUT"

# crash_ini NAME ENGINE CACHE "GUEST OPTIONS": the VM, console to NAME.out.
crash_ini() {
    local name=$1 engine=$2 cache=$3 opts=$4
    truncate -s 0 "$DT_OUT/$name.img"
    truncate -s 4M "$DT_OUT/$name.img"
    dt_ini "$name" 2 64M "dvmmtest=blkcrash $opts" <<INI
output = $DT_OUT/$name.out
[control]
enabled = no
[disk.0]
path = $DT_OUT/$name.img
queues = 2
engine = $engine
cache = $cache
INI
}

# A clean run first: the guest finishes 80 batches (wrapping the disk
# once), dvmm exits 0 and the checker finds every batch; its self-test
# shows that a zeroed acknowledged sector would be caught.
name=clean
crash_ini "$name" io_uring writeback "blkcrash_nonce=0x$(printf %x $((SEED + 1))) blkcrash_batches=80"
run_with_timeout "$DT_TIMEOUT" "$DT_DVMM" run "$DT_OUT/$name.ini" >/dev/null 2>"$DT_OUT/$name.err" </dev/null
DT_RC=$?
dt_guest_passed "$name" "clean run: 80 batches written and flushed, the guest passes"
tap_check "clean run: the image holds all 80 batches; a zeroed acknowledged sector is caught" \
    python3 "$CHECK" --self-test "$DT_OUT/$name.img" "$DT_OUT/$name.out"

for engine in io_uring threads; do
    for cache in writeback none; do
        # Smoke: a short clean run in this mode (O_DIRECT really taken?).
        name=$engine-$cache-clean
        crash_ini "$name" "$engine" "$cache" "blkcrash_nonce=0x$(printf %x $((SEED + 2))) blkcrash_batches=10"
        run_with_timeout "$DT_TIMEOUT" "$DT_DVMM" run -v "$DT_OUT/$name.ini" >/dev/null 2>"$DT_OUT/$name.err" </dev/null
        DT_RC=$?
        mode=$(grep -Eo 'queue\(s\) of [0-9]+, [^,]+, .*engine [a-z_]+' "$DT_OUT/$name.err" | head -n 1)
        want=$([ "$cache" = none ] && echo O_DIRECT || echo buffered)
        if [ "$DT_RC" -eq 0 ] && grep -q "^ok 1 - blkcrash" "$DT_OUT/$name.out" &&
            [[ "$mode" == *", $want,"*"engine $engine" ]]; then
            tap_ok "$engine, cache=$cache: 10 batches clean, the disk is $want with engine $engine"
        elif [ "$DT_RC" -eq 0 ] && [ "$cache" = none ] && grep -q "refuses O_DIRECT" "$DT_OUT/$name.err"; then
            # tmpfs before Linux 6.6 (the nested host's /tmp): the runs
            # below are buffered, which says so in their names.
            tap_skip "$(grep -o 'cache=none: .*' "$DT_OUT/$name.err" | head -n 1)"
            cache="none(buffered: no O_DIRECT on $(stat -f -c %T "$DT_OUT"))"
        else
            tap_not_ok "$engine, cache=$cache: 10 batches clean" "exit status $DT_RC, mode '$mode' (want $want, $engine)" \
                "console:" "$(tail -n 5 "$DT_OUT/$name.out")" "stderr:" "$(tail -n 5 "$DT_OUT/$name.err")"
        fi
        for ((run = 1; run <= RUNS; run++)); do
            name=$engine-${cache%%(*}-$run
            nonce=$(printf %x $((SEED * 100 + run)))
            crash_ini "$name" "$engine" "${cache%%(*}" "blkcrash_nonce=0x$nonce blkcrash_batches=0"
            : >"$DT_OUT/$name.out"
            "$DT_DVMM" run "$DT_OUT/$name.ini" >/dev/null 2>"$DT_OUT/$name.err" </dev/null &
            pid=$!
            rc=
            delay_ms=$((RANDOM % (MAX_MS + 1)))
            desc="$engine, cache=$cache, kill $run: every acknowledged batch is in the image"
            if ! bg_wait_line "$pid" rc "$DT_OUT/$name.out" '^BLKCRASH ack 0$' 120; then
                kill -KILL "$pid" 2>/dev/null
                { wait "$pid"; } 2>/dev/null
                tap_not_ok "$desc" "no acknowledgement within 120 s (exit status '$rc')" \
                    "console:" "$(tail -n 5 "$DT_OUT/$name.out")" "stderr:" "$(tail -n 5 "$DT_OUT/$name.err")"
                continue
            fi
            sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
            kill -KILL "$pid" 2>/dev/null
            { wait "$pid"; } 2>/dev/null
            rc=$?
            if [ "$rc" -ne 137 ]; then
                tap_not_ok "$desc" "dvmm ended with status $rc before the kill ${delay_ms} ms after the first ack" \
                    "console:" "$(tail -n 5 "$DT_OUT/$name.out")" "stderr:" "$(tail -n 5 "$DT_OUT/$name.err")"
                continue
            fi
            if out=$(python3 "$CHECK" "$DT_OUT/$name.img" "$DT_OUT/$name.out" 2>&1); then
                tap_ok "$desc (killed ${delay_ms} ms after the first: $out)"
            else
                tap_not_ok "$desc" "killed ${delay_ms} ms after the first acknowledgement" \
                    "$(printf '%s\n' "$out" | tail -n 22)" "image and console kept in $DT_OUT"
            fi
        done
    done
done

[ "$TAP_FAILED" -eq "$FAILED_BEFORE" ] && rm -rf "$DT_OUT"
tap_done
