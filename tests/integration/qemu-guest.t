#!/bin/bash
# Cross-checks the test guest on QEMU (TCG: no KVM needed): the same ELF
# that dvmm boots through the Linux 64-bit protocol boots here through its
# PVH note, so the guest's checks are known good before they judge dvmm.
# Expects an already built guest: $DVMM_BUILD/testguest.elf (default build/).
. "$(dirname "$0")/../lib/tap.sh"

root=$(tap_repo_root) || tap_bail_out "cannot find the repository root"
cd "$root" || tap_bail_out "cannot cd to $root"
ELF=${DVMM_BUILD:-build}/testguest.elf
QEMU=${QEMU:-qemu-system-x86_64}

command -v "$QEMU" >/dev/null 2>&1 || tap_skip_all "$QEMU not installed"
[ -f "$ELF" ] || tap_skip_all "$ELF not built (make ${DVMM_BUILD:+BUILD=$DVMM_BUILD} guest)"

tap_plan 11

OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

# qemu_run MACHINE MEM SMP CMDLINE: boots the guest, leaves its console
# output (from the banner on) in $OUT and QEMU's exit status in $RC.
# isa-debug-exit makes QEMU exit with 2*v+1: 1 = guest passed, 3 = failed;
# a reset with -no-reboot exits 0.
qemu_run() {
	local machine=$1 mem=$2 smp=$3 cmdline=$4 raw
	raw=$(run_with_timeout 90 "$QEMU" -M "$machine" -cpu max -m "$mem" -smp "$smp" \
		-nodefaults -display none -serial stdio -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-kernel "$ELF" -append "$cmdline" </dev/null 2>&1)
	RC=$?
	printf '%s\n' "$raw" | tr -d '\r' | sed -n '/^# dvmm test guest/,$p' >"$OUT"
	if [ ! -s "$OUT" ]; then
		printf '%s\n' "$raw" | tail -n 20 >"$OUT"
	fi
}

. tests/lib/qemu-expect.sh    # expect DESC WANT_RC [REGEX...]

qemu_run pc 256M 1 "dvmmtest=boot,mem,smp,trap expect_mem=256M expect_cpus=1"
expect "pc, 1 cpu: boot,mem,smp,trap" 1 '^ok 3 - smp' '^ok 4 - trap' '^# mem: [0-9]+ pages'

# SeaBIOS lists one MP processor per package, so two CPUs need two sockets.
qemu_run pc 256M 2,sockets=2 "dvmmtest=boot,mem,smp expect_mem=256M expect_cpus=2"
expect "pc, 2 cpus: boot,mem,smp" 1 '^# smp: 2 cpus up \(apic ids 0 1\)'

qemu_run microvm 256M 1 "dvmmtest=mem"
expect "microvm: mem" 1 '^ok 1 - mem'

qemu_run microvm 128M 2 "dvmmtest=boot,smp expect_cpus=2"
expect "microvm, 2 cpus: smp (qboot MP table)" 1 '^ok 2 - smp'

# dvmm's way in (boot_params in RSI, 64-bit entry), rebuilt by the guest.
qemu_run pc 256M 2,sockets=2 "dvmmtest=boot,mem,smp entry=linux64 expect_mem=256M expect_cpus=2"
expect "pc, linux64 entry: boot,mem,smp" 1 '^# entry: linux64' '^ok 3 - smp'

# RAM above 4 GiB: the guest's own page tables must reach it.
qemu_run pc 4352M 1 "dvmmtest=boot,mem expect_mem=4352M"
expect "pc, 4.25 GiB: RAM above 4 GiB verified" 1 '^# e820: 0x0000000100000000 - ' '^ok 2 - mem'

# The mem check must notice memory that does not keep what was written:
# claim part of the PCI hole is RAM.
qemu_run pc 256M 1 "dvmmtest=mem e820_fake=0xd0000000:8K"
expect "mem check catches RAM that is not there" 3 \
	'^not ok 1 - mem # mismatch at GPA 0xd0000000' '^# mem: 2 mismatches'

qemu_run pc 64M 1 "dvmmtest=none"
expect "none check passes at once" 1 '^1\.\.1$' '^ok 1 - none$'

qemu_run pc 64M 1 "dvmmtest=nosuch"
expect "unknown check is not ok" 3 '^not ok 1 - nosuch # unknown check'

qemu_run pc 64M 1 "dvmmtest=boot,fault"
expect "exception reported, exit status 1" 3 '^# exception: vector 14 \(#PF\).*cr2 0x7ffffffff000'

qemu_run pc 64M 1 "dvmmtest=reset"
expect "i8042 reset ends the VM" 0 '^# reset: writing 0xfe'

tap_done
