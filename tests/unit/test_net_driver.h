/* A minimal virtio-net driver that plays the guest against a struct net with
 * no KVM: it programs the transport through the MMIO bus, builds chains in
 * a fake guest RAM, kicks through the notify register and reads the MSI-X
 * vectors' irqfd eventfds.  The host end of each queue pair is one end of a
 * datagram socketpair (the device gets the other in place of a TAP fd), so
 * a test writes "the network's" frames there and reads what the guest sent.
 *
 * Guest RAM: two regions of NDRV_REGION bytes, adjacent.  Queue q's rings
 * are at q * NDRV_QSTRIDE; the rest of region 0 above NDRV_BUFS and all of
 * region 1 are for buffers, handed out by ndrv_alloc. */
#ifndef TEST_NET_DRIVER_H
#define TEST_NET_DRIVER_H

#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/test_virtio_pci_mock.h"
#include "tests/unit/test_virtq_fake.h"
#include "virtio/net.h"

#define NDRV_REGION  (8ULL << 20)
#define NDRV_QSTRIDE 0x8000ULL
#define NDRV_BUFS    (2ULL << 20)
#define NDRV_CMN(f)  offsetof(struct virtio_pci_common_cfg, f)
#define NDRV_HDR     12u

struct ndrv {
    struct mock_vm vm;
    struct fake_ram ram;
    struct net net;
    bool net_ok;
    int host[CFG_NET_MAX_PAIRS];       /* our ends of the socketpairs */
    unsigned pairs;
    uint64_t bar;
    unsigned nq;                       /* queues the device has */
    uint16_t qsize;
    uint64_t features;                 /* negotiated */
    struct fake_drv q[VP_MAX_QUEUES];
    uint16_t next_desc[VP_MAX_QUEUES];
    uint64_t alloc;                    /* next free buffer GPA */
};

static inline uint64_t ndrv_rd(struct ndrv *d, uint64_t off, unsigned len)
{ return mock_mmio_read(&d->vm, d->bar + off, len); }
static inline void ndrv_wr(struct ndrv *d, uint64_t off, unsigned len, uint64_t v)
{ mock_mmio_write(&d->vm, d->bar + off, len, v); }
static inline uint8_t ndrv_status(struct ndrv *d)
{ return ndrv_rd(d, NDRV_CMN(device_status), 1); }
static inline void *ndrv_hva(struct ndrv *d, uint64_t gpa)
{ return gm_gpa_to_hva(&d->ram.gm, gpa, 1); }

/* Device with cfg (pairs, queue size, mtu...) on socketpairs.  0 or the
 * net_init error. */
static inline int ndrv_init(struct ndrv *d, const struct cfg_net *cfg, char *err, size_t errlen)
{
    int devfd[CFG_NET_MAX_PAIRS];

    memset(d, 0, sizeof(*d));
    if (mock_vm_init(&d->vm))
        return -1;
    fake_ram_init_size(&d->ram, 1, NDRV_REGION);
    d->pairs = cfg->queues;
    for (unsigned i = 0; i < d->pairs; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
            return -errno;
        d->host[i] = sv[0];
        devfd[i] = sv[1];
    }
    int r = net_init(&d->net, cfg, devfd, &d->vm.pci, &d->vm.vmif, &d->ram.gm, err, errlen);
    if (r == 0)
        d->net_ok = true;
    d->alloc = NDRV_BUFS;
    return r;
}

static inline void ndrv_destroy(struct ndrv *d)
{
    if (d->net_ok)
        net_destroy(&d->net);
    for (unsigned i = 0; i < d->pairs; i++)
        close(d->host[i]);
    mock_vm_destroy(&d->vm);
    fake_ram_free(&d->ram);
}

/* Bring-up like a driver: MSI-X (vector q+1 for queue q, 0 for config),
 * features, every queue index in `qmask` (bit q) with size qsize, then
 * DRIVER_OK.  Returns the device status. */
static inline uint8_t ndrv_start(struct ndrv *d, uint64_t features, uint64_t qmask,
                                 uint16_t qsize)
{
    unsigned slot = d->net.vp.pdev.slot;
    d->bar = mock_cfg_read(&d->vm, slot, PCI_BASE_ADDRESS_0, 4) & ~0xfULL;
    mock_cfg_write(&d->vm, slot, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    unsigned x = mock_find_cap(&d->vm, slot, PCI_CAP_ID_MSIX, -1);
    mock_cfg_write(&d->vm, slot, x + 2, 2, PCI_MSIX_FLAGS_ENABLE);
    d->nq = ndrv_rd(d, NDRV_CMN(num_queues), 2);
    for (unsigned v = 0; v <= d->nq; v++) {
        uint64_t e = VP_MSIX_TABLE_OFF + 16 * v;
        ndrv_wr(d, e, 4, 0xfee00000);
        ndrv_wr(d, e + 4, 4, 0);
        ndrv_wr(d, e + 8, 4, 0x40 + v);
        ndrv_wr(d, e + 12, 4, 0);
    }
    ndrv_wr(d, NDRV_CMN(device_status), 1, 0);
    ndrv_wr(d, NDRV_CMN(device_status), 1, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    d->features = features;
    ndrv_wr(d, NDRV_CMN(guest_feature_select), 4, 0);
    ndrv_wr(d, NDRV_CMN(guest_feature), 4, (uint32_t)features);
    ndrv_wr(d, NDRV_CMN(guest_feature_select), 4, 1);
    ndrv_wr(d, NDRV_CMN(guest_feature), 4, (uint32_t)(features >> 32));
    ndrv_wr(d, NDRV_CMN(device_status), 1, VIRTIO_CONFIG_S_ACKNOWLEDGE |
            VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    if (!(ndrv_status(d) & VIRTIO_CONFIG_S_FEATURES_OK))
        return ndrv_status(d);
    ndrv_wr(d, NDRV_CMN(msix_config), 2, 0);
    d->qsize = qsize;
    d->alloc = NDRV_BUFS;
    for (unsigned q = 0; q < d->nq; q++) {
        struct fake_drv *f = &d->q[q];
        memset(ndrv_hva(d, q * NDRV_QSTRIDE), 0, NDRV_QSTRIDE);
        fake_drv_init(f, &d->ram, qsize, q * NDRV_QSTRIDE);
        d->next_desc[q] = 0;
        if (!(qmask & (1ULL << q)))
            continue;
        ndrv_wr(d, NDRV_CMN(queue_select), 2, q);
        ndrv_wr(d, NDRV_CMN(queue_size), 2, qsize);
        ndrv_wr(d, NDRV_CMN(queue_msix_vector), 2, q + 1);
        ndrv_wr(d, NDRV_CMN(queue_desc_lo), 4, f->desc_gpa);
        ndrv_wr(d, NDRV_CMN(queue_desc_hi), 4, 0);
        ndrv_wr(d, NDRV_CMN(queue_avail_lo), 4, f->avail_gpa);
        ndrv_wr(d, NDRV_CMN(queue_avail_hi), 4, 0);
        ndrv_wr(d, NDRV_CMN(queue_used_lo), 4, f->used_gpa);
        ndrv_wr(d, NDRV_CMN(queue_used_hi), 4, 0);
        ndrv_wr(d, NDRV_CMN(queue_enable), 2, 1);
    }
    ndrv_wr(d, NDRV_CMN(device_status), 1, ndrv_status(d) | VIRTIO_CONFIG_S_DRIVER_OK);
    return ndrv_status(d);
}

/* `len` bytes of buffer space (page-aligned), zeroed. */
static inline uint64_t ndrv_alloc(struct ndrv *d, uint64_t len)
{
    uint64_t gpa = d->alloc;
    d->alloc = (d->alloc + len + 4095) & ~4095ULL;
    if (d->alloc > 2 * NDRV_REGION)
        d->alloc = gpa = NDRV_BUFS;          /* tests stay far below this */
    memset(ndrv_hva(d, gpa), 0, len);
    return gpa;
}

struct ndrv_buf {
    uint64_t gpa;
    uint32_t len;
    bool write;
};

/* One chain of n buffers on queue q (not yet kicked); returns its head. */
static inline uint16_t ndrv_post(struct ndrv *d, unsigned q, const struct ndrv_buf *b,
                                 unsigned n)
{
    struct fake_drv *f = &d->q[q];
    uint16_t head = d->next_desc[q] & (f->size - 1);
    for (unsigned i = 0; i < n; i++) {
        uint16_t idx = (head + i) & (f->size - 1);
        uint16_t nx = (head + i + 1) & (f->size - 1);
        fake_desc(f->desc, idx, b[i].gpa, b[i].len,
                  (b[i].write ? VRING_DESC_F_WRITE : 0) | (i + 1 < n ? VRING_DESC_F_NEXT : 0), nx);
    }
    d->next_desc[q] += n;
    fake_avail(f, head);
    return head;
}

static inline void ndrv_kick(struct ndrv *d, unsigned q)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    ndrv_wr(d, VP_NOTIFY_OFF + q * VP_NOTIFY_MULT, 2, q);
}

/* The irqfd eventfd of MSI-X vector v (-1 if never routed). */
static inline int ndrv_irq_fd(struct ndrv *d, unsigned v)
{
    int gsi = d->net.vp.msix.v[v].gsi;
    return gsi < 0 ? -1 : d->vm.gsi_fd[gsi];
}

/* Wait up to ms for vector v; returns the count read (0: none). */
static inline uint64_t ndrv_irq(struct ndrv *d, unsigned v, int ms)
{
    struct pollfd p = { .fd = ndrv_irq_fd(d, v), .events = POLLIN };
    uint64_t n = 0;
    if (p.fd < 0 || poll(&p, 1, ms) != 1)
        return 0;
    return read(p.fd, &n, sizeof(n)) == sizeof(n) ? n : 0;
}

static inline void ndrv_sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

/* Next used entry of queue q within ms (a hang guard): 1 with id/len. */
static inline int ndrv_used(struct ndrv *d, unsigned q, uint32_t *id, uint32_t *len, int ms)
{
    for (int waited = 0;; waited++) {
        if (fake_used(&d->q[q], id, len))
            return 1;
        if (waited >= ms)
            return 0;
        if (d->features & (1ULL << VIRTIO_RING_F_EVENT_IDX)) {
            uint16_t *ue = &d->q[q].avail->ring[d->q[q].size];
            __atomic_store_n(ue, d->q[q].last_used, __ATOMIC_SEQ_CST);
        }
        ndrv_sleep_ms(1);
    }
}

/* A frame on the host end of pair p: virtio-net header then the frame. */
static inline ssize_t ndrv_host_send(struct ndrv *d, unsigned p,
                                     const struct virtio_net_hdr_v1 *h, const void *frame,
                                     size_t len)
{
    struct virtio_net_hdr_v1 z = { 0 };
    struct iovec iov[2] = { { (void *)(h ? h : &z), NDRV_HDR }, { (void *)frame, len } };
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
    /* Never block: a queue the device does not read fills (the socket's
     * max_dgram_qlen), and the caller sees -1/EAGAIN. */
    return sendmsg(d->host[p], &m, MSG_DONTWAIT);
}

/* What the guest sent on pair p (header + frame into buf) within ms:
 * bytes, or -1. */
static inline ssize_t ndrv_host_recv(struct ndrv *d, unsigned p, void *buf, size_t len, int ms)
{
    struct pollfd pf = { .fd = d->host[p], .events = POLLIN };
    if (poll(&pf, 1, ms) != 1)
        return -1;
    return recv(d->host[p], buf, len, MSG_DONTWAIT);
}

/* A test frame: dst, src MACs, ethertype 0x88b5 (local experimental),
 * then a byte pattern seeded by `seed`. */
static inline void ndrv_frame(uint8_t *f, size_t len, unsigned seed)
{
    static const uint8_t dst[6] = { 0x02, 0, 0, 0, 0, 0x01 };
    static const uint8_t src[6] = { 0x02, 0, 0, 0, 0, 0x02 };
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    f[12] = 0x88;
    f[13] = 0xb5;
    for (size_t i = 14; i < len; i++)
        f[i] = (uint8_t)(seed * 31 + i * 7);
}

#endif
