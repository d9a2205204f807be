#!/bin/bash
# dmemfs for real: the project's dmemfs module (kernel-support/dmemfs/) and
# patched KVM in a nested KVM host booted with memmap=4G$4G
# (DVMM_NESTED_DMEM, tests/lib/nested.sh), and dvmm's guest RAM on it:
#   - the module: load refused on ranges that have struct page, are not RAM
#     in the firmware e820 or are not 1 GiB aligned; mount, statfs, one
#     dpage size system-wide; allocation, zeroing and freeing seen through
#     the debugfs counters; mprotect, partial munmap and mremap refused;
#     dmem/inject: AO at inject, AR on the next access (dmemfs-probe);
#   - hostcheck's dmemfs rows are OK on that host;
#   - dvmm: the test guest's mem check on 1 GiB dpages, 2 and 4 GiB guests
#     (one and two RAM regions), KVM mapping them at 1 GiB (pages_1g), PUD
#     faults only, RAM zero at first boot;
#   - virtio-blk with its disk on a dmemfs guest (buffered I/O), data checked;
#   - a dpage failure while the guest runs: dmem/inject -> AO in the guest,
#     its next access -> KVM's AR, reboot without the whole dpage, mem check
#     on what is left, one JSON line per step;
#   - the saving: MemTotal of the same nested host with and without the
#     reservation; reserved - (drop in MemTotal) within 10 % of the 16 MiB
#     of struct page per GiB that the reservation does not need.
# Without QEMU (so without the nested host) it skips, as the KVM tests do.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh

DMEM_GIB=4
# Both boots of the saving measurement pin the early hash tables
# (tests/lib/nested.sh, NESTED_PINNED_HASHES), so only struct page differs.
export DVMM_NESTED_APPEND="$NESTED_PINNED_HASHES${DVMM_NESTED_APPEND:+ $DVMM_NESTED_APPEND}"

# A host with its own dmemfs and /dev/kvm runs this here.  Elsewhere it runs
# in the nested KVM host, even where /dev/kvm is usable: that host's kernel
# side (dmemfs.ko, the patched kvm.ko) is the project's own.
if [ -z "${DVMM_NESTED:-}" ] && kvm_usable && grep -qw dmemfs /proc/filesystems; then
    need_kvm "$@"
else
    # Build the kernel side first (a failure is a test failure, not a
    # skip), and measure MemTotal of the same nested host without the
    # reservation, for the saving measured inside.
    if [ -z "${DVMM_NESTED:-}" ] && [ -z "$(nested_unavailable_reason)" ]; then
        if ! kbuild_out=$(kernel-support/kernel-build 2>&1 >/dev/null); then
            echo "1..1"
            tap_not_ok "kernel-support/kernel-build: patched kvm.ko and dmemfs.ko for the nested host" \
                "$(printf '%s\n' "$kbuild_out" | tail -n 20)"
            exit 1
        fi
        ref_err=$(mktemp "${TMPDIR:-/tmp}/dmemfs-ref.XXXXXX")
        if ref_kb=$(nested_memtotal_plain "$DMEM_GIB" 2>"$ref_err"); then
            export DVMM_DMEM_REF_MEMTOTAL_KB=$ref_kb
        else
            DVMM_DMEM_REF_ERROR="reference boot without the reservation failed: $(tail -n 3 "$ref_err")"
            export DVMM_DMEM_REF_ERROR
        fi
        rm -f "$ref_err"
    fi
    export DVMM_NESTED_DMEM=${DMEM_GIB}G
    need_nested_kvm "this host's kernel has no dmemfs" "$@"
fi

# From here on: a host with /dev/kvm and dmemfs (the nested one, or a real one).
{ mkdir -p "$(dvmm_build_dir)/tests" &&
    DT_OUT=$(mktemp -d "$(dvmm_build_dir)/tests/dmemfs.XXXXXX"); } || tap_bail_out "mktemp failed"
. tests/lib/dvmm-test.sh
. tests/lib/bg-proc.sh
. tests/lib/mce-encoding.sh
dt_require_build

DEBUGFS=/sys/kernel/debug
DMEM=$DEBUGFS/dmem
PROBE=$DT_BUILD/tests/dmemfs-probe
MNT=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-dmemfs.XXXXXX") || tap_bail_out "mktemp failed"
WAIT_S=${DVMM_DMEMFS_WAIT:-300}
GiB=1073741824

dm_cleanup() {
    umount "$MNT" 2>/dev/null
    rmdir "$MNT" 2>/dev/null
}
trap dm_cleanup EXIT

tap_diag "running on $KVM_WHERE; logs in $DT_OUT"
dm_stat() { cat "$DMEM/$1" 2>/dev/null; }

# dm_probe CMD: dmemfs-probe's PASS/FAIL lines, one test point each.
dm_probe() {
    local line any=""
    while IFS= read -r line; do
        any=1
        case $line in
            PASS\ *) tap_ok "probe $1: ${line#PASS }" ;;
            FAIL\ *) tap_not_ok "probe $1: ${line#FAIL }" ;;
            *) tap_diag "$line" ;;
        esac
    done < <(run_with_timeout "$WAIT_S" "$PROBE" "$1" "$MNT" 2>&1)
    [ -n "$any" ] || tap_not_ok "probe $1 ran" "$PROBE printed nothing"
}

###########################################################################
# The module
###########################################################################

if grep -qw dmemfs /proc/filesystems; then
    tap_ok "dmemfs is registered in /proc/filesystems"
else
    tap_not_ok "dmemfs is registered in /proc/filesystems" "$(dmesg | grep -i dmem | tail -n 5)"
fi
dt_region=$(dmesg | grep -o 'dmem: register region \[[^]]*\] on node [0-9]*' | tail -n 1)
if [ -n "$dt_region" ]; then
    tap_ok "the module registered its region: $dt_region"
else
    tap_not_ok "the module registered its region" "$(dmesg | grep -i dmem | tail -n 5)"
fi

# Load refusals: only in the nested host, whose module this test may
# unload (nothing is mounted yet) and load again.
KO=${DVMM_NESTED_KDIR:-}/dmemfs.ko
if [ -z "${DVMM_NESTED:-}" ] || [ ! -f "$KO" ]; then
    tap_skip "load refusals run in the nested KVM host only (they unload dmemfs)" 4
elif ! busybox rmmod dmemfs 2>"$DT_OUT/rmmod.err"; then
    tap_not_ok "rmmod dmemfs before the load checks" "$(cat "$DT_OUT/rmmod.err")"
    tap_skip "dmemfs could not be unloaded" 3
else
    # dm_refused DESC PARAM REGEX: insmod fails and the kernel log says why.
    dm_refused() {
        local before after
        before=$(dmesg | wc -l)
        if busybox insmod "$KO" "$2" 2>/dev/null; then
            busybox rmmod dmemfs
            tap_not_ok "$1" "insmod $2 succeeded"
            return
        fi
        after=$(dmesg | tail -n +"$((before + 1))")
        if printf '%s\n' "$after" | grep -Eq -- "$3"; then
            tap_ok "$1"
            printf '%s\n' "$after" | grep -E -- "$3" | head -n 1 | tap_diag -
        else
            tap_not_ok "$1" "no kernel line /$3/ after insmod $2:" "$after"
        fi
    }
    dm_refused "load refused on RAM that has struct page (1 GiB at 1 GiB)" \
        region=1G@0x40000000 "refused: .* has a struct page"
    dm_refused "load refused on a range that is not RAM in the firmware e820 (the PCI hole)" \
        region=1G@0xc0000000 "refused: .* is not RAM in the firmware e820"
    dm_refused "load refused on a range that is not 1 GiB aligned" \
        region=1G@0x100200000 "refused: start and size must be 1 GiB aligned"
    tap_check "load accepted on the memmap= reservation again" \
        busybox insmod "$KO" "region=${DMEM_GIB}G@0x100000000"
fi

tap_check "dmemfs-setup mounts dmemfs with 1 GiB dpages" \
    kernel-support/dmemfs-setup -o pagesize=1G "$MNT"
tap_is "$(stat -f -c '%t %s' "$MNT")" "2ace90c6 $GiB" "statfs: magic 0x2ace90c6, block size 1 GiB"
tap_is "$(awk -v m="$MNT" '$2 == m && $3 == "dmemfs" { print $4 }' /proc/mounts)" \
    "rw,relatime,pagesize=40000000" "/proc/mounts shows pagesize in hex"
mkdir -p "$MNT.2m"
if mount -t dmemfs -o pagesize=2M none "$MNT.2m" 2>"$DT_OUT/mount2m.err"; then
    umount "$MNT.2m"
    tap_not_ok "a second mount with pagesize=2M is refused while 1G is in use"
else
    tap_ok "a second mount with pagesize=2M is refused while 1G is in use"
    dmesg | grep -i "pagesize.*refused" | tail -n 1 | tap_diag -
fi
rmdir "$MNT.2m"
tap_is "$(dm_stat dpage_shift) $(dm_stat total_dpages) $(dm_stat free_dpages)" "30 $DMEM_GIB $DMEM_GIB" \
    "debugfs: dpage_shift 30, total and free dpages $DMEM_GIB"

dm_probe map
dm_probe refuse

# hostcheck's dmemfs rows on a host that has it.
"$DT_DVMM" hostcheck >"$DT_OUT/hostcheck.out" 2>&1
for row in dmemfs dmem-cmdline dmemfs-mounts dmem-pages dmem-memmap; do
    line=$(grep -E "^OK +$row " "$DT_OUT/hostcheck.out")
    if [ -n "$line" ]; then
        tap_ok "hostcheck: $line"
    else
        tap_not_ok "hostcheck: $row is OK" "$(grep -E " $row " "$DT_OUT/hostcheck.out")"
    fi
done

###########################################################################
# dvmm's guest RAM on 1 GiB dpages
###########################################################################

DM_SETS=(--set memory.backend=dmemfs --set "memory.path=$MNT")

# dm_mem NAME GIB: the mem check (with RAM zero at first boot) on a GIB GiB
# guest.  No debug-exit port, so the VM stays up after the check, with its
# mappings, while KVM's pages_1g is read; then `quit`.
dm_mem() {
    local name=$1 gib=$2 pid rc="" pud0 pmd0 pte0 p1g sock
    pud0=$(dm_stat faults_pud) pmd0=$(dm_stat faults_pmd) pte0=$(dm_stat faults_pte)
    sock=$(mktemp -u "${TMPDIR:-/tmp}/dvmm-dmemfs.XXXXXX.sock")
    : >"$DT_OUT/$name.out"
    "$DT_DVMM" run "$DT_OUT/dm.ini" --set vm.name="$name" --set vm.memory="${gib}G" \
        --set "console.output=$DT_OUT/$name.out" --set "control.socket=$sock" "${DM_SETS[@]}" \
        </dev/null >/dev/null 2>"$DT_OUT/$name.err" &
    pid=$!
    if bg_wait_line "$pid" rc "$DT_OUT/$name.out" '^(not )?ok 1 - mem' "$WAIT_S" &&
        grep -q '^ok 1 - mem' "$DT_OUT/$name.out"; then
        tap_ok "$gib GiB guest on dmemfs: the mem check passes"
    else
        tap_not_ok "$gib GiB guest on dmemfs: the mem check passes" "dvmm exit: ${rc:-running}" \
            "console:" "$(tail -n 15 "$DT_OUT/$name.out")" "stderr:" "$(tail -n 15 "$DT_OUT/$name.err")"
    fi
    p1g=$(cat "$DEBUGFS/kvm/pages_1g" 2>/dev/null)
    "$DT_DVMM" ctl "$sock" quit >/dev/null 2>&1 || kill "$pid" 2>/dev/null
    bg_wait_exit "$pid" rc "$WAIT_S" || { kill -9 "$pid"; wait "$pid"; }
    grep -E '^# mem:' "$DT_OUT/$name.out" | tap_diag -
    dt_console_has "$name" '^# mem: [0-9]+ pages from 1 MiB up checked for zero, 0 not zero' \
        "$gib GiB guest on dmemfs: guest RAM reads as zero at first boot"
    tap_is "${p1g:-none}" "$gib" "$gib GiB guest: KVM maps it with $gib 1 GiB pages (debugfs kvm/pages_1g)"
    tap_is "$(( $(dm_stat faults_pud) - pud0 )) $(( $(dm_stat faults_pmd) - pmd0 )) $(( $(dm_stat faults_pte) - pte0 ))" \
        "$gib 0 0" "$gib GiB guest: dmemfs mapped it with $gib PUD faults, no PMD or PTE faults"
}

cat >"$DT_OUT/dm.ini" <<INI
[vm]
vcpus = 1
kernel = $DT_GUEST
cmdline = dvmmtest=mem mem_zero=1
[console]
input = no
[debug-exit]
enabled = no
INI
dm_mem dmem-2g 2
dm_mem dmem-4g 4
tap_is "$(dm_stat free_dpages)" "$DMEM_GIB" "every dpage is free again after the guests exit"

# virtio-blk: cache=none cannot use O_DIRECT into pfn mappings; dvmm falls
# back to buffered I/O and says so.
# The image lies on a local file system: 9p's zero-copy virtio transport
# (the nested host's view of the build tree) pins the user buffer with
# get_user_pages, which fails on pfn mappings (EFAULT -> IOERR).
name=dmem-blk
img=$(mktemp "${TMPDIR:-/tmp}/dvmm-dmem-blk.XXXXXX.img")
truncate -s 4M "$img"
dvmm_guest "$name" 2 2G "blk blk_queues=2 blk_serial=dmem-blk blk_sig=d0a0d2e2" \
    "${DM_SETS[@]}" --set "disk.0.path=$img" --set disk.0.queues=2 \
    --set disk.0.serial=dmem-blk --set disk.0.cache=none -v
dt_guest_passed "$name" "virtio-blk on a dmemfs guest (2 vCPUs, 2 queues): the blk check passes"
if grep -q "cannot take O_DIRECT, using buffered I/O" "$DT_OUT/$name.err"; then
    tap_ok "cache=none on dmemfs: dvmm says it uses buffered I/O"
else
    tap_not_ok "cache=none on dmemfs: dvmm says it uses buffered I/O" "$(tail -n 5 "$DT_OUT/$name.err")"
fi
tap_check "virtio-blk on dmemfs: the image holds the signature and every queue's pattern" \
    python3 tests/lib/blk-image.py "$img" 2 d0a0d2e2
rm -f "$img"

###########################################################################
# A dpage failure while the guest runs
###########################################################################

# The victim lies in the second GiB (dpage 1 of the RAM file): the first
# holds the guest's own image, and the whole dpage is lost.
VICTIM=0x40003000 AO_GPA=0x40004000 UNIT=0x40000000
name=dmem-fail
M_CON=$DT_OUT/$name.out M_LOG=$DT_OUT/$name.jsonl M_ERR=$DT_OUT/$name.err
SOCK=$(mktemp -u "${TMPDIR:-/tmp}/dvmm-dmemfs.XXXXXX.sock")
: >"$M_CON"
: >"$M_LOG"
cat >"$DT_OUT/$name.ini" <<INI
[vm]
name = $name
vcpus = 1
memory = 2G
kernel = $DT_GUEST
cmdline = dvmmtest=mce,mem mce_victim=$VICTIM mce_phases=ao,retouch mce_reboot=1 mce_unit=$UNIT mce_timeout=$WAIT_S
on_reset = reboot
[console]
input = no
output = $M_CON
[memory]
backend = dmemfs
path = $MNT
[mce]
log = $M_LOG
[control]
socket = $SOCK
[debug-exit]
enabled = no
INI
ao0=$(dm_stat sigbus_ao) ar0=$(dm_stat sigbus_ar)
timeout --kill-after=10 "$((WAIT_S * 3))" "$DT_DVMM" run "$DT_OUT/$name.ini" \
    </dev/null >"$DT_OUT/$name.stdout" 2>"$M_ERR" &
M_PID=$! M_RC=

# step_ok DESCRIPTION REGEX (bg-proc.sh): ok when the console gets a
# matching line.
bg_watch M_PID M_RC M_CON M_ERR WAIT_S
# dm_logged DESCRIPTION JQ: the MCE log has a line satisfying JQ.
dm_logged() {
    if jq -e -s "any(.[]; $2)" "$M_LOG" >/dev/null 2>&1; then
        tap_ok "$1"
    else
        tap_not_ok "$1" "jq: $2" "MCE log:" "$(cat "$M_LOG")"
    fi
}

step_ok "the guest waits for an AO on GPA $AO_GPA" "^# mce: victim gpa $AO_GPA kind ao"
phys=$(awk '/ index 1( |$)/ && !/ error/ { print $4; exit }' "$DMEM/dpages")
tap_diag "dmem/dpages:" "$(cat "$DMEM/dpages")"
if [ -z "$phys" ]; then
    tap_not_ok "dmem/dpages names the dpage behind GPA $UNIT" "$(cat "$DMEM/dpages")"
else
    inj=$(printf '0x%x' $(( phys + (AO_GPA - UNIT) )))
    if echo "$inj" >"$DMEM/inject" 2>"$DT_OUT/inject.err"; then
        tap_ok "dmem/inject $inj (GPA $AO_GPA, dpage at $phys)"
    else
        tap_not_ok "dmem/inject $inj" "$(cat "$DT_OUT/inject.err")"
    fi
fi
# The encoding is the one the guest's CPU vendor calls for (the nested
# host's guests are AMD: the AO is a deferred error the guest polls for).
enc=$(mce_guest_encoding "$M_CON")
mce_expect "${enc:-intel}" || mce_expect intel
tap_diag "guest: $(grep -m1 '^# mce: CPU vendor' "$M_CON")"
step_ok "the dpage failure reaches the guest as an AO ($MCE_ENC encoding) naming the dpage's GPA" \
    "$(mce_delivered_re ao "$UNIT")"
dm_logged "MCE log: the module's AO, the whole 1 GiB dpage at GPA $UNIT, injected" \
    ".kind == \"AO\" and .gpa == \"$UNIT\" and .page_size == $GiB and .injected == true"
step_ok "the guest's next access: KVM's AR reaches the guest as an AR machine check ($MCE_ENC encoding)" \
    "$(mce_delivered_re ar "$UNIT")"
dm_logged "MCE log: the AR from the access (kernel-sent, no sent_ns), injected" \
    ".kind == \"AR\" and .gpa == \"$UNIT\" and .injected == true and (has(\"sent_ns\") | not)"
step_ok "after the reboot the whole dpage is absent from e820" \
    "^ok - mce victim pages absent from e820 after reboot"
step_ok "the mem check passes on the RAM that is left" "^ok [0-9]+ - mem"
# No debug-exit port: dvmm stays up after the guest's checks, to be asked.
# Every 4 KiB page of the dpage, [0x40000000, 0x80000000).
if out=$("$DT_DVMM" ctl "$SOCK" poisoned 2>"$DT_OUT/poisoned.err") &&
    printf '%s' "$out" | jq -e '.count == 262144 and .pages[0] == "0x40000000" and
        .pages[-1] == "0x7ffff000"' >/dev/null 2>&1; then
    tap_ok "dvmm ctl poisoned lists all 262144 pages of the dpage at $UNIT"
else
    tap_not_ok "dvmm ctl poisoned lists all 262144 pages of the dpage at $UNIT" \
        "$(printf '%s' "$out" | head -c 300)" "$(cat "$DT_OUT/poisoned.err")"
fi
"$DT_DVMM" ctl "$SOCK" quit >/dev/null 2>&1
bg_wait_exit "$M_PID" M_RC "$WAIT_S" || { kill "$M_PID"; wait "$M_PID"; M_RC=$?; }
tap_is "$M_RC" 0 "dvmm exits 0 when asked to quit"
grep -E '^# mce: e820' "$M_CON" | tail -n 4 | tap_diag -
tap_is "$(( $(dm_stat sigbus_ao) - ao0 )) $(( $(dm_stat sigbus_ar) >= ar0 + 1 ))" "1 1" \
    "the module sent one AO at inject and an AR on the access"
tap_diag "MCE log:"
tap_diag - <"$M_LOG"
rm -f "$SOCK"

# The same for a plain process: AO and AR with the original's si_addr rule.
dm_probe poison

###########################################################################
# The saving
###########################################################################

if [ -z "${DVMM_NESTED:-}" ]; then
    tap_skip "struct page saving is measured in the nested KVM host (two boots)"
elif [ -z "${DVMM_DMEM_REF_MEMTOTAL_KB:-}" ]; then
    tap_not_ok "struct page saving measured" "${DVMM_DMEM_REF_ERROR:-no reference boot}"
else
    now=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
    reserved=$(( DMEM_GIB * 1048576 ))
    drop=$(( DVMM_DMEM_REF_MEMTOTAL_KB - now ))
    per_gib=$(( (reserved - drop) / DMEM_GIB ))
    tap_diag "MemTotal: $DVMM_DMEM_REF_MEMTOTAL_KB kB without, $now kB with memmap=${DMEM_GIB}G (same -m, $NESTED_PINNED_HASHES)"
    tap_diag "reserved $reserved kB, MemTotal dropped $drop kB: saving $((reserved - drop)) kB, $per_gib kB per GiB (struct page for 1 GiB: 16384 kB)"
    if [ "$per_gib" -ge 14746 ] && [ "$per_gib" -le 18022 ]; then
        tap_ok "struct page saving: $per_gib kB per GiB, within 10 % of 16384 kB"
    else
        tap_not_ok "struct page saving within 10 % of 16384 kB per GiB" "measured $per_gib kB per GiB"
    fi
fi

tap_done
