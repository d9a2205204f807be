#!/bin/bash
# dvmm's virtio-blk, judged by the test guest's blk check (the driver that
# qemu-blk.t first holds to QEMU's device): 1, 2 and 4 vCPUs with
# queues = 8 (clamped to the vCPUs, with a warning naming both numbers),
# each queue driven from its own vCPU and completing on its own MSI-X
# vector there; the guest's data is in the image after dvmm exits; a
# read-only disk; and an image on a full tmpfs, where ENOSPC must reach the
# guest as IOERR while the VM goes on.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh
need_kvm "$@"
. tests/lib/dvmm-test.sh
dt_require_build
command -v python3 >/dev/null 2>&1 || tap_skip_all "python3 (for the image check) not installed"

CHECK_IMAGE=tests/lib/blk-image.py
IMG_SIZE=4M

tap_plan 15
tap_diag "running on $KVM_WHERE"

# blk_run NAME VCPUS IMAGE "GUEST OPTIONS" [--set k=v ...]: the blk check
# with one disk from IMAGE.
blk_run() {
    local name=$1 vcpus=$2 img=$3 opts=$4
    shift 4
    dvmm_guest "$name" "$vcpus" 128M "blk $opts" \
        --set "disk.0.path=$img" "$@"
    grep -E '^# blk: (queue|reset|negotiated|GET_ID|signature|device)' "$DT_OUT/$name.out" | tap_diag -
}

for vcpus in 1 2 4; do
    name=blk-${vcpus}cpu
    img=$DT_OUT/$name.img
    sig=$(printf 'd0a0%04x' "$vcpus")
    truncate -s "$IMG_SIZE" "$img"
    blk_run "$name" "$vcpus" "$img" \
        "blk_queues=$vcpus blk_serial=dvmm-$vcpus blk_sig=$sig" \
        --set disk.0.queues=8 --set "disk.0.serial=dvmm-$vcpus"
    dt_guest_passed "$name" "$vcpus vCPU(s), queues = 8: num_queues $vcpus, per-vCPU MSI-X, data verified, GET_ID, reset in flight"
    if grep -Eq "disk\.0\.queues = 8 is more than the $vcpus vCPUs; using $vcpus queues" "$DT_OUT/$name.err"; then
        tap_ok "$vcpus vCPU(s): the clamp warning names 8 and $vcpus"
    else
        tap_not_ok "$vcpus vCPU(s): the clamp warning names 8 and $vcpus" \
            "stderr:" "$(tail -n 10 "$DT_OUT/$name.err")"
    fi
    tap_check "$vcpus vCPU(s): the image holds the signature and every queue's pattern" \
        python3 "$CHECK_IMAGE" "$img" "$vcpus" "$sig"
done

# Read-only: F_RO offered, writes IOERR, the host's signature read back,
# and the file untouched.
name=blk-ro
img=$DT_OUT/$name.img
truncate -s "$IMG_SIZE" "$img"
printf 'dvmm-blk-sig=%s\n' 0f0f | dd of="$img" conv=notrunc status=none
sum_before=$(sha256sum <"$img")
blk_run "$name" 2 "$img" "blk_queues=2 blk_ro=1 blk_sig=0f0f" --set disk.0.readonly=yes
dt_guest_passed "$name" "read-only disk: F_RO offered, writes fail with IOERR, signature read back"
dt_console_has "$name" '^# blk: signature 0f0f found at sector 0' "read-only disk: the guest read the host's signature"
tap_is "$(sha256sum <"$img")" "$sum_before" "read-only disk: the image is unchanged"

# ENOSPC: a sparse image on a tmpfs with no free block left.
name=blk-enospc
if [ "$(id -u)" -ne 0 ]; then
    tap_skip "mounting a tmpfs needs root (running as $(id -un))" 3
else
    mnt=$DT_OUT/full-tmpfs
    mkdir -p "$mnt"
    if ! mount -t tmpfs -o size=256k tmpfs "$mnt"; then
        tap_skip "cannot mount a tmpfs on $mnt" 3
    else
        dd if=/dev/zero of="$mnt/fill" bs=4k status=none 2>/dev/null
        truncate -s "$IMG_SIZE" "$mnt/disk.img"
        tap_diag "tmpfs: $(df -k "$mnt" | tail -n 1)"
        blk_run "$name" 2 "$mnt/disk.img" "blk_queues=2 blk_expect_enospc=1" --set disk.0.queues=2
        dt_guest_passed "$name" "full filesystem: every write fails with IOERR, reads and flush work, the VM runs to its end"
        tap_is "$DT_RC" 0 "full filesystem: dvmm exits 0 (no crash, no NEEDS_RESET)"
        # Nothing of the failed writes may have reached the file.
        tap_check "full filesystem: the image is still all zeros" \
            cmp -n "$(stat -c %s "$mnt/disk.img")" "$mnt/disk.img" /dev/zero
        umount "$mnt"
    fi
fi

tap_done
