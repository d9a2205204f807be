#!/bin/bash
# Debian's stock kernel booted by dvmm: the Linux boot path end to end.
# The early console must show the kernel, the exact command line dvmm passed
# and an e820 map equal to the one `dvmm check` prints; where the kernel can
# run natively (VT-x, AMD-V, or nested SVM in the nested KVM host) it must
# reach user space in a busybox initramfs, whose /init prints a marker and
# resets the VM (on_reset = exit, so dvmm exits 0).
# Knobs: DVMM_LINUX_SMOKE_CMDLINE (the guest command line),
# DVMM_LINUX_SMOKE_MEM (default 3584M: RAM on both sides of the 32-bit
# hole), DVMM_LINUX_SMOKE_VCPUS (default 2), DVMM_LINUX_SMOKE_TIMEOUT (s, 240).
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh

build=$(dvmm_build_dir) || tap_bail_out "cannot create the build directory"
dvmm=$build/dvmm
mem=${DVMM_LINUX_SMOKE_MEM:-3584M}
vcpus=${DVMM_LINUX_SMOKE_VCPUS:-2}
limit=${DVMM_LINUX_SMOKE_TIMEOUT:-240}
# The whole file, nested boot included, stays within five minutes.
# The nested host's own budget: its boot and the kernel fetch come on top of
# dvmm's limit, and a loaded machine needs the margin (the limit below is
# cut to fit whatever is left, so the test reports instead of being killed).
export DVMM_NESTED_TIMEOUT=${DVMM_NESTED_TIMEOUT:-600}

# Fetching and packing happen before need_kvm, on the fast side.
linux_kernel_fetch >&2 ||
    tap_skip_all "Debian's linux-image-amd64 cannot be fetched with apt here"
initrd=$(tests/linux/smoke-initramfs.sh) ||
    tap_bail_out "cannot build the smoke initramfs (needs busybox-static and cpio)"

need_kvm_stock_guest "$@"

# Inside the nested host, leave time to report before it is killed (a
# loaded machine can spend minutes just booting the nested host).
if [ -n "${DVMM_NESTED_DEADLINE:-}" ]; then
    left=$((DVMM_NESTED_DEADLINE - $(date +%s) - 30))
    [ "$left" -lt "$limit" ] && limit=$((left > 10 ? left : 10))
fi

tap_plan 7
tap_diag "running on $KVM_WHERE; kernel $LINUX_KVER, $vcpus vCPUs, $mem RAM, dvmm limit $limit s"

full_boot=yes

out=$build/tests/linux-smoke
rm -rf "$out" && mkdir -p "$out" || tap_bail_out "cannot create $out"
# The console goes to local storage first: dvmm writes it a byte at a time,
# and in the nested host the build directory is a 9p share, where each byte
# would be a round trip to QEMU.
tmp=$(mktemp -d) || tap_bail_out "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
cmdline=${DVMM_LINUX_SMOKE_CMDLINE:-"console=ttyS0 earlyprintk=serial,ttyS0,115200 reboot=k panic=-1 dvmm.smoke=linux"}
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
EOF
# The vCPU count goes through --set on purpose: it is part of the CLI contract.
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

# 2: the boot itself.
# In the nested KVM host a full Linux boot under nested SVM on QEMU TCG has
# wedged the nested host's own KVM (one CI run in three: every process in
# it stopped, timeouts included).  There dvmm is stopped with SIGTERM once
# the last asserted early-boot line is on the console, and the end-of-boot
# checks are skips; DVMM_LINUX_SMOKE_FULL=1 asks for the full boot anyway.
start=$(date +%s.%N)
if [ "$full_boot" = yes ] && [ -n "${DVMM_NESTED:-}" ] && [ -z "${DVMM_LINUX_SMOKE_FULL:-}" ]; then
    full_boot="not attempted in the nested KVM host (Linux under nested SVM on QEMU TCG can wedge the nested host; DVMM_LINUX_SMOKE_FULL=1 tries it): dvmm was stopped after the early-boot lines"
    "$dvmm" run "$out/linux-smoke.ini" "${sets[@]}" \
        </dev/null >"$out/dvmm.stdout" 2>"$out/dvmm.stderr" &
    pid=$!
    end=$(($(date +%s) + limit))
    while kill -0 "$pid" 2>/dev/null; do
        if grep -q "Allowing $vcpus CPUs" "$tmp/console.log" 2>/dev/null ||
            [ "$(date +%s)" -ge "$end" ]; then
            kill -TERM "$pid" 2>/dev/null
            break
        fi
        sleep 1
    done
    # SIGTERM is a clean shutdown (vCPUs joined); KILL only if that hangs.
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
else
    run_with_timeout "$limit" "$dvmm" run "$out/linux-smoke.ini" "${sets[@]}" \
        </dev/null >"$out/dvmm.stdout" 2>"$out/dvmm.stderr"
    rc=$?
fi
cp "$tmp/console.log" "$out/console.log" 2>/dev/null
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
console=$(tr -d '\r' <"$out/console.log" 2>/dev/null)
# In the nested KVM host a full boot takes minutes (everything is emulated
# twice over); when it runs out of time the early-boot assertions below still
# hold, but the end of the boot was not seen: that is a skip, never a pass.
if [ "$full_boot" = yes ] && [ "$rc" -eq 124 ] && [ -n "${DVMM_NESTED:-}" ]; then
    full_boot="not finished within $limit s in the nested KVM host (QEMU TCG + nested SVM runs Linux ~25x slower than KVM); see the diagnostics for how far it got"
fi

if [ "$full_boot" != yes ]; then
    tap_skip "dvmm exits 0 after the guest's reset: full boot not expected ($full_boot)"
elif [ "$rc" -eq 0 ]; then
    tap_ok "dvmm exits 0 after the guest's reset (on_reset = exit)"
else
    tap_not_ok "dvmm exits 0 after the guest's reset (on_reset = exit)" \
        "exit status $rc$([ "$rc" -eq 124 ] && echo " (killed after $limit s)")" \
        "$(tail -n 15 "$out/dvmm.stderr")"
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

marker=$(grep -m1 -o 'DVMM-LINUX-BOOTED.*' <<<"$console")
if [ "$full_boot" != yes ]; then
    tap_skip "initramfs /init ran: $full_boot"
elif [ -n "$marker" ] && grep -q "cpus=$vcpus" <<<"$marker"; then
    tap_ok "initramfs /init ran with all $vcpus vCPUs online"
else
    tap_not_ok "initramfs /init ran with all $vcpus vCPUs online" "marker: ${marker:-(none)}"
fi

# How far it got, for the log: the last milestone the console shows.
reached="nothing on the console"
for m in 'Linux version' 'Command line:' 'smpboot: Total of' 'Freeing unused kernel' \
         'Run /init' 'DVMM-LINUX-BOOTED' 'reboot: Restarting'; do
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
