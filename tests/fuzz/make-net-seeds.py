#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_net (format: see fuzz_net.c)."""
import os
import struct
import sys

REGION = 0x10000
NEXT, WRITE, INDIRECT = 1, 2, 4
# feature byte bits: CSUM GUEST_CSUM HOST_TSO4 HOST_TSO6 GUEST_TSO4 GUEST_TSO6 MTU MQ
ALLF = 0xff


def vhdr(flags=0, gso=0, hdr_len=0, gso_size=0, cstart=0, coff=0, nbuf=0):
    return struct.pack('<BBHHHHH', flags, gso, hdr_len, gso_size, cstart, coff, nbuf)


def seed(log2size, flags, start, mtu, role, feat, sent, descs, heads, extra, tables=()):
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
    return struct.pack('<BBHHBB', log2size, flags, start, mtu, role, feat) + sent + bytes(ram)


def eth(n):
    return bytes([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00]) + bytes(range(256))[:n - 14]


z = vhdr()
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
seeds = {
    # role 0: the first chain is TX
    'tx-plain': seed(3, 1, 0, 1500, 0, ALLF, z, [(0x4000, 12 + 60, 0, 0)], [0],
                     [(0x4000, z + eth(60))]),
    'tx-csum-split': seed(3, 3, 0, 1500, 0, ALLF, z,
                          [(0x4000, 5, NEXT, 1), (0x4005, 7, NEXT, 2), (REGION - 20, 60, 0, 0)], [0],
                          [(0x4000, vhdr(1, 0, 0, 0, 34, 16)), (REGION - 20, eth(60))]),
    'tx-tso': seed(4, 1, 0xfffe, 1500, 0, ALLF, z,
                   [(0x4000, 12, NEXT, 1), (0x5000, 9000, 0, 0)], [0],
                   [(0x4000, vhdr(1, 1, 66, 1448, 34, 16)), (0x5000, eth(200))]),
    'tx-lies': seed(3, 0, 0, 576, 0, 0x01, z,
                    [(0x4000, 12 + 1000, 0, 0), (0x4400, 12 + 10, 0, 0), (0x4800, 12 + 60, 0, 0)],
                    [0, 1, 2], [(0x4000, vhdr(2) + eth(200)), (0x4800, vhdr(1, 3, 0, 9, 0xffff, 0xffff))]),
    # role 1: the first chain is a control command
    'ctrl-pairs': seed(3, 1, 0, 1500, 1, ALLF, z,
                       [(0x4000, 2, NEXT, 1), (0x4002, 2, NEXT, 2), (0x4010, 1, WRITE, 0)], [0],
                       [(0x4000, bytes([4, 0, 3, 0]))]),
    'ctrl-garbage': seed(3, 1, 0, 1500, 1, 0x7f, z,
                         [(0x4000, 1, NEXT, 1), (0x4010, 1, WRITE, 0), (0x4020, 9, 0, 0)], [0, 2],
                         [(0x4000, bytes([0xff]))]),
    # role 2: the first chain is an RX buffer
    'rx-mrg': seed(4, 1, 0, 1500, 2, ALLF, vhdr(1, 1, 0, 1448, 34, 16),
                   [(0x4000, 1536, WRITE, 0), (0x5000, 8, WRITE, 0), (0x6000, 100, 0, 0)], [0, 1, 2], []),
    'rx-indirect': seed(4, 3, 0, 9000, 2, 0x02, vhdr(2),
                        [(0x3000, 48, INDIRECT, 0)], [0], [],
                        [(0x3000, [(0x4000, 6, NEXT | WRITE, 1), (0x4006, 6, NEXT | WRITE, 2),
                                   (REGION - 64, 200, WRITE, 0)])]),
    'loop': seed(3, 0, 0, 1500, 0, ALLF, z, [(0x4000, 16, NEXT, 1), (0x4000, 16, NEXT, 0)], [0], []),
}
for name, blob in seeds.items():
    blob = blob.rstrip(b'\0') or b'\0' * 20
    if len(blob) < 20:
        blob += b'\0' * (20 - len(blob))
    with open(os.path.join(out, name), 'wb') as f:
        f.write(blob)
