#!/usr/bin/env python3
"""Checks a disk image after the test guest's blkcrash check was killed.

usage: blk-crash-check.py IMAGE CONSOLE [--self-test]

CONSOLE is the guest's console file: its "BLKCRASH geometry ..." line gives
the nonce and the geometry, and every complete "BLKCRASH ack B" line is a
batch whose writes and FLUSH the device acknowledged
(tests/guest/check_blkcrash.c has the layout).  Batches are acknowledged in
order 0, 1, ..., N-1, and only batch N can have been in flight at the kill.

For every 4 KiB block and each of its 8 sectors:
  - a block last written by acknowledged batch A must hold A's sector, or
    (if batch N also writes that block) batch N's;
  - a block no acknowledged batch wrote must be zeros or batch N's.
A sector "holds" a write when its header, trailer, nonce, place and body
are exactly what that write put there.  Anything else is reported: a lost
acknowledged write, a torn or misplaced sector, or stale data.

--self-test: after a clean check, zero one sector of the newest
acknowledged block and check again in memory; that must fail, or the check
itself is broken.  Prints one summary line ("acked=N ...") and exits 0 when
everything holds, 1 otherwise.
"""
import re
import struct
import sys

SECTOR, BLOCK = 512, 4096
SPB = BLOCK // SECTOR
WORDS = (SECTOR - 48) // 4
HDR = struct.Struct("<8sQ4I")
TRAILER = struct.Struct("<4I")
M32 = 0xFFFFFFFF


def word(nonce, sector, i):
    x = (nonce & M32) ^ (((nonce >> 32) * 0x27D4EB2D) & M32)
    x ^= ((sector * WORDS + i) * 0x9E3779B1) & M32
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & M32
    x ^= x >> 16
    return x


def pos(batch, k, slot, nblocks, stride):
    return ((batch % nblocks * k + slot) % nblocks) * stride % nblocks


def parse_console(path):
    with open(path, "rb") as f:
        text = f.read().decode("latin-1")
    # Only complete lines count: the kill may cut the last one short.
    lines = text.split("\n")[:-1]
    geo, acks = None, []
    for ln in lines:
        m = re.match(r"BLKCRASH geometry nonce=0x([0-9a-f]+) blocks=(\d+) batch=(\d+) "
                     r"queues=(\d+) stride=(\d+)$", ln)
        if m:
            geo = dict(nonce=int(m.group(1), 16), blocks=int(m.group(2)),
                       batch=int(m.group(3)), queues=int(m.group(4)), stride=int(m.group(5)))
            continue
        m = re.match(r"BLKCRASH ack (\d+)$", ln)
        if m:
            acks.append(int(m.group(1)))
    return geo, acks


def check(data, geo, nacked, limit=20):
    """Returns (problems, counts)."""
    nonce, nblocks, k, stride = geo["nonce"], geo["blocks"], geo["batch"], geo["stride"]
    body = [struct.pack("<%dI" % WORDS, *[word(nonce, s, i) for i in range(WORDS)])
            for s in range(SPB)]
    last = {}                       # block -> (batch, slot) of its newest acked write
    for b in range(nacked):
        for i in range(k):
            last[pos(b, k, i, nblocks, stride)] = (b, i)
    inflight = {pos(nacked, k, i, nblocks, stride): (nacked, i) for i in range(k)}
    zero = bytes(SECTOR)
    problems, counts = [], {"acked": 0, "inflight": 0, "untouched": 0}

    def holds(sec, blk, s, write):
        if write is None:
            return False
        magic, n, batch, block, sector, slot = HDR.unpack_from(sec, 0)
        return (magic == b"BLKCRASH" and n == nonce and (batch, slot) == write and
                block == blk and sector == s and
                TRAILER.unpack_from(sec, SECTOR - 16) == (batch, block, sector, slot) and
                sec[HDR.size:SECTOR - 16] == body[s])

    def describe(sec):
        if sec == zero:
            return "zeros"
        magic, n, batch, block, sector, slot = HDR.unpack_from(sec, 0)
        if magic != b"BLKCRASH" or n != nonce:
            return "foreign data %r" % sec[:16]
        return "batch %d slot %d block %d sector %d (trailer %s)" % (
            batch, slot, block, sector, TRAILER.unpack_from(sec, SECTOR - 16))

    for blk in range(nblocks):
        want, late = last.get(blk), inflight.get(blk)
        kind = None
        for s in range(SPB):
            off = blk * BLOCK + s * SECTOR
            sec = bytes(data[off:off + SECTOR])
            if holds(sec, blk, s, want):
                kind = kind or "acked"
            elif holds(sec, blk, s, late):
                kind = "inflight"
            elif want is None and sec == zero:
                kind = kind or "untouched"
            else:
                if len(problems) < limit:
                    problems.append(
                        "block %d sector %d: %s; expected %s%s" % (
                            blk, s, describe(sec),
                            "acknowledged batch %d slot %d" % want if want else "zeros",
                            " or in-flight batch %d slot %d" % late if late else ""))
                else:
                    problems.append(None)
        if kind:
            counts[kind] += 1
    return problems, counts


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    self_test = "--self-test" in sys.argv
    if len(args) != 2:
        print(__doc__.strip().split("\n")[2])
        return 2
    img, console = args
    geo, acks = parse_console(console)
    if geo is None:
        print("no BLKCRASH geometry line in %s" % console)
        return 1
    if acks != list(range(len(acks))):
        print("acknowledgements out of order: %s" % acks[:20])
        return 1
    with open(img, "rb") as f:
        data = bytearray(f.read())
    if len(data) < geo["blocks"] * BLOCK:
        print("image is %d bytes, the guest saw %d blocks" % (len(data), geo["blocks"]))
        return 1
    n = len(acks)
    problems, counts = check(data, geo, n)
    summary = ("acked=%d batches of %d blocks (nonce 0x%x, %d blocks): %d blocks hold "
               "acknowledged data, %d in-flight batch %d's, %d untouched" % (
                   n, geo["batch"], geo["nonce"], geo["blocks"], counts["acked"],
                   counts["inflight"], n, counts["untouched"]))
    if problems:
        for p in problems:
            if p:
                print(p)
        print("%d bad sector(s); %s" % (len(problems), summary))
        return 1
    if self_test:
        if n == 0:
            print("self-test needs an acknowledged batch; %s" % summary)
            return 1
        # Any block that holds an acknowledged batch's data.
        blk = next(b for b in range(geo["blocks"])
                   if bytes(data[b * BLOCK:b * BLOCK + 8]) == b"BLKCRASH" and
                   HDR.unpack_from(data, b * BLOCK)[2] < n)
        data[blk * BLOCK + 3 * SECTOR:blk * BLOCK + 4 * SECTOR] = bytes(SECTOR)
        bad, _ = check(data, geo, n, limit=1)
        if not bad:
            print("self-test: zeroing sector 3 of block %d went unnoticed; %s" % (blk, summary))
            return 1
        summary += "; self-test: a zeroed sector of block %d is caught" % blk
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
