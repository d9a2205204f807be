#!/bin/bash
# kernel-support/dmemfs-setup: the refusals (bad size, no dmemfs, a second
# dpage size), --help, and the real mount where the host has dmemfs.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh

S=kernel-support/dmemfs-setup
T=$(mktemp -d /tmp/dmemfs-setup-t.XXXXXX) || tap_bail_out "mktemp failed"
trap 'rm -rf "$T"' EXIT

# run CMD...: sets OUT (stdout+stderr) and RC
run() { OUT=$("$@" 2>&1); RC=$?; }
# expect RC REGEX DESC: exit status and a message matching REGEX
expect() {
    if [ "$RC" -eq "$1" ] && printf '%s\n' "$OUT" | grep -qE "$2"; then
        tap_ok "$3"
    else
        tap_not_ok "$3" "exit status $RC (expected $1)" "output: $OUT" "wanted /$2/"
    fi
}

tap_plan 9

run sh "$S" --help
expect 0 'usage: dmemfs-setup .*pagesize=4K\|2M\|1G' "--help prints usage and exits 0"

run sh "$S" -o pagesize=3M "$T/mnt"
expect 2 "bad page size '3M': dmemfs supports only pagesize=4K, 2M or 1G" "a bad size is refused before anything else"

run sh "$S" -o size=1G "$T/mnt"
expect 2 "unknown mount option 'size=1G'" "an option dmemfs does not take is refused"

run sh "$S" -o pagesize=1G
expect 2 "no mount point given" "a missing DIR is a usage error"

# A fake /proc without dmemfs: the refusal names the missing filesystem.
mkdir -p "$T/proc-nodmem"
printf 'nodev\tproc\nnodev\thugetlbfs\n\text4\n' > "$T/proc-nodmem/filesystems"
: > "$T/proc-nodmem/mounts"
run env DMEMFS_SETUP_PROC="$T/proc-nodmem" sh "$S" -o pagesize=2M "$T/mnt"
expect 1 'this kernel has no dmemfs \(not in .*filesystems' "a kernel without dmemfs is refused with the reason"

# This host, for real.
if grep -qw dmemfs /proc/filesystems; then
    tap_ok "this host has dmemfs (real refusal not applicable)"
else
    run sh "$S" -o pagesize=1G "$T/mnt"
    expect 1 'this kernel has no dmemfs' "this host has no dmemfs: clear refusal"
fi
if [ ! -e "$T/mnt" ]; then
    tap_ok "refusals create nothing"
else
    tap_not_ok "refusals create nothing" "$T/mnt exists"
fi

# A fake /proc with dmemfs mounted at 1 GiB (shown in hex): 2M is refused,
# naming the existing mount.
mkdir -p "$T/proc-1g"
printf 'nodev\tproc\nnodev\tdmemfs\n' > "$T/proc-1g/filesystems"
printf 'none /mnt/dmem dmemfs rw,relatime,pagesize=40000000 0 0\n' > "$T/proc-1g/mounts"
run env DMEMFS_SETUP_PROC="$T/proc-1g" sh "$S" -o pagesize=2M "$T/mnt2"
expect 1 'already mounted at /mnt/dmem with pagesize 0x40000000; only one dpage size' "a second dpage size is refused"

# The real mount needs a dmemfs kernel with dmem= memory and root.
if ! grep -qw dmemfs /proc/filesystems; then
    tap_skip "real mount: this host kernel has no dmemfs (not in /proc/filesystems)"
elif [ "$(id -u)" -ne 0 ]; then
    tap_skip "real mount: needs root"
else
    run sh "$S" -o pagesize=2M -m 0700 "$T/real"
    if [ "$RC" -eq 0 ] && [ "$(stat -f -c %t "$T/real")" = 2ace90c6 ]; then
        tap_ok "real dmemfs mount verified by statfs"
    else
        tap_not_ok "real dmemfs mount verified by statfs" "$OUT"
    fi
    umount "$T/real" 2>/dev/null
fi

tap_done
