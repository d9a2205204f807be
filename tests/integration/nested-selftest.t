#!/bin/bash
# Proves the KVM test harness: wherever need_kvm lands us (this host's
# /dev/kvm or the nested KVM host), /dev/kvm opens and a minimal real-mode
# vCPU (tests/lib/kvm-smoke.c) performs an OUT and a HLT.  In the nested host
# it also checks what other tests rely on there: 1 GiB pages, hugetlbfs,
# memory-failure support and the writable repo.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh

build=$(dvmm_build_dir) || tap_bail_out "cannot create the build directory"
smoke=$build/tests/kvm-smoke
# Built before need_kvm, on the fast side; the nested re-run finds it fresh.
if [ ! -x "$smoke" ] || [ tests/lib/kvm-smoke.c -nt "$smoke" ]; then
    mkdir -p "$(dirname "$smoke")"
    smoke_cc=$(${CC:-gcc} -std=gnu11 -Wall -Wextra -Werror -O2 -o "$smoke" tests/lib/kvm-smoke.c 2>&1)
fi

need_kvm "$@"

tap_plan 7
tap_diag "running on $KVM_WHERE"

if kvm_usable; then
    tap_ok "/dev/kvm is a character device that opens read-write"
else
    tap_not_ok "/dev/kvm is a character device that opens read-write" "$(ls -l /dev/kvm 2>&1)"
fi

if [ -x "$smoke" ]; then
    tap_ok "kvm-smoke compiled"
else
    tap_not_ok "kvm-smoke compiled" "${smoke_cc:-no output}"
fi

out=$(run_with_timeout 60 "$smoke" 2>&1)
rc=$?
if [ "$rc" -eq 0 ] && grep -q 'exit_io direction=out port=0x10 size=1 count=1 value=0x2a' <<<"$out"; then
    tap_ok "real-mode vCPU exits with KVM_EXIT_IO out 0x2a to port 0x10"
else
    tap_not_ok "real-mode vCPU exits with KVM_EXIT_IO out 0x2a to port 0x10" "exit status $rc" "$out"
fi
if [ "$rc" -eq 0 ] && grep -q 'exit_hlt' <<<"$out"; then
    tap_ok "then with KVM_EXIT_HLT"
else
    tap_not_ok "then with KVM_EXIT_HLT" "exit status $rc" "$out"
fi

if [ -z "${DVMM_NESTED:-}" ]; then
    tap_skip "not in the nested KVM host (this host has its own /dev/kvm)" 3
else
    if grep -qw pdpe1gb /proc/cpuinfo && awk '$3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; then
        tap_ok "nested host has pdpe1gb (1 GiB pages) and hugetlbfs mounted"
    else
        tap_not_ok "nested host has pdpe1gb (1 GiB pages) and hugetlbfs mounted" \
            "$(grep -m1 ^flags /proc/cpuinfo)" "$(grep hugetlbfs /proc/mounts)"
    fi
    if [ -e /proc/sys/vm/memory_failure_early_kill ]; then
        tap_ok "nested host kernel has CONFIG_MEMORY_FAILURE (MADV_HWPOISON works)"
    else
        tap_not_ok "nested host kernel has CONFIG_MEMORY_FAILURE (MADV_HWPOISON works)"
    fi
    probe=$build/nested/selftest-probe.$$
    if echo ok >"$probe" && [ "$(cat "$probe")" = ok ]; then
        tap_ok "build directory $build is writable from the nested host"
    else
        tap_not_ok "build directory $build is writable from the nested host"
    fi
    rm -f "$probe"
fi
tap_done
