#!/bin/bash
# Linux-guest machine-check recovery, end to end (TAP).  dvmm boots Debian's
# stock kernel with the guest kit (configs/linux-debian.ini,
# kernel-support/guest/): the initramfs checks vda has one queue per vCPU,
# writes and reads it, then runs the victim, which prints the GPA of a page
# it keeps reading.  This script poisons that GPA from the host:
#   - `dvmm ctl SOCK hwpoison gpa=G` where the host kernel has
#     CONFIG_MEMORY_FAILURE: MADV_HWPOISON on the page backing G; the host
#     kernel sends dvmm's main thread SIGBUS AO (early kill), and the
#     guest's next access faults in KVM, which sends the vCPU thread AR;
#   - `dvmm ctl SOCK mce-inject gpa=G kind=ar vcpu=N` otherwise (N is the
#     CPU the victim pinned itself to).
# The victim must then get SIGBUS BUS_MCEERR_AR inside the guest and print
# RECOVERED, the guest must go on (GUEST-ALIVE) and reset, and dvmm's MCE
# log must hold the JSON lines of what it injected.
#
# Where it runs: a usable /dev/kvm on VT-x/AMD-V, or inside the nested KVM
# host (DVMM_NESTED=1).  Without one it skips: a Linux boot in the nested
# host takes minutes, too slow for `make test`.  By hand:
#   DVMM_LINUX_MCE_NESTED=1 prove -v tests/integration/linux-mce.t
#   tests/lib/nested-run tests/linux/mce-recovery.sh
# Knobs: DVMM_LINUX_MCE_TIMEOUT (s for the whole VM, default 1200),
# DVMM_LINUX_MCE_METHOD (auto|hwpoison|inject, default auto),
# DVMM_LINUX_MCE_VCPUS (default 2), DVMM_LINUX_MCE_CMDLINE (guest command
# line before dvmm.victim=; default as in configs/linux-debian.ini),
# DVMM_LINUX_MCE_WAIT (s the victim waits for its SIGBUS, default 300).
# Logs stay in $DVMM_BUILD/tests/linux-mce/.
# One compound command: bash parses it whole before running, so editing
# this file while a (minutes-long) run reads it cannot derail that run.
{
cd "$(dirname "$(readlink -f "$0")")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh

LM_HOWTO="run it by hand in the nested KVM host: DVMM_LINUX_MCE_NESTED=1 prove -v tests/integration/linux-mce.t (or tests/lib/nested-run tests/linux/mce-recovery.sh)"

# Where this can run: "here", "nested", or "skip: reason".
lm_where() {
    if kvm_usable; then
        if [ -n "${DVMM_NESTED:-}" ]; then
            echo here
        elif [ -d /sys/module/kvm_pvm ]; then
            echo "skip: /dev/kvm here is PVM, where a stock kernel stops in KVM's instruction emulator; $LM_HOWTO"
        elif ! grep -qw -E 'vmx|svm' /proc/cpuinfo; then
            echo "skip: /dev/kvm works but the CPU shows no VT-x/AMD-V; $LM_HOWTO"
        else
            echo here
        fi
    elif [ "${DVMM_LINUX_MCE_NESTED:-0}" = 1 ] && [ -z "${DVMM_NESTED:-}" ]; then
        echo nested
    else
        echo "skip: $(kvm_absent_reason); booting Linux in the nested KVM host takes minutes, too slow for make test; $LM_HOWTO"
    fi
}

where=$(lm_where)
case $where in
    skip:*) tap_skip_all "${where#skip: }" ;;
esac

build=$(dvmm_build_dir) || tap_bail_out "cannot create the build directory"
dvmm=$build/dvmm
[ -x "$dvmm" ] || tap_bail_out "$dvmm is not built (make BUILD=$build)"
# The kit is built on the fast side; inside the nested host it is cached.
linux_kernel_fetch >&2 ||
    tap_skip_all "Debian's linux-image-amd64 cannot be fetched with apt here"
# Under TCG the module lookups alone take minutes: inside the nested host,
# trust the kit the outside just built (need_kvm passes DVMM_* on).
if [ -z "${DVMM_NESTED:-}" ] || [ -z "${DVMM_LINUX_MCE_KIT_BUILT:-}" ]; then
    kit=$(kernel-support/guest/mkinitramfs 2>&1) ||
        tap_bail_out "make linux-guest failed (needs busybox-static, cpio, gcc -static): $(tail -n 3 <<<"$kit")"
fi

if [ "$where" = nested ]; then
    export DVMM_LINUX_MCE_KIT_BUILT=1
    # Nested host boot, guest boot and the MCE, with room to report.
    export DVMM_NESTED_TIMEOUT=${DVMM_NESTED_TIMEOUT:-1500}
fi
# Here it returns (setting KVM_WHERE); for "nested" it runs this script
# in the nested KVM host and exits with its status.
need_kvm "$@"

vcpus=${DVMM_LINUX_MCE_VCPUS:-2}
limit=${DVMM_LINUX_MCE_TIMEOUT:-1200}
method=${DVMM_LINUX_MCE_METHOD:-auto}
wait_s=${DVMM_LINUX_MCE_WAIT:-300}
if [ -n "${DVMM_NESTED_DEADLINE:-}" ]; then
    left=$((DVMM_NESTED_DEADLINE - $(date +%s) - 40))
    [ "$left" -lt "$limit" ] && limit=$((left > 10 ? left : 10))
fi

out=$build/tests/linux-mce
{ rm -rf "$out" && mkdir -p "$out"; } || tap_bail_out "cannot create $out"
# Console, MCE log and socket on local storage: dvmm writes the console a
# byte at a time, and in the nested host the build tree is a 9p share.
tmp=$(mktemp -d) || tap_bail_out "mktemp failed"
con=$tmp/console.log log=$tmp/mce.jsonl sock=$tmp/ctl.sock err=$out/dvmm.stderr
lm_save() {
    cp "$con" "$out/console.log" 2>/dev/null
    cp "$log" "$out/mce.jsonl" 2>/dev/null
}
trap 'lm_save; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
: >"$con"
: >"$log"

sets=(--set "vm.kernel=$build/linux-guest/vmlinuz"
      --set "vm.initrd=$build/linux-guest/initramfs.cpio.gz"
      --set "disk.0.path=$build/linux-guest/disk.img"
      --set "vm.vcpus=$vcpus"
      --set "vm.cmdline=${DVMM_LINUX_MCE_CMDLINE:-console=ttyS0 reboot=k panic=-1 initcall_blacklist=i8042_init dvmm.queues=cpus dvmm.blkio=1} dvmm.victim=$wait_s"
      --set "console.output=$con" --set console.input=no
      --set "control.socket=$sock" --set "mce.log=$log")

tap_plan 15
tap_diag "running on $KVM_WHERE; kernel $LINUX_KVER, $vcpus vCPUs, dvmm limit $limit s; logs in $out"

# 1
if check=$("$dvmm" check configs/linux-debian.ini "${sets[@]}" 2>&1); then
    tap_ok "dvmm check accepts configs/linux-debian.ini with the kit from $build/linux-guest"
else
    tap_not_ok "dvmm check accepts configs/linux-debian.ini" "$check"
fi

t0=$(date +%s.%N)
lm_elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
run_with_timeout "$limit" "$dvmm" run configs/linux-debian.ini "${sets[@]}" \
    </dev/null >"$out/dvmm.stdout" 2>"$err" &
pid=$!
rc="" deadline="" timed_out="" ctx_shown=""
declare -A at=()

lm_alive() {
    [ -z "$rc" ] || return 1
    kill -0 "$pid" 2>/dev/null && return 0
    wait "$pid"
    rc=$?
    pid=""
    at[exit]=$(lm_elapsed)
    return 1
}

# lm_wait NAME REGEX: until the console has a matching line (the time it
# was first seen goes into at[NAME]); fails when dvmm exits without it.
lm_wait() {
    local name=$1 re=$2
    while :; do
        if [ -n "$deadline" ] && [ "$(date +%s)" -ge "$deadline" ]; then
            timed_out=yes
            return 1
        fi
        if tr -d '\r' <"$con" | grep -Eq -- "$re"; then
            [ -n "${at[$name]:-}" ] || at[$name]=$(lm_elapsed)
            return 0
        fi
        lm_alive || { tr -d '\r' <"$con" | grep -Eq -- "$re" && at[$name]=${at[exit]}; return; }
        # Keep a copy that outlives a nested host that dies with its /tmp.
        lm_save
        sleep 1
    done
}

lm_line() { tr -d '\r' <"$con" | grep -Eo -m1 -- "$1"; }

lm_fail_ctx() {
    echo "dvmm: ${rc:-still running} after $(lm_elapsed) s"
    # The console and stderr once; later failures point back to them.
    if [ -n "$ctx_shown" ]; then
        echo "console and stderr: see the first failure above"
        return
    fi
    [ -n "$timed_out" ] && echo "gave up $((wait_s + 120)) s after the injection"
    echo "console (last lines):"
    tr -d '\r' <"$con" | grep -v '^\s*$' | tail -n 12
    echo "dvmm stderr (last lines):"
    tail -n 6 "$err"
}

# lm_step NAME REGEX DESCRIPTION: one test per console marker.
lm_step() {
    if lm_wait "$1" "$2"; then
        tap_ok "$3"
        tap_diag "$(lm_line "$2") (at ${at[$1]} s)"
    else
        tap_not_ok "$3" "no console line /$2/" "$(lm_fail_ctx)"
        ctx_shown=yes
    fi
}

# 2-4: the kit's boot-time checks.
lm_step up "GUEST-UP .*cpus=$vcpus\$" "guest reached /init with all $vcpus vCPUs online"
lm_step queues "GUEST-BLK-QUEUES ok $vcpus\$" "virtio-blk vda has one queue per vCPU ($vcpus)"
lm_step blkio "GUEST-BLK-IO ok.*" "guest wrote 1 MiB to vda and read the same bytes back"

# 5: the victim announces its page.
lm_step ready 'VICTIM-READY gpa=0x[0-9a-f]+ va=0x[0-9a-f]+ pid=[0-9]+ cpu=[0-9]+' \
    "victim announced the GPA of its page (from /proc/self/pagemap)"
ready=$(lm_line 'VICTIM-READY .*')
gpa=$(sed -n 's/.*gpa=\(0x[0-9a-f]*\).*/\1/p' <<<"$ready")
va=$(sed -n 's/.*va=\(0x[0-9a-f]*\).*/\1/p' <<<"$ready")
vcpu=$(sed -n 's/.*cpu=\([0-9]*\).*/\1/p' <<<"$ready")

# 6: the host side.
ctl() {
    ctl_out=$("$dvmm" ctl "$sock" "$@" 2>&1)
    ctl_rc=$?
    printf '$ dvmm ctl SOCK %s\n%s\n' "$*" "$ctl_out" >>"$out/ctl.log"
}
used=none
if [ -z "$gpa" ] || ! lm_alive; then
    tap_not_ok "host poisoned the victim's GPA" "no victim GPA or dvmm gone"
else
    if [ "$method" != inject ]; then
        ctl hwpoison gpa="$gpa"
        if [ "$ctl_rc" -eq 0 ]; then
            used=hwpoison
        elif [ "$method" = hwpoison ]; then
            used=failed
        else
            tap_diag "hwpoison refused, falling back to mce-inject kind=ar: $ctl_out"
        fi
    fi
    if [ "$used" = none ]; then
        ctl mce-inject gpa="$gpa" kind=ar vcpu="$vcpu"
        [ "$ctl_rc" -eq 0 ] && used=mce-inject || used=failed
    fi
    at[inject]=$(lm_elapsed)
    # The victim gives up after wait_s and the guest reports that itself;
    # past that the guest is stuck.
    deadline=$(( $(date +%s) + wait_s + 120 ))
    if [ "$used" = failed ]; then
        tap_not_ok "host poisoned GPA $gpa" "dvmm ctl exit $ctl_rc: $ctl_out"
    else
        tap_ok "host poisoned GPA $gpa with dvmm ctl $used"
        tap_diag "reply: $ctl_out (at ${at[inject]} s)"
    fi
fi

# 7-10: the guest kernel's recovery.
lm_step sigbus "VICTIM-SIGBUS code=BUS_MCEERR_AR addr=$va .*" \
    "victim got SIGBUS BUS_MCEERR_AR for its page ($va) inside the guest"
lm_step recovered '^RECOVERED$' "victim printed RECOVERED"
lm_step vexit 'GUEST-VICTIM-EXIT 0$' "victim exited 0"
lm_step alive 'GUEST-ALIVE .*' "guest kernel still up after the machine check (GUEST-ALIVE)"

# 11: the guest resets, dvmm exits 0 (on_reset = exit).  A guest that got
# stuck after the machine check is shown by status and then stopped.
while lm_alive; do
    if [ -n "$deadline" ] && [ "$(date +%s)" -ge "$deadline" ]; then
        ctl status
        tap_diag "still running $((wait_s + 120)) s after the injection; status: $ctl_out"
        ctl quit
        sleep 5
        lm_alive && kill "$pid"
        deadline=""
    fi
    sleep 1
done
if [ "$rc" -eq 0 ]; then
    tap_ok "dvmm exits 0 after the guest's reset"
else
    tap_not_ok "dvmm exits 0 after the guest's reset" \
        "exit status $rc$([ "$rc" -eq 124 ] && echo " (killed after $limit s)")" "$(lm_fail_ctx)"
fi

# 12: no panic, and what the guest kernel said about the machine check.
mcelines=$(tr -d '\r' <"$con" | grep -v 'ommand line' |
    grep -E -i 'mce|machine check|memory failure|hardware error|panic' | head -n 20)
if tr -d '\r' <"$con" | grep -q 'Kernel panic'; then
    tap_not_ok "guest kernel did not panic"
else
    tap_ok "guest kernel did not panic"
fi
[ -n "$mcelines" ] && tap_diag "guest kernel on the machine check:" "$mcelines"
# How the guest grades the error depends on its CPU vendor: Linux on AMD
# ignores MCG_SER_P, panics on an uncorrected error in kernel context and
# kills the task for one in user mode only with McaOverflowRecov.
tap_diag "guest CPU: $(tr -d '\r' <"$con" | grep -m1 -o 'smpboot: CPU0: .*')"
grep -E 'MCG_SER_P|machine-check shutdown|mce' "$err" | head -n 5 | tap_diag -
if tr -d '\r' <"$con" | grep -q 'Uncorrected error without MCA Recovery'; then
    tap_diag "why: Linux's AMD rules panic on any uncorrected error unless CPUID 0x80000007 EBX[1] (SUCCOR) is set, and dvmm's guest CPUID does not set it"
elif tr -d '\r' <"$con" | grep -q 'Uncorrected unrecoverable error in kernel context'; then
    tap_diag "why: the #MC interrupted guest kernel code, which Linux's AMD rules always treat as fatal (an AO included)"
fi

# 13-15: dvmm's JSON MCE log.
tap_diag "MCE log:" "$(cat "$log")"
if [ -s "$log" ] && jq -e -s 'length > 0 and all(has("time") and has("kind") and has("hva")
        and has("gpa") and has("vcpu") and has("injected"))' "$log" >/dev/null 2>&1; then
    tap_ok "every MCE log line is JSON with time, kind, hva, gpa, vcpu, injected"
else
    tap_not_ok "every MCE log line is JSON with time, kind, hva, gpa, vcpu, injected"
fi
# lm_event KIND: the first logged event of KIND for the victim's page,
# injected into the guest, as "vcpu reason".
lm_event() {
    [ -n "$gpa" ] || return 1
    jq -r -s --arg k "$1" '.[] | select(.kind == $k and .injected == true) |
        "\(.gpa) \(.vcpu) \(.reason)"' "$log" 2>/dev/null |
        while read -r g v r; do
            [ $((g)) -eq $((gpa & ~4095)) ] && { echo "$v $r"; break; }
        done
}
ar=$(lm_event AR)
if [ -n "$ar" ]; then
    tap_ok "MCE log: AR for GPA $gpa injected (vcpu ${ar%% *})"
else
    tap_not_ok "MCE log: AR for GPA $gpa injected" "no such line"
fi
if [ "$used" = hwpoison ]; then
    ao=$(lm_event AO)
    if [ -n "$ao" ]; then
        tap_ok "MCE log: AO for GPA $gpa from the host's early kill, injected into vCPU ${ao%% *}"
    else
        tap_not_ok "MCE log: AO for GPA $gpa from the host's early kill" "no such line"
    fi
else
    tap_skip "an AO comes only from a real host memory failure (hwpoison not used: $used)"
fi

timeline=""
for k in up queues blkio ready inject sigbus recovered alive exit; do
    [ -n "${at[$k]:-}" ] && timeline="$timeline $k=${at[$k]}s"
done
tap_diag "timeline:$timeline"
tap_done
exit
}
