#!/bin/bash
# Machine-check recovery end to end: dvmm runs the test guest's `mce` check
# in the background; this script plays the host's memory-failure side
# through `dvmm ctl SOCKET mce-inject|hwpoison|poisoned` whenever the guest
# announces a victim page on its console, and checks what each side saw:
#   - AR (to vCPU 0's thread) and AO (to the main thread, routed to vCPU 0)
#     arrive in the guest with the exact bank-9 encoding for the CPU vendor
#     the guest sees (tests/lib/mce-encoding.sh): Intel's, two #MCs; AMD's,
#     an AR #MC and an AO deferred error the guest finds by polling;
#   - mce-inject mode=user gives up, saying why, on a guest that never
#     leaves CPL 0 (the test guest); linux-mce.t shows it landing;
#   - the guest reboots through the i8042 and the lost pages are gone from
#     its e820 map; `poisoned` lists them;
#   - an AR while the guest left MCIP set shuts the VM down: exit status 1
#     and "machine-check shutdown" on stderr;
#   - one JSON line per event in the MCE log, every field present;
#   - MADV_HWPOISON where the kernel has memory-failure handling (the
#     nested host does), the clear error reply where it has not;
#   - malformed control requests answer ok:false and exit 1;
#   - a burst of back-to-back ARs (tests/bench/mce-latency) loses none.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/tap.sh
. tests/lib/kvm-env.sh
# Run 2 needs the kernel's memory-failure handling; a host whose /dev/kvm
# works but whose kernel lacks it (these PVM machines) sends the whole file
# to the nested KVM host, where it exists, rather than skip that run.
if [ -z "${DVMM_NESTED:-}" ] && kvm_usable && [ ! -e /proc/sys/vm/memory_failure_recovery ] &&
    [ -z "$(nested_unavailable_reason)" ]; then
    need_nested_kvm "this host's kernel has no CONFIG_MEMORY_FAILURE" "$@"
fi
need_kvm "$@"
# Keep the console, stderr, MCE logs and control transcripts where they
# outlive the nested host (its /tmp is a tmpfs that goes with it).
if [ -z "${DT_OUT:-}" ]; then
    mkdir -p "$(dvmm_build_dir)/tests" &&
        DT_OUT=$(mktemp -d "$(dvmm_build_dir)/tests/mce.XXXXXX") || DT_OUT=
fi
. tests/lib/dvmm-test.sh
. tests/lib/bg-proc.sh
. tests/lib/mce-encoding.sh
dt_require_build

# Generous: every step below is a few KVM exits, but nested KVM under TCG
# can stall for seconds.
WAIT_S=${DVMM_MCE_WAIT:-120}
V_AR=0x2000000 V_AO=0x2001000 V_LAST=0x2002000

tap_plan 33
tap_diag "running on $KVM_WHERE; logs in $DT_OUT"
# Unix sockets stay on a local file system.
SOCK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dvmm-mce.XXXXXX")

# mce_start NAME VICTIM [CMDLINE...]: dvmm in the background, 1 vCPU,
# rebooting on reset.
mce_start() {
    local name=$1 victim=$2 i
    shift 2
    M_NAME=$name
    M_SOCK=$SOCK_DIR/$name.sock
    M_LOG=$DT_OUT/$name.jsonl
    M_CON=$DT_OUT/$name.out
    M_ERR=$DT_OUT/$name.err
    : >"$M_CON"
    : >"$M_LOG"
    cat >"$DT_OUT/$name.ini" <<INI
[vm]
name = $name
vcpus = 1
memory = 128M
kernel = $DT_GUEST
cmdline = dvmmtest=mce mce_victim=$victim mce_timeout=$((WAIT_S * 3))${*:+ $*}
INI
    # timeout(1) directly, not through a shell function, so that M_PID is
    # timeout itself and dvmm is its only child.
    timeout --kill-after=10 "$DT_TIMEOUT" "$DT_DVMM" run "$DT_OUT/$name.ini" \
        --set control.socket="$M_SOCK" --set mce.log="$M_LOG" \
        --set vm.on_reset=reboot --set console.output="$M_CON" \
        --set console.input=no </dev/null >"$DT_OUT/$name.stdout" 2>"$M_ERR" &
    M_PID=$!
    M_RC=
    # timeout(1) is M_PID; dvmm, its child, is the main thread AO goes to.
    DVMM_PID=
    for ((i = 0; i < 50 && !DVMM_PID; i++)); do
        DVMM_PID=$(pgrep -P "$M_PID" | head -n 1)
        [ -n "$DVMM_PID" ] || sleep 0.1
    done
}

# mce_alive: dvmm still running (its exit status lands in M_RC otherwise).
mce_alive() { bg_alive "$M_PID" M_RC; }

# step_ok DESCRIPTION REGEX and wait_for REGEX (bg-proc.sh) watch dvmm and
# its console; they fail when dvmm exits first or WAIT_S passes.
bg_watch M_PID M_RC M_CON M_ERR WAIT_S

# wait_exit: dvmm's exit status in M_RC, killing it after WAIT_S.
wait_exit() {
    bg_wait_exit "$M_PID" M_RC "$WAIT_S" && return 0
    kill "$M_PID" 2>/dev/null
    wait "$M_PID"
    M_RC=$?
    return 1
}

# ctl ARGS...: one control request; reply JSON in CTL_OUT, status in CTL_RC.
ctl() {
    CTL_OUT=$("$DT_DVMM" ctl "$M_SOCK" "$@" 2>"$DT_OUT/ctl.err")
    CTL_RC=$?
    printf '$ dvmm ctl %s\n%s\n' "$*" "$CTL_OUT" >>"$DT_OUT/$M_NAME.ctl.log"
}

# jq_ok DESCRIPTION FILTER: the last reply satisfies the jq filter.
jq_ok() {
    if [ -n "$CTL_OUT" ] && printf '%s' "$CTL_OUT" | jq -e "$2" >/dev/null 2>&1; then
        tap_ok "$1"
    else
        tap_not_ok "$1" "dvmm ctl exit $CTL_RC, reply:" "$CTL_OUT" \
            "$(cat "$DT_OUT/ctl.err")" "jq filter: $2"
    fi
}

mce_stop() {
    mce_alive && { ctl quit; wait_exit; }
    mce_alive && kill "$M_PID" 2>/dev/null
}

# ---- run 1: AR, AO, reboot, MCIP-set shutdown -------------------------------
mce_start mce "$V_AR"
step_ok "guest armed its #MC handler and announced the AR victim" \
    "^# mce: victim gpa $V_AR kind ar$"

# The guest says which encoding its CPU vendor calls for; dvmm must agree.
enc=$(mce_guest_encoding "$M_CON")
mce_expect "${enc:-intel}" || mce_expect intel
ctl status
jq_ok "the guest's CPU vendor calls for the ${enc:-(unannounced)} encoding, and dvmm's status says the same" \
    ".ok == true and .mce_encoding == \"${enc:-none}\""
grep -E '^# mce: (CPU vendor|MCG_CAP)' "$M_CON" | tap_diag -

ctl mce-inject gpa="$V_AR" kind=ar vcpu=0
jq_ok "mce-inject AR: SIGBUS BUS_MCEERR_AR (si_addr = the page's HVA, lsb 12) for vCPU 0's thread, $MCE_ENC encoding" \
    ".ok == true and .signal == \"SIGBUS BUS_MCEERR_AR\" and .vcpu == 0 and (.si_addr | test(\"^0x[0-9a-f]+000\$\")) and .si_addr_lsb == 12 and .encoding == \"$MCE_ENC\" and .mci_status == \"$AR_ST\""
step_ok "guest #MC handler: AR, $MCE_ENC encoding bit for bit (MCG_STATUS $AR_MCG, MC9_STATUS $AR_ST, ADDR = GPA, MISC 0x8c)" \
    "$(mce_delivered_re ar "$V_AR")"

step_ok "guest announced the AO victim" "^# mce: victim gpa $V_AO kind ao$"
ctl mce-inject gpa="$V_AO" kind=ao
jq_ok "mce-inject AO: SIGBUS BUS_MCEERR_AO sent to dvmm's main thread" \
    ".ok == true and .signal == \"SIGBUS BUS_MCEERR_AO\" and .tid == ${DVMM_PID:-0} and .vcpu == 0"
step_ok "guest: AO, $MCE_ENC encoding bit for bit on vCPU 0 (MCG_STATUS $AO_MCG, MC9_STATUS $AO_ST, $([ "$AO_HOW" = polled ] && echo "a deferred error found by polling, no #MC" || echo "a #MC"))" \
    "$(mce_delivered_re ao "$V_AO")"

step_ok "guest reset itself through the i8042 after retiring both pages" "^# mce: rebooting$"
step_ok "after the reboot both victim pages are absent from the guest's e820" \
    "^ok - mce victim pages absent from e820 after reboot$"
ctl status
jq_ok "status: one reboot, two poisoned pages" '.ok == true and .reboots == 1 and .poisoned_pages == 2'
ctl poisoned
jq_ok "poisoned lists exactly the two victim pages" \
    '.ok == true and .count == 2 and .pages == ["0x2000000", "0x2001000"]'

# Malformed requests while the guest waits in phase B (the guest's wait is
# bounded, so nothing slow goes before an injection it waits for).
ctl status
jq_ok "control socket answers status (1 vCPU, running)" \
    '.ok == true and .state == "running" and (.vcpus | length) == 1'

ctl no-such-command
jq_ok "unknown command: ok:false with an error, dvmm ctl exits 1" \
    ".ok == false and (.error | test(\"unknown command\")) and $CTL_RC == 1"
ctl mce-inject gpa="$V_AR" kind=maybe
jq_ok "mce-inject kind=maybe: ok:false, exit 1" ".ok == false and $CTL_RC == 1"
ctl mce-inject gpa=0x7f000000 kind=ar
jq_ok "mce-inject outside guest RAM: ok:false naming it, exit 1" \
    ".ok == false and (.error | test(\"not guest RAM\")) and $CTL_RC == 1"
ctl mce-inject gpa="$V_AO" kind=ao vcpu=1
jq_ok "mce-inject kind=ao vcpu=1: refused (AO always goes to vCPU 0)" \
    ".ok == false and $CTL_RC == 1"
ctl mce-inject gpa="$V_AO" kind=ao mode=user
jq_ok "mce-inject kind=ao mode=user: refused (mode=user is for AR)" \
    ".ok == false and (.error | test(\"mode=user applies to kind=ar\")) and $CTL_RC == 1"
# The test guest never leaves CPL 0, so a mode=user AR can only give up,
# after wait_ms, naming why; nothing is injected (the log below has no line
# for it).
t0=$(date +%s%N)
ctl mce-inject gpa="$V_LAST" kind=ar vcpu=0 mode=user wait_ms=300
jq_ok "mce-inject mode=user wait_ms=300 on a guest at CPL 0: gives up, saying so ($((($(date +%s%N) - t0) / 1000000)) ms)" \
    ".ok == false and (.error | test(\"^mode=user: gave up after [0-9]+ ms: vCPU 0 was never in user mode .*last: not at CPL 3\")) and $CTL_RC == 1"

step_ok "guest announced the last victim, handler leaves MCIP set" \
    "^# mce: victim gpa $V_LAST kind ar leave-mcip$"
ctl mce-inject gpa="$V_LAST" kind=ar vcpu=0
jq_ok "mce-inject AR on the last victim accepted" '.ok == true'
step_ok "first AR delivered and MCIP left set" "^# mce: first machine check taken, MCIP left set$"
ctl mce-inject gpa="$V_LAST" kind=ar vcpu=0
jq_ok "second AR accepted by the control socket" '.ok == true'
wait_exit
tap_is "${M_RC:-timeout}" 1 "AR with MCIP set: the guest shuts down and dvmm exits with status 1"
if grep -q "machine-check shutdown" "$M_ERR"; then
    tap_ok "stderr names the machine-check shutdown"
    grep "machine-check shutdown" "$M_ERR" | tap_diag -
else
    tap_not_ok "stderr names the machine-check shutdown" "$(tail -n 20 "$M_ERR")"
fi

# One JSON line per event, every field, in order.
tap_diag "MCE log ($M_LOG):"
tap_diag - <"$M_LOG"
if [ "$(wc -l <"$M_LOG")" -eq 4 ] &&
    jq -e -s --arg enc "$MCE_ENC" --arg aoreason "$([ "$AO_HOW" = polled ] && echo "^deferred error written to bank 9, no #MC" || echo "^injected$")" '
        length == 4 and
        all(.[]; has("time") and has("kind") and has("hva") and has("gpa") and
                 has("page_size") and has("vcpu") and has("injected") and has("reason") and
                 .encoding == $enc and
                 (.time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{6}Z$")) and
                 (.hva | test("^0x[0-9a-f]+$")) and .page_size == 4096 and
                 .vcpu == 0 and .injected == true) and
        ([.[] | .kind] == ["AR", "AO", "AR", "AR"]) and
        ([.[] | .gpa] == ["0x2000000", "0x2001000", "0x2002000", "0x2002000"]) and
        (.[0].reason == "injected") and (.[1].reason | test($aoreason)) and
        (.[2].reason == "injected") and
        (.[3].reason | test("MCIP"))' "$M_LOG" >/dev/null; then
    tap_ok "MCE log: 4 JSON lines (AR, AO, AR, AR-with-MCIP), every field present and right, encoding $MCE_ENC"
else
    tap_not_ok "MCE log: 4 JSON lines (AR, AO, AR, AR-with-MCIP), every field present and right, encoding $MCE_ENC"
fi
# Three victim pages, so three HVAs (the last page was hit twice).
if [ "$(jq -r -s '[.[] | .hva] | unique | length' "$M_LOG")" = 3 ]; then
    tap_ok "MCE log: one distinct HVA per victim page"
else
    tap_not_ok "MCE log: one distinct HVA per victim page"
fi

# ---- run 2: real memory failure through MADV_HWPOISON ------------------------
# The AO victim is poisoned for real.  Expected with CONFIG_MEMORY_FAILURE
# and early kill: the kernel's SIGBUS BUS_MCEERR_AO reaches dvmm's main
# thread and becomes the AO the guest waits for.  Then the guest reads the
# poisoned page (mce_retouch): KVM cannot map it and sends the vCPU thread
# its own BUS_MCEERR_AR, which must become an AR for that GPA.
mce_start hwpoison 0x3000000 mce_retouch=1
if ! wait_for "^# mce: victim gpa 0x3000000 kind ar$"; then
    tap_not_ok "hwpoison run: guest announced its AR victim" "$(tail -n 15 "$M_CON")" "$(tail -n 10 "$M_ERR")"
    tap_skip "the guest did not reach the hwpoison step" 4
else
    ctl mce-inject gpa=0x3000000 kind=ar vcpu=0
    wait_for "^# mce: victim gpa 0x3001000 kind ao$" ||
        tap_diag "guest did not announce the AO victim: $(tail -n 3 "$M_CON")"
    ctl hwpoison gpa=0x3001000
    tap_diag "hwpoison reply (exit $CTL_RC):"
    printf '%s\n' "$CTL_OUT" | tap_diag -
    mf=/proc/sys/vm/memory_failure_recovery
    dmesg 2>/dev/null | grep -i "memory failure" | tail -n 4 | tap_diag -
    if [ ! -e "$mf" ]; then
        jq_ok "no $mf: hwpoison answers ok:false saying the kernel lacks CONFIG_MEMORY_FAILURE" \
            '.ok == false and (.error | test("CONFIG_MEMORY_FAILURE"))'
        tap_skip "this kernel has no memory-failure handling ($mf absent)" 4
    elif [ "$CTL_RC" -ne 0 ]; then
        # Seen in the nested host before hwpoison gave the page its own
        # frame (the guest had only read it: the shared zero page): EBUSY,
        # the kernel's memory-failure handler could not take the page
        # offline.  Nothing reaches dvmm then.
        jq_ok "hwpoison refused by the kernel: ok:false naming madvise(MADV_HWPOISON), the HVA and the errno, exit 1" \
            ".ok == false and (.error | test(\"MADV_HWPOISON\\\\) at HVA 0x[0-9a-f]+: \")) and $CTL_RC == 1"
        tap_skip "this kernel did not take the page offline ($(printf '%s' "$CTL_OUT" | jq -r .error 2>/dev/null)), so no SIGBUS to route" 4
    else
        jq_ok "hwpoison: madvise(MADV_HWPOISON) on the guest page succeeded" \
            '.ok == true and .poisoned == true'
        step_ok "the real memory failure reached the guest as an AO ($MCE_ENC encoding)" \
            "$(mce_delivered_re ao 0x3001000)"
        if jq -e -s 'any(.[]; .kind == "AO" and .gpa == "0x3001000" and .injected == true)' "$M_LOG" >/dev/null; then
            tap_ok "MCE log records the kernel's AO for GPA 0x3001000 as injected"
        else
            tap_not_ok "MCE log records the kernel's AO for GPA 0x3001000 as injected"
        fi
        step_ok "reading the poisoned page again: KVM's own AR reached the guest as an AR machine check ($MCE_ENC encoding)" \
            "$(mce_delivered_re ar 0x3001000)"
        # No sent_ns: the kernel sent this SIGBUS, not dvmm's mce-inject.
        if jq -e -s 'any(.[]; .kind == "AR" and .gpa == "0x3001000" and .injected == true
                     and (has("sent_ns") | not))' "$M_LOG" >/dev/null; then
            tap_ok "MCE log records KVM's AR for GPA 0x3001000 (kernel-sent) as injected"
        else
            tap_not_ok "MCE log records KVM's AR for GPA 0x3001000 (kernel-sent) as injected"
        fi
        tap_diag "hwpoison run MCE log:"
        tap_diag - <"$M_LOG"
        grep -E '^(ok|not ok|# mce:)' "$M_CON" | tail -n 12 | tap_diag -
        grep -Ei 'mce|poison|sigbus' "$M_ERR" | head -n 10 | tap_diag -
    fi
fi
mce_stop

# ---- run 3: a burst of back-to-back machine checks ---------------------------
# tests/bench/mce-latency injects the next AR as soon as the guest's #MC hook
# acknowledges the last one, so injections land anywhere, the hook itself
# included.  Every one must reach the guest exactly once and be logged once.
# Its timings are only reported here, never judged.
BURST_N=${DVMM_MCE_BURST:-200}
BURST_BIN=$DT_BUILD/bench/mce-latency
if [ ! -x "$BURST_BIN" ]; then
    tap_not_ok "burst: $BURST_BIN built" "run make first"
    tap_skip "no burst benchmark binary" 1
else
    mkdir -p "$SOCK_DIR/burst"
    timeout --kill-after=10 "$DT_TIMEOUT" "$BURST_BIN" -n "$BURST_N" "$DT_DVMM" "$DT_GUEST" \
        "$SOCK_DIR/burst" >"$DT_OUT/burst.out" 2>"$DT_OUT/burst.err"
    B_RC=$?
    cp "$SOCK_DIR/burst/mce-latency.jsonl" "$DT_OUT/burst.jsonl" 2>/dev/null
    if [ "$B_RC" -eq 0 ]; then
        tap_ok "burst: $BURST_N back-to-back ARs each acknowledged by the guest, which counted $BURST_N"
        tap_diag - <"$DT_OUT/burst.out"
    else
        tap_not_ok "burst: $BURST_N back-to-back ARs each acknowledged by the guest, which counted $BURST_N" \
            "mce-latency exit $B_RC:" "$(tail -n 10 "$DT_OUT/burst.err")"
    fi
    if jq -e -s --argjson n "$BURST_N" \
        'length == $n and all(.[]; .kind == "AR" and .gpa == "0x2000000" and .injected == true)' \
        "$DT_OUT/burst.jsonl" >/dev/null 2>&1; then
        tap_ok "burst: MCE log has $BURST_N lines, every one an injected AR for GPA 0x2000000"
    else
        tap_not_ok "burst: MCE log has $BURST_N lines, every one an injected AR for GPA 0x2000000" \
            "$(wc -l <"$DT_OUT/burst.jsonl" 2>/dev/null) lines; last: $(tail -n 1 "$DT_OUT/burst.jsonl" 2>/dev/null)"
    fi
fi
tap_done
