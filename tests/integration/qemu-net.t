#!/bin/bash
# The test guest's net check against QEMU's virtio-net-pci on a TAP (TCG, no
# KVM needed): the driver that judges dvmm's device must first pass on
# QEMU's, so it is a standard virtio 1.x driver and not one that agrees
# with dvmm.  Every QEMU runs in a network namespace of its own with its
# own multi-queue TAP (tests/lib/net-ns-run), so nothing leaves the
# machine.  Expects an already built guest: $DVMM_BUILD/testguest.elf.
. "$(dirname "$0")/../lib/tap.sh"

root=$(tap_repo_root) || tap_bail_out "cannot find the repository root"
cd "$root" || tap_bail_out "cannot cd to $root"
ELF=${DVMM_BUILD:-build}/testguest.elf
QEMU=${QEMU:-qemu-system-x86_64}
NSRUN=tests/lib/net-ns-run

command -v "$QEMU" >/dev/null 2>&1 || tap_skip_all "$QEMU not installed"
[ -f "$ELF" ] || tap_skip_all "$ELF not built (make ${DVMM_BUILD:+BUILD=$DVMM_BUILD} guest)"
for t in ip unshare python3; do
    command -v "$t" >/dev/null 2>&1 || tap_skip_all "$t not installed"
done
why=$("$NSRUN" --tap qnprobe0 -- true 2>&1) ||
    tap_skip_all "cannot make a network namespace with a TAP here: ${why:-net-ns-run failed}"

tap_plan 7

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
OUT=$WORK/console
GUEST_NET="net_host=10.0.2.1 net_ip=10.0.2.15"

# qemu_net CPUS QUEUES DEVICE_OPTS CMDLINE [monitor script]: the guest on
# -M pc with one virtio-net-pci on TAP qtap0 (QUEUES queues, vhost off) in
# its own namespace; console in $OUT, QEMU's status in $RC (isa-debug-exit:
# 1 = passed, 3 = a check failed).  With a monitor script, it runs beside
# QEMU with the HMP socket as $1 and the console file as $2.
qemu_net() {
    local cpus=$1 queues=$2 dev=$3 cmdline=$4 mon=${5:-} raw
    local vectors=$((2 * queues + 2)) mq=off monopt=()
    [ "$queues" -gt 1 ] && mq=on
    [ -n "$mon" ] && monopt=(-monitor "unix:$WORK/mon.sock,server,nowait")
    rm -f "$WORK/raw" "$WORK/mon.sock"
    # QEMU opens one queue without IFF_MULTI_QUEUE, which a multi-queue
    # TAP refuses (dvmm falls back; QEMU does not).
    local sq=()
    [ "$queues" -eq 1 ] && sq=(--single-queue)
    # shellcheck disable=SC2016 # the inner bash expands $1, $@ and $q
    run_with_timeout 180 "$NSRUN" --tap qtap0 "${sq[@]}" -- bash -c '
        mon=$1; shift
        "$@" >"'"$WORK/raw"'" 2>&1 </dev/null &
        q=$!
        [ -n "$mon" ] && "$mon" "'"$WORK/mon.sock"'" "'"$WORK/raw"'"
        wait $q' bash "$mon" \
        "$QEMU" -M pc -cpu max -m 128M -smp "$cpus,sockets=$cpus" \
        -nodefaults -display none -serial stdio -no-reboot "${monopt[@]}" \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -netdev "tap,id=n0,ifname=qtap0,script=no,downscript=no,queues=$queues,vhost=off" \
        -device "virtio-net-pci,netdev=n0,mq=$mq,vectors=$vectors$dev" \
        -kernel "$ELF" -append "dvmmtest=net $GUEST_NET $cmdline"
    RC=$?
    raw=$(cat "$WORK/raw" 2>/dev/null)
    printf '%s\n' "$raw" | tr -d '\r' | sed -n '/^# dvmm test guest/,$p' >"$OUT"
    [ -s "$OUT" ] || printf '%s\n' "$raw" | tail -n 20 >"$OUT"
    grep -E '^# net: (negotiated|pair|link|device)' "$OUT" | tap_diag -
}

. tests/lib/qemu-expect.sh

for n in 1 2 4; do
    qemu_net "$n" "$n" ",disable-legacy=on,mac=52:54:00:00:0${n}:01" \
        "net_pairs=$n net_mac=52:54:00:00:0${n}:01"
    expect "$n cpu(s), $n pair(s): ARP and ICMP answered on each CPU's own pair, per-CPU vectors, reset in flight" 1 \
        '^ok 1 - net$' "^# net: pair $((n - 1)) on APIC [0-9]+: ARP and echo replies on its own queue" \
        '^# net: device re-initialised after a reset'
done

# Transitional device (QEMU's default on pc, 1af4:1000).
qemu_net 2 2 "" "net_pairs=2 net_reset=0"
expect "transitional device, 2 pairs on 2 cpus" 1 '^# net: virtio-net 1000 ' '^ok 1 - net$'

# The link, taken down and up on QEMU's monitor while the guest waits.
link_script() {
    python3 - "$1" "$2" <<'PY'
import os, socket, sys, time
mon, console = sys.argv[1], sys.argv[2]
def wait(text, secs=120):
    end = time.time() + secs
    while time.time() < end:
        try:
            if text in open(console, errors="replace").read():
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False
def hmp(cmd):
    s = socket.socket(socket.AF_UNIX)
    s.connect(mon)
    s.sendall((cmd + "\n").encode())
    time.sleep(0.5)
    s.close()
for state, line in (("off", "take the link down"), ("on", "take the link up")):
    if not wait("waiting for the host to " + line):
        sys.exit(1)
    hmp("set_link n0 " + state)
PY
}
export -f link_script
qemu_net 2 2 ",disable-legacy=on" "net_pairs=2 net_link=1 net_reset=0" link_script
expect "set_link n0 off/on: the guest sees config interrupts and STATUS change" 1 \
    '^# net: link down seen' '^# net: link up seen' '^ok 1 - net$'

# The check fails when the device disagrees with the command line.
qemu_net 1 1 ",mac=52:54:00:aa:bb:cc" "net_mac=52:54:00:aa:bb:cd net_reset=0"
expect "a wrong MAC fails the check" 3 '^not ok 1 - net # MAC 52:54:00:aa:bb:cc, expected net_mac='
qemu_net 2 2 "" "net_pairs=1 net_reset=0"
expect "a max_virtqueue_pairs other than net_pairs= fails the check" 3 \
    '^not ok 1 - net # max_virtqueue_pairs 2, expected 1'

tap_done
