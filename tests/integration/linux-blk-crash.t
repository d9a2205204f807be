#!/bin/bash
# Crash consistency with a real filesystem: Debian's stock kernel mounts an
# ext4 image through dvmm's virtio-blk and writes files, `sync`ing after
# each and printing "LINUX-SYNCED fN SHA256" when the sync returned
# (tests/linux/blkcrash-init); some files are rewritten in place and a
# scratch file is kept dirty between syncs.  dvmm is SIGKILLed at a random
# moment; then the host replays ext4's journal (e2fsck -E journal_only,
# what a mount would do), `e2fsck -fn` must find the filesystem clean, and
# every file whose last sync was reported (and that was not being rewritten
# at the kill) must have the checksum the guest printed, read back with
# debugfs.  Both engines; cache=none too where the image's filesystem takes
# O_DIRECT.  One clean run (the guest unmounts) checks the check.
# DVMM_LINUX_BLKCRASH_RUNS (default 1): kills per engine and cache mode.
# A stock kernel needs VT-x/AMD-V: here that is the nested KVM host,
# minutes per run.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh

# Opt-in for now: its first clean-clone run (2026-11-30) crashed the nested
# host's own kernel ("BUG: TASK stack guard page was hit" in a vcpu thread,
# then "corrupted stack end detected inside scheduler") while the Linux
# guest ran; until that is understood it does not gate make test.
if [ -z "${DVMM_LINUX_BLK_CRASH:-}" ] && [ -z "${DVMM_NESTED:-}" ]; then
    tap_skip_all "opt-in (DVMM_LINUX_BLK_CRASH=1): its first clean-clone run crashed the nested host's kernel (stack guard page hit in a vcpu thread); not yet understood"
fi

for t in mkfs.ext4 e2fsck debugfs sha256sum; do
    command -v "$t" >/dev/null 2>&1 || tap_skip_all "$t not installed (e2fsprogs)"
done
initrd=$(tests/linux/blkcrash-initramfs.sh) ||
    tap_skip_all "cannot build the Linux crash-consistency initramfs (Debian's kernel, busybox-static, cpio)"
linux_kernel_fetch >/dev/null 2>&1 || tap_skip_all "Debian's kernel cannot be fetched"
export DVMM_NESTED_TIMEOUT=${DVMM_NESTED_TIMEOUT:-1800}

need_kvm_stock_guest "$@"
. tests/lib/dvmm-test.sh
. tests/lib/bg-proc.sh
dt_require_build

RUNS=${DVMM_LINUX_BLKCRASH_RUNS:-1}
SEED=${DVMM_BLKCRASH_SEED:-$(( $(date +%s%N) % 1000000 ))}
RANDOM=$SEED
limit=400
if [ -n "${DVMM_NESTED_DEADLINE:-}" ]; then
    left=$(( (DVMM_NESTED_DEADLINE - $(date +%s) - 60) / (2 + 4 * RUNS) ))
    [ "$left" -lt "$limit" ] && limit=$((left > 60 ? left : 60))
fi
tap_plan $((3 + 16 * RUNS))
tap_diag "running on $KVM_WHERE; kernel $LINUX_KVER; seed $SEED; $RUNS kill(s) per engine and cache mode; run directory $DT_OUT"

# lb_ini NAME ENGINE CACHE FILES: a 2-vCPU VM on a fresh 64 MiB ext4 image.
lb_ini() {
    local name=$1 engine=$2 cache=$3 files=$4
    rm -f "$DT_OUT/$name.img"
    mkfs.ext4 -q -F -b 4096 "$DT_OUT/$name.img" 64M >/dev/null
    cat >"$DT_OUT/$name.ini" <<INI
[vm]
name = $name
vcpus = 2
memory = 256M
kernel = $LINUX_VMLINUZ
initrd = $initrd
cmdline = "console=ttyS0 reboot=k panic=-1 quiet loglevel=3${files:+ dvmm.files=$files}"
on_reset = exit
[console]
input = no
output = $DT_OUT/$name.out
[control]
enabled = no
[disk.0]
path = $DT_OUT/$name.img
engine = $engine
cache = $cache
INI
}

# lb_check NAME WHAT: e2fsck after the journal replay, then the files.
lb_check() {
    local name=$1 what=$2 img=$DT_OUT/$1.img out
    e2fsck -fy -E journal_only "$img" >"$DT_OUT/$name.replay" 2>&1
    # After a kill ext4's journal normally needs replaying: say so, it is
    # what the check exercised.
    tap_diag "$what: journal $(grep -qi 'recovering journal' "$DT_OUT/$name.replay" &&
        echo replayed || echo 'clean, nothing to replay')"
    if out=$(e2fsck -fn "$img" 2>&1); then
        tap_ok "$what: e2fsck -fn clean after the journal replay"
    else
        tap_not_ok "$what: e2fsck -fn clean after the journal replay" \
            "$(printf '%s\n' "$out" | tail -n 15)" "replay: $(tail -n 3 "$DT_OUT/$name.replay")" \
            "image kept in $DT_OUT"
    fi
    # The last synced checksum of each file, unless a rewrite began after it.
    local f sum n=0 bad=() got
    while read -r f sum; do
        got=$(debugfs -R "cat /$f" "$img" 2>/dev/null | sha256sum | cut -d' ' -f1)
        n=$((n + 1))
        [ "$got" = "$sum" ] || bad+=("$f: $got, synced as $sum")
    done < <(tr -d '\r' <"$DT_OUT/$name.out" | awk '
        /^LINUX-REWRITE / { pending[$2] = 1 }
        /^LINUX-SYNCED / && NF == 3 { sum[$2] = $3; pending[$2] = 0 }
        END { for (f in sum) if (!pending[f]) print f, sum[f] }')
    if [ "$n" -gt 0 ] && [ "${#bad[@]}" -eq 0 ]; then
        tap_ok "$what: all $n synced files read back with the guest's checksums"
    else
        tap_not_ok "$what: all synced files read back with the guest's checksums" \
            "$n files checked" "${bad[@]:0:10}" "image kept in $DT_OUT"
    fi
}

# A clean run: 6 files, unmounted, exit 0.
name=linux-clean
lb_ini "$name" io_uring writeback 6
run_with_timeout "$limit" "$DT_DVMM" run "$DT_OUT/$name.ini" >/dev/null 2>"$DT_OUT/$name.err" </dev/null
rc=$?
if [ "$rc" -eq 0 ] && grep -q '^LINUX-DONE 6 files' "$DT_OUT/$name.out"; then
    tap_ok "clean run: 6 files written, synced, unmounted"
else
    tap_not_ok "clean run: 6 files written, synced, unmounted" "exit status $rc" \
        "console:" "$(tail -n 8 "$DT_OUT/$name.out" 2>/dev/null)" "stderr:" "$(tail -n 5 "$DT_OUT/$name.err")"
fi
lb_check "$name" "clean run"

# Where the run directory's filesystem refuses O_DIRECT (the nested host's
# tmpfs /tmp on Linux 6.1), cache=none would run buffered: the same as
# writeback, minutes per boot for nothing.
odirect=yes
dd if=/dev/zero of="$DT_OUT/odirect-probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null || odirect=no
rm -f "$DT_OUT/odirect-probe"

for engine in io_uring threads; do
    for cache in writeback none; do
        if [ "$cache" = none ] && [ "$odirect" = no ]; then
            tap_skip "$engine, cache=none: $DT_OUT ($(stat -f -c %T "$DT_OUT")) refuses O_DIRECT, so it would run buffered like cache=writeback" $((4 * RUNS))
            continue
        fi
        for ((run = 1; run <= RUNS; run++)); do
            name=linux-$engine-$cache-$run
            what="$engine, cache=$cache, kill $run"
            lb_ini "$name" "$engine" "$cache" ""
            : >"$DT_OUT/$name.out"
            "$DT_DVMM" run -v "$DT_OUT/$name.ini" >/dev/null 2>"$DT_OUT/$name.err" </dev/null &
            pid=$!
            rc=
            # Three synced files first: the kill then falls in steady writing.
            if ! bg_wait_line "$pid" rc "$DT_OUT/$name.out" '^LINUX-SYNCED f2 ' "$limit"; then
                kill -KILL "$pid" 2>/dev/null
                { wait "$pid"; } 2>/dev/null
                tap_not_ok "$what: the guest synced 3 files" "exit status '$rc'" \
                    "console:" "$(tail -n 8 "$DT_OUT/$name.out" 2>/dev/null)" "stderr:" "$(tail -n 5 "$DT_OUT/$name.err")"
                tap_skip "no kill without a running guest" 3
                continue
            fi
            delay_ms=$((RANDOM % 3001))
            sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
            kill -KILL "$pid" 2>/dev/null
            { wait "$pid"; } 2>/dev/null
            rc=$?
            mode=$(grep -Eo 'queue\(s\) of [0-9]+, (O_DIRECT|buffered)' "$DT_OUT/$name.err" | grep -Eo '(O_DIRECT|buffered)' | head -n 1)
            synced=$(grep -c '^LINUX-SYNCED' "$DT_OUT/$name.out")
            tap_is "$rc" 137 "$what: dvmm killed ${delay_ms} ms after the third sync ($synced sync lines, disk $mode)"
            if [ "$cache" = none ] && [ "$mode" != O_DIRECT ]; then
                tap_skip "$(grep -o 'cache=none: .*' "$DT_OUT/$name.err" | head -n 1): ran buffered"
            else
                tap_ok "$what: the disk is ${mode:-?}"
            fi
            lb_check "$name" "$what"
        done
    done
done

[ "$TAP_FAILED" -eq 0 ] && rm -rf "$DT_OUT"
tap_done
