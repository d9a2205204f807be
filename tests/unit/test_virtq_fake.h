/* A fake guest RAM for virtio unit tests: a struct guest_mem built by hand
 * whose regions point into malloc'd buffers, plus helpers that play the
 * driver side of a split virtqueue. */
#ifndef TEST_VIRTQ_FAKE_H
#define TEST_VIRTQ_FAKE_H

#include <linux/virtio_ring.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guest-mem/gm.h"

#define FAKE_REGION (1ULL << 20)

struct fake_ram {
    struct guest_mem gm;
    uint8_t *buf[2];
};

/* Two regions of `size` bytes each.  adjacent: the second starts right
 * after the first (so a buffer may span both); otherwise at 4 * size, with
 * a gap before it. */
static inline void fake_ram_init_size(struct fake_ram *f, int adjacent,
                                      uint64_t size)
{
    memset(f, 0, sizeof(*f));
    f->gm.fd = -1;
    f->gm.backend = GM_ANON;
    f->gm.layout.nr = 2;
    f->gm.layout.ram_size = 2 * size;
    for (int i = 0; i < 2; i++) {
        f->buf[i] = aligned_alloc(4096, size);
        memset(f->buf[i], 0, size);
        f->gm.layout.r[i].hva = f->buf[i];
        f->gm.layout.r[i].size = size;
    }
    f->gm.layout.r[0].gpa = 0;
    f->gm.layout.r[1].gpa = adjacent ? size : 4 * size;
}

static inline void fake_ram_init(struct fake_ram *f, int adjacent)
{
    fake_ram_init_size(f, adjacent, FAKE_REGION);
}

static inline void fake_ram_free(struct fake_ram *f)
{
    free(f->buf[0]);
    free(f->buf[1]);
}

static inline void *fake_hva(struct fake_ram *f, uint64_t gpa)
{
    return gm_gpa_to_hva(&f->gm, gpa, 1);
}

/* Driver side of one queue at fixed GPAs in region 0. */
struct fake_drv {
    struct fake_ram *ram;
    uint16_t size;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint16_t avail_idx, last_used;
};

static inline void fake_drv_init(struct fake_drv *d, struct fake_ram *r,
                                 uint16_t size, uint64_t base)
{
    memset(d, 0, sizeof(*d));
    d->ram = r;
    d->size = size;
    d->desc_gpa = base;
    d->avail_gpa = base + 16ULL * size;
    d->used_gpa = (d->avail_gpa + 6 + 2ULL * size + 4095) & ~4095ULL;
    d->desc = fake_hva(r, d->desc_gpa);
    d->avail = fake_hva(r, d->avail_gpa);
    d->used = fake_hva(r, d->used_gpa);
}

static inline void fake_desc(struct vring_desc *tbl, unsigned i, uint64_t addr,
                             uint32_t len, uint16_t flags, uint16_t next)
{
    tbl[i].addr = addr;
    tbl[i].len = len;
    tbl[i].flags = flags;
    tbl[i].next = next;
}

static inline void fake_avail(struct fake_drv *d, uint16_t head)
{
    d->avail->ring[d->avail_idx & (d->size - 1)] = head;
    d->avail_idx++;
    __atomic_store_n(&d->avail->idx, d->avail_idx, __ATOMIC_RELEASE);
}

/* 1 (with id and len filled) when a new used element is there. */
static inline int fake_used(struct fake_drv *d, uint32_t *id, uint32_t *len)
{
    uint16_t idx = __atomic_load_n(&d->used->idx, __ATOMIC_ACQUIRE);
    if (idx == d->last_used)
        return 0;
    struct vring_used_elem *u = &d->used->ring[d->last_used & (d->size - 1)];
    *id = u->id;
    *len = u->len;
    d->last_used++;
    return 1;
}

#endif
