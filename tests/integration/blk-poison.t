#!/bin/bash
# I/O that survives a memory failure: a virtio-blk request whose data
# buffer is a guest page the host kernel has taken offline must fail with
# IOERR, and dvmm must go on.  The test guest (dvmmtest=blk blk_poison=1)
# names the page on its console; this script poisons it for real
# (`dvmm ctl ... hwpoison`: MADV_HWPOISON, the kernel's memory-failure
# path); the kernel's early-kill AO reaches the guest first (a deferred
# error on AMD, a #MC on Intel).  Then the guest writes from and reads into
# that page: the worker's preadv/pwritev or io_uring gets EFAULT, probes
# the buffer under its guard, finds the failed page and reports it; the
# request fails with IOERR, no second machine check arrives (the page was
# reported once), and a request on another page succeeds.  Checked here:
# the guest's lines, dvmm's JSON MCE log line naming the device, queue and
# buffer, its stderr warning, and its exit status 0.  Once per engine
# (io_uring, threads).
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh
. tests/lib/poison.sh
# A real memory failure needs the kernel's memory-failure handling: where
# this host's kernel lacks it, the whole file runs in the nested KVM host.
poison_need_memory_failure "$@"
poison_out_dir blk-poison
. tests/lib/dvmm-test.sh
. tests/lib/bg-proc.sh
dt_require_build
command -v jq >/dev/null 2>&1 || tap_skip_all "jq (for the MCE log) not installed"

WAIT_S=${DVMM_BLK_POISON_WAIT:-120}
ENGINES="io_uring threads"
PER_RUN=10

tap_plan $((PER_RUN * 2))
tap_diag "running on $KVM_WHERE; logs in $DT_OUT"
SOCK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-blkp.XXXXXX")
trap 'rm -rf "$SOCK_DIR"' EXIT

# run_engine ENGINE: one VM, its disk on ENGINE; PER_RUN points.
run_engine() {
    local engine=$1 gpa
    poison_files "blkp-$engine" "$SOCK_DIR/blkp-$engine.sock"
    truncate -s 1M "$DT_OUT/$P_NAME.img"
    dt_ini "$P_NAME" 1 64M "dvmmtest=blk blk_poison=1 blk_queues=1 mce_timeout=$WAIT_S" <<INI
[disk.0]
path = $P_NAME.img
engine = $engine
INI
    # shellcheck disable=SC2119 # no wrapper: dvmm runs in this network namespace
    poison_start

    poison_wait_page '^# blkpoison: buffer gpa 0x[0-9a-f]+$' \
        "$engine: the guest named its buffer page" $((PER_RUN - 1)) || return
    gpa=$(sed -n 's/^# blkpoison: buffer gpa \(0x[0-9a-f]*\)$/\1/p' "$P_CON" | head -n 1)
    poison_hwpoison "$gpa" buffer $((PER_RUN - 1)) "$engine: " || return

    poison_wait_exit
    poison_guest_steps "$engine: " 'mce ao delivered' 'blkpoison write from the failed page: IOERR' \
        'blkpoison read into the failed page: IOERR' \
        'blkpoison request header on the failed page: IOERR' \
        'blkpoison no second machine check for the page' \
        'blkpoison another page after the failure: write OK, read OK, data intact'
    poison_log_has "$engine: MCE log: the device's reports of GPA $gpa name virtio-blk.0 queue 0 and the data buffer" \
        ".gpa == \"$gpa\" and (.reason | test(\"^virtio-blk\\\\.0 queue 0: (write|read) buffer: \"))"
    poison_log_has "$engine: MCE log: the worker's own load of the header (SIGBUS caught by its guard) reported GPA $gpa" \
        ".gpa == \"$gpa\" and (.reason | test(\"^virtio-blk\\\\.0 queue 0: request header\"))"
    if [ "$P_RC" = 0 ] && grep -q '^1\.\.[0-9]' "$P_CON" && ! grep -q '^not ok' "$P_CON" &&
        grep -Eq "virtio-blk\.0 queue 0: (write|read) buffer: memory failure at GPA $gpa" "$P_ERR"; then
        tap_ok "$engine: dvmm ran on to the guest's end and exited 0, its stderr naming the page; no guest failure"
    else
        tap_not_ok "$engine: dvmm ran on to the guest's end and exited 0, its stderr naming the page; no guest failure" \
            "exit status ${P_RC:-running}" "console:" "$(tail -n 15 "$P_CON")" \
            "stderr:" "$(tail -n 15 "$P_ERR")"
    fi
}

for engine in $ENGINES; do
    run_engine "$engine"
done
tap_done
