# The machine-check encodings dvmm promises, by the guest's CPU vendor
# (DESIGN.md "Memory-failure routing"; vmm/mce.h has the same values for
# the C side), as the test guest prints them.  Sourced by the tests that
# check what reached the guest (mce.t, dmemfs.t, qemu-mce.t).
#
#   mce_expect ENC   ENC = intel | amd; sets
#     MCE_ENC            the name, as dvmm's log and replies spell it
#     AR_MCG AR_ST       AR: MCG_STATUS and MC9_STATUS (lower-case hex)
#     AO_MCG AO_ST       AO: the same (AMD: a deferred error, no #MC, so
#                        MCG_STATUS stays 0 and the guest polls bank 9)
#     AO_HOW             "rip" (a #MC, with its RIP) or "polled"
#     AR_HEX AO_HEX      MC9_STATUS as QEMU's monitor `mce` takes it
#     AR_BIT55 AO_BIT55  whether bit 55 (Intel's AR, AMD's TCC) is set:
#                        QEMU's MEMORY_FAILURE event reports it as
#                        "action-required"
#   mce_guest_encoding FILE   the encoding the test guest announced on
#                             its console (empty when it has not yet)
#   mce_delivered_re KIND GPA the guest's "delivered" line for KIND (ar|ao)
#                             at GPA, as an ERE, after mce_expect

# shellcheck disable=SC2034 # the variables it sets are read by the scripts that source this
mce_expect() {
    MCE_ENC=$1
    AR_MCG=0x7 MCE_MISC=0x8c
    case $1 in
        intel)
            AR_ST=0xbd80000000000134 AR_HEX=0xBD80000000000134 AR_BIT55=true
            AO_MCG=0x5 AO_ST=0xbd000000000000c0 AO_HEX=0xBD000000000000C0 AO_BIT55=false
            AO_HOW=rip ;;
        amd)
            AR_ST=0xbc00080000000000 AR_HEX=0xBC00080000000000 AR_BIT55=false
            AO_MCG=0x0 AO_ST=0x9c00180000000000 AO_HEX=0x9C00180000000000 AO_BIT55=false
            AO_HOW=polled ;;
        *)
            echo "mce_expect: unknown encoding '$1'" >&2
            return 1 ;;
    esac
}

mce_guest_encoding() {
    sed -n 's/^# mce: CPU vendor [A-Za-z]*: expecting the \([a-z]*\) encoding.*/\1/p' "$1" |
        head -n 1
}

mce_delivered_re() {
    local mcg st tail
    if [ "$1" = ar ]; then
        mcg=$AR_MCG st=$AR_ST tail="rip 0x"
    else
        mcg=$AO_MCG st=$AO_ST
        [ "$AO_HOW" = polled ] && tail="polled \\(deferred error, no #MC\\)" || tail="rip 0x"
    fi
    printf '^ok [0-9]+ - mce %s delivered: MCG_STATUS %s MC9_STATUS %s MC9_ADDR %s MC9_MISC %s %s' \
        "$1" "$mcg" "$st" "$2" "$MCE_MISC" "$tail"
}
