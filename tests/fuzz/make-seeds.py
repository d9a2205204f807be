#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_virtq (format: see fuzz_virtq.c)."""
import os
import struct
import sys

REGION = 0x10000
NEXT, WRITE, INDIRECT = 1, 2, 4


def seed(log2size, flags, start, cap, descs, heads, extra, tables=()):
    ram = bytearray(2 * REGION)
    for i, (addr, ln, fl, nx) in enumerate(descs):
        struct.pack_into('<QIHH', ram, 16 * i, addr, ln, fl, nx)
    size = 1 << log2size
    idx = start
    for h in heads:
        struct.pack_into('<H', ram, 0x1000 + 4 + 2 * (idx % size), h)
        idx = (idx + 1) & 0xffff
    struct.pack_into('<HH', ram, 0x1000, 0, idx)
    for off, blob in extra:
        ram[off:off + len(blob)] = blob
    for off, tdescs in tables:
        for i, (addr, ln, fl, nx) in enumerate(tdescs):
            struct.pack_into('<QIHH', ram, off + 16 * i, addr, ln, fl, nx)
    return struct.pack('<BBHI', log2size, flags, start, cap) + bytes(ram)


def hdr(t, sector):
    return struct.pack('<IIQ', t, 0, sector)


out = sys.argv[1]
os.makedirs(out, exist_ok=True)
seeds = {
    'read': seed(3, 1, 0, 2048, [(0x4000, 16, NEXT, 1), (0x5000, 512, NEXT | WRITE, 2),
                                 (0x6000, 1, WRITE, 0)], [0], [(0x4000, hdr(0, 1))]),
    'write-wrap': seed(3, 0, 0xfffe, 2048, [(0x4000, 16, NEXT, 1), (0x5000, 4096, NEXT, 2),
                                            (0x6000, 1, WRITE, 0), (0x4010, 16, NEXT, 4),
                                            (0x6001, 1, WRITE, 0)],
                       [0, 3], [(0x4000, hdr(1, 8)), (0x4010, hdr(4, 0))]),
    'indirect': seed(4, 1, 0, 64, [(0x3000, 64, INDIRECT, 0)], [0],
                     [(0x4000, hdr(0, 2))],
                     [(0x3000, [(0x4000, 16, NEXT, 1), (0x5000, 256, NEXT | WRITE, 2),
                                (0x5800, 256, NEXT | WRITE, 3), (0x6000, 1, WRITE, 0)])]),
    'span-regions': seed(2, 3, 0, 4096, [(0x4000, 16, NEXT, 1), (REGION - 512, 1024, NEXT | WRITE, 2),
                                         (0x6000, 1, WRITE, 0)], [0], [(0x4000, hdr(0, 0))]),
    'get-id-discard': seed(8, 1, 0, 4096, [(0x4000, 16, NEXT, 1), (0x5000, 20, NEXT | WRITE, 2),
                                           (0x6000, 1, WRITE, 0), (0x4010, 16, NEXT, 4),
                                           (0x5100, 16, NEXT, 5), (0x6001, 1, WRITE, 0)],
                           [0, 3], [(0x4000, hdr(8, 0)), (0x4010, hdr(11, 0)),
                                    (0x5100, struct.pack('<QII', 8, 8, 0))]),
    'loop': seed(3, 0, 0, 2048, [(0x4000, 16, NEXT, 1), (0x4000, 16, NEXT, 0)], [0], []),
}
for name, blob in seeds.items():
    # The RAM tail is zeros: trim it so the seeds stay small.
    blob = blob.rstrip(b'\0') or b'\0' * 8
    with open(os.path.join(out, name), 'wb') as f:
        f.write(blob)
