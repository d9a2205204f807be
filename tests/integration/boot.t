#!/bin/bash
# dvmm boots the test guest through the vmlinux (ELF64) path with 1, 2 and 4
# vCPUs and 64 MiB, 1 GiB and 4 GiB of RAM (each count and size at least
# once, 4 vCPUs with 4 GiB together); the guest checks its e820 map, command
# line, every RAM page and that every AP starts.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh
need_kvm "$@"
. tests/lib/dvmm-test.sh
dt_require_build

tap_plan 13
tap_diag "running on $KVM_WHERE"
# Every vCPU count with a small guest, then the large memory sizes.  Large
# guests use THP: in the nested KVM host every 4 KiB fault is an emulated
# nested-paging exit, and 2 MiB pages cut a multi-minute mem check to
# seconds.  The 64 MiB runs keep the default 4 KiB path.
for run in 1:64M:no 2:64M:no 4:64M:no 2:1G:yes 1:4G:yes 4:4G:yes; do
    IFS=: read -r vcpus mem thp <<<"$run"
    name="boot-${vcpus}cpu-$mem"
    dvmm_guest "$name" "$vcpus" "$mem" "boot,mem,smp expect_mem=$mem expect_cpus=$vcpus" \
        --set "memory.thp=$thp"
    dt_guest_passed "$name" "$vcpus vCPU(s), $mem: boot, mem and smp checks pass"
    grep -E '^# (mem|smp):' "$DT_OUT/$name.out" | tap_diag -
done

# RAM above 4 GiB: e820 must show it and the mem check must have touched it.
name=boot-1cpu-4G
dt_console_has "$name" '^# e820: 0x0*100000000 ' "4 GiB guest: e820 has RAM at 4 GiB"
dt_console_has "$name" '^# mem: [0-9]+ pages' "4 GiB guest: mem check reports its page count"

# The exit status contract: debug-exit 0 gives 0, guest reset with
# on_reset=exit gives 0 and a clean exit.
dvmm_guest reset 1 64M reset
tap_is "$DT_RC" 0 "guest reset through i8042 ends dvmm with status 0 (on_reset = exit)"

name=unknown-check
dvmm_guest "$name" 1 64M no-such-check
tap_is "$DT_RC" 3 "a failing guest check writes 1 to debug-exit: dvmm exits 2*1+1 = 3"
# A guest crash: exit 1 with the registers and the bytes at RIP.
name=triple
dvmm_guest "$name" 1 64M triple
tap_is "$DT_RC" 1 "guest triple fault: dvmm exits 1"
if grep -q 'triple fault' "$DT_OUT/$name.err" && grep -q '^  rip ' "$DT_OUT/$name.err"; then
    tap_ok "triple fault: the report names it and dumps the registers"
else
    tap_not_ok "triple fault: the report names it and dumps the registers" "$(cat "$DT_OUT/$name.err")"
fi
if grep -q 'this is the reset state' "$DT_OUT/$name.err"; then
    tap_skip "triple fault: the bytes at RIP: KVM on AMD (SVM) resets the vCPU on a shutdown, so RIP is the reset vector, outside RAM"
elif grep -Eq '^  code at rip: ([0-9a-f]{2} ){16}' "$DT_OUT/$name.err"; then
    tap_ok "triple fault: the 16 instruction bytes at RIP are printed"
else
    tap_not_ok "triple fault: the 16 instruction bytes at RIP are printed" "$(cat "$DT_OUT/$name.err")"
fi
tap_done
