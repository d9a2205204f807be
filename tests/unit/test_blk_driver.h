/* A minimal virtio-blk driver that plays the guest against a struct blk with
 * no KVM: programs the transport through the MMIO bus, builds requests in a
 * fake guest RAM, kicks through the notify register and waits on the MSI-X
 * vector's irqfd eventfd.  Shared by the unit tests and the benchmark.
 *
 * Layout of queue q in region 0 (each queue gets QSTRIDE bytes at
 * q * QSTRIDE): rings at +0, headers at +HDR, status bytes at +ST; data
 * buffers come from the caller. */
#ifndef TEST_BLK_DRIVER_H
#define TEST_BLK_DRIVER_H

#include <errno.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <unistd.h>

#include "tests/unit/test_virtio_pci_mock.h"
#include "tests/unit/test_virtq_fake.h"
#include "virtio/blk.h"

#define DRV_QSTRIDE 0x20000ULL
#define DRV_HDR     0x8000ULL
#define DRV_ST      0xc000ULL
#define DRV_CMN(f)  offsetof(struct virtio_pci_common_cfg, f)

struct drv {
    struct mock_vm *vm;
    struct fake_ram *ram;
    struct blk *blk;
    uint64_t bar;
    unsigned nq;
    uint16_t qsize;
    struct fake_drv q[VP_MAX_QUEUES];
    bool event_idx;
};

static inline uint64_t drv_rd(struct drv *d, uint64_t off, unsigned len)
{ return mock_mmio_read(d->vm, d->bar + off, len); }
static inline void drv_wr(struct drv *d, uint64_t off, unsigned len, uint64_t v)
{ mock_mmio_write(d->vm, d->bar + off, len, v); }
static inline uint8_t drv_status(struct drv *d)
{ return drv_rd(d, DRV_CMN(device_status), 1); }

/* Feature negotiation, MSI-X (vector q+1 for queue q, 0 for config), rings,
 * DRIVER_OK.  Returns the device status. */
static inline uint8_t drv_start(struct drv *d, uint64_t features)
{
    struct blk *b = d->blk;
    unsigned slot = b->vp.pdev.slot;
    d->bar = mock_cfg_read(d->vm, slot, PCI_BASE_ADDRESS_0, 4) & ~0xfULL;
    mock_cfg_write(d->vm, slot, PCI_COMMAND, 2,
                   PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    unsigned x = mock_find_cap(d->vm, slot, PCI_CAP_ID_MSIX, -1);
    mock_cfg_write(d->vm, slot, x + 2, 2, PCI_MSIX_FLAGS_ENABLE);
    d->nq = drv_rd(d, DRV_CMN(num_queues), 2);
    for (unsigned v = 0; v <= d->nq; v++) {
        uint64_t e = VP_MSIX_TABLE_OFF + 16 * v;
        drv_wr(d, e, 4, 0xfee00000);
        drv_wr(d, e + 4, 4, 0);
        drv_wr(d, e + 8, 4, 0x40 + v);
        drv_wr(d, e + 12, 4, 0);
    }
    drv_wr(d, DRV_CMN(device_status), 1, 0);
    drv_wr(d, DRV_CMN(device_status), 1,
           VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    d->event_idx = features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
    drv_wr(d, DRV_CMN(guest_feature_select), 4, 0);
    drv_wr(d, DRV_CMN(guest_feature), 4, (uint32_t)features);
    drv_wr(d, DRV_CMN(guest_feature_select), 4, 1);
    drv_wr(d, DRV_CMN(guest_feature), 4, (uint32_t)(features >> 32));
    drv_wr(d, DRV_CMN(device_status), 1, VIRTIO_CONFIG_S_ACKNOWLEDGE |
           VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    drv_wr(d, DRV_CMN(msix_config), 2, 0);
    for (unsigned q = 0; q < d->nq; q++) {
        struct fake_drv *f = &d->q[q];
        memset(fake_hva(d->ram, q * DRV_QSTRIDE), 0, DRV_HDR);
        fake_drv_init(f, d->ram, d->qsize, q * DRV_QSTRIDE);
        drv_wr(d, DRV_CMN(queue_select), 2, q);
        drv_wr(d, DRV_CMN(queue_size), 2, d->qsize);
        drv_wr(d, DRV_CMN(queue_msix_vector), 2, q + 1);
        drv_wr(d, DRV_CMN(queue_desc_lo), 4, f->desc_gpa);
        drv_wr(d, DRV_CMN(queue_desc_hi), 4, 0);
        drv_wr(d, DRV_CMN(queue_avail_lo), 4, f->avail_gpa);
        drv_wr(d, DRV_CMN(queue_avail_hi), 4, 0);
        drv_wr(d, DRV_CMN(queue_used_lo), 4, f->used_gpa);
        drv_wr(d, DRV_CMN(queue_used_hi), 4, 0);
        drv_wr(d, DRV_CMN(queue_enable), 2, 1);
    }
    drv_wr(d, DRV_CMN(device_status), 1, drv_status(d) | VIRTIO_CONFIG_S_DRIVER_OK);
    return drv_status(d);
}

/* The irqfd eventfd KVM would have been given for vector v. */
static inline int drv_irq_fd(struct drv *d, unsigned v)
{
    int gsi = d->blk->vp.msix.v[v].gsi;
    return gsi < 0 ? -1 : d->vm->gsi_fd[gsi];
}

/* Request in slot s of queue q: header, then data (len bytes at data_gpa,
 * device-writable for reads), then status. */
static inline void drv_post(struct drv *d, unsigned q, unsigned s,
                            uint32_t type, uint64_t sector, uint64_t data_gpa,
                            uint32_t len, bool data_writable)
{
    struct fake_drv *f = &d->q[q];
    uint64_t base = q * DRV_QSTRIDE;
    struct virtio_blk_outhdr *h = fake_hva(d->ram, base + DRV_HDR + 16 * s);
    h->type = type;
    h->ioprio = 0;
    h->sector = sector;
    *(uint8_t *)fake_hva(d->ram, base + DRV_ST + s) = 0xee;
    unsigned i = 3 * s;
    fake_desc(f->desc, i, base + DRV_HDR + 16 * s, 16, VRING_DESC_F_NEXT, i + 1);
    if (len) {
        fake_desc(f->desc, i + 1, data_gpa, len, VRING_DESC_F_NEXT |
                  (data_writable ? VRING_DESC_F_WRITE : 0), i + 2);
    } else {
        fake_desc(f->desc, i, base + DRV_HDR + 16 * s, 16, VRING_DESC_F_NEXT,
                  i + 2);
    }
    fake_desc(f->desc, i + 2, base + DRV_ST + s, 1, VRING_DESC_F_WRITE, 0);
    fake_avail(f, i);
}

static inline uint8_t drv_req_status(struct drv *d, unsigned q, unsigned s)
{
    return *(volatile uint8_t *)fake_hva(d->ram, q * DRV_QSTRIDE + DRV_ST + s);
}

/* Kick queue q the way a guest without ioeventfd does: an MMIO write.
 * Always kicking is legal; avail_event only allows the driver to skip. */
static inline void drv_kick(struct drv *d, unsigned q)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    drv_wr(d, VP_NOTIFY_OFF + q * VP_NOTIFY_MULT, 2, q);
}

/* Wait (up to timeout_ms, a hang guard) for vector v; true if it fired. */
static inline bool drv_wait_irq(struct drv *d, unsigned v, int timeout_ms)
{
    struct pollfd p = { .fd = drv_irq_fd(d, v), .events = POLLIN };
    if (p.fd < 0 || poll(&p, 1, timeout_ms) != 1)
        return false;
    uint64_t n;
    return read(p.fd, &n, sizeof(n)) == sizeof(n);
}

/* Collect completions of queue q until `want` have arrived (slot = id / 3);
 * returns how many arrived before the hang guard. */
static inline unsigned drv_reap(struct drv *d, unsigned q, unsigned want,
                                uint32_t *lens, int timeout_ms)
{
    unsigned got = 0;
    uint32_t id, len;
    while (got < want) {
        while (got < want && fake_used(&d->q[q], &id, &len)) {
            if (lens)
                lens[id / 3] = len;
            got++;
        }
        if (got < want) {
            if (d->event_idx) {
                uint16_t *ue = &d->q[q].avail->ring[d->q[q].size];
                __atomic_store_n(ue, d->q[q].last_used, __ATOMIC_SEQ_CST);
                if (fake_used(&d->q[q], &id, &len)) {
                    if (lens)
                        lens[id / 3] = len;
                    got++;
                    continue;
                }
            }
            if (!drv_wait_irq(d, q + 1, timeout_ms))
                break;
        }
    }
    return got;
}

#endif
