#!/bin/bash
# Linux-guest machine-check recovery, end to end, in one guest boot (TAP).
# dvmm boots Debian's stock kernel with the guest kit (configs/linux-debian.ini,
# kernel-support/guest/): the initramfs checks vda (one queue per vCPU,
# write and read back), then runs the victim three times, each time on a
# fresh page whose GPA it prints, and this script plays the host:
#   hwpoison  `dvmm ctl SOCK hwpoison gpa=G`: MADV_HWPOISON on the host page;
#             the victim's next (user-mode) read faults in KVM, which sends
#             dvmm's vCPU thread BUS_MCEERR_AR, and dvmm injects the AR;
#   user      `dvmm ctl SOCK mce-inject gpa=G kind=ar vcpu=N mode=user`:
#             dvmm holds the AR until vCPU N runs guest user code;
#   ao        `dvmm ctl SOCK mce-inject gpa=G kind=ao`: for an AMD guest a
#             deferred error in bank 9, no #MC; the guest polls its banks
#             every second (dvmm.mce_poll=1) and hands the page to
#             memory_failure(), whose early kill reaches the victim as
#             BUS_MCEERR_AO; its next read then faults: BUS_MCEERR_AR.
# In each round the guest kernel must kill-and-recover the victim with
# SIGBUS BUS_MCEERR_AR (it prints RECOVERED) and go on.  Then, with every
# CPU idle in the kernel (GUEST-IDLE), the negative control:
#   panic     `dvmm ctl SOCK mce-inject gpa=G kind=ar vcpu=1` (no mode):
#             an uncorrected error in kernel context, which the guest must
#             not survive: it panics, resets (panic=-1), and dvmm says so
#             and exits 0 (on_reset = exit).
# dvmm's MCE log must hold one JSON line per event, in the guest's
# encoding.
#
# Where it runs: a usable /dev/kvm on VT-x/AMD-V; elsewhere (no /dev/kvm, or
# PVM's, where a stock kernel cannot run) inside the nested KVM host, whose
# guests are AMD.  Without either it skips, saying why.
# Knobs: DVMM_LINUX_MCE_VCPUS (2), DVMM_LINUX_MCE_MEM (256M),
# DVMM_LINUX_MCE_WAIT (s the victim waits in each round, default 60),
# DVMM_LINUX_MCE_TIMEOUT (s for the whole VM, default 600),
# DVMM_LINUX_MCE_CMDLINE (the guest command line before the dvmm.victim
# options).  Logs stay in $DVMM_BUILD/tests/linux-mce/.
# One compound command: bash parses it whole before running, so editing
# this file while a run reads it cannot derail that run.
{
cd "$(dirname "$(readlink -f "$0")")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh

build=$(dvmm_build_dir) || tap_bail_out "cannot create the build directory"
dvmm=$build/dvmm
# The kit is built on the fast side; inside the nested host (TCG, where the
# module lookups alone take minutes) the outside's build is trusted.
if [ -z "${DVMM_NESTED:-}" ] || [ -z "${DVMM_LINUX_MCE_KIT_BUILT:-}" ]; then
    if ! kvm_usable && [ -n "$(nested_unavailable_reason)" ]; then
        : # need_kvm below skips with the reason; do not build for nothing
    else
        [ -x "$dvmm" ] || tap_bail_out "$dvmm is not built (make BUILD=$build)"
        linux_kernel_fetch >&2 ||
            tap_skip_all "Debian's linux-image-amd64 cannot be fetched with apt here"
        kit=$(kernel-support/guest/mkinitramfs 2>&1) ||
            tap_bail_out "make linux-guest failed (needs busybox-static, cpio, gcc -static): $(tail -n 3 <<<"$kit")"
        export DVMM_LINUX_MCE_KIT_BUILT=1
    fi
fi
# Nested host boot, guest boot, four rounds and room to report.
export DVMM_NESTED_TIMEOUT=${DVMM_NESTED_TIMEOUT:-900}
# Here it returns (setting KVM_WHERE); otherwise it runs this script in the
# nested KVM host and exits with its status.
need_kvm_stock_guest "$@"
linux_kernel_fetch >&2 || tap_bail_out "Debian's kernel is not in $build/linux"

vcpus=${DVMM_LINUX_MCE_VCPUS:-2}
mem=${DVMM_LINUX_MCE_MEM:-256M}
limit=${DVMM_LINUX_MCE_TIMEOUT:-600}
wait_s=${DVMM_LINUX_MCE_WAIT:-60}
if [ -n "${DVMM_NESTED_DEADLINE:-}" ]; then
    left=$((DVMM_NESTED_DEADLINE - $(date +%s) - 40))
    [ "$left" -lt "$limit" ] && limit=$((left > 10 ? left : 10))
fi
# The negative control goes to a vCPU the victim does not run on.
neg_vcpu=$((vcpus > 1 ? 1 : 0))

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

# quiet: the 8250 costs an exit per byte; the kernel's machine-check and
# memory-failure lines are errors and emergencies, which quiet keeps.
base=${DVMM_LINUX_MCE_CMDLINE:-console=ttyS0 quiet reboot=k panic=-1 initcall_blacklist=i8042_init dvmm.queues=cpus dvmm.blkio=1}
sets=(--set "vm.kernel=$build/linux-guest/vmlinuz"
      --set "vm.initrd=$build/linux-guest/initramfs.cpio.gz"
      --set "disk.0.path=$build/linux-guest/disk.img"
      --set "vm.vcpus=$vcpus" --set "vm.memory=$mem"
      --set "vm.cmdline=$base dvmm.victim=$wait_s dvmm.victims=hwpoison,user,ao dvmm.mce_poll=1 dvmm.idle=$((wait_s * 2))"
      --set "console.output=$con" --set console.input=no
      --set "control.socket=$sock" --set "mce.log=$log")

tap_plan 28
tap_diag "running on $KVM_WHERE; kernel $LINUX_KVER, $vcpus vCPUs, $mem, dvmm limit $limit s; logs in $out"

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
rc="" ctx_shown=""
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

# The guest's console as lines.  The kernel's printk does not wait for a
# user-space line to end on the serial console: a record can land inside
# one ("VICTIM-SIGBUS ro[   14.53] MCE: Killing victim... \nund=ao code=..."
# was seen).  Such a record goes out on a line of its own and the two
# halves of the cut line are joined again.
lm_console() {
    tr -d '\r' <"$con" | awk '
        { if (cut != "") { $0 = cut $0; cut = "" } }
        match($0, /\[ *[0-9]+\.[0-9]+\] /) && RSTART > 1 {
            print substr($0, RSTART); cut = substr($0, 1, RSTART - 1); next
        }
        { print }
        END { if (cut != "") print cut }'
}

# lm_wait NAME REGEX SECONDS: until the console has a matching line (the
# time it was first seen goes into at[NAME]); fails when dvmm exits
# without it or SECONDS pass.
lm_wait() {
    local name=$1 re=$2 end=$(( $(date +%s) + $3 ))
    while :; do
        if lm_console | grep -Eq -- "$re"; then
            [ -n "${at[$name]:-}" ] || at[$name]=$(lm_elapsed)
            return 0
        fi
        lm_alive || { lm_console | grep -Eq -- "$re" && at[$name]=${at[exit]}; return; }
        [ "$(date +%s)" -lt "$end" ] || return 1
        # Keep a copy that outlives a nested host that dies with its /tmp.
        lm_save
        sleep 0.5
    done
}

lm_line() { lm_console | grep -Eo -m1 -- "$1"; }

lm_fail_ctx() {
    echo "dvmm: ${rc:-still running} after $(lm_elapsed) s"
    # The console and stderr once; later failures point back to them.
    if [ -n "$ctx_shown" ]; then
        echo "console and stderr: see the first failure above"
        return
    fi
    ctx_shown=yes
    echo "console (last lines):"
    lm_console | grep -v '^\s*$' | tail -n 15
    echo "dvmm stderr (last lines):"
    tail -n 6 "$err"
}

# lm_step NAME REGEX SECONDS DESCRIPTION: one test per console marker.
lm_step() {
    if lm_wait "$1" "$2" "$3"; then
        tap_ok "$4"
        tap_diag "$(lm_line "$2") (at ${at[$1]} s)"
    else
        tap_not_ok "$4" "no console line /$2/ within $3 s" "$(lm_fail_ctx)"
    fi
}

ctl() {
    ctl_out=$("$dvmm" ctl "$sock" "$@" 2>&1)
    ctl_rc=$?
    printf '$ dvmm ctl SOCK %s\n%s\n' "$*" "$ctl_out" >>"$out/ctl.log"
}
# ctl_ok DESCRIPTION JQ: the last reply satisfies JQ.
ctl_ok() {
    if [ "$ctl_rc" -eq 0 ] && printf '%s' "$ctl_out" | jq -e "$2" >/dev/null 2>&1; then
        tap_ok "$1"
        tap_diag "reply: $(printf '%s' "$ctl_out" | jq -c . 2>/dev/null)"
    else
        tap_not_ok "$1" "dvmm ctl exit $ctl_rc, reply: $ctl_out" "jq: $2"
    fi
}
# log_ok DESCRIPTION JQ: the MCE log has a line satisfying JQ.
log_ok() {
    if jq -e -s "any(.[]; $2)" "$log" >/dev/null 2>&1; then
        tap_ok "$1"
    else
        tap_not_ok "$1" "jq: $2" "MCE log:" "$(cat "$log")"
    fi
}

# 2-5: the kit's boot-time checks.
lm_step up "GUEST-UP .*cpus=$vcpus\$" 400 "guest reached /init with all $vcpus vCPUs online"
mca=$(lm_line 'GUEST-MCA .*')
case $mca in
    *AuthenticAMD*|*HygonGenuine*) want_flags="succor overflow_recov" ;;
    *) want_flags="" ;;
esac
missing=""
for f in $want_flags; do
    grep -qw "$f" <<<"$mca" || missing="$missing $f"
done
if [ -n "$mca" ] && [ -z "$missing" ]; then
    tap_ok "guest CPU's machine-check recovery features: ${want_flags:-Intel rules (MCG_SER_P)}"
    tap_diag "$mca"
else
    tap_not_ok "guest CPU's machine-check recovery features: $want_flags" "${mca:-no GUEST-MCA line}" \
        "missing:$missing"
fi
lm_step queues "GUEST-BLK-QUEUES ok $vcpus\$" 60 "virtio-blk vda has one queue per vCPU ($vcpus)"
lm_step blkio "GUEST-BLK-IO ok.*" 60 "guest wrote 1 MiB to vda and read the same bytes back"
lm_console | grep -m1 'GUEST-MCE-POLL' | tap_diag -

# lm_round NAME: wait for the victim of round NAME; sets gpa, va, vcpu.
declare -A gpas=()
lm_ready() {
    local r=$1 ready
    gpa="" va="" vcpu=""
    lm_step "ready-$r" "VICTIM-READY round=$r gpa=0x[0-9a-f]+ va=0x[0-9a-f]+ pid=[0-9]+ cpu=[0-9]+" 60 \
        "round $r: victim announced the GPA of its page (from /proc/self/pagemap)"
    ready=$(lm_line "VICTIM-READY round=$r .*")
    gpa=$(sed -n 's/.* gpa=\(0x[0-9a-f]*\).*/\1/p' <<<"$ready")
    va=$(sed -n 's/.* va=\(0x[0-9a-f]*\).*/\1/p' <<<"$ready")
    vcpu=$(sed -n 's/.* cpu=\([0-9]*\).*/\1/p' <<<"$ready")
    gpas[$r]=$gpa
}
# lm_recovered NAME ADDR_RE: the round's SIGBUS AR and RECOVERED, and its exit.
lm_recovered() {
    local r=$1 a=$2
    lm_step "sigbus-$r" "VICTIM-SIGBUS round=$r code=BUS_MCEERR_AR addr=$a " $((wait_s + 30)) \
        "round $r: the guest kernel sent the victim SIGBUS BUS_MCEERR_AR for its page"
    lm_step "recovered-$r" "^RECOVERED round=$r\$" 10 "round $r: victim printed RECOVERED and exited 0 (GUEST-VICTIM-EXIT round=$r 0)"
    lm_wait "vexit-$r" "GUEST-VICTIM-EXIT round=$r 0\$" 10 ||
        tap_diag "round $r: no 'GUEST-VICTIM-EXIT round=$r 0': $(lm_line "GUEST-VICTIM-EXIT round=$r .*")"
}
# lm_kernel_said ROUND: what the guest kernel printed during that round.
lm_kernel_said() {
    lm_console | sed -n "/VICTIM-READY round=$1 /,/GUEST-VICTIM-EXIT round=$1 /p" |
        grep -E '^\[ *[0-9]+\.[0-9]+\]' | head -n 16
}

# ---- round hwpoison: a real host memory failure --------------------------
# 6-10: ready, poisoned, SIGBUS, RECOVERED, logged
lm_ready hwpoison
if [ -n "$gpa" ] && lm_alive; then
    ctl hwpoison gpa="$gpa"
    at[inject-hwpoison]=$(lm_elapsed)
    ctl_ok "round hwpoison: host page behind GPA $gpa poisoned (MADV_HWPOISON)" '.ok == true and .poisoned == true'
else
    tap_not_ok "round hwpoison: host page poisoned" "no victim GPA or dvmm gone"
fi
# KVM's AR carries the page: the guest kills with the page-aligned address.
lm_recovered hwpoison "$va"
tap_diag "round hwpoison, the guest kernel:"
lm_kernel_said hwpoison | tap_diag -
log_ok "round hwpoison: MCE log has KVM's own AR (kernel-sent) for GPA $gpa, injected" \
    ".kind == \"AR\" and .gpa == \"$gpa\" and .injected == true and (has(\"sent_ns\") | not)"
jq -r -s --arg g "$gpa" '.[] | select(.kind == "AO" and .gpa == $g) |
    "the host kernel'"'"'s early-kill AO for the same page: injected=\(.injected) (\(.reason))"' \
    "$log" 2>/dev/null | tap_diag -

# ---- round user: mce-inject mode=user -------------------------------------
# 11-15: ready, landed in user mode, SIGBUS, RECOVERED, logged
lm_ready user
if [ -n "$gpa" ] && lm_alive; then
    ctl mce-inject gpa="$gpa" kind=ar vcpu="$vcpu" mode=user
    at[inject-user]=$(lm_elapsed)
    ctl_ok "round user: mce-inject kind=ar mode=user landed on vCPU $vcpu in user mode (CS.RPL 3)" \
        '.ok == true and .landed == true and .injected == true and .mode == "user" and
         (.cs | test("^0x[0-9a-f]*[37bf]$"))'
else
    tap_not_ok "round user: mce-inject mode=user" "no victim GPA or dvmm gone"
fi
lm_recovered user "$va"
tap_diag "round user, the guest kernel:"
lm_kernel_said user | tap_diag -
log_ok "round user: MCE log has dvmm's AR (sent_ns) for GPA $gpa, injected" \
    ".kind == \"AR\" and .gpa == \"$gpa\" and .injected == true and has(\"sent_ns\")"

# ---- round ao: the action-optional record --------------------------------
# 16-22: ready, accepted, memory_failure(), SIGBUS AO, SIGBUS AR, RECOVERED, logged
lm_ready ao
if [ -n "$gpa" ] && lm_alive; then
    ctl mce-inject gpa="$gpa" kind=ao
    at[inject-ao]=$(lm_elapsed)
    ctl_ok "round ao: mce-inject kind=ao accepted (the reply names the delivery)" \
        '.ok == true and .signal == "SIGBUS BUS_MCEERR_AO" and (.delivery | type) == "string"'
    delivery=$(printf '%s' "$ctl_out" | jq -r .delivery 2>/dev/null)
else
    tap_not_ok "round ao: mce-inject kind=ao" "no victim GPA or dvmm gone"
    delivery=""
fi
pfn=$(printf '%x' $(( ${gpa:-0} >> 12 )))
lm_step "mf-ao" "[Mm]emory failure: 0x$pfn: " $((wait_s + 30)) \
    "round ao: the guest kernel found the record (${delivery:-?}) and ran memory_failure() on its page"
lm_step "sigbus-ao-early" "VICTIM-SIGBUS round=ao code=BUS_MCEERR_AO addr=$va " 10 \
    "round ao: early kill: the victim got SIGBUS BUS_MCEERR_AO for its page"
# Its next read faults on the unmapped page: the fault's own address.
lm_recovered ao "0x[0-9a-f]+"
tap_diag "round ao, the guest kernel:"
lm_kernel_said ao | tap_diag -
log_ok "round ao: MCE log has the AO for GPA $gpa, injected" \
    ".kind == \"AO\" and .gpa == \"$gpa\" and .injected == true"

# 23: the kernel survived all three.
lm_step alive 'GUEST-ALIVE .*hardware_corrupted=[1-9][0-9]* kB' 30 \
    "guest kernel still up after three machine checks, HardwareCorrupted > 0 (GUEST-ALIVE)"

# ---- the negative control: an AR in kernel context -------------------------
# 24-27: injected, panic, reset and exit 0, no earlier panic
lm_wait idle 'GUEST-IDLE ' 30
neg_gpa=${gpas[user]:-${gpas[hwpoison]:-}}
if [ -n "${at[idle]:-}" ] && [ -n "$neg_gpa" ] && lm_alive; then
    # A moment for the init shell to go to sleep: every CPU idle, in the kernel.
    sleep 1
    ctl mce-inject gpa="$neg_gpa" kind=ar vcpu="$neg_vcpu"
    at[inject-panic]=$(lm_elapsed)
    ctl_ok "negative control: mce-inject kind=ar vcpu=$neg_vcpu (no mode) while the guest idles in its kernel" \
        '.ok == true and (.mode | not)'
else
    tap_not_ok "negative control: mce-inject kind=ar vcpu=$neg_vcpu while the guest idles" \
        "guest not idle or dvmm gone" "$(lm_fail_ctx)"
fi
lm_step panic 'Kernel panic - not syncing' 60 "negative control: the guest kernel panics"
lm_console | sed -n '/GUEST-IDLE/,$p' | grep -E 'mce|Hardware Error|panic|context' | head -n 8 | tap_diag -
while lm_alive && [ "$(date +%s)" -lt $(( ${t0%.*} + limit )) ]; do sleep 0.5; done
if lm_alive; then
    ctl status
    tap_diag "still running; status: $ctl_out"
    ctl quit
    sleep 3
    lm_alive && kill "$pid"
    lm_alive
fi
if [ "$rc" = 0 ] && grep -q "guest reset .* after the machine check dvmm injected into vcpu$neg_vcpu" "$err"; then
    tap_ok "negative control: the guest reset (panic=-1), dvmm said why on stderr and exited 0 (on_reset = exit)"
    grep "guest reset" "$err" | tap_diag -
else
    tap_not_ok "negative control: the guest reset, dvmm said why and exited 0" \
        "exit status ${rc:-running}$([ "${rc:-}" = 124 ] && echo " (killed after $limit s)")" \
        "$(lm_fail_ctx)"
fi
# No panic before the negative control.
first_panic=$(lm_console | grep -n -m1 'Kernel panic' | cut -d: -f1)
idle_line=$(lm_console | grep -n -m1 'GUEST-IDLE' | cut -d: -f1)
if [ -n "$idle_line" ] && { [ -z "$first_panic" ] || [ "$first_panic" -gt "$idle_line" ]; }; then
    tap_ok "no guest panic before the negative control"
else
    tap_not_ok "no guest panic before the negative control" \
        "$(lm_console | grep -B4 -m1 'Kernel panic')"
fi

# 28: the MCE log, one JSON line per event, in the guest's encoding.
tap_diag "MCE log:" "$(cat "$log")"
want_enc=intel
[ -n "$want_flags" ] && want_enc=amd
if [ -s "$log" ] && jq -e -s --arg e "$want_enc" 'length >= 4 and all(has("time") and has("kind") and
        has("hva") and has("gpa") and has("vcpu") and has("injected") and .encoding == $e)' \
        "$log" >/dev/null 2>&1; then
    tap_ok "every MCE log line is JSON with time, kind, hva, gpa, vcpu, injected, encoding $want_enc"
else
    tap_not_ok "every MCE log line is JSON with time, kind, hva, gpa, vcpu, injected, encoding $want_enc"
fi

timeline=""
for k in up blkio ready-hwpoison inject-hwpoison recovered-hwpoison ready-user inject-user \
         recovered-user ready-ao inject-ao mf-ao recovered-ao alive idle inject-panic panic exit; do
    [ -n "${at[$k]:-}" ] && timeline="$timeline $k=${at[$k]}s"
done
tap_diag "timeline (s since dvmm started):$timeline"
tap_done
exit
}
