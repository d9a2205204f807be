#!/bin/bash
# `dvmm hostcheck` on the host it runs on: every line must agree with what
# this script reads from /dev/kvm, /proc, /sys and the kernel log itself.
# Each point branches on what this host has (VT-x, AMD-V or PVM; /dev/kvm
# usable, refused or missing; memory-failure, dmemfs, hugetlb pools or not)
# and never assumes one machine's wording.  The fake-tree cases live in
# tests/unit/test_hostcheck.c.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh

DVMM=${DVMM_BUILD:-build}/dvmm
[ -x "$DVMM" ] || tap_skip_all "$DVMM not built (make); tests/unit/test_hostcheck covers the checks"
perl -MJSON::PP -e1 2>/dev/null || tap_skip_all "perl JSON::PP missing"

JSON=$("$DVMM" hostcheck --json 2>/dev/null); RC=$?
TEXT=$("$DVMM" hostcheck 2>/dev/null)

# field NAME KEY: one field of the check called NAME ("" when absent)
field() {
    printf '%s' "$JSON" | perl -MJSON::PP -e '
        my $j = decode_json(do { local $/; <STDIN> });
        for my $c (@{$j->{checks}}) { if ($c->{name} eq $ARGV[0]) { print $c->{$ARGV[1]}; exit 0 } }' "$1" "$2"
}
# expect NAME STATUS REGEX DESC
expect() {
    local st val
    st=$(field "$1" status); val=$(field "$1" value)
    if [ "$st" = "$2" ] && printf '%s\n' "$val" | grep -qE -- "$3"; then
        tap_ok "$4"
    else
        tap_not_ok "$4" "$1: status '$st' (want $2), value '$val' (want /$3/)"
    fi
}
# expect_has NAME STATUS TEXT DESC: like expect, TEXT taken literally (text
# from the host, such as a kernel log line, may hold regex characters)
expect_has() {
    local st val
    st=$(field "$1" status); val=$(field "$1" value)
    if [ "$st" = "$2" ] && [[ $val == *"$3"* ]]; then
        tap_ok "$4"
    else
        tap_not_ok "$4" "$1: status '$st' (want $2), value '$val' (want it to contain '$3')"
    fi
}

tap_plan 8

if printf '%s' "$JSON" | perl -MJSON::PP -e 'decode_json(do { local $/; <STDIN> })' 2>/dev/null; then
    tap_ok "--json prints one JSON object"
else
    tap_not_ok "--json prints one JSON object" "$JSON"
fi
nfail=$(printf '%s\n' "$TEXT" | grep -c '^FAIL ')
want_rc=$([ "$nfail" -gt 0 ] && echo 1 || echo 0)
tap_is "$RC" "$want_rc" "exit status $want_rc with $nfail FAIL line(s)"

# /dev/kvm and the flavour.  Whether it opens is tried as hostcheck tries it
# (read-write); access bits alone do not say so (root, device cgroups).
if [ -e /dev/kvm ]; then
    if err=$({ : <>/dev/kvm; } 2>&1); then
        expect kvm-device OK 'API version' "/dev/kvm opens read-write: kvm-device OK"
    else
        err=${err##*: }     # "bash: line N: /dev/kvm: Permission denied" -> strerror text
        expect_has kvm-device FAIL "/dev/kvm: $err" "/dev/kvm does not open ($err): kvm-device FAIL"
    fi
elif [ -d /sys/module/kvm_pvm ]; then
    # The kernel's reason, read as hostcheck reads it: the last log line
    # naming kvm-pvm (or kvm_pvm) and "not binding", without the "<6>" level
    # and the "[ time]" stamp.  Its wording differs by kernel and host
    # ("... (needs PTI=0 ...; has PTI=1 ...); not binding", "this kernel is
    # itself a kvm-pvm guest; not binding", ...), so hostcheck must quote it
    # whatever it says; its first 200 characters are compared, as
    # hostcheck's value may cut a very long line short.
    line=$(dmesg 2>/dev/null | grep -E 'kvm[-_]pvm' | grep 'not binding' | tail -n 1 |
           sed -E 's/^<[0-9]+>//; s/^\[[^]]*\] *//')
    if [ -n "$line" ]; then
        expect_has kvm-device FAIL "kernel log: \"${line:0:200}" \
            "kvm_pvm present, /dev/kvm missing: FAIL quoting the kernel's reason"
    else
        expect kvm-device FAIL 'kvm_pvm is loaded' "kvm_pvm present, /dev/kvm missing: FAIL (no kvm-pvm \"not binding\" line readable here)"
    fi
else
    expect kvm-device FAIL '/dev/kvm missing' "/dev/kvm missing: FAIL"
fi
if [ -d /sys/module/kvm_pvm ]; then
    expect kvm-flavour WARN '^PVM' "kvm_pvm loaded: flavour PVM with a warning"
elif [ -d /sys/module/kvm_intel ]; then
    expect kvm-flavour OK '^VT-x' "kvm_intel loaded: flavour VT-x"
elif [ -d /sys/module/kvm_amd ]; then
    expect kvm-flavour OK '^AMD-V' "kvm_amd loaded: flavour AMD-V"
else
    tap_ok "no vendor module loaded: flavour $(field kvm-flavour value)"
fi

# memory failure
if [ -e /proc/sys/vm/memory_failure_recovery ]; then
    r=$(cat /proc/sys/vm/memory_failure_recovery)
    expect memory-failure "$([ "$r" = 1 ] && echo OK || echo WARN)" "recovery=$r" "memory_failure_recovery=$r reported"
else
    expect memory-failure WARN 'CONFIG_MEMORY_FAILURE' "no memory-failure sysctls: WARN, no CONFIG_MEMORY_FAILURE"
fi

# dmemfs
if grep -qw dmemfs /proc/filesystems; then
    expect dmemfs OK 'registered' "dmemfs registered: OK"
else
    expect dmemfs WARN 'not registered' "no dmemfs in /proc/filesystems: WARN"
fi

# hugetlb pools, with the counts sysfs gives
for kb in 2048 1048576; do
    name=$([ $kb = 2048 ] && echo hugetlb-2M || echo hugetlb-1G)
    d=/sys/kernel/mm/hugepages/hugepages-${kb}kB
    if [ -d "$d" ]; then
        expect "$name" OK "^total $(cat "$d/nr_hugepages"), free $(cat "$d/free_hugepages")," "$name pool listed with sysfs's counts"
    else
        expect "$name" WARN 'no pool' "$name: no pool on this host"
    fi
done

tap_diag "$TEXT"
tap_done
