#!/bin/bash
# Linux-guest MCE recovery: the harness is tests/linux/mce-recovery.sh.  It
# runs where a stock kernel can (VT-x/AMD-V here, or the nested KVM host,
# whose guests are AMD) and skips, saying why, where neither exists.
exec "$(dirname "$0")/../linux/mce-recovery.sh" "$@"
