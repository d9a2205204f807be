#!/bin/bash
# What guest memory costs the host, per backend (`make overhead-report`).
#
# The same VM (OVH_RAM, default 2G, one vCPU) boots the test guest with
# `dvmmtest=mem,reset` and on_reset=reboot on each backend this host has:
# anon with THP off (the 4 KiB reference), anon with THP on, memfd,
# hugetlbfs 2 MiB, hugetlbfs 1 GiB (huge pages reserved here and released
# afterwards) and dmemfs (mounted here when the module is loaded).  Once the
# guest has touched all of its RAM, the control socket's `memstat` gives the
# page tables as JSON.
#
# struct page is measured where the host allows it, else computed by the
# rules of guest-mem/overhead.c (each figure says which):
#   - per GiB of kernel-managed RAM: a dmemfs nested host reserves RAM with
#     memmap=; reserved bytes - the drop in MemTotal against a boot of the
#     same nested host without the reservation is the memmap it did not
#     need (both boots pin the RAM-sized early hash tables);
#   - what HVO gives back per huge page: the drop in free memory when the
#     pool is allocated, with hugetlb_optimize_vmemmap off and on.
#
# Writes OUT (default $DVMM_BUILD/overhead, i.e. build/overhead):
#   <backend>.json   the memstat replies
#   report.md        the table, with the rules for the computed figures
#   overhead.dat     per-GiB figures for the chart
#   overhead.svg     stacked bars: VMM page tables, KVM page tables, struct page
#
# Where: OVH_WHERE=local|nested.  By default the collection runs here when
# this host has /dev/kvm that is not PVM (whose shadow paging would not
# show what a VT-x/AMD-V host pays), else in the nested KVM host as a
# dmemfs host (all backends in one nested boot, tests/lib/nested-run, plus
# the reference boot); the report is rendered here.  A benchmark, not a
# test: numbers never fail it, a backend that cannot run is listed with
# the reason.
#
# Usage: overhead-report.sh [OUT]      (OVH_RAM, OVH_TIMEOUT: per-boot seconds)
#        overhead-report.sh --collect OUT RAM TIMEOUT
#                                       (needs KVM; what the first form runs)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$ROOT/tests/lib/kvm-env.sh"
. "$ROOT/tests/lib/hugetlb.sh"

BUILD_DIR=${DVMM_BUILD:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
DVMM=$BUILD_DIR/dvmm
GUEST=$BUILD_DIR/testguest.elf
RAM=${OVH_RAM:-2G}
# 4 KiB faults under nested KVM on TCG are slow: minutes per GiB.
TIMEOUT=${OVH_TIMEOUT:-900}

die() { echo "overhead-report: $*" >&2; exit 1; }
say() { echo "overhead-report: $*" >&2; }

size_kb() {
    case $1 in
        *G) echo $(( ${1%G} * 1048576 )) ;;
        *M) echo $(( ${1%M} * 1024 )) ;;
        *) die "OVH_RAM=$1: use a size in M or G" ;;
    esac
}

###########################################################################
# Collection (needs KVM)
###########################################################################

C_TMP=""

C_DMEMFS=""

c_cleanup() {
    [ -n "$C_DMEMFS" ] && umount "$C_DMEMFS" 2>/dev/null
    hugetlb_cleanup
    [ -n "$C_TMP" ] && rm -rf "$C_TMP"
}



# c_skip KEY LABEL REASON: record a backend that could not run.
c_skip() {
    printf '%s\t%s\n' "$2" "$3" >>"$OUT/skipped.tsv"
    say "$2: skipped: $3"
}

# c_run KEY LABEL [--set k=v ...]: boot, wait for the first mem result,
# save the memstat JSON as OUT/KEY.json, quit.
c_run() {
    local key=$1 label=$2 pid sock deadline mem=""
    shift 2
    sock=$C_TMP/$key.sock
    cat >"$C_TMP/$key.ini" <<INI
[vm]
name = ovh-$key
vcpus = 1
memory = $RAM
kernel = $GUEST
cmdline = dvmmtest=mem,reset
on_reset = reboot
[console]
input = no
output = $C_TMP/$key.out
[control]
socket = $sock
INI
    : >"$C_TMP/$key.out"
    say "$label: booting a $RAM guest"
    "$DVMM" run "$C_TMP/$key.ini" "$@" >/dev/null 2>"$C_TMP/$key.err" </dev/null &
    pid=$!
    deadline=$((SECONDS + TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        if grep -q '^ok 1 - mem' "$C_TMP/$key.out"; then
            mem=ok
            break
        elif grep -q '^not ok 1 - mem' "$C_TMP/$key.out"; then
            mem=fail
            break
        fi
        sleep 1
    done
    if [ "$mem" = ok ]; then
        "$DVMM" ctl "$sock" memstat >"$C_TMP/$key.reply" 2>>"$C_TMP/$key.err"
        if jq -e '.ok == true and .memstat != null' "$C_TMP/$key.reply" >/dev/null 2>&1; then
            # ("label" is a jq keyword: quoted key, other variable name.)
            jq --arg lbl "$label" --arg key "$key" --arg kps "$(c_smaps_kps "$pid")" \
                '.memstat + {"label": $lbl, "key": $key,
                  "smaps_kernel_page_kb": ($kps | tonumber? // null)}' \
                "$C_TMP/$key.reply" >"$OUT/$key.json" ||
                { rm -f "$OUT/$key.json"; c_skip "$key" "$label" "jq could not read the memstat reply"; }
        else
            c_skip "$key" "$label" "memstat failed: $(head -c 300 "$C_TMP/$key.reply" "$C_TMP/$key.err" | tr '\n' ' ')"
        fi
    fi
    "$DVMM" ctl "$sock" quit >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    case $mem in
        ok) ;;
        fail) c_skip "$key" "$label" "guest mem check failed: $(grep -m1 '^not ok' "$C_TMP/$key.out")" ;;
        *) c_skip "$key" "$label" "no mem result: $(tail -n 3 "$C_TMP/$key.err" | tr '\n' ' ')" ;;
    esac
}

# KernelPageSize of dvmm's guest-RAM mapping (the rw mapping of RAM size).
c_smaps_kps() {
    awk -v want="$(size_kb "$RAM")" '
        /^[0-9a-f]+-[0-9a-f]+ / { perms = $2; invma = 0; next }
        $1 == "Size:" { invma = ($2 == want && perms ~ /^rw/); next }
        invma && $1 == "KernelPageSize:" { print $2; exit }
    ' "/proc/$1/smaps" 2>/dev/null
}

# Free memory in kB, counting the per-CPU page lists too: allocating
# gigantic pages drains them into the free lists, which moves MemFree by
# tens of MiB on its own.
c_free_kb() {
    awk '$1 == "pages" && $2 == "free" { f += $3 } $1 == "count:" { f += $2 }
         END { print f * 4 }' /proc/zoneinfo
}

# c_hvo_measure KB COUNT PAGES: MemFree's drop when COUNT pages of KB kB
# are allocated, with hugetlb_optimize_vmemmap off and on, three times each
# in turn (the median of each); what HVO gives back per huge page goes to
# host.txt as hvo_freed_kb_PAGES.  Run before any VM: memory that earlier
# guests left to be freed lazily (deferred THP splits, RCU) moves MemFree
# by tens of MiB.
c_hvo_measure() {
    local kb=$1 count=$2 pages=$3 sysctl=/proc/sys/vm/hugetlb_optimize_vmemmap old hvo f0 f1 i
    local -a off=() on=()
    [ -w "$sysctl" ] || { say "hugetlbfs $pages: no writable $sysctl, HVO not measured"; return; }
    old=$(cat "$sysctl")
    for i in 1 2 3; do
        for hvo in 0 1; do
            echo "$hvo" >"$sysctl" 2>/dev/null || { say "cannot set $sysctl=$hvo"; break 2; }
            sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
            f0=$(c_free_kb)
            if ! hugetlb_reserve "$kb" "$count"; then
                say "hugetlbfs $pages: $HT_WHY"
                hugetlb_release
                break 2
            fi
            f1=$(c_free_kb)
            hugetlb_release
            if [ "$hvo" -eq 0 ]; then off+=($((f0 - f1))); else on+=($((f0 - f1))); fi
        done
    done
    echo "$old" >"$sysctl" 2>/dev/null
    [ "${#off[@]}" -eq 3 ] && [ "${#on[@]}" -eq 3 ] || return
    off=($(printf '%s\n' "${off[@]}" | sort -n)) on=($(printf '%s\n' "${on[@]}" | sort -n))
    say "hugetlbfs $pages: $count pages take ${off[1]} kB of free memory without HVO, ${on[1]} kB with (medians of 3)"
    {
        echo "hvo_drop_kb_${pages}_off=${off[1]}"
        echo "hvo_drop_kb_${pages}_on=${on[1]}"
        echo "hvo_freed_kb_${pages}=$(( (off[1] - on[1] + count / 2) / count ))"
    } >>"$OUT/host.txt"
}

collect() {
    local ram_kb dir kb pages count
    [ -x "$DVMM" ] && [ -f "$GUEST" ] || die "$DVMM or $GUEST missing: run make first"
    kvm_usable || die "--collect needs a usable /dev/kvm: $(kvm_absent_reason)"
    command -v jq >/dev/null || die "jq is needed to read the memstat replies"
    ram_kb=$(size_kb "$RAM")
    mkdir -p "$OUT" || die "mkdir $OUT"
    rm -f "$OUT"/*.json "$OUT/skipped.tsv" "$OUT/host.txt"
    C_TMP=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-overhead.XXXXXX") || die "mktemp"
    trap c_cleanup EXIT
    {
        echo "kernel=$(uname -r)"
        echo "where=${DVMM_NESTED:+nested KVM host (QEMU TCG, nested SVM)}"
        echo "thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
        echo "hvo=$(cat /proc/sys/vm/hugetlb_optimize_vmemmap 2>/dev/null)"
        echo "memtotal_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
        echo "ram=$RAM"
        # struct page per GiB of RAM, from the boot pair (see the top).
        if [ -n "${DVMM_OVH_REF_MEMTOTAL_KB:-}" ] && [ -n "${DVMM_NESTED_DMEM:-}" ]; then
            local res_kb=$(( ${DVMM_NESTED_DMEM%G} * 1048576 ))
            local now_kb
            now_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
            echo "spage_ref_memtotal_kb=$DVMM_OVH_REF_MEMTOTAL_KB"
            echo "spage_reserved_kb=$res_kb"
            echo "spage_kb_per_gib=$(( (res_kb - (DVMM_OVH_REF_MEMTOTAL_KB - now_kb)) / ${DVMM_NESTED_DMEM%G} ))"
        fi
    } >"$OUT/host.txt"

    # Huge pages first: 1 GiB pages need free, aligned GiBs, which the
    # other guests' memory fragments (then only one of two could be had).
    for h in 1G:1048576 2M:2048; do
        IFS=: read -r pages kb <<<"$h"
        count=$((ram_kb / kb))
        if [ "$(id -u)" -ne 0 ]; then
            c_skip "hugetlbfs-$pages" "hugetlbfs $pages" "reserving huge pages needs root"
            continue
        fi
        c_hvo_measure "$kb" "$count" "$pages"
        if ! hugetlb_reserve "$kb" "$count"; then
            c_skip "hugetlbfs-$pages" "hugetlbfs $pages" "$HT_WHY"
        elif ! hugetlb_mount "$pages" "$C_TMP"; then
            c_skip "hugetlbfs-$pages" "hugetlbfs $pages" "mount -t hugetlbfs -o pagesize=$pages failed"
        else
            c_run "hugetlbfs-$pages" "hugetlbfs $pages" \
                --set memory.backend=hugetlbfs --set "memory.path=$HT_DIR"
            umount "$HT_DIR" 2>/dev/null
        fi
        hugetlb_release
    done

    c_run anon-4k "anon, THP off" --set memory.backend=anon --set memory.thp=no
    if grep -q '\[never\]' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null; then
        c_skip anon-thp "anon, THP on" "THP is [never] on this host"
    else
        c_run anon-thp "anon, THP on" --set memory.backend=anon --set memory.thp=yes
    fi

    # memfd after the huge-page runs: its 4 KiB shmem faults are the slowest
    # under nested KVM, and a timeout there should not cost the others.
    c_run memfd "memfd" --set memory.backend=memfd --set memory.thp=no

    dir=$(awk '$3 == "dmemfs" { print $2; exit }' /proc/mounts)
    if [ -z "$dir" ] && [ -n "${DVMM_NESTED_DMEM:-}" ] && grep -qw dmemfs /proc/filesystems; then
        dir=$C_TMP/dmemfs
        "$ROOT/kernel-support/dmemfs-setup" -o pagesize=1G "$dir" >&2 || dir=""
        [ -n "$dir" ] && C_DMEMFS=$dir
    fi
    if ! grep -qw dmemfs /proc/filesystems; then
        c_skip dmemfs dmemfs "no dmemfs in /proc/filesystems (kernel without the dmemfs patches)"
    elif [ -z "$dir" ]; then
        c_skip dmemfs dmemfs "dmemfs is in the kernel but not mounted (kernel-support/dmemfs-setup)"
    else
        c_run dmemfs "dmemfs $(numfmt --to=iec "$(stat -f -c %S "$dir")")" \
            --set memory.backend=dmemfs --set "memory.path=$dir"
    fi
}

###########################################################################
# Rendering (no KVM needed)
###########################################################################

# One TSV row per measured backend, in run order:
# key label ram page vmpte secpt spage rule hvo smaps_kps
rows() {
    local k
    for k in anon-4k anon-thp memfd hugetlbfs-2M hugetlbfs-1G dmemfs; do
        [ -f "$OUT/$k.json" ] || continue
        jq -r '[.key, .label, .guest_ram_bytes, .host_page_size,
                (.vmm_page_tables.bytes // "n/a"),
                (.kvm_secondary_page_tables.bytes // "n/a"),
                .struct_page.bytes, .struct_page.rule,
                (.struct_page.hugetlb_optimize_vmemmap // "n/a"),
                (.smaps_kernel_page_kb // "n/a")] | @tsv' "$OUT/$k.json"
    done
}

render() {
    local host_kernel host_where host_thp host_hvo spm f2m f1g
    [ -n "$(ls "$OUT"/*.json 2>/dev/null)" ] || die "no measurements in $OUT (see the messages above)"
    host_kernel=$(sed -n 's/^kernel=//p' "$OUT/host.txt")
    host_where=$(sed -n 's/^where=//p' "$OUT/host.txt")
    host_thp=$(sed -n 's/^thp=//p' "$OUT/host.txt")
    host_hvo=$(sed -n 's/^hvo=//p' "$OUT/host.txt")
    spm=$(sed -n 's/^spage_kb_per_gib=//p' "$OUT/host.txt")
    f2m=$(sed -n 's/^hvo_freed_kb_2M=//p' "$OUT/host.txt")
    f1g=$(sed -n 's/^hvo_freed_kb_1G=//p' "$OUT/host.txt")

    rows >"$OUT/rows.tsv"
    # Markdown table and chart data.  Computed-only rows (struct page by the
    # rules of guest-mem/overhead.c, nothing measured) follow the measured
    # ones: dmemfs when no dmemfs host ran, and hugetlbfs with the HVO
    # setting this host did not have.
    awk -F'\t' -v hvo="${host_hvo:-0}" -v md="$OUT/report.md" -v dat="$OUT/overhead.dat" \
        -v spm="${spm:-}" -v f2m="${f2m:-}" -v f1g="${f1g:-}" \
        -v kernel="$host_kernel" -v where="${host_where:+the }${host_where:-this host}" -v thp="$host_thp" '
    function sz(b,   a) {
        if (b == "n/a") return "n/a"
        a = b < 0 ? -b : b
        if (a >= 1048576) return sprintf("%.2f MiB", b / 1048576)
        if (a >= 1024) return sprintf("%.0f KiB", b / 1024)
        return sprintf("%d B", b)
    }
    function pg(b) { return b >= 1073741824 ? (b / 1073741824) " GiB" : b >= 1048576 ? (b / 1048576) " MiB" : (b / 1024) " KiB" }
    function pergib(b, ram) { return b == "n/a" ? 0 : b * 1073741824 / ram }
    function rule_id(r,   i) {
        for (i = 1; i <= nrules; i++) if (rules[i] == r) return i
        rules[++nrules] = r
        return nrules
    }
    # struct page of a backend from the measurements of this host, or -1 (keep
    # the computed figure).  Sets mrule to the rule it followed.
    function measured_sp(key, ram, page,   per, freed) {
        if (spm == "") return -1
        gib = ram / 1073741824
        if (key == "dmemfs") {
            mrule = "measured: dmemfs memory has no memmap (the boot pair saved " spm " kB per GiB of it)"
            return 0
        }
        if (key ~ /^hugetlbfs/ && hvo == 1) {
            freed = page == 2097152 ? f2m : f1g
            if (freed == "") return -1
            mrule = "measured: struct page per GiB (boot pair) less what HVO freed per huge page (drop in free memory, HVO off - on)"
            return (spm - freed * (1073741824 / page)) * 1024 * gib
        }
        mrule = "measured: struct page per GiB of kernel-managed RAM (boot pair: reserved - drop in MemTotal)"
        return spm * 1024 * gib
    }
    function row(label, short, ram, page, vm, sec, sp, rule, kps, computed,   tot, t, ref, m) {
        m = computed == 2 ? 1 : 0
        if (computed == 2) computed = 1
        if (!computed) {
            m = measured_sp(short, ram, page)
            if (m >= 0) { sp = m; rule = mrule; m = 1 } else m = 0
        }
        tot = sp + (vm == "n/a" ? 0 : vm) + (sec == "n/a" ? 0 : sec)
        t = pergib(tot, ram)
        ref = (reftot > 0 && !computed) ? sprintf("%.2f", t / reftot) : "—"
        printf("| %s | %s | %s%s | %s | %s | %s %s [%d] | %s%s | %s |\n", label, pg(ram),
               short == "anon-thp" ? "2 MiB THP on 4 KiB base" : pg(page),
               kps == "" || kps == "n/a" ? "" : " (smaps " pg(kps * 1024) ")",
               computed ? "not measured" : sz(vm), computed ? "not measured" : sz(sec),
               sz(sp), m ? "(measured)" : "(computed)", rule_id(rule), sz(t),
               computed ? " (struct page only)" : "", ref) >> md
        printf("\"%s\" %.1f %.1f %.1f\n", short, pergib(vm, ram) / 1024, pergib(sec, ram) / 1024,
               pergib(sp, ram) / 1024) >> dat
    }
    BEGIN {
        printf("# What guest memory costs the host\n\n") > md
        printf("Measured on %s, kernel %s, THP `%s`, hugetlb_optimize_vmemmap=%s.\n",
               where, kernel, thp, hvo) >> md
        printf("Each row is one %s\n\n", "1-vCPU VM that has touched every page of its RAM (test guest `dvmmtest=mem`).") >> md
        printf("| backend | guest RAM | host page | VMM page tables (measured) | KVM page tables (measured, host-wide) | struct page | total per GiB | vs anon 4 KiB |\n") >> md
        printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n") >> md
        printf("# label vmm_pt_kib_per_gib kvm_pt_kib_per_gib struct_page_kib_per_gib\n") > dat
    }
    {
        key[NR] = $1; label[NR] = $2; ram[NR] = $3; page[NR] = $4; vm[NR] = $5
        sec[NR] = $6; sp[NR] = $7; rule[NR] = $8; kps[NR] = $10
        if ($1 == "anon-4k") {
            m = measured_sp($1, $3, $4)
            reftot = pergib((m >= 0 ? m : $7) + ($5 == "n/a" ? 0 : $5) + ($6 == "n/a" ? 0 : $6), $3)
        }
        if ($1 == "dmemfs") have_dmemfs = 1
        if ($1 ~ /^hugetlbfs/) hp[$4] = 1
        if (!r0) r0 = $3
    }
    END {
        for (i = 1; i <= NR; i++)
            row(label[i], key[i], ram[i], page[i], vm[i], sec[i], sp[i], rule[i], kps[i], 0)
        # hugetlbfs with the other HVO setting, by the same rules.
        for (p = 2097152; p <= 1073741824; p *= 512) {
            freed = p == 2097152 ? f2m : f1g
            if (hvo == 1)
                row("hugetlbfs " pg(p) ", no HVO (struct page only)", "hugetlbfs-" (p > 2097152 ? "1G" : "2M") "-noHVO*", r0, p, "n/a", "n/a",
                    spm != "" ? spm * 1024 * r0 / 1073741824 : r0 / 4096 * 64,
                    spm != "" ? "measured: struct page per GiB of kernel-managed RAM (boot pair: reserved - drop in MemTotal)" : "hugetlb without vmemmap optimisation: 64 B of struct page per 4 KiB", "", spm != "" ? 2 : 1)
            else if (spm != "" && freed != "" && spm - freed * (1073741824 / p) >= 0)
                row("hugetlbfs " pg(p) " + HVO (struct page only)", "hugetlbfs-" (p > 2097152 ? "1G" : "2M") "+HVO*", r0, p, "n/a", "n/a",
                    (spm - freed * (1073741824 / p)) * 1024 * r0 / 1073741824,
                    "measured: struct page per GiB (boot pair) less what HVO freed per huge page (drop in free memory, HVO off - on)", "", 2)
            else if (spm != "" && freed != "")
                # What HVO freed measured as all of the memmap: the few KiB it
                # keeps are below the noise, so the rule gives the figure.
                row("hugetlbfs " pg(p) " + HVO (computed)", "hugetlbfs-" (p > 2097152 ? "1G" : "2M") "+HVO*", r0, p, "n/a", "n/a",
                    r0 / p * ((p / 4096 * 64) < 4096 ? p / 4096 * 64 : 4096),
                    "hugetlb with vmemmap optimisation (HVO): one 4 KiB vmemmap page kept per huge page (HVO measured freeing " freed " kB per huge page, all of its " spm * p / 1073741824 " kB memmap within the noise)", "", 1)
            else
                row("hugetlbfs " pg(p) " + HVO (computed)", "hugetlbfs-" (p > 2097152 ? "1G" : "2M") "+HVO*", r0, p, "n/a", "n/a",
                    r0 / p * ((p / 4096 * 64) < 4096 ? p / 4096 * 64 : 4096),
                    "hugetlb with vmemmap optimisation (HVO): one 4 KiB vmemmap page kept per huge page", "", 1)
        }
        if (!have_dmemfs)
            row("dmemfs (computed only: no dmemfs host)", "dmemfs*", r0, 1073741824, "n/a", "n/a", 0,
                "dmemfs: reserved memory has no struct page", "", 1)
        printf("\nStruct page rules (guest-mem/overhead.c):\n\n") >> md
        for (i = 1; i <= nrules; i++)
            printf("%d. %s\n", i, rules[i]) >> md
    }' "$OUT/rows.tsv"

    {
        echo
        echo "VMM page tables: this dvmm process's VmPTE growth from just before guest RAM"
        echo "was mapped. KVM page tables: growth of /proc/meminfo SecPageTables over the"
        echo "same span; host-wide, so anything else running KVM guests disturbs it."
        if [ -n "$spm" ]; then
            echo "Struct page, measured: $spm kB per GiB of kernel-managed RAM, from two boots"
            echo "of the nested host with the same -m: $(sed -n 's/^spage_reserved_kb=//p' "$OUT/host.txt") kB reserved with memmap= (no"
            echo "memmap), MemTotal $(sed -n 's/^memtotal_kb=//p' "$OUT/host.txt") kB against $(sed -n 's/^spage_ref_memtotal_kb=//p' "$OUT/host.txt") kB without; both pin the"
            echo "early dentry/inode hash tables, which the kernel sizes by RAM."
            [ -n "$f2m$f1g" ] && echo "HVO, measured: vmemmap freed per huge page, from the drop in free memory (buddy and per-CPU lists, /proc/zoneinfo) when the pool is allocated with hugetlb_optimize_vmemmap off and on, medians of three: ${f2m:-?} kB per 2 MiB page, ${f1g:-?} kB per 1 GiB page."
        else
            echo "Struct page: computed by the rules below (this host could not measure it)."
        fi
        echo "Total per GiB sums measured and computed figures. \"vs anon 4 KiB\" is the"
        echo "total against the anon THP-off run of the same report."
        if [ -s "$OUT/skipped.tsv" ]; then
            echo
            echo "Not measured here:"
            echo
            awk -F'\t' '{ printf("- %s: %s\n", $1, $2) }' "$OUT/skipped.tsv"
        fi
    } >>"$OUT/report.md"

    if command -v gnuplot >/dev/null; then
        gnuplot -e "datafile='$OUT/overhead.dat'; outfile='$OUT/overhead.svg'" "$HERE/overhead.gp" ||
            die "gnuplot failed"
    else
        say "no gnuplot: $OUT/overhead.svg not drawn (apt install gnuplot-nox)"
    fi
    cat "$OUT/report.md"
    say "wrote $OUT/report.md, $OUT/overhead.dat and $OUT/overhead.svg"
}

###########################################################################

if [ "${1:-}" = "--collect" ]; then
    [ "$#" -eq 4 ] || die "usage: $0 --collect OUT RAM TIMEOUT"
    OUT=$2 RAM=$3 TIMEOUT=$4
    collect
    exit 0
fi

OUT=${1:-$BUILD_DIR/overhead}
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
mkdir -p "$OUT" || die "mkdir $OUT"
if [ -n "${OVH_RENDER_ONLY:-}" ]; then
    :
else
    where=${OVH_WHERE:-}
    if [ -z "$where" ]; then
        if kvm_usable && [ ! -d /sys/module/kvm_pvm ]; then
            where=local
        elif [ -z "$(nested_unavailable_reason)" ]; then
            where=nested
        elif kvm_usable; then
            where=local
        else
            die "$(kvm_absent_reason) and $(nested_unavailable_reason): nothing can be measured"
        fi
    fi
    case $where in
    local)
        kvm_usable || die "OVH_WHERE=local: $(kvm_absent_reason)"
        "$0" --collect "$OUT" "$RAM" "$TIMEOUT" || die "collection failed" ;;
    nested)
        why=$(nested_unavailable_reason)
        [ -z "$why" ] || die "OVH_WHERE=nested: $why"
        # A dmemfs host: RAM rounded up to whole dpages.
        gib=$(( ($(size_kb "$RAM") + 1048575) / 1048576 ))
        export DVMM_NESTED_APPEND="$NESTED_PINNED_HASHES${DVMM_NESTED_APPEND:+ $DVMM_NESTED_APPEND}"
        if "$ROOT/kernel-support/kernel-build" >/dev/null; then
            export DVMM_NESTED_DMEM=${gib}G
            say "collecting in the nested KVM host with ${gib} GiB reserved for dmemfs; first a reference boot without the reservation"
            if ref=$(nested_memtotal_plain "$gib"); then
                export DVMM_OVH_REF_MEMTOTAL_KB=$ref
            else
                say "reference boot failed: struct page will be computed"
            fi
        else
            say "kernel-support/kernel-build failed: no dmemfs in the nested host, struct page computed"
        fi
        # Up to six boots in one nested host: its own limit must cover them all.
        export DVMM_NESTED_TIMEOUT=${DVMM_NESTED_TIMEOUT:-$((6 * TIMEOUT + 300))}
        "$ROOT/tests/lib/nested-run" "$HERE/$(basename "$0")" --collect "$OUT" "$RAM" "$TIMEOUT" ||
            die "collection in the nested KVM host failed" ;;
    *) die "OVH_WHERE=$where: local or nested" ;;
    esac
fi
render
