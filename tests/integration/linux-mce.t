#!/bin/bash
# Linux-guest MCE recovery: the harness is tests/linux/mce-recovery.sh (it
# decides where it can run, and skips with the reason and the by-hand
# command on hosts without VT-x/AMD-V).
exec "$(dirname "$0")/../linux/mce-recovery.sh" "$@"
