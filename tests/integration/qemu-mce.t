#!/bin/bash
# Cross-check of machine-check delivery against an independent injector:
# the test guest's `mce` check runs under QEMU (TCG, no KVM needed) and
# QEMU's own monitor command `mce` injects the errors, with the encoding
# dvmm promises (DESIGN.md "Memory-failure routing").  When the guest's #MC
# handler accepts QEMU's AR and AO bit for bit, dvmm's encoding (mce.t) and
# the guest's expectations agree with QEMU's, not merely with each other.
#
# The encoding depends on the CPU vendor the guest sees
# (tests/lib/mce-encoding.sh), so run 1 goes twice: `-cpu
# max,vendor=AuthenticAMD` (AR a #MC, AO a deferred error the guest polls
# for) and `-cpu max,vendor=GenuineIntel` (both #MC).  The vendor is named
# both times: what plain `-cpu max` presents under TCG is QEMU's choice
# (7.2 says AuthenticAMD), not something to build on.  The monitor
# injects exactly the bank values it is given, through TCG's own model of
# the MCA banks (the same rules KVM_X86_SET_MCE follows: no UC, no #MC).
# QEMU 7.2's own SIGBUS path, which is KVM's only, would inject the Intel
# encoding whatever the vendor; QEMU >= 9.1 injects these.
#
# The HMP commands go through QMP's human-monitor-command on a pipe
# chardev (plain FIFOs: no socat or nc needed), so each one has a reply to
# check: empty when QEMU injected, its complaint otherwise.  The guest runs
# with mce_phases= so it ends after the injections instead of rebooting
# (the reboot without the lost pages is dvmm-only behaviour).
# Expects an already built guest: $DVMM_BUILD/testguest.elf (default build/).
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/bg-proc.sh"
. "$(dirname "$0")/../lib/mce-encoding.sh"

root=$(tap_repo_root) || tap_bail_out "cannot find the repository root"
cd "$root" || tap_bail_out "cannot cd to $root"
ELF=${DVMM_BUILD:-build}/testguest.elf
QEMU=${QEMU:-qemu-system-x86_64}
# Each step takes well under a second under TCG; the bound is for a host
# that is busy with other tests.
WAIT_S=${DVMM_QEMU_MCE_WAIT:-30}

command -v "$QEMU" >/dev/null 2>&1 || tap_skip_all "$QEMU not installed"
[ -f "$ELF" ] || tap_skip_all "$ELF not built (make ${DVMM_BUILD:+BUILD=$DVMM_BUILD} guest)"

# The encoding under test goes to QEMU's monitor as
#   mce [-b] cpu bank status mcgstatus addr misc
MISC=0x8c
V_AR=0x2000000 V_AO=0x2001000 V_BAD=0x3000000
MCG_SER_P=$((1 << 24))
Q_CPU=max,vendor=AuthenticAMD

tap_plan 21

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qemu-mce.XXXXXX") || tap_bail_out "mktemp failed"
Q_PID="" CAT_PID=""
cleanup() {
	[ -n "$Q_PID" ] && kill "$Q_PID" 2>/dev/null
	[ -n "$CAT_PID" ] && kill "$CAT_PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# q_start NAME CMDLINE: QEMU in the background with the guest's console in
# $CON and every QMP line in $QMP_LOG; fd 3 writes QMP commands.
q_start() {
	local name=$1 cmdline=$2
	CON=$WORK/$name.console QMP_LOG=$WORK/$name.qmp Q_ERR=$WORK/$name.stderr
	mkfifo "$WORK/$name.qmp.in" "$WORK/$name.qmp.out" || tap_bail_out "mkfifo failed"
	: >"$CON"
	Q_T0=$(now_ms)
	# timeout(1) directly, so that Q_PID is timeout and QEMU its only child.
	timeout --kill-after=10 $((WAIT_S * 4)) "$QEMU" -M pc -cpu "$Q_CPU" -m 256M -smp 1 \
		-nodefaults -display none -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-chardev pipe,id=qmp,path="$WORK/$name.qmp" -mon chardev=qmp,mode=control \
		-serial file:"$CON" -kernel "$ELF" -append "$cmdline" \
		</dev/null >"$Q_ERR" 2>&1 &
	Q_PID=$! Q_RC=""
	# Read-write opens never block on a FIFO, so a QEMU that dies before
	# opening its ends cannot hang the script; cat is killed by q_finish.
	cat <>"$WORK/$name.qmp.out" >"$QMP_LOG" &
	CAT_PID=$!
	exec 3<>"$WORK/$name.qmp.in"
	echo '{"execute": "qmp_capabilities"}' >&3
}

# q_alive: QEMU still running (its exit status lands in Q_RC otherwise).
q_alive() { bg_alive "$Q_PID" Q_RC; }

# step_ok DESCRIPTION REGEX and wait_for REGEX [FILE] (bg-proc.sh) watch
# QEMU and its console; they fail when QEMU exits first or WAIT_S passes.
bg_watch Q_PID Q_RC CON Q_ERR WAIT_S

# q_finish: QEMU's exit status in Q_RC (killed after WAIT_S), the run's
# wall time in Q_MS, fd 3 and the QMP reader closed.
q_finish() {
	if ! bg_wait_exit "$Q_PID" Q_RC "$WAIT_S"; then
		kill "$Q_PID" 2>/dev/null
		wait "$Q_PID"
		Q_RC="killed ($?)"
	fi
	Q_MS=$(($(now_ms) - Q_T0))
	Q_PID=""
	exec 3>&-
	kill "$CAT_PID" 2>/dev/null
	wait "$CAT_PID" 2>/dev/null
	CAT_PID=""
}

# console_tail: the last lines of the guest console and QEMU's stderr.
console_tail() {
	printf 'console:\n%s\nqemu stderr:\n%s\n' "$(tail -n 15 "$CON")" "$(tail -n 5 "$Q_ERR")"
}

# hmp_ok ID COMMAND AR: send COMMAND through human-monitor-command; ok
# when QEMU answers with empty output (it prints only when it refuses or had
# to reset the CPU, e.g. "Triple fault" when CR4.MCE is clear) and its
# MEMORY_FAILURE event, sent before the reply, says it injected into the
# guest with action-required AR (true/false): QEMU's own reading of
# MCi_STATUS.AR agrees with the kind dvmm gives the encoding.
hmp_ok() {
	local id=$1 cmd=$2 ar=$3 reply event desc
	desc="QEMU monitor injected it as action-required=$ar: $cmd"
	printf '{"execute": "human-monitor-command", "arguments": {"command-line": "%s"}, "id": "%s"}\n' \
		"$cmd" "$id" >&3
	HMP_T0=$(now_ms)
	if ! wait_for "\"id\": \"$id\"" "$QMP_LOG"; then
		# A guest that ends the run on the machine check itself (the
		# negative control) can make QEMU exit before it flushes the
		# reply; its MEMORY_FAILURE event, sent first, still tells.
		if q_alive || ! grep -Fq '"event": "MEMORY_FAILURE"' "$QMP_LOG"; then
			tap_not_ok "$desc" "no QMP reply within ${WAIT_S}s" \
				"qmp:" "$(tail -n 5 "$QMP_LOG")" "$(console_tail)"
			return
		fi
		tap_diag "QEMU exited before its reply to $id; judging by its MEMORY_FAILURE event"
		reply='"return": ""'
	else
		reply=$(grep -F "\"id\": \"$id\"" "$QMP_LOG" | head -n 1)
	fi
	event=$(grep -F '"event": "MEMORY_FAILURE"' "$QMP_LOG" | tail -n 1)
	if ! printf '%s' "$reply" | grep -Fq '"return": ""'; then
		tap_not_ok "$desc" "reply: $reply"
	elif ! printf '%s' "$event" | grep -Fq "\"action-required\": $ar" ||
		! printf '%s' "$event" | grep -Fq '"recipient": "guest", "action": "inject"'; then
		tap_not_ok "$desc" "MEMORY_FAILURE event: ${event:-none}"
	else
		tap_ok "$desc"
	fi
}

# delivered_ok KIND REGEX: the guest's verdict on the last injection, with
# the time from the monitor command to the guest's line as a diagnostic.
delivered_ok() {
	local kind=$1 re=$2
	step_ok "guest: QEMU's $kind matches dvmm's encoding bit for bit" "$re"
	tap_diag "$kind: monitor command to guest verdict in $(($(now_ms) - HMP_T0)) ms (polled every 50 ms)"
}

# ---- run 1: AR then AO, as dvmm injects them, for each vendor -------------
# run_arao NAME CPU VENDOR ENCODING
run_arao() {
	local name=$1 vendor=$3 want=$4 enc cap why
	Q_CPU=$2
	q_start "$name" "dvmmtest=mce mce_phases=ar,ao mce_timeout=$((WAIT_S * 2))"
	step_ok "-cpu $Q_CPU: guest armed its #MC handler and announced the AR victim" \
		"^# mce: victim gpa $V_AR kind ar$"
	enc=$(mce_guest_encoding "$CON")
	if [ "$enc" = "$want" ] && grep -q "^# mce: CPU vendor $vendor: " "$CON"; then
		tap_ok "-cpu $Q_CPU: the guest sees $vendor and expects the $want encoding"
	else
		tap_not_ok "-cpu $Q_CPU: the guest sees $vendor and expects the $want encoding" \
			"$(grep '^# mce: CPU vendor' "$CON")"
	fi
	mce_expect "$want"

	cap=$(sed -n 's/^# mce: MCG_CAP \(0x[0-9a-f]*\) .*/\1/p' "$CON" | head -n 1)
	if [ -n "$cap" ] && (((cap & 0xff) > 9 && (cap & MCG_SER_P))); then
		tap_ok "-cpu $Q_CPU: QEMU TCG's MCG_CAP has bank 9 and MCG_SER_P (what dvmm sets up)"
		tap_diag "MCG_CAP $cap: $((cap & 0xff)) banks, MCG_SER_P set"
	else
		tap_not_ok "-cpu $Q_CPU: QEMU TCG's MCG_CAP has bank 9 and MCG_SER_P (what dvmm sets up)" \
			"MCG_CAP ${cap:-not reported}" "$(console_tail)"
	fi

	hmp_ok "$name-ar" "mce 0 9 $AR_HEX $AR_MCG $V_AR $MISC" "$AR_BIT55"
	delivered_ok "$MCE_ENC AR" "$(mce_delivered_re ar "$V_AR")"

	step_ok "-cpu $Q_CPU: guest announced the AO victim" "^# mce: victim gpa $V_AO kind ao$"
	hmp_ok "$name-ao" "mce 0 9 $AO_HEX 0x5 $V_AO $MISC" "$AO_BIT55"
	delivered_ok "$MCE_ENC AO" "$(mce_delivered_re ao "$V_AO")"

	q_finish
	why=""
	[ "$Q_RC" = 1 ] || why="QEMU exit status $Q_RC, wanted 1 (debug-exit 0)"
	[ -z "$why" ] && grep -q '^not ok' "$CON" && why="guest reported a failure"
	[ -z "$why" ] && ! grep -q '^# mce: mce_phases done, no reboot$' "$CON" && why="no 'mce_phases done' line"
	[ -z "$why" ] && ! grep -q '^ok 1 - mce$' "$CON" && why="no 'ok 1 - mce' line"
	if [ -z "$why" ]; then
		tap_ok "-cpu $Q_CPU: mce_phases=ar,ao: the guest ends after AO with a pass, no reboot"
	else
		tap_not_ok "-cpu $Q_CPU: mce_phases=ar,ao: the guest ends after AO with a pass, no reboot" \
			"$why" "$(console_tail)"
	fi
	tap_diag "run $name (boot, AR, AO, exit): ${Q_MS} ms"
}

run_arao amd max,vendor=AuthenticAMD AuthenticAMD amd
run_arao intel max,vendor=GenuineIntel GenuineIntel intel
Q_CPU=max,vendor=AuthenticAMD
mce_expect amd

# ---- run 2: the handler must reject an encoding that is off by one bit ------
# AR without EIPV in MCG_STATUS: QEMU injects it, the guest must say no.
q_start bad "dvmmtest=mce mce_phases=ar mce_victim=$V_BAD mce_timeout=$((WAIT_S * 2))"
if wait_for "^# mce: victim gpa $V_BAD kind ar$"; then
	hmp_ok bad "mce 0 9 $AR_HEX 0x5 $V_BAD $MISC" "$AR_BIT55"
	q_finish
	if [ "$Q_RC" = 3 ] &&
		grep -Eq "^not ok [0-9]+ - mce ar delivered # 1 events; MCG_STATUS 0x5 \(want 0x7\)" "$CON"; then
		tap_ok "guest rejects an AR whose MCG_STATUS lacks EIPV (QEMU exit 3)"
	else
		tap_not_ok "guest rejects an AR whose MCG_STATUS lacks EIPV (QEMU exit 3)" \
			"QEMU exit status $Q_RC" "$(console_tail)"
	fi
else
	q_finish
	tap_not_ok "QEMU monitor injected an AR without EIPV" "guest never announced $V_BAD" \
		"$(console_tail)"
	tap_not_ok "guest rejects an AR whose MCG_STATUS lacks EIPV (QEMU exit 3)" "not reached"
fi

# ---- run 3: a malformed mce_phases fails the check before arming ------------
q_start badopt "dvmmtest=mce mce_phases=ar,reboot"
q_finish
if [ "$Q_RC" = 3 ] && grep -q '^not ok 1 - mce # mce_phases must be' "$CON" &&
	! grep -q '^# mce: victim' "$CON"; then
	tap_ok "mce_phases=ar,reboot is refused before any victim is announced"
else
	tap_not_ok "mce_phases=ar,reboot is refused before any victim is announced" \
		"QEMU exit status $Q_RC" "$(console_tail)"
fi

tap_done
