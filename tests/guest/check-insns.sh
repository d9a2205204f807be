#!/bin/sh
# Fails when the test guest contains instructions that KVM's instruction
# emulator cannot run (the platform dvmm is developed on): SSE/AVX, xsave,
# cmpxchg16b, popcnt, int3, and endbr (CET) which it does not know either.
# Each code section is disassembled in its own mode so data-free 16/32-bit
# code is not misread as 64-bit.
set -eu
elf=$1
: "${OBJDUMP:=objdump}"
bad='xmm|ymm|zmm|popcnt|xsave|xrstor|cmpxchg16b|int3|endbr'
status=0
for spec in .text:x86-64 .text32:i386 .tramp16:i8086; do
	sec=${spec%%:*}
	mode=${spec#*:}
	out=$("$OBJDUMP" -d -M "$mode" -j "$sec" "$elf") || {
		echo "check-insns: objdump failed on $sec of $elf" >&2
		exit 1
	}
	if printf '%s\n' "$out" | grep -E "$bad" >&2; then
		echo "check-insns: $elf section $sec uses instructions KVM's emulator rejects (above)" >&2
		status=1
	fi
done
exit $status
