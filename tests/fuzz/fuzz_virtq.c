/* libFuzzer target: the split virtqueue and the virtio-blk request parser
 * over guest RAM the fuzzer controls.
 *
 * Input: [0] log2 queue size (mod 9), [1] flags (bit 0 EVENT_IDX, bit 1
 * regions adjacent rather than with a gap, bit 2 read-only disk), [2..3]
 * the device's starting ring index (exercises wrap-around), [4..7] disk
 * capacity in sectors, then the contents of two 64 KiB RAM regions.  Rings
 * are at GPA 0 (descriptors), 0x1000 (avail), 0x2000 (used).
 *
 * Each region is its own heap block of exactly its size, so any iovec the
 * parser lets out of guest RAM is caught by ASan when the harness touches
 * every data byte the way a backend would. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/blk_req.h"
#include "virtio/virtq.h"

#define REGION 0x10000

static void touch(const struct blk_req *r)
{
    volatile uint8_t sink = 0;
    for (unsigned i = 0; i < r->niov; i++) {
        uint8_t *p = r->iov[i].iov_base;
        if (r->op == BLK_OP_READ)
            memset(p, 0xa5, r->iov[i].iov_len);
        else
            for (size_t k = 0; k < r->iov[i].iov_len; k++)
                sink ^= p[k];
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct blk_req req;
    if (size < 8)
        return 0;
    uint16_t qsize = 1u << (data[0] % 9);
    uint8_t flags = data[1];
    uint16_t start = data[2] | data[3] << 8;
    uint32_t cap = data[4] | data[5] << 8 | data[6] << 16 | (uint32_t)data[7] << 24;
    data += 8;
    size -= 8;

    struct guest_mem gm;
    memset(&gm, 0, sizeof(gm));
    gm.fd = -1;
    gm.layout.nr = 2;
    gm.layout.ram_size = 2 * REGION;
    uint8_t *ram[2];
    for (int i = 0; i < 2; i++) {
        ram[i] = malloc(REGION);
        memset(ram[i], 0, REGION);
        size_t n = size > REGION ? REGION : size;
        memcpy(ram[i], data, n);
        data += n;
        size -= n;
        gm.layout.r[i].hva = ram[i];
        gm.layout.r[i].size = REGION;
    }
    gm.layout.r[1].gpa = flags & 2 ? REGION : 4 * REGION;

    struct blk_limits lim = {
        .capacity = cap, .ro = flags & 4, .discard = true,
        .write_zeroes = true, .serial = "fuzz-serial-0123456789",
    };
    struct vq vq;
    if (vq_init(&vq, &gm, qsize, 0, 0x1000, 0x2000, flags & 1) == 0) {
        vq.last_avail = vq.used_idx = start;
        for (unsigned i = 0; i < 2u * VQ_MAX_SIZE; i++) {
            if (i % 3 == 0)
                vq_disable_notify(&vq);
            int r = vq_pop(&vq, &req.elem);
            if (r <= 0)
                break;
            if (blk_req_parse(&req, &lim) == 0) {
                touch(&req);
                uint8_t st = req.op == BLK_OP_NONE ? req.status_val : 0;
                vq_push(&vq, req.elem.head, blk_req_finish(&req, st));
            }
            vq_should_notify(&vq);
            if (i % 3 == 2)
                vq_enable_notify(&vq);
        }
    }
    free(ram[0]);
    free(ram[1]);
    return 0;
}
