#!/bin/bash
# The sandbox (vmm/sandbox.h):
#   - the test hook DVMM_SANDBOX_SELFTEST=KIND makes the first thread of each
#     kind (main, vcpu, blk, net, prefault) call uname(2), which no list
#     allows: dvmm must end with exit status 1 and exactly one line naming
#     that thread, the call and its number;
#   - with seccomp = log the same call is let through: the guest runs on;
#   - a running VM: every thread of dvmm is under a filter (Seccomp: 2 in
#     /proc/PID/task/*/status) with no_new_privs, and the control socket
#     still works under it; with seccomp = no no thread is filtered and
#     no_new_privs is still set; vcpu-state reads a vCPU under main's
#     filter and the VM runs on;
#   - the control socket refuses a peer whose uid is neither dvmm's nor root
#     (SO_PEERCRED), says so in one log line and tells the client why;
#   - [sandbox] user: every thread runs as that user and group with no
#     capability (/proc/PID/status), the control socket belongs to it; a
#     reboot-able VM whose kernel the user cannot read is refused at start;
#     an unknown user is a config error;
#   - [sandbox] chroot: dvmm (the static build when built) runs in an empty
#     directory; with on_reset = reboot it is a config error.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh
# The net case needs a TAP; inside a nested KVM host that needs the module.
nested_want_modules tun
need_kvm "$@"
. tests/lib/dvmm-test.sh
dt_require_build
NSRUN=tests/lib/net-ns-run

tap_plan 33
tap_diag "running on $KVM_WHERE"

# selftest KIND NAME THREAD [dvmm options]: the hook for KIND in a one-vCPU
# guest; THREAD is the name the line must carry.
selftest() {
    local kind=$1 name=$2 thread=$3
    shift 3
    DVMM_SANDBOX_SELFTEST=$kind dvmm_guest "$name" 1 256M "${GUEST_CHECK:-boot}" \
        --set sandbox.seccomp=yes "$@"
    selftest_check "$kind" "$name" "$thread"
}

# selftest_check KIND NAME THREAD: two points for a run of NAME with the
# hook for KIND (its exit status in DT_RC): exit status 1, and one line
# naming THREAD, uname and its number.
selftest_check() {
    local kind=$1 name=$2 thread=$3 lines
    tap_is "$DT_RC" 1 "selftest $kind: dvmm exits 1"
    lines=$(grep -c 'forbidden system call' "$DT_OUT/$name.err")
    if [ "$lines" = 1 ] &&
        grep -Eqx "dvmm: sandbox: $thread made forbidden system call uname \(63\); exiting" \
            "$DT_OUT/$name.err"; then
        tap_ok "selftest $kind: one line names $thread, uname and 63"
    else
        tap_not_ok "selftest $kind: one line names $thread, uname and 63" \
            "$lines lines say 'forbidden system call'; stderr ($DT_OUT/$name.err):" \
            "$(tail -n 15 "$DT_OUT/$name.err")"
    fi
}

# --- each kind's forbidden call ------------------------------------------------
selftest main sbx-main main
selftest vcpu sbx-vcpu vcpu0

img=$DT_OUT/sbx-blk.img
truncate -s 4M "$img"
GUEST_CHECK="blk blk_queues=1" selftest blk sbx-blk blk0-q0 --set "disk.0.path=$img"

# Prefault helpers exist only where there is more than one CPU to run them.
if [ "$(nproc)" -lt 2 ]; then
    tap_skip "gm_prefault starts no helper thread with $(nproc) CPU" 2
else
    selftest prefault sbx-prefault prefault0 --set memory.prealloc=yes
fi

# net: a TAP in a namespace of its own (tests/lib/net-ns-run).
why=$(dt_no_tap_reason)
if [ -n "$why" ]; then
    tap_skip "no TAP for the net worker: $why" 2
else
    name=sbx-net
    dt_ini "$name" 1 128M "dvmmtest=net net_host=10.0.2.1 net_ip=10.0.2.15 net_pairs=1" <<INI
[control]
enabled = no
[net.0]
tap = dvsbx0
[sandbox]
seccomp = yes
INI
    DVMM_SANDBOX_SELFTEST=net run_with_timeout "$DT_TIMEOUT" "$NSRUN" --tap dvsbx0 -- \
        "$DT_DVMM" run "$DT_OUT/$name.ini" >"$DT_OUT/$name.out" 2>"$DT_OUT/$name.err" </dev/null
    DT_RC=$?
    selftest_check net "$name" net0-p0
fi

# --- log mode lets it through ----------------------------------------------------
DVMM_SANDBOX_SELFTEST=vcpu dvmm_guest sbx-log 1 128M boot --set sandbox.seccomp=log
dt_guest_passed sbx-log "seccomp = log: the vCPU's forbidden call is let through, the guest runs to its end"
if grep -q 'forbidden system call' "$DT_OUT/sbx-log.err"; then
    tap_not_ok "seccomp = log: no SIGSYS line" "$(tail -n 5 "$DT_OUT/sbx-log.err")"
else
    tap_ok "seccomp = log: no SIGSYS line"
fi

# --- a VM that runs until told to quit ----------------------------------------------
# vm_ini NAME VCPUS CMDLINE SOCKET <<INI ... INI: NAME.ini (dt_ini) for a
# 128M guest that never ends (its exit port is not there), its control
# socket at SOCKET, then the sections on stdin.
vm_ini() {
    { printf '[debug-exit]\nenabled = no\n[control]\nsocket = %s\n' "$4"; cat; } |
        dt_ini "$1" "$2" 128M "$3"
}

# ctl_wait SOCKET PID: 0 once the control socket at SOCKET answers status;
# 1 when PID ends first or 30 s pass.
ctl_wait() {
    local i
    for ((i = 0; i < 300; i++)); do
        "$DT_DVMM" ctl "$1" status >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# vm_start NAME VCPUS SOCKET BIN <<INI ... INI: vm_ini for a guest that
# checks nothing, run by BIN (a dvmm) in the background; its PID in VM_PID
# once the socket answers (ctl_wait).
vm_start() {
    local name=$1 vcpus=$2 sock=$3 bin=$4
    vm_ini "$name" "$vcpus" dvmmtest=none "$sock"
    "$bin" run "$DT_OUT/$name.ini" >"$DT_OUT/$name.out" 2>"$DT_OUT/$name.err" </dev/null &
    VM_PID=$!
    ctl_wait "$sock" "$VM_PID"
}

# quit_exits_0 SOCKET PID DESCRIPTION: quit over the control socket; one
# point, PID's exit status 0.
quit_exits_0() {
    "$DT_DVMM" ctl "$1" quit >/dev/null 2>&1
    wait "$2"
    tap_is "$?" 0 "$3"
}

# refused NAME STATUS MESSAGE DESCRIPTION [dvmm options]: a one-vCPU guest
# that dvmm must refuse at start; one point, exit STATUS and a line with
# MESSAGE (a grep pattern) on stderr.
refused() {
    local name=$1 want=$2 msg=$3 desc=$4
    shift 4
    dvmm_guest "$name" 1 128M boot "$@"
    if [ "$DT_RC" = "$want" ] && grep -q -- "$msg" "$DT_OUT/$name.err"; then
        tap_ok "$desc"
    else
        tap_not_ok "$desc" "exit status $DT_RC" "$(tail -n 15 "$DT_OUT/$name.err")"
    fi
}

# --- every thread of a running VM is filtered --------------------------------------
# A guest that never ends, with a disk it has driven, and the control
# socket to stop it.
# running NAME MODE: start it; PID in RUN_PID once the socket answers.
running() {
    local name=$1 mode=$2 i
    img=$DT_OUT/$name.img
    truncate -s 4M "$img"
    vm_ini "$name" 2 "dvmmtest=blk blk_queues=2" "$DT_OUT/$name.sock" <<INI
[disk.0]
path = $img
[sandbox]
seccomp = $mode
INI
    "$DT_DVMM" run "$DT_OUT/$name.ini" >"$DT_OUT/$name.out" 2>"$DT_OUT/$name.err" </dev/null &
    RUN_PID=$!
    # Until the guest's blk check is through (its workers are up) or 120 s.
    for i in $(seq 1200); do
        grep -Eq '^(ok|not ok) [0-9]+ - blk' "$DT_OUT/$name.out" && break
        kill -0 "$RUN_PID" 2>/dev/null || break
        sleep 0.1
    done
}

# thread_table PID: "comm Seccomp NoNewPrivs" per thread.
thread_table() {
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s %s %s\n' "$(cat "$t/comm" 2>/dev/null)" \
            "$(awk '/^Seccomp:/ {print $2}' "$t/status" 2>/dev/null)" \
            "$(awk '/^NoNewPrivs:/ {print $2}' "$t/status" 2>/dev/null)"
    done
}

running sbx-run yes
table=$(thread_table "$RUN_PID")
tap_diag "threads (comm Seccomp NoNewPrivs):" "$table"
if [ -n "$table" ] && ! printf '%s\n' "$table" | awk '$2 != 2 {bad=1} END {exit bad}'; then
    tap_not_ok "seccomp = yes: every thread is filtered" "$table"
else
    # The disk's workers may be gone by now (the guest's check ends with a
    # reset); the blk selftest above shows they are filtered.
    if printf '%s\n' "$table" | grep -q '^vcpu1 ' &&
        printf '%s\n' "$table" | grep -q '^dvmm-spawner '; then
        tap_ok "seccomp = yes: every thread is filtered (main, spawner, vCPUs, workers)"
    else
        tap_not_ok "seccomp = yes: every thread is filtered" "no vcpu1 or dvmm-spawner thread:" "$table"
    fi
fi
if printf '%s\n' "$table" | awk '$3 != 1 {bad=1} END {exit !bad}'; then
    tap_not_ok "seccomp = yes: no_new_privs on every thread" "$table"
else
    tap_ok "seccomp = yes: no_new_privs on every thread"
fi
tap_check "seccomp = yes: the control socket answers status under the filter" \
    "$DT_DVMM" ctl "$DT_OUT/sbx-run.sock" status
# vcpu-state pauses the VM, reads vCPU 0 from main (its GET ioctls must be
# on main's list, or dvmm dies here) and resumes it.
out=$("$DT_DVMM" ctl "$DT_OUT/sbx-run.sock" vcpu-state vcpu=0 2>&1)
rc=$?
state=$("$DT_DVMM" ctl "$DT_OUT/sbx-run.sock" status 2>&1 | grep -o '"state": *"[a-z]*"')
if [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -q '"rip": *"0x' &&
    printf '%s\n' "$out" | grep -q '"exception"' && printf '%s\n' "$out" | grep -q '"mcg_status"' &&
    printf '%s\n' "$state" | grep -q running; then
    tap_ok "seccomp = yes: vcpu-state vcpu=0 answers rip, events and MCG_STATUS, and the VM runs on"
else
    tap_not_ok "seccomp = yes: vcpu-state vcpu=0 answers rip, events and MCG_STATUS, and the VM runs on" \
        "exit status $rc, status after: $state" "$out" "$(tail -n 5 "$DT_OUT/sbx-run.err")"
fi
tap_diag "vcpu-state vcpu=0:" "$out"
out=$("$DT_DVMM" ctl "$DT_OUT/sbx-run.sock" vcpu-state vcpu=2 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && printf '%s\n' "$out" | grep -q 'no vCPU 2 (it has 2)'; then
    tap_ok "vcpu-state vcpu=2 on a two-vCPU VM: refused, and says why"
else
    tap_not_ok "vcpu-state vcpu=2 on a two-vCPU VM: refused, and says why" "exit status $rc" "$out"
fi

# --- the control socket refuses a foreign uid (SO_PEERCRED) ------------------------
# The socket's mode keeps others out already: open it up so the connection
# reaches dvmm, which must refuse it by the peer's credentials.
foreign=65534
if [ "$(id -u)" -ne 0 ]; then
    tap_skip "running a client as uid $foreign needs root (running as $(id -un))" 2
elif ! command -v setpriv >/dev/null 2>&1; then
    tap_skip "setpriv (util-linux) not installed" 2
elif ! setpriv --reuid=$foreign --regid=$foreign --clear-groups test -x "$DT_DVMM"; then
    tap_skip "uid $foreign cannot execute $DT_DVMM (a directory above it is closed)" 2
else
    chmod 0711 "$DT_OUT"
    chmod 0666 "$DT_OUT/sbx-run.sock"
    out=$(setpriv --reuid=$foreign --regid=$foreign --clear-groups \
        "$DT_DVMM" ctl "$DT_OUT/sbx-run.sock" status 2>&1)
    rc=$?
    chmod 0700 "$DT_OUT"
    if [ "$rc" -ne 0 ] && printf '%s\n' "$out" | grep -q "permission denied: uid $foreign is neither dvmm's uid $(id -u) nor root"; then
        tap_ok "a client with uid $foreign is refused, and told why"
    else
        tap_not_ok "a client with uid $foreign is refused, and told why" "exit status $rc" "$out"
    fi
    if grep -Eq "control .*: refusing a client with uid $foreign \(pid [0-9]+\): only uid $(id -u) \(dvmm's\) and root may connect" "$DT_OUT/sbx-run.err"; then
        tap_ok "dvmm logs the refusal with the peer's uid and pid"
    else
        tap_not_ok "dvmm logs the refusal with the peer's uid and pid" "$(tail -n 5 "$DT_OUT/sbx-run.err")"
    fi
fi
quit_exits_0 "$DT_OUT/sbx-run.sock" "$RUN_PID" "seccomp = yes: quit over the socket, exit 0 (stderr: $DT_OUT/sbx-run.err)"

running sbx-off no
table=$(thread_table "$RUN_PID")
"$DT_DVMM" ctl "$DT_OUT/sbx-off.sock" quit >/dev/null 2>&1
wait "$RUN_PID"
if [ -n "$table" ] && printf '%s\n' "$table" | awk '$2 != 0 || $3 != 1 {bad=1} END {exit bad}'; then
    tap_ok "seccomp = no: no thread filtered, no_new_privs still on every thread"
else
    tap_not_ok "seccomp = no: no thread filtered, no_new_privs still on every thread" "$table"
fi

# --- [sandbox] user: the drop, proven by /proc ------------------------------------------
drop_user=nobody
if [ "$(id -u)" -ne 0 ]; then
    tap_skip "changing user needs root (running as $(id -un))" 7
elif ! drop_uid=$(id -u "$drop_user" 2>/dev/null); then
    tap_skip "no user $drop_user on this host" 7
else
    drop_gid=$(id -g "$drop_user")
    name=sbx-user
    sdir=$DT_OUT/$name.d
    mkdir -p "$sdir" && chown "$drop_uid:$drop_gid" "$sdir"
    vm_start "$name" 2 "$sdir/ctl.sock" "$DT_DVMM" <<INI
[sandbox]
seccomp = yes
user = $drop_user
INI
    pid=$VM_PID
    st=$(cat /proc/$pid/status 2>/dev/null)
    tap_diag "$(printf '%s\n' "$st" | grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):')"
    tap_is "$(printf '%s\n' "$st" | awk '/^Uid:/ {print $2, $3, $4, $5}')" \
        "$drop_uid $drop_uid $drop_uid $drop_uid" "user = $drop_user: real, effective, saved and fs uid are $drop_uid"
    tap_is "$(printf '%s\n' "$st" | awk '/^Gid:/ {print $2, $3, $4, $5}')" \
        "$drop_gid $drop_gid $drop_gid $drop_gid" "user = $drop_user: every gid is $drop_gid, and no supplementary groups: '$(printf '%s\n' "$st" | awk '/^Groups:/ {print $2}')'"
    tap_is "$(printf '%s\n' "$st" | awk '/^Cap(Inh|Prm|Eff|Amb|Bnd):/ {printf "%s ", $2}')" \
        "0000000000000000 0000000000000000 0000000000000000 0000000000000000 0000000000000000 " \
        "user = $drop_user: no capability: inheritable, permitted, effective, bounding, ambient"
    bad=""
    for t in /proc/"$pid"/task/*; do
        u=$(awk '/^Uid:/ {print $3}' "$t/status" 2>/dev/null)
        [ -n "$u" ] && [ "$u" != "$drop_uid" ] && bad="$bad $(cat "$t/comm"):$u"
    done
    tap_is "${bad:-none}" none "user = $drop_user: every thread (vCPUs, spawner) runs as $drop_uid"
    tap_is "$(stat -c %U "$sdir/ctl.sock" 2>/dev/null)" "$drop_user" "user = $drop_user: the control socket belongs to $drop_user"
    quit_exits_0 "$sdir/ctl.sock" "$pid" "user = $drop_user: quit from root over the socket, exit 0 (stderr: $DT_OUT/$name.err)"

    # A reboot re-reads the kernel: one the user cannot read is refused at start.
    cp "$DT_GUEST" "$DT_OUT/private.elf" && chmod 0600 "$DT_OUT/private.elf"
    refused sbx-user-reboot 1 "sandbox.user = '$drop_user' cannot read vm.kernel '$DT_OUT/private.elf'" \
        "user = $drop_user with on_reset = reboot and a kernel it cannot read: exit 1 at start, naming both" \
        --set sandbox.user=$drop_user --set "vm.kernel=$DT_OUT/private.elf" --set vm.on_reset=reboot
fi
# --- [sandbox] chroot: an empty directory, with the static build if there is one ----------
chroot_bin=$DT_BUILD/dvmm-static
[ -x "$chroot_bin" ] || chroot_bin=$DT_DVMM
if [ "$(id -u)" -ne 0 ]; then
    tap_skip "chroot needs root (running as $(id -un))" 3
else
    name=sbx-chroot
    empty=$(mktemp -d "$DT_OUT/empty.XXXXXX")
    vm_start "$name" 1 "$DT_OUT/$name.sock" "$chroot_bin" <<INI
[sandbox]
seccomp = yes
chroot = $empty
INI
    pid=$VM_PID
    tap_is "$(readlink "/proc/$pid/root")" "$empty" "chroot = an empty directory: /proc/PID/root is it ($(basename "$chroot_bin"))"
    tap_is "$(find "$empty" -mindepth 1 | wc -l)" 0 "chroot: the directory is still empty (nothing needed inside)"
    quit_exits_0 "$DT_OUT/$name.sock" "$pid" "chroot: quit over the socket, exit 0 (stderr: $DT_OUT/$name.err)"
fi
refused sbx-chroot-reboot 2 "sandbox.chroot = '$DT_OUT': needs vm.on_reset = exit" \
    "chroot with on_reset = reboot: exit 2, the message names sandbox.chroot and why" \
    --set "sandbox.chroot=$DT_OUT" --set vm.on_reset=reboot

refused sbx-user-bad 2 "sandbox.user = 'no-such-user-dvmm': no such user" \
    "user = an unknown name: exit 2, the message names sandbox.user and the value" \
    --set sandbox.user=no-such-user-dvmm

tap_done
