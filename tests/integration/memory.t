#!/bin/bash
# Guest memory backends, end to end.
#
# Part 1 (no KVM, runs here): malformed [memory] sections each end dvmm run
# with exit status 2 and one line naming the key.  gm_open runs before
# /dev/kvm is opened, so these errors come first even on a host without KVM.
#
# Part 2 (KVM: here, or in the nested KVM host): the test guest's `mem` check
# (every e820 RAM page written and read back) passes on every backend this
# host has, and /proc/PID/smaps of the running dvmm shows guest RAM on the
# page size the backend promises.  The guest runs `mem,reset` with
# on_reset=reboot so it keeps running (mem again after each reboot) while
# smaps is read; the control socket's `quit` ends it.
#
# Usage: memory.t                 both parts
#        memory.t --guest-part N  part 2 only, numbering from N+1, no plan
#                                 (how part 1's run starts it in the nested host)
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh
. tests/lib/dvmm-test.sh
. tests/lib/hugetlb.sh

# Guest RAM: small where the page size allows (4 KiB faults under nested
# KVM on TCG are slow), 1 GiB where the backend's pages are 1 GiB.
MT_RAM=256M
MT_RAM_KB=262144
MT_TIMEOUT=${MT_TIMEOUT:-300}
MT_GUEST_TESTS=15    # part 2's test count, for skips and early ends
MT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-memory.XXXXXX") || tap_bail_out "mktemp failed"

mt_cleanup() {
    hugetlb_cleanup
    rm -rf "$MT_TMP"
}
trap mt_cleanup EXIT





###########################################################################
# Part 1: config errors
###########################################################################

# mt_bad NAME DESCRIPTION REGEX [COMMAND]: `dvmm COMMAND` (default run) on
# $MT_TMP/NAME.ini, expect exit 2 and exactly one stderr line matching REGEX.
mt_bad() {
    local name=$1 desc=$2 re=$3 cmd=${4:-run} rc lines
    run_with_timeout 60 "$DT_DVMM" "$cmd" "$MT_TMP/$name.ini" \
        >"$MT_TMP/$name.out" 2>"$MT_TMP/$name.err" </dev/null
    rc=$?
    lines=$(wc -l <"$MT_TMP/$name.err")
    if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && grep -Eq -- "$re" "$MT_TMP/$name.err"; then
        tap_ok "$desc"
        tap_diag "$(cat "$MT_TMP/$name.err")"
    else
        tap_not_ok "$desc" "exit status $rc (want 2), $lines stderr line(s) (want 1)," \
            "want a line matching /$re/; stderr:" "$(head -n 10 "$MT_TMP/$name.err")"
    fi
}

# mt_ini NAME MEMORY [memory]-LINES...: a config whose [memory] section is
# the remaining arguments.
mt_ini() {
    local name=$1 mem=$2 line
    shift 2
    {
        printf '[vm]\nname = %s\nmemory = %s\nkernel = %s\ncmdline = dvmmtest=mem\n' \
            "$name" "$mem" "$DT_GUEST"
        printf '[console]\ninput = no\n[control]\nenabled = no\n[memory]\n'
        for line in "$@"; do
            echo "$line"
        done
    } >"$MT_TMP/$name.ini"
}

mt_config_tests() {
    local plain=$MT_TMP/plain-dir d free resv need memtotal
    mkdir -p "$plain"

    mt_ini bad-magic-hugetlbfs 64M "backend = hugetlbfs" "path = $plain"
    mt_bad bad-magic-hugetlbfs "hugetlbfs backend on a directory that is not hugetlbfs: exit 2, one line" \
        "memory\.path=.* is not on hugetlbfs \(f_type 0x[0-9a-f]+, want 0x958458f6\)"

    mt_ini bad-magic-dmemfs 64M "backend = dmemfs" "path = $plain"
    mt_bad bad-magic-dmemfs "dmemfs backend on a directory that is not dmemfs: exit 2, one line" \
        "memory\.path=.* is not on dmemfs \(f_type 0x[0-9a-f]+, want 0x2ace90c6\)"

    # A path that does not exist: the message says so (not the file system
    # type of some parent), and `check` refuses what `run` refuses.
    mt_ini missing-path 64M "backend = hugetlbfs" "path = $MT_TMP/no-such-dir/ram"
    mt_bad missing-path "hugetlbfs memory.path that does not exist: exit 2, one line saying so" \
        "memory\.path=.*/no-such-dir/ram does not exist, nor does its directory"
    mt_bad missing-path "dvmm check refuses the same memory.path with the same line" \
        "memory\.path=.*/no-such-dir/ram does not exist, nor does its directory" check
    mt_ini missing-file 64M "backend = hugetlbfs" "path = $plain/ram"
    mt_bad missing-file "hugetlbfs memory.path file to create outside hugetlbfs: exit 2, one line naming the directory" \
        "memory\.path=.*/ram does not exist, and its directory .* is not on hugetlbfs" check

    mt_ini thp-hugetlbfs 64M "backend = hugetlbfs" "path = $plain" "thp = yes"
    mt_bad thp-hugetlbfs "thp = yes with the hugetlbfs backend: exit 2, one line" \
        "memory\.thp = 'yes': only for backend anon or memfd"

    mt_ini no-path 64M "backend = hugetlbfs"
    mt_bad no-path "hugetlbfs backend without a path: exit 2, one line" \
        "memory\.path: missing \(required for backend hugetlbfs\)"

    mt_ini no-path-dmemfs 64M "backend = dmemfs"
    mt_bad no-path-dmemfs "dmemfs backend without a path: exit 2, one line" \
        "memory\.path: missing \(required for backend dmemfs\)"

    if [ "$(id -u)" -ne 0 ]; then
        tap_skip "mounting hugetlbfs instances needs root" 2
        return
    fi

    if [ ! -d "$(hugetlb_pool_dir 1048576)" ]; then
        tap_skip "the kernel has no 1 GiB huge pages (no pdpe1gb?)"
    elif ! hugetlb_mount 1G "$MT_TMP"; then
        tap_skip "mount -t hugetlbfs -o pagesize=1G failed"
    else
        mt_ini not-multiple 1536M "backend = hugetlbfs" "path = $HT_DIR"
        mt_bad not-multiple "vm.memory = 1536M on 1 GiB pages: exit 2, one line" \
            "vm\.memory=1536M is not a multiple of the hugetlbfs page size 1G of memory\.path="
    fi

    # Ask for 8 more 2 MiB pages than are free, whatever this host's pool holds.
    d=$(hugetlb_pool_dir 2048)
    free=$(cat "$d/free_hugepages" 2>/dev/null || echo 0)
    resv=$(cat "$d/resv_hugepages" 2>/dev/null || echo 0)
    need=$(( (free - resv + 8) * 2 ))
    [ "$need" -lt 16 ] && need=16
    memtotal=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
    if [ ! -d "$d" ]; then
        tap_skip "the kernel has no 2 MiB huge pages"
    elif [ "$need" -ge "$memtotal" ]; then
        tap_skip "this host's 2 MiB pool has ~$free free pages: more than host RAM would be needed to exceed it"
    elif ! hugetlb_mount 2M "$MT_TMP"; then
        tap_skip "mount -t hugetlbfs -o pagesize=2M failed"
    else
        mt_ini too-few-pages "${need}M" "backend = hugetlbfs" "path = $HT_DIR"
        mt_bad too-few-pages "vm.memory = ${need}M with fewer free 2 MiB pages: exit 2, one line" \
            "memory\.backend=hugetlbfs: vm\.memory=${need}M needs $((need / 2)) pages of 2M but only -?[0-9]+ are free"
    fi
}

###########################################################################
# Part 2: the mem check on each backend, smaps while the guest runs
###########################################################################

# mt_live NAME RAM_MIB [--set k=v ...]: boot `mem,reset` with on_reset=reboot and a
# control socket; wait for the first mem result; copy /proc/PID/smaps to
# NAME.smaps; quit through the socket.  Sets MT_RC (dvmm's exit status) and
# MT_MEM (ok, not ok, or empty when no result came).
mt_live() {
    local name=$1 pid sock deadline
    MT_RAM=$2M MT_RAM_KB=$(($2 * 1024))
    shift 2
    sock=$MT_TMP/$name.sock
    cat >"$MT_TMP/$name.ini" <<INI
[vm]
name = $name
vcpus = 1
memory = $MT_RAM
kernel = $DT_GUEST
cmdline = dvmmtest=mem,reset
on_reset = reboot
[console]
input = no
output = $MT_TMP/$name.out
[control]
socket = $sock
INI
    : >"$MT_TMP/$name.out"
    "$DT_DVMM" run "$MT_TMP/$name.ini" "$@" >"$MT_TMP/$name.stdout" 2>"$MT_TMP/$name.err" </dev/null &
    pid=$!
    MT_MEM=""
    deadline=$((SECONDS + MT_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        if grep -q '^ok 1 - mem' "$MT_TMP/$name.out"; then
            MT_MEM=ok
            break
        elif grep -q '^not ok 1 - mem' "$MT_TMP/$name.out"; then
            MT_MEM="not ok"
            break
        fi
        sleep 1
    done
    cp "/proc/$pid/smaps" "$MT_TMP/$name.smaps" 2>/dev/null || : >"$MT_TMP/$name.smaps"
    if ! "$DT_DVMM" ctl "$sock" quit >>"$MT_TMP/$name.err" 2>&1; then
        kill -TERM "$pid" 2>/dev/null
    fi
    wait "$pid"
    MT_RC=$?
}

# mt_vma NAME FIELD: FIELD (kB, without unit) of the read-write mapping of
# exactly the guest RAM size in NAME.smaps; empty when there is none.
mt_vma() {
    awk -v want="$MT_RAM_KB" -v field="$2:" '
        /^[0-9a-f]+-[0-9a-f]+ / { invma = 0; perms = $2; next }
        $1 == "Size:" { invma = ($2 == want && perms ~ /^rw/) ; next }
        invma && $1 == field { print $2; exit }
    ' "$MT_TMP/$1.smaps"
}

mt_vma_name() {
    awk -v want="$MT_RAM_KB" '
        /^[0-9a-f]+-[0-9a-f]+ / { hdr = $0; perms = $2; next }
        $1 == "Size:" && $2 == want && perms ~ /^rw/ { print hdr; exit }
    ' "$MT_TMP/$1.smaps"
}

# mt_mem_passed NAME DESCRIPTION: the guest's mem check passed and dvmm
# quit with 0 when asked.
mt_mem_passed() {
    local name=$1
    if [ "$MT_MEM" = ok ] && [ "$MT_RC" -eq 0 ] &&
        grep -Eq '^# mem: [0-9]+ pages' "$MT_TMP/$name.out"; then
        tap_ok "$2"
        grep -E '^# mem:' "$MT_TMP/$name.out" | head -n 1 | tap_diag -
    else
        tap_not_ok "$2" "mem result '${MT_MEM:-none}' (none: not within $MT_TIMEOUT s), dvmm exit status $MT_RC after quit" \
            "console:" "$(tail -n 15 "$MT_TMP/$name.out")" \
            "stderr:" "$(tail -n 15 "$MT_TMP/$name.err")"
    fi
}

# mt_field_is NAME FIELD EXPECTED DESCRIPTION
mt_field_is() {
    local got
    got=$(mt_vma "$1" "$2")
    if [ "$got" = "$3" ]; then
        tap_ok "$4"
    else
        tap_not_ok "$4" "guest RAM mapping: $(mt_vma_name "$1")" \
            "$2: '${got:-no such mapping}', want '$3'"
    fi
}

# mt_field_at_least NAME FIELD MIN_KB DESCRIPTION
mt_field_at_least() {
    local got
    got=$(mt_vma "$1" "$2")
    if [ -n "$got" ] && [ "$got" -ge "$3" ]; then
        tap_ok "$4"
        tap_diag "$2: $got kB"
    else
        tap_not_ok "$4" "guest RAM mapping: $(mt_vma_name "$1")" \
            "$2: '${got:-no such mapping}' kB, want at least $3 kB"
    fi
}

# mt_hugetlb_all NAME DESCRIPTION: the guest RAM mapping's hugetlb pages
# (smaps counts them as Private_Hugetlb while only dvmm maps them, Shared_
# once another process does) cover all of it.
mt_hugetlb_all() {
    local sh pr
    sh=$(mt_vma "$1" Shared_Hugetlb) pr=$(mt_vma "$1" Private_Hugetlb)
    if [ -n "$sh" ] && [ -n "$pr" ] && [ $((sh + pr)) -eq "$MT_RAM_KB" ]; then
        tap_ok "$2"
    else
        tap_not_ok "$2" "guest RAM mapping: $(mt_vma_name "$1")" \
            "Shared_Hugetlb '${sh:-?}' + Private_Hugetlb '${pr:-?}' kB, want $MT_RAM_KB kB"
    fi
}

mt_guest_tests() {
    local h why pages dir dpage kb count label mib most

    mt_live anon 256 --set memory.backend=anon --set memory.thp=no
    mt_mem_passed anon "anon, THP off: guest mem check passes"
    # The mem check writes every RAM page but its own image and tables.
    most=$((MT_RAM_KB * 9 / 10))
    mt_field_at_least anon Rss "$most" "anon, THP off: guest RAM is resident after the mem check"
    mt_field_is anon AnonHugePages 0 "anon, THP off: no transparent huge pages in guest RAM (MADV_NOHUGEPAGE)"

    mt_live anon-thp 256 --set memory.backend=anon --set memory.thp=yes
    mt_mem_passed anon-thp "anon, THP on: guest mem check passes"
    if [ "$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)" = "always madvise [never]" ] ||
        [ ! -e /sys/kernel/mm/transparent_hugepage/enabled ]; then
        tap_skip "THP is disabled on this host (transparent_hugepage/enabled)"
    else
        mt_field_at_least anon-thp AnonHugePages 2048 "anon, THP on: guest RAM is backed by transparent huge pages"
    fi

    mt_live memfd 256 --set memory.backend=memfd
    mt_mem_passed memfd "memfd: guest mem check passes"
    if mt_vma_name memfd | grep -q '/memfd:'; then
        tap_ok "memfd: guest RAM is a shared memfd mapping"
    else
        tap_not_ok "memfd: guest RAM is a shared memfd mapping" "mapping: $(mt_vma_name memfd)"
    fi

    # PAGESIZE:KB:RAM_MIB
    for h in 2M:2048:256 1G:1048576:1024; do
        IFS=: read -r pages kb mib <<<"$h"
        count=$((mib * 1024 / kb))
        label="hugetlbfs $pages pages"
        if [ "$(id -u)" -ne 0 ]; then
            tap_skip "$label: reserving huge pages and mounting hugetlbfs need root" 3
            continue
        fi
        if ! hugetlb_reserve "$kb" "$count"; then
            hugetlb_release
            tap_skip "$label: $HT_WHY" 3
            continue
        fi
        if ! hugetlb_mount "$pages" "$MT_TMP"; then
            hugetlb_release
            tap_skip "$label: mount -t hugetlbfs -o pagesize=$pages failed" 3
            continue
        fi
        dir=$HT_DIR
        tap_diag "$label: pool $(hugetlb_pool_dir "$kb"): nr_hugepages=$(cat "$(hugetlb_pool_dir "$kb")/nr_hugepages"), mounted on $dir"
        mt_live "hugetlbfs-$pages" "$mib" --set memory.backend=hugetlbfs --set "memory.path=$dir"
        mt_mem_passed "hugetlbfs-$pages" "$label: guest mem check passes"
        mt_field_is "hugetlbfs-$pages" KernelPageSize "$kb" \
            "$label: smaps shows KernelPageSize: $kb kB for guest RAM"
        mt_hugetlb_all "hugetlbfs-$pages" "$label: all guest RAM is in huge pages (smaps *_Hugetlb)"
        umount "$dir" 2>/dev/null
        hugetlb_release
    done

    # dmemfs: only where the kernel has it and someone mounted it.
    if ! grep -qw dmemfs /proc/filesystems; then
        tap_skip "dmemfs: not in this kernel's /proc/filesystems (dmemfs.t tests it in a nested dmemfs host)" 2
        return
    fi
    dir=$(awk '$3 == "dmemfs" { print $2; exit }' /proc/mounts)
    if [ -z "$dir" ]; then
        tap_skip "dmemfs: in the kernel but not mounted (see kernel-support/dmemfs-setup)" 2
        return
    fi
    dpage=$(( $(stat -f -c %S "$dir") / 1024 ))
    mt_live dmemfs 1024 --set memory.backend=dmemfs --set "memory.path=$dir"
    mt_mem_passed dmemfs "dmemfs ($dir): guest mem check passes"
    mt_field_is dmemfs KernelPageSize "$dpage" "dmemfs: smaps shows the mount's dpage size $dpage kB"
}

###########################################################################

dt_require_build

if [ "${1:-}" = "--guest-part" ]; then
    TAP_N=${2:-0}
    kvm_usable || tap_bail_out "memory.t --guest-part: $(kvm_absent_reason)"
    tap_diag "guest tests: kernel $(uname -r), $(awk '/^MemTotal:/ { print int($2 / 1024) " MiB" }' /proc/meminfo), THP $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
    mt_guest_tests
    [ "$TAP_FAILED" -eq 0 ]
    exit
fi

mt_config_tests

if kvm_usable; then
    if [ -n "${DVMM_NESTED:-}" ]; then
        tap_diag "guest tests run in the nested KVM host"
    else
        tap_diag "guest tests run on this host's /dev/kvm"
    fi
    mt_guest_tests
elif why=$(nested_unavailable_reason); [ -n "$why" ]; then
    tap_skip "$(kvm_absent_reason) and $why" "$MT_GUEST_TESTS"
elif ! nested_prepare >/dev/null 2>&1; then
    tap_skip "$(kvm_absent_reason) and Debian's kernel for a nested KVM host cannot be fetched" "$MT_GUEST_TESTS"
else
    tap_diag "guest tests run in the nested KVM host (QEMU TCG with nested SVM): $(kvm_absent_reason)"
    nested_run "$(readlink -f "$0")" --guest-part "$TAP_N" >"$MT_TMP/nested.tap"
    cat "$MT_TMP/nested.tap"
    ran=$(grep -Ec '^(not )?ok [0-9]+' "$MT_TMP/nested.tap")
    failed=$(grep -Ec '^not ok [0-9]+' "$MT_TMP/nested.tap")
    TAP_N=$((TAP_N + ran))
    TAP_FAILED=$((TAP_FAILED + failed))
    if [ "$ran" -lt "$MT_GUEST_TESTS" ]; then
        tap_not_ok "the nested KVM host ran all $MT_GUEST_TESTS guest tests (ran $ran)" \
            "${NESTED_FAILURE:-the guest part ended early}" "${NESTED_FAILURE_LOG:-}"
    fi
fi
tap_done
