#!/usr/bin/env python3
"""Checks a disk image after the test guest's blk check wrote it.

usage: blk-image.py IMAGE QUEUES [SIG]
  - sector 0 holds "dvmm-blk-sig=SIG\\n" then zeros (when SIG is given);
  - the 32 sectors from 64 + 64q hold queue q's pattern, for q < QUEUES
    (tests/guest/check_blk.c: word i of sector s written through queue q is
    ((s & 0xffff) << 16 | q << 8 | i) ^ 0xa5a5a5a5, little-endian).
Prints one line per problem and exits 1 on any; 0 when all hold.
"""
import struct
import sys

SECTOR = 512
AREA_START, AREA_SECTORS, WRITTEN = 64, 64, 32


def pattern(q, s):
    return struct.pack("<128I", *[((s & 0xFFFF) << 16 | q << 8 | i) ^ 0xA5A5A5A5
                                  for i in range(128)])


def main():
    img, nq = sys.argv[1], int(sys.argv[2])
    sig = sys.argv[3] if len(sys.argv) > 3 else None
    bad = 0
    with open(img, "rb") as f:
        data = f.read()
    if sig is not None:
        want = ("dvmm-blk-sig=%s\n" % sig).encode().ljust(SECTOR, b"\0")
        if data[:SECTOR] != want:
            print("sector 0: %r, expected the signature %s" % (data[:40], sig))
            bad += 1
    for q in range(nq):
        for k in range(WRITTEN):
            s = AREA_START + q * AREA_SECTORS + k
            if data[s * SECTOR:(s + 1) * SECTOR] != pattern(q, s):
                print("queue %d: sector %d does not hold its pattern" % (q, s))
                bad += 1
                break
    if not bad:
        print("signature and %d queue pattern(s) found" % nq)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
