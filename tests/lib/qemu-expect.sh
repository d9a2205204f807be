# expect DESC WANT_RC [REGEX...]: one TAP line for the last QEMU run of the
# test guest, whose exit status is in $RC and console in $OUT.  It passes
# when QEMU exited WANT_RC (1 = the guest wrote 0 to isa-debug-exit), the
# guest printed its banner, reported no failure, and every REGEX matched.
# Source after tap.sh.
expect() {
	local desc=$1 want=$2 re why=""
	shift 2
	[ "$RC" -eq "$want" ] || why="QEMU exit status $RC, wanted $want"
	if [ -z "$why" ] && [ "$want" -eq 1 ] && grep -q '^not ok' "$OUT"; then
		why="guest reported a failure"
	fi
	if [ -z "$why" ] && ! grep -q '^# dvmm test guest' "$OUT"; then
		why="no banner from the guest"
	fi
	for re in "$@"; do
		[ -n "$why" ] && break
		grep -Eq -- "$re" "$OUT" || why="no line matching /$re/"
	done
	if [ -z "$why" ]; then
		tap_ok "$desc"
	else
		tap_not_ok "$desc" "$why" "$(tail -n 25 "$OUT")"
	fi
}
