#!/bin/bash
# Debian's stock kernel booted by dvmm, to user space: the Linux boot path
# end to end.  The console must show the kernel, the exact command line dvmm
# passed, an e820 map equal to the one `dvmm check` prints and dvmm's MP
# table with every vCPU; the guest kit's initramfs (kernel-support/guest/)
# must run /init with every vCPU online, find vda with one virtio-blk queue
# per vCPU, write 1 MiB to it and read the same bytes back, and reset the VM
# (on_reset = exit, so dvmm exits 0).
# Where it runs: a /dev/kvm on VT-x/AMD-V; elsewhere (no /dev/kvm, or PVM's,
# where a stock kernel stops in KVM's instruction emulator) the nested KVM
# host, where the whole boot takes 20-40 s.
# Knobs: DVMM_LINUX_SMOKE_CMDLINE (the guest command line before the kit's
# dvmm.* options), DVMM_LINUX_SMOKE_MEM (default 3584M: RAM on both sides of
# the 32-bit hole), DVMM_LINUX_SMOKE_VCPUS (default 2),
# DVMM_LINUX_SMOKE_TIMEOUT (s, 240).
# One compound command: bash parses it whole before running, so editing
# this file while a run reads it cannot derail that run.
{
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh

build=$(dvmm_build_dir) || tap_bail_out "cannot create the build directory"
dvmm=$build/dvmm
mem=${DVMM_LINUX_SMOKE_MEM:-3584M}
vcpus=${DVMM_LINUX_SMOKE_VCPUS:-2}
limit=${DVMM_LINUX_SMOKE_TIMEOUT:-240}
# The nested host's own budget: its boot and the kernel fetch come on top of
# dvmm's limit, and a loaded machine needs the margin (the limit below is
# cut to fit whatever is left, so the test reports instead of being killed).
export DVMM_NESTED_TIMEOUT=${DVMM_NESTED_TIMEOUT:-600}

# Fetching and packing happen before need_kvm, on the fast side: inside the
# nested host (TCG) the kit's module lookups alone take minutes, so the
# initramfs built here is passed in.
if [ -z "${DVMM_NESTED:-}" ] || [ -z "${DVMM_LINUX_SMOKE_INITRD:-}" ]; then
    linux_kernel_fetch >&2 ||
        tap_skip_all "Debian's linux-image-amd64 cannot be fetched with apt here"
    kit=$(kernel-support/guest/mkinitramfs 2>&1) ||
        tap_bail_out "cannot build the Linux guest kit (needs busybox-static, cpio, gcc -static): $(tail -n 3 <<<"$kit")"
    DVMM_LINUX_SMOKE_INITRD=$(sed -n 's/^INITRD=//p' <<<"$kit")
    export DVMM_LINUX_SMOKE_INITRD
fi
initrd=$DVMM_LINUX_SMOKE_INITRD

need_kvm_stock_guest "$@"
linux_kernel_fetch >&2 || tap_bail_out "Debian's kernel is not in $build/linux"

# Inside the nested host, leave time to report before it is killed (a
# loaded machine can spend minutes just booting the nested host).
if [ -n "${DVMM_NESTED_DEADLINE:-}" ]; then
    left=$((DVMM_NESTED_DEADLINE - $(date +%s) - 30))
    [ "$left" -lt "$limit" ] && limit=$((left > 10 ? left : 10))
fi

tap_plan 9
tap_diag "running on $KVM_WHERE; kernel $LINUX_KVER, $vcpus vCPUs, $mem RAM, a $vcpus-queue disk, dvmm limit $limit s"

out=$build/tests/linux-smoke
{ rm -rf "$out" && mkdir -p "$out"; } || tap_bail_out "cannot create $out"
# The console and the disk go to local storage: dvmm writes the console a
# byte at a time, and in the nested host the build directory is a 9p share,
# where each byte would be a round trip to QEMU.
tmp=$(mktemp -d) || tap_bail_out "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
truncate -s 64M "$tmp/disk.img" || tap_bail_out "cannot create $tmp/disk.img"
cmdline=${DVMM_LINUX_SMOKE_CMDLINE:-"console=ttyS0 earlyprintk=serial,ttyS0,115200 reboot=k panic=-1"}
cmdline="$cmdline dvmm.queues=cpus dvmm.blkio=1"
cat >"$out/linux-smoke.ini" <<EOF
[vm]
name = linux-smoke
vcpus = 1
memory = $mem
kernel = $LINUX_VMLINUZ
initrd = $initrd
cmdline = "$cmdline"
on_reset = exit

[console]
output = $tmp/console.log
input = no

[control]
enabled = no

[disk.0]
path = $tmp/disk.img
serial = dvmm-smoke
EOF
# The vCPU count goes through --set on purpose: it is part of the CLI
# contract; the disk's queue count follows it (dvmm's default).
sets=(--set "vm.vcpus=$vcpus")

# 1: dvmm's own view of the layout, which the guest must see unchanged.
if [ ! -x "$dvmm" ]; then
    tap_not_ok "dvmm check accepts the generated config" "$dvmm is not built (make BUILD=$build)"
    check=""
elif check=$("$dvmm" check "$out/linux-smoke.ini" "${sets[@]}" 2>&1); then
    tap_ok "dvmm check accepts the generated config"
else
    tap_not_ok "dvmm check accepts the generated config" "$check"
fi

# The kernel prints "BIOS-e820: [mem 0x...-0x...] usable": same inclusive
# bounds as dvmm check's "e820: [0x...-0x...] RAM", other type names.
expected=$(sed -n 's/^e820: \[\(0x[0-9a-f]*\)-\(0x[0-9a-f]*\)\] \(.*\)$/\1 \2 \3/p' <<<"$check" |
    while read -r a b t; do
        case $t in
            RAM) t=usable ;;
            ACPI) t="ACPI data" ;;
        esac
        echo "BIOS-e820: [mem $a-$b] $t"
    done)
e820_source="dvmm check"
if [ -z "$expected" ]; then
    # dvmm check gave no map: derive it from the boot contract instead.
    e820_source="the boot contract (dvmm check printed no e820 lines)"
    bytes=$(numfmt --from=iec "$mem")
    low=$((bytes < 3 << 30 ? bytes : 3 << 30))
    expected=$(printf 'BIOS-e820: [mem 0x%016x-0x%016x] usable\n' 0 $((0x9fc00 - 1))
               printf 'BIOS-e820: [mem 0x%016x-0x%016x] reserved\n' 0x9fc00 $((0x100000 - 1))
               printf 'BIOS-e820: [mem 0x%016x-0x%016x] usable\n' 0x100000 $((low - 1))
               [ "$bytes" -gt $((3 << 30)) ] &&
                   printf 'BIOS-e820: [mem 0x%016x-0x%016x] usable\n' $((4 << 30)) $((bytes + (1 << 30) - 1)))
fi

# 2: the boot itself, to the kit's GUEST-DONE and the reset.
start=$(date +%s.%N)
run_with_timeout "$limit" "$dvmm" run "$out/linux-smoke.ini" "${sets[@]}" \
    </dev/null >"$out/dvmm.stdout" 2>"$out/dvmm.stderr"
rc=$?
cp "$tmp/console.log" "$out/console.log" 2>/dev/null
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
console=$(tr -d '\r' <"$out/console.log" 2>/dev/null)

if [ "$rc" -eq 0 ]; then
    tap_ok "dvmm exits 0 after the guest's reset (on_reset = exit)"
else
    tap_not_ok "dvmm exits 0 after the guest's reset (on_reset = exit)" \
        "exit status $rc$([ "$rc" -eq 124 ] && echo " (killed after $limit s)")" \
        "$(tail -n 15 "$out/dvmm.stderr")" "console (last lines):" \
        "$(grep -v '^\s*$' <<<"$console" | tail -n 10)"
fi

if grep -q 'Linux version' <<<"$console"; then
    tap_ok "console shows the kernel banner"
    tap_diag "$(grep -m1 -o 'Linux version.*' <<<"$console" | cut -c1-100)"
else
    tap_not_ok "console shows the kernel banner" "console (last lines):" \
        "$(tail -n 10 <<<"$console")" "dvmm stderr:" "$(tail -n 10 "$out/dvmm.stderr")"
fi

got_cmdline=$(grep -m1 -o 'Command line: .*' <<<"$console")
tap_is "$got_cmdline" "Command line: $cmdline" "kernel saw exactly the command line dvmm passed"

got_e820=$(grep -o 'BIOS-e820: .*' <<<"$console" | sed 's/ *$//')
if [ -n "$expected" ] && [ "$got_e820" = "$expected" ]; then
    tap_ok "kernel's BIOS-e820 map equals $e820_source ($(wc -l <<<"$expected") ranges)"
else
    tap_not_ok "kernel's BIOS-e820 map equals $e820_source" "kernel:" "${got_e820:-(none)}" \
        "expected:" "${expected:-(none)}"
fi

# The kit's /init: its first line, then its disk checks.
marker=$(grep -m1 -o 'GUEST-UP .*' <<<"$console")
if [ -n "$marker" ] && grep -q "cpus=$vcpus\$" <<<"$marker"; then
    tap_ok "initramfs /init ran with all $vcpus vCPUs online"
    tap_diag "$marker"
else
    tap_not_ok "initramfs /init ran with all $vcpus vCPUs online" "marker: ${marker:-(none)}"
fi
grep -m1 -o 'GUEST-BLK vda.*' <<<"$console" | tap_diag -
if grep -q "GUEST-BLK-QUEUES ok $vcpus\$" <<<"$console"; then
    tap_ok "virtio-blk vda has one queue per vCPU ($vcpus)"
else
    tap_not_ok "virtio-blk vda has one queue per vCPU ($vcpus)" \
        "$(grep -E 'GUEST-(BLK|MODULE)' <<<"$console" || echo "no GUEST-BLK lines")"
fi
if grep -q 'GUEST-BLK-IO ok' <<<"$console"; then
    tap_ok "the guest wrote 1 MiB to vda and read the same bytes back"
else
    tap_not_ok "the guest wrote 1 MiB to vda and read the same bytes back" \
        "$(grep -E 'GUEST-BLK' <<<"$console" || echo "no GUEST-BLK lines")"
fi

# How far it got, for the log: the last milestone the console shows.
reached="nothing on the console"
for m in 'Linux version' 'Command line:' 'smpboot: Total of' 'Freeing unused kernel' \
         'Run /init' 'GUEST-UP' 'GUEST-BLK-IO' 'GUEST-DONE' 'reboot: Restarting'; do
    grep -q "$m" <<<"$console" && reached=$m
done
tap_diag "reached '$reached' in $took s; dvmm exit status $rc"
tap_diag "last console line: $(grep -v '^\s*$' <<<"$console" | tail -n 1 | cut -c1-120)"

# The MP table dvmm wrote is what tells the kernel how many CPUs exist.
if grep -q 'Intel MultiProcessor Specification v1.4' <<<"$console" &&
   grep -q "Allowing $vcpus CPUs" <<<"$console"; then
    tap_ok "kernel found dvmm's MP table with $vcpus CPUs"
else
    tap_not_ok "kernel found dvmm's MP table with $vcpus CPUs" \
        "$(grep -E 'MultiProcessor|MPTABLE|Allowing .* CPUs|smpboot' <<<"$console" | head -n 5)"
fi
tap_done
exit
}
