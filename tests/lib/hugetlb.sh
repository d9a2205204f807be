# hugetlbfs pools and mounts for tests and benchmarks that need huge pages:
# reserve pages, mount private hugetlbfs instances, and put everything back.
# State is HT_*; call hugetlb_cleanup from the caller's EXIT trap.

# shellcheck disable=SC2034 # HT_WHY and HT_DIR are read by the scripts that source this
HT_MOUNTS=()    # hugetlbfs instances we mounted
HT_RESTORE=()   # "sysfs-file old-value" pairs to write back
HT_WHY=""       # why the last hugetlb_reserve failed
HT_DIR=""       # the last hugetlb_mount's mount point

hugetlb_pool_dir() { echo "/sys/kernel/mm/hugepages/hugepages-${1}kB"; }

# hugetlb_reserve KB COUNT: make COUNT huge pages of KB kB free; the old
# pool size is written back by hugetlb_release.  Fails with HT_WHY set.
hugetlb_reserve() {
    local d nr free resv want
    d=$(hugetlb_pool_dir "$1")
    [ -d "$d" ] || { HT_WHY="the kernel has no $1 kB huge pages ($d missing)"; return 1; }
    nr=$(cat "$d/nr_hugepages") free=$(cat "$d/free_hugepages") resv=$(cat "$d/resv_hugepages")
    [ $((free - resv)) -ge "$2" ] && return 0
    want=$((nr + $2 - (free - resv)))
    HT_RESTORE+=("$d/nr_hugepages $nr")
    echo "$want" >"$d/nr_hugepages" 2>/dev/null
    free=$(cat "$d/free_hugepages") resv=$(cat "$d/resv_hugepages")
    if [ $((free - resv)) -lt "$2" ]; then
        HT_WHY="could reserve only $((free - resv)) of $2 free $1 kB huge pages (nr_hugepages=$want)"
        return 1
    fi
}

# Give reserved huge pages back now (hugetlb_cleanup does it too).
hugetlb_release() {
    local r
    for r in "${HT_RESTORE[@]}"; do
        echo "${r#* }" >"${r%% *}" 2>/dev/null
    done
    HT_RESTORE=()
}

# hugetlb_mount PAGESIZE(2M|1G) PARENT: a fresh hugetlbfs instance in a new
# directory under PARENT, in HT_DIR.  (Not called in $(...): HT_MOUNTS must
# survive for the cleanup.)
hugetlb_mount() {
    HT_DIR=$(mktemp -d "$2/hugetlbfs-$1.XXXXXX") || return 1
    mount -t hugetlbfs -o "pagesize=$1" none "$HT_DIR" 2>/dev/null || return 1
    HT_MOUNTS+=("$HT_DIR")
}

# Unmount everything hugetlb_mount mounted and give the pages back.
hugetlb_cleanup() {
    local m
    for m in "${HT_MOUNTS[@]}"; do
        umount "$m" 2>/dev/null
    done
    HT_MOUNTS=()
    hugetlb_release
}
