#!/bin/bash
# The test guest's blk check against QEMU's virtio-blk-pci (TCG, no KVM
# needed): the driver that judges dvmm's device must first pass on QEMU's,
# so it is a standard virtio 1.x driver and not one that agrees with dvmm.
# Expects an already built guest: $DVMM_BUILD/testguest.elf (default build/).
. "$(dirname "$0")/../lib/tap.sh"

root=$(tap_repo_root) || tap_bail_out "cannot find the repository root"
cd "$root" || tap_bail_out "cannot cd to $root"
ELF=${DVMM_BUILD:-build}/testguest.elf
QEMU=${QEMU:-qemu-system-x86_64}
CHECK_IMAGE=tests/lib/blk-image.py

command -v "$QEMU" >/dev/null 2>&1 || tap_skip_all "$QEMU not installed"
[ -f "$ELF" ] || tap_skip_all "$ELF not built (make ${DVMM_BUILD:+BUILD=$DVMM_BUILD} guest)"
command -v python3 >/dev/null 2>&1 || tap_skip_all "python3 (for the image check) not installed"

tap_plan 11

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
OUT=$WORK/console

# qemu_blk CPUS DEVICE_OPTS DRIVE_OPTS IMAGE CMDLINE: boots the guest on -M pc
# with one virtio-blk-pci disk; console (from the banner on) in $OUT, QEMU's
# status in $RC (isa-debug-exit: 1 = guest passed, 3 = a check failed).
# SeaBIOS lists one MP processor per package, hence sockets=CPUS.
qemu_blk() {
	local cpus=$1 dev=$2 drive=$3 img=$4 cmdline=$5 raw
	raw=$(run_with_timeout 120 "$QEMU" -M pc -cpu max -m 128M -smp "$cpus,sockets=$cpus" \
		-nodefaults -display none -serial stdio -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-drive "if=none,id=d0,file=$img,format=raw$drive" \
		-device "virtio-blk-pci,drive=d0$dev" \
		-kernel "$ELF" -append "dvmmtest=blk $cmdline" </dev/null 2>&1)
	RC=$?
	printf '%s\n' "$raw" | tr -d '\r' | sed -n '/^# dvmm test guest/,$p' >"$OUT"
	[ -s "$OUT" ] || printf '%s\n' "$raw" | tail -n 20 >"$OUT"
}

. tests/lib/qemu-expect.sh

# image_has DESC IMAGE QUEUES SIG: the guest's data reached the file.
image_has() {
	tap_check "$1" python3 "$CHECK_IMAGE" "$2" "$3" "$4"
}

for n in 1 2 4; do
	img=$WORK/disk$n.img
	truncate -s 4M "$img"
	sig=$(printf 'c0ffee%02x' "$n")
	qemu_blk "$n" ",num-queues=$n,serial=qemu-ser-$n,disable-legacy=on" "" "$img" \
		"blk_queues=$n blk_serial=qemu-ser-$n blk_sig=$sig"
	expect "$n cpu(s), $n queue(s): each queue's interrupts on its own vCPU, data verified, reset in flight" 1 \
		'^ok 1 - blk$' "^# blk: queue $((n - 1)) on APIC [0-9]+: [0-9]+ requests, [1-9][0-9]* interrupts" \
		'^# blk: device re-initialised after the reset'
	image_has "$n cpu(s): signature and every queue's pattern are in the image" "$img" "$n" "$sig"
done

# Transitional device (QEMU's default on pc, 1af4:1001), more queues than
# CPUs: queues share vCPUs round robin.
img=$WORK/trans.img
truncate -s 4M "$img"
qemu_blk 2 ",num-queues=4" "" "$img" "blk_queues=4"
expect "transitional device, 4 queues on 2 cpus" 1 '^# blk: virtio-blk 1001 ' \
	'^# blk: queue 2 on APIC 0: ' '^ok 1 - blk$'

# Read-only drive: writes fail with IOERR, F_RO offered, the host's
# signature is read back.
img=$WORK/ro.img
truncate -s 4M "$img"
printf 'dvmm-blk-sig=%s\n' 5eed | dd of="$img" conv=notrunc status=none
qemu_blk 2 ",num-queues=2,serial=ro" ",readonly=on" "$img" "blk_queues=2 blk_ro=1 blk_sig=5eed"
expect "read-only drive: writes IOERR, F_RO, signature read back" 1 \
	'^# blk: signature 5eed found at sector 0' '^ok 1 - blk$'

# The check fails when the device disagrees with the command line.
img=$WORK/neg.img
truncate -s 4M "$img"
qemu_blk 1 ",serial=right" "" "$img" "blk_serial=wrong"
expect "a wrong serial fails the check" 3 '^not ok 1 - blk # GET_ID "right", expected "wrong"'
qemu_blk 1 "" "" "$img" "blk_ro=1"
expect "blk_ro=1 on a writable drive fails the check" 3 \
	'^not ok 1 - blk # device does not offer VIRTIO_BLK_F_RO but blk_ro=1'
qemu_blk 2 ",num-queues=2" "" "$img" "blk_queues=1"
expect "a num_queues other than blk_queues= fails the check" 3 \
	'^not ok 1 - blk # num_queues 2, expected 1'

tap_done
