#!/bin/bash
# blk-poison.t on dmemfs: guest RAM on 1 GiB dpages of the project's dmemfs
# (a nested KVM host booted as a dmemfs host, as dmemfs.t), and the failure
# made by the module's own dmem/inject rather than MADV_HWPOISON.  The test
# guest's buffer page lies in the second GiB (blk_poison_gpa=), since the
# whole dpage is lost and the first holds the guest's own image.  The
# module's early-kill AO names the dpage (mce_unit=1G: MCi_ADDR is its
# start); then a write from the page, a read into it and a read with its
# header on it each fail with IOERR, no second machine check arrives, and
# a request on a page of the first GiB still succeeds.  Checked here: the
# guest's lines, dvmm's MCE log lines naming virtio-blk.0 queue 0 with the
# dpage's GPA and 1 GiB page_size, exit status 0.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh
. tests/lib/poison.sh

DMEM_GIB=2
poison_need_dmemfs_host "$DMEM_GIB" "$@"
{ mkdir -p "$(dvmm_build_dir)/tests" &&
    DT_OUT=$(mktemp -d "$(dvmm_build_dir)/tests/blk-poison-dmemfs.XXXXXX"); } || tap_bail_out "mktemp failed"
. tests/lib/dvmm-test.sh
. tests/lib/bg-proc.sh
dt_require_build
command -v jq >/dev/null 2>&1 || tap_skip_all "jq (for the MCE log) not installed"

DMEM=/sys/kernel/debug/dmem
MNT=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-blkpd.XXXXXX") || tap_bail_out "mktemp failed"
WAIT_S=${DVMM_BLK_POISON_WAIT:-300}
UNIT=0x40000000
BAD=0x40005000
GiB=1073741824
PLAN=10
poison_files blkp-dmemfs "$MNT.sock"

cleanup() {
    umount "$MNT" 2>/dev/null
    rmdir "$MNT" 2>/dev/null
    rm -f "$P_SOCK" "${IMG:-}" "${KERNEL:-}"
}
trap cleanup EXIT

tap_plan $PLAN
tap_diag "running on $KVM_WHERE; logs in $DT_OUT"
if ! out=$(kernel-support/dmemfs-setup -o pagesize=1G "$MNT" 2>&1); then
    tap_not_ok "dmemfs-setup mounts dmemfs with 1 GiB dpages" "$out"
    tap_skip "no dmemfs mount" $((PLAN - 1))
    tap_done
    exit
fi
tap_ok "dmemfs-setup mounts dmemfs with 1 GiB dpages"

# The image on a local file system: 9p (the build tree) pins user buffers
# with get_user_pages, which fails on pfn mappings (dmemfs.t).
IMG=$(mktemp "${TMPDIR:-/tmp}/dvmm-blkpd.XXXXXX.img")
truncate -s 1M "$IMG"
# The kernel too: dvmm reads it straight into guest RAM.
KERNEL=$IMG.elf
cp "$DT_GUEST" "$KERNEL" || tap_bail_out "cannot copy $DT_GUEST to $KERNEL"
dt_ini "$P_NAME" 1 2G "dvmmtest=blk blk_poison=1 blk_poison_gpa=$BAD blk_queues=1 mce_unit=$GiB mce_timeout=$WAIT_S" \
    "$KERNEL" <<INI
[memory]
backend = dmemfs
path = $MNT
[disk.0]
path = $IMG
INI
# shellcheck disable=SC2119 # no wrapper: dvmm runs in this network namespace
poison_start

if ! poison_wait_page "^# blkpoison: buffer gpa $BAD\$" "the guest named its buffer page $BAD" $((PLAN - 2)); then
    tap_done
    exit
fi
# The dpage behind GPA 1 GiB: index 1 of the RAM file (dmemfs.t).
phys=$(awk '/ index 1( |$)/ && !/ error/ { print $4; exit }' "$DMEM/dpages")
inj=""
[ -n "$phys" ] && inj=$(printf '0x%x' $((phys + BAD - UNIT)))
if [ -n "$inj" ] && echo "$inj" >"$DMEM/inject" 2>"$DT_OUT/inject.err"; then
    tap_ok "dmem/inject $inj (GPA $BAD, dpage at $phys)"
else
    tap_not_ok "dmem/inject at GPA $BAD" "dpages: $(cat "$DMEM/dpages" 2>&1)" \
        "$(cat "$DT_OUT/inject.err" 2>/dev/null)"
fi

poison_wait_exit
poison_guest_steps "" 'mce ao delivered' 'blkpoison write from the failed page: IOERR' \
    'blkpoison read into the failed page: IOERR' \
    'blkpoison request header on the failed page: IOERR' \
    'blkpoison no second machine check for the page' \
    'blkpoison another page after the failure: write OK, read OK, data intact'
# The module names the dpage's start, whatever page was touched.
if jq -e -s "any(.[]; .gpa == \"$UNIT\" and .page_size == $GiB and
        (.reason | test(\"^virtio-blk\\\\.0 queue 0: (write|read) buffer: \"))) and
    any(.[]; .gpa == \"$UNIT\" and .page_size == $GiB and
        (.reason | test(\"^virtio-blk\\\\.0 queue 0: request header\")))" \
    "$P_LOG" >/dev/null 2>&1; then
    tap_ok "MCE log: the device's reports name virtio-blk.0 queue 0, the buffer and the 1 GiB dpage at $UNIT"
else
    tap_not_ok "MCE log: the device's reports name virtio-blk.0 queue 0, the buffer and the 1 GiB dpage at $UNIT" \
        "log:" "$(cat "$P_LOG")"
fi
if [ "$P_RC" = 0 ] && grep -q '^1\.\.[0-9]' "$P_CON" && ! grep -q '^not ok' "$P_CON"; then
    tap_ok "dvmm ran on to the guest's end and exited 0; no guest failure"
else
    tap_not_ok "dvmm ran on to the guest's end and exited 0; no guest failure" \
        "exit status ${P_RC:-running}" "console:" "$(tail -n 15 "$P_CON")" \
        "stderr:" "$(tail -n 15 "$P_ERR")"
fi
poison_dump_log
tap_done
