# A background process a test watches: whether it still runs, a line it
# writes to a file, its exit.  PID is the process (a child of this shell);
# RCVAR names the caller's variable that gets its exit status once it has
# ended, and must be empty while it runs.  Polls every 0.1 s.

# bg_alive PID RCVAR: 0 while PID runs; 1 once it has ended, with its exit
# status in RCVAR.
bg_alive() {
    local -n bg_rc_=$2
    [ -z "$bg_rc_" ] || return 1
    kill -0 "$1" 2>/dev/null && return 0
    wait "$1"
    bg_rc_=$?
    return 1
}

# bg_wait_line PID RCVAR FILE REGEX SECONDS: 0 once FILE has a line
# matching REGEX; 1 when PID ends without one or SECONDS pass.
bg_wait_line() {
    local i
    for ((i = 0; i < $5 * 10; i++)); do
        grep -Eq -- "$4" "$3" && return 0
        bg_alive "$1" "$2" || { grep -Eq -- "$4" "$3"; return; }
        sleep 0.1
    done
    return 1
}

# bg_wait_exit PID RCVAR SECONDS: 0 once PID has ended (status in RCVAR);
# 1 when it still runs after SECONDS (the caller decides what then).
bg_wait_exit() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        bg_alive "$1" "$2" || return 0
        sleep 0.1
    done
    return 1
}

# bg_step DESCRIPTION PID RCVAR CONSOLE STDERR REGEX SECONDS: one TAP point
# (tap.sh): ok once CONSOLE has a line matching REGEX (the first two shown
# as diagnostics); not ok when PID ends without one or SECONDS pass, with
# the ends of CONSOLE and STDERR.
bg_step() {
    local desc=$1 pid=$2 rcvar=$3 con=$4 err=$5 re=$6 secs=$7
    local -n bg_step_rc_=$rcvar
    if bg_wait_line "$pid" "$rcvar" "$con" "$re" "$secs"; then
        tap_ok "$desc"
        grep -E -- "$re" "$con" | head -n 2 | tap_diag -
    else
        tap_not_ok "$desc" "no console line /$re/ within ${secs}s (exit status: ${bg_step_rc_:-running})" \
            "console:" "$(tail -n 15 "$con")" "stderr:" "$(tail -n 10 "$err")"
    fi
}

# The process a test watches throughout, for step_ok and wait_for:
# bg_watch PIDVAR RCVAR CONSOLEVAR STDERRVAR SECONDSVAR names the test's
# variables.  They are read at each call, so the test may start the process
# again (a new PID, a new console file) without calling bg_watch again.
bg_watch() { BG_WATCH=("$@"); }

# step_ok DESCRIPTION REGEX: bg_step for the watched process's console.
step_ok() {
    local -n bg_w_pid_=${BG_WATCH[0]} bg_w_con_=${BG_WATCH[2]}
    local -n bg_w_err_=${BG_WATCH[3]} bg_w_secs_=${BG_WATCH[4]}
    bg_step "$1" "$bg_w_pid_" "${BG_WATCH[1]}" "$bg_w_con_" "$bg_w_err_" "$2" "$bg_w_secs_"
}

# wait_for REGEX [FILE]: bg_wait_line for the watched process: until FILE
# (its console unless given) has a line matching REGEX.
wait_for() {
    local -n bg_w_pid_=${BG_WATCH[0]} bg_w_con_=${BG_WATCH[2]} bg_w_secs_=${BG_WATCH[4]}
    bg_wait_line "$bg_w_pid_" "${BG_WATCH[1]}" "${2:-$bg_w_con_}" "$1" "$bg_w_secs_"
}
