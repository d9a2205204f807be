#!/bin/bash
# `dvmm hostcheck` on the host it runs on: every line must agree with what
# this script reads from /proc and /sys itself.  On the development machines
# that means: PVM with kvm_pvm present but not bound (/dev/kvm missing ->
# FAIL naming the reason), no memory-failure support, no dmemfs, hugetlb
# pools listed.  The fake-tree cases live in tests/unit/test_hostcheck.c.
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

tap_plan 8

if printf '%s' "$JSON" | perl -MJSON::PP -e 'decode_json(do { local $/; <STDIN> })' 2>/dev/null; then
    tap_ok "--json prints one JSON object"
else
    tap_not_ok "--json prints one JSON object" "$JSON"
fi
nfail=$(printf '%s\n' "$TEXT" | grep -c '^FAIL ')
want_rc=$([ "$nfail" -gt 0 ] && echo 1 || echo 0)
tap_is "$RC" "$want_rc" "exit status $want_rc with $nfail FAIL line(s)"

# /dev/kvm and the flavour
if [ -e /dev/kvm ]; then
    st=$(field kvm-device status)
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        expect kvm-device OK 'API version' "/dev/kvm present: kvm-device OK"
    else
        expect kvm-device FAIL 'Permission denied' "/dev/kvm not accessible: kvm-device FAIL"
    fi
elif [ -d /sys/module/kvm_pvm ]; then
    line=$(dmesg 2>/dev/null | grep 'kvm-pvm:.*not binding' | tail -n 1)
    if [ -n "$line" ]; then
        needs=$(printf '%s\n' "$line" | sed -n 's/.*(needs \([^;]*\);.*/\1/p')
        expect kvm-device FAIL "kvm_pvm is loaded but refused to bind.*needs $needs" \
            "kvm_pvm present, /dev/kvm missing: FAIL quoting the kernel's reason"
    else
        expect kvm-device FAIL 'kvm_pvm is loaded' "kvm_pvm present, /dev/kvm missing: FAIL"
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
    if [ -d $d ]; then
        expect $name OK "^total $(cat $d/nr_hugepages), free $(cat $d/free_hugepages)," "$name pool listed with sysfs's counts"
    else
        expect $name WARN 'no pool' "$name: no pool on this host"
    fi
done

tap_diag "$TEXT"
tap_done
