#!/bin/sh
# Fails when the test guest contains instructions that KVM's instruction
# emulator cannot run (the platform dvmm is developed on): SSE/AVX, xsave,
# cmpxchg16b, popcnt, int3, and endbr (CET) which it does not know either.
# Each code section is disassembled in its own mode so data-free 16/32-bit
# code is not misread as 64-bit.
set -eu
elf=$1
: "${OBJDUMP:=objdump}"
: "${NM:=nm}"
bad='xmm|ymm|zmm|popcnt|xsave|xrstor|cmpxchg16b|int3|endbr'
status=0
# The trampoline ends in data (its GDT pointer), which must not be read as
# instructions.
gdtr=$("$NM" "$elf" | awk '$3 == "tramp_gdtr" { print "0x" $1 }')
[ -n "$gdtr" ] || { echo "check-insns: no tramp_gdtr symbol in $elf" >&2; exit 1; }
for spec in .text:x86-64: .text32:i386: .tramp16:i8086:--stop-address=$gdtr; do
	sec=${spec%%:*}
	rest=${spec#*:}
	mode=${rest%%:*}
	stop=${rest#*:}
	out=$("$OBJDUMP" -d -M "$mode" -j "$sec" ${stop:+"$stop"} "$elf") || {
		echo "check-insns: objdump failed on $sec of $elf" >&2
		exit 1
	}
	if printf '%s\n' "$out" | grep -E "$bad" >&2; then
		echo "check-insns: $elf section $sec uses instructions KVM's emulator rejects (above)" >&2
		status=1
	fi
done
exit $status
