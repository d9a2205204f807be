/* virtio-net end to end with no KVM: the test plays the guest (rings in a
 * fake guest RAM, kicks through the notify register, MSI-X irqfd eventfds)
 * and the network (the other end of a datagram socketpair per queue pair;
 * the last test uses a real multi-queue TAP in its own network namespace).
 * Covers the data paths, mergeable RX packing (and a frame waiting for
 * buffers), the control queue, every malformed chain and header, back-
 * pressure without spinning, link down/up and reset with traffic in
 * flight.  The pure parsers (header/offload translation, control commands)
 * are tested in test_net_pkt.c. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "tests/unit/test_net_driver.h"
#include "vmm/log.h"

#define WAIT_MS 5000            /* hang guard only, never a timing check */
#define F(b) (1ULL << (b))
#define FEAT (F(VIRTIO_F_VERSION_1) | F(VIRTIO_RING_F_EVENT_IDX) | F(VIRTIO_NET_F_MAC) | \
              F(VIRTIO_NET_F_STATUS) | F(VIRTIO_NET_F_MTU) | F(VIRTIO_NET_F_MRG_RXBUF) | \
              F(VIRTIO_NET_F_CTRL_VQ) | F(VIRTIO_NET_F_MQ) | F(VIRTIO_NET_F_CSUM) | \
              F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_HOST_TSO4) | \
              F(VIRTIO_NET_F_HOST_TSO6) | F(VIRTIO_NET_F_GUEST_TSO4) | \
              F(VIRTIO_NET_F_GUEST_TSO6))
#define QALL 0x1f               /* rx0 tx0 rx1 tx1 ctrl */
#define CTRLQ 4
#define QSIZE 64

struct fix {
    struct ndrv d;
    struct cfg_net cfg;
};

static struct fix *fix_new(unsigned pairs)
{
    struct fix *f = calloc(1, sizeof(*f));
    char err[256] = "";
    f->cfg.index = 0;
    strcpy(f->cfg.tap, "unused");
    memcpy(f->cfg.mac, "\x02\x11\x22\x33\x44\x55", 6);
    f->cfg.queues = pairs;
    f->cfg.queue_size = 256;
    f->cfg.mtu = 1500;
    if (ndrv_init(&f->d, &f->cfg, err, sizeof(err)))
        fail_msg("ndrv_init: %s", err);
    return f;
}

static int setup(void **state)
{
    struct fix *f = fix_new(2);
    uint8_t st = ndrv_start(&f->d, FEAT, QALL, QSIZE);
    assert_true(st & VIRTIO_CONFIG_S_DRIVER_OK);
    assert_false(st & VIRTIO_CONFIG_S_NEEDS_RESET);
    *state = f;
    return 0;
}

static int setup_bare(void **state)
{
    *state = fix_new(2);
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    ndrv_destroy(&f->d);
    free(f);
    return 0;
}

static uint64_t drops(struct fix *f, enum net_drop d)
{
    struct net_stats s;
    net_get_stats(&f->d.net, &s);
    return s.drops[d];
}

/* --- guest-side helpers ----------------------------------------------------- */

/* One device-writable RX buffer of len bytes on rx queue q. */
static uint16_t rx_post(struct fix *f, unsigned q, uint32_t len, uint64_t *gpa)
{
    uint64_t g = ndrv_alloc(&f->d, len);
    struct ndrv_buf b = { g, len, true };
    if (gpa)
        *gpa = g;
    return ndrv_post(&f->d, q, &b, 1);
}

/* Transmit on tx queue q: header h (NULL: zeros) then frame, in one
 * buffer, kicked. */
static uint16_t tx_send(struct fix *f, unsigned q, const struct virtio_net_hdr_v1 *h,
                        const uint8_t *frame, size_t len)
{
    uint64_t g = ndrv_alloc(&f->d, NDRV_HDR + len);
    uint8_t *p = ndrv_hva(&f->d, g);
    struct virtio_net_hdr_v1 z = { 0 };
    memcpy(p, h ? h : &z, NDRV_HDR);
    memcpy(p + NDRV_HDR, frame, len);
    struct ndrv_buf b = { g, (uint32_t)(NDRV_HDR + len), false };
    uint16_t head = ndrv_post(&f->d, q, &b, 1);
    ndrv_kick(&f->d, q);
    return head;
}

/* A control command: class, cmd, data, then the 1-byte ack.  Returns the
 * ack, or -1 when no used entry came. */
static int ctrl_cmd(struct fix *f, uint8_t cls, uint8_t cmd, const void *data, size_t len)
{
    uint64_t g = ndrv_alloc(&f->d, 64 + len);
    uint8_t *p = ndrv_hva(&f->d, g);
    p[0] = cls;
    p[1] = cmd;
    if (len)
        memcpy(p + 2, data, len);
    p[63 + len] = 0xee;
    struct ndrv_buf b[3] = { { g, 2, false }, { g + 2, (uint32_t)len, false },
                             { g + 63 + len, 1, true } };
    if (len)
        ndrv_post(&f->d, CTRLQ, b, 3);
    else
        ndrv_post(&f->d, CTRLQ, (struct ndrv_buf[]){ b[0], b[2] }, 2);
    ndrv_kick(&f->d, CTRLQ);
    uint32_t id, ulen;
    if (!ndrv_used(&f->d, CTRLQ, &id, &ulen, WAIT_MS))
        return -1;
    assert_int_equal(ulen, 1);
    return p[63 + len];
}

static int set_pairs(struct fix *f, uint16_t n)
{
    return ctrl_cmd(f, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &n, 2);
}

/* CPU time of this process in ms (user + system): the device's workers
 * live in it, so a spinning worker shows here. */
static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* --- tests -------------------------------------------------------------------- */

static void test_config_space(void **state)
{
    struct fix *f = *state;
    struct virtio_net_config c;
    memset(&c, 0, sizeof(c));
    for (unsigned i = 0; i < 12; i++)
        ((uint8_t *)&c)[i] = ndrv_rd(&f->d, VP_DEVCFG_OFF + i, 1);
    assert_memory_equal(c.mac, f->cfg.mac, 6);
    assert_int_equal(c.status, VIRTIO_NET_S_LINK_UP);
    assert_int_equal(c.max_virtqueue_pairs, 2);
    assert_int_equal(c.mtu, 1500);
    assert_int_equal(f->d.nq, 5);
    ndrv_wr(&f->d, NDRV_CMN(device_feature_select), 4, 0);
    uint64_t feat = ndrv_rd(&f->d, NDRV_CMN(device_feature), 4);
    ndrv_wr(&f->d, NDRV_CMN(device_feature_select), 4, 1);
    feat |= ndrv_rd(&f->d, NDRV_CMN(device_feature), 4) << 32;
    assert_int_equal(feat & FEAT, FEAT);
    assert_true(feat & F(VIRTIO_RING_F_INDIRECT_DESC));
    assert_false(feat & F(VIRTIO_NET_F_GUEST_UFO));
    assert_false(feat & F(VIRTIO_NET_F_HOST_ECN));
}

static void test_features_refused(void **state)
{
    struct fix *f = *state;
    /* TSO without the checksum offload it rests on; MQ without CTRL_VQ. */
    uint8_t st = ndrv_start(&f->d, F(VIRTIO_F_VERSION_1) | F(VIRTIO_NET_F_GUEST_TSO4), 3, QSIZE);
    assert_false(st & VIRTIO_CONFIG_S_FEATURES_OK);
    st = ndrv_start(&f->d, F(VIRTIO_F_VERSION_1) | F(VIRTIO_NET_F_HOST_TSO6), 3, QSIZE);
    assert_false(st & VIRTIO_CONFIG_S_FEATURES_OK);
    st = ndrv_start(&f->d, F(VIRTIO_F_VERSION_1) | F(VIRTIO_NET_F_MQ), 3, QSIZE);
    assert_false(st & VIRTIO_CONFIG_S_FEATURES_OK);
    st = ndrv_start(&f->d, FEAT, QALL, QSIZE);
    assert_true(st & VIRTIO_CONFIG_S_DRIVER_OK);
}

static void test_tx(void **state)
{
    struct fix *f = *state;
    uint8_t frame[1514], got[2048];
    uint32_t id, len;
    struct net_stats s;

    for (unsigned p = 0; p < 2; p++) {
        ndrv_frame(frame, sizeof(frame), p);
        uint16_t head = tx_send(f, 2 * p + 1, NULL, frame, sizeof(frame));
        ssize_t n = ndrv_host_recv(&f->d, p, got, sizeof(got), WAIT_MS);
        assert_int_equal(n, NDRV_HDR + sizeof(frame));
        assert_memory_equal(got + NDRV_HDR, frame, sizeof(frame));
        assert_true(ndrv_used(&f->d, 2 * p + 1, &id, &len, WAIT_MS));
        assert_int_equal(id, head);
        assert_int_equal(len, 0);
        /* Each queue completes on its own vector. */
        assert_true(ndrv_irq(&f->d, 2 * p + 2, WAIT_MS));
    }
    net_get_stats(&f->d.net, &s);
    for (unsigned p = 0; p < 2; p++) {
        assert_int_equal(s.q[p].tx.packets, 1);
        assert_int_equal(s.q[p].tx.bytes, 1514);
        assert_int_equal(s.q[p].tx.drops, 0);
    }
}

/* A header split over descriptors (5 + 7 bytes), frame in three pieces:
 * the host sees one clean frame. */
static void test_tx_split(void **state)
{
    struct fix *f = *state;
    uint8_t frame[300], got[512];
    uint64_t g = ndrv_alloc(&f->d, 4096);
    uint8_t *p = ndrv_hva(&f->d, g);
    struct virtio_net_hdr_v1 h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34,
                                   .csum_offset = 6, .num_buffers = 7 };

    ndrv_frame(frame, sizeof(frame), 9);
    memcpy(p, &h, NDRV_HDR);
    memcpy(p + 100, frame, sizeof(frame));
    struct ndrv_buf b[5] = { { g, 5, false }, { g + 5, 7, false }, { g + 100, 10, false },
                             { g + 110, 90, false }, { g + 200, 200, false } };
    ndrv_post(&f->d, 1, b, 5);
    ndrv_kick(&f->d, 1);
    assert_int_equal(ndrv_host_recv(&f->d, 0, got, sizeof(got), WAIT_MS), NDRV_HDR + 300);
    struct virtio_net_hdr_v1 *gh = (void *)got;
    assert_int_equal(gh->flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
    assert_int_equal(gh->csum_start, 34);
    assert_int_equal(gh->num_buffers, 0);   /* the TX field is not the guest's */
    assert_memory_equal(got + NDRV_HDR, frame, 300);
}

static void test_rx(void **state)
{
    struct fix *f = *state;
    uint8_t frame[100];
    uint64_t gpa;
    uint32_t id, len;

    uint16_t head = rx_post(f, 0, 2048, &gpa);
    ndrv_kick(&f->d, 0);
    ndrv_frame(frame, sizeof(frame), 3);
    struct virtio_net_hdr_v1 h = { .flags = VIRTIO_NET_HDR_F_DATA_VALID, .num_buffers = 99 };
    assert_int_equal(ndrv_host_send(&f->d, 0, &h, frame, sizeof(frame)), NDRV_HDR + 100);
    assert_true(ndrv_used(&f->d, 0, &id, &len, WAIT_MS));
    assert_int_equal(id, head);
    assert_int_equal(len, NDRV_HDR + 100);
    struct virtio_net_hdr_v1 *gh = ndrv_hva(&f->d, gpa);
    assert_int_equal(gh->num_buffers, 1);
    assert_int_equal(gh->flags, VIRTIO_NET_HDR_F_DATA_VALID);   /* GUEST_CSUM: kept */
    assert_memory_equal((uint8_t *)gh + NDRV_HDR, frame, 100);
    assert_true(ndrv_irq(&f->d, 1, WAIT_MS));
    struct net_stats s;
    net_get_stats(&f->d.net, &s);
    assert_int_equal(s.q[0].rx.packets, 1);
    assert_int_equal(s.q[0].rx.bytes, 100);
    assert_true(s.q[0].rx.irqs >= 1);
}

/* 1000 bytes over 256-byte buffers: 256 (header + 244), 256, 256, 244. */
static void test_rx_mergeable(void **state)
{
    struct fix *f = *state;
    uint8_t frame[1000], got[1100];
    uint64_t gpa[6];
    uint16_t head[6];
    uint32_t id, len;

    for (unsigned i = 0; i < 6; i++)
        head[i] = rx_post(f, 0, 256, &gpa[i]);
    ndrv_kick(&f->d, 0);
    ndrv_frame(frame, sizeof(frame), 4);
    ndrv_host_send(&f->d, 0, NULL, frame, sizeof(frame));
    static const uint32_t want[4] = { 256, 256, 256, 244 };
    size_t off = 0;
    for (unsigned i = 0; i < 4; i++) {
        assert_true(ndrv_used(&f->d, 0, &id, &len, WAIT_MS));
        assert_int_equal(id, head[i]);
        assert_int_equal(len, want[i]);
        memcpy(got + off, ndrv_hva(&f->d, gpa[i]), len);
        off += len;
    }
    assert_int_equal(off, NDRV_HDR + 1000);
    assert_int_equal(((struct virtio_net_hdr_v1 *)got)->num_buffers, 4);
    assert_memory_equal(got + NDRV_HDR, frame, 1000);
    /* The two left over take the next frame. */
    ndrv_host_send(&f->d, 0, NULL, frame, 60);
    assert_true(ndrv_used(&f->d, 0, &id, &len, WAIT_MS));
    assert_int_equal(id, head[4]);
    assert_int_equal(len, 72);
}

/* A frame larger than the buffers posted waits for more (nothing is lost
 * and nothing is completed meanwhile), then lands whole. */
static void test_rx_partial(void **state)
{
    struct fix *f = *state;
    uint8_t frame[1000], got[1100];
    uint64_t gpa[5];
    uint16_t head[5];
    uint32_t id, len = 0;

    for (unsigned i = 0; i < 2; i++)
        head[i] = rx_post(f, 0, 256, &gpa[i]);
    ndrv_kick(&f->d, 0);
    ndrv_frame(frame, sizeof(frame), 5);
    ndrv_host_send(&f->d, 0, NULL, frame, sizeof(frame));
    ndrv_sleep_ms(50);
    assert_false(ndrv_used(&f->d, 0, &id, &len, 0));
    for (unsigned i = 2; i < 5; i++)
        head[i] = rx_post(f, 0, 256, &gpa[i]);
    ndrv_kick(&f->d, 0);
    size_t off = 0;
    for (unsigned i = 0; i < 4; i++) {
        assert_true(ndrv_used(&f->d, 0, &id, &len, WAIT_MS));
        assert_int_equal(id, head[i]);
        memcpy(got + off, ndrv_hva(&f->d, gpa[i]), len);
        off += len;
    }
    assert_int_equal(off, NDRV_HDR + 1000);
    assert_int_equal(((struct virtio_net_hdr_v1 *)got)->num_buffers, 4);
    assert_memory_equal(got + NDRV_HDR, frame, 1000);
    assert_int_equal(drops(f, NET_DROP_NO_ROOM), 0);
}

/* Without MRG_RXBUF a frame must fit one chain; one that does not is
 * dropped and the chain kept for the next. */
static void test_rx_no_mergeable(void **state)
{
    struct fix *f = *state;
    uint8_t frame[200];
    uint64_t gpa;
    uint32_t id, len;
    uint64_t feat = FEAT & ~F(VIRTIO_NET_F_MRG_RXBUF) & ~F(VIRTIO_NET_F_GUEST_CSUM) &
                    ~F(VIRTIO_NET_F_GUEST_TSO4) & ~F(VIRTIO_NET_F_GUEST_TSO6);

    assert_true(ndrv_start(&f->d, feat, QALL, QSIZE) & VIRTIO_CONFIG_S_DRIVER_OK);
    uint16_t head = rx_post(f, 0, 112, &gpa);
    ndrv_kick(&f->d, 0);
    ndrv_frame(frame, sizeof(frame), 6);
    ndrv_host_send(&f->d, 0, NULL, frame, 200);
    struct virtio_net_hdr_v1 h = { .flags = VIRTIO_NET_HDR_F_DATA_VALID };
    ndrv_host_send(&f->d, 0, &h, frame, 100);
    assert_true(ndrv_used(&f->d, 0, &id, &len, WAIT_MS));
    assert_int_equal(id, head);
    assert_int_equal(len, 112);
    struct virtio_net_hdr_v1 *gh = ndrv_hva(&f->d, gpa);
    assert_int_equal(gh->num_buffers, 1);
    assert_int_equal(gh->flags, 0);          /* no GUEST_CSUM: flags are 0 */
    assert_memory_equal((uint8_t *)gh + NDRV_HDR, frame, 100);
    assert_int_equal(drops(f, NET_DROP_NO_ROOM), 1);
}

/* Received headers the guest did not negotiate are dropped. */
static void test_rx_header_translation(void **state)
{
    struct fix *f = *state;
    uint8_t frame[200];
    uint64_t gpa;
    uint32_t id, len;
    uint64_t feat = FEAT & ~F(VIRTIO_NET_F_GUEST_TSO4) & ~F(VIRTIO_NET_F_GUEST_TSO6);

    assert_true(ndrv_start(&f->d, feat, QALL, QSIZE) & VIRTIO_CONFIG_S_DRIVER_OK);
    rx_post(f, 0, 2048, &gpa);
    ndrv_kick(&f->d, 0);
    ndrv_frame(frame, sizeof(frame), 7);
    struct virtio_net_hdr_v1 gso = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34,
                                     .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
                                     .gso_size = 1448, .hdr_len = 54 };
    ndrv_host_send(&f->d, 0, &gso, frame, 200);
    struct virtio_net_hdr_v1 runt = { 0 };
    ndrv_host_send(&f->d, 0, &runt, frame, 10);
    struct virtio_net_hdr_v1 csum = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34,
                                      .csum_offset = 16, .gso_size = 77 };
    ndrv_host_send(&f->d, 0, &csum, frame, 200);
    assert_true(ndrv_used(&f->d, 0, &id, &len, WAIT_MS));
    assert_int_equal(len, NDRV_HDR + 200);
    struct virtio_net_hdr_v1 *gh = ndrv_hva(&f->d, gpa);
    assert_int_equal(gh->flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
    assert_int_equal(gh->gso_type, 0);
    assert_int_equal(gh->gso_size, 0);       /* cleaned for a non-GSO frame */
    assert_int_equal(drops(f, NET_DROP_GSO), 1);
    assert_int_equal(drops(f, NET_DROP_RUNT), 1);
}

/* Every lie a TX header can tell: dropped and counted by reason, the
 * queue goes on, and only the honest frame reaches the network. */
static void test_tx_malformed(void **state)
{
    struct fix *f = *state;
    uint8_t frame[2000], got[2048];
    struct {
        struct virtio_net_hdr_v1 h;
        size_t len;
        enum net_drop why;
    } bad[] = {
        { { .flags = VIRTIO_NET_HDR_F_DATA_VALID }, 100, NET_DROP_FLAGS },
        { { .flags = 0x80 }, 100, NET_DROP_FLAGS },
        { { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 90, .csum_offset = 16 }, 100, NET_DROP_CSUM },
        { { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 0xffff, .csum_offset = 0xffff }, 100, NET_DROP_CSUM },
        { { 0 }, 13, NET_DROP_RUNT },
        { { 0 }, 1519, NET_DROP_OVERSIZE },
        { { .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1000 }, 1514, NET_DROP_GSO },
        { { .flags = 1, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_UDP, .gso_size = 1000 }, 1514, NET_DROP_GSO },
        { { .flags = 1, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, .gso_size = 1000 }, 1514, NET_DROP_GSO },
        { { .flags = 1, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV6, .gso_size = 0 }, 1514, NET_DROP_GSO },
        { { .flags = 1, .csum_start = 34, .csum_offset = 16, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1000, .hdr_len = 1600 }, 1514, NET_DROP_GSO },
        { { .flags = 1, .csum_start = 34, .csum_offset = 16, .gso_type = 9, .gso_size = 100 }, 1514, NET_DROP_GSO },
    };
    uint32_t id, len;

    ndrv_frame(frame, sizeof(frame), 8);
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        tx_send(f, 1, &bad[i].h, frame, bad[i].len);
    /* A TX chain holding a device-writable buffer, and one shorter than a
     * header. */
    uint64_t g = ndrv_alloc(&f->d, 256);
    struct ndrv_buf wb[2] = { { g, 12 + 60, false }, { g + 128, 64, true } };
    ndrv_post(&f->d, 1, wb, 2);
    struct ndrv_buf sb = { g, 11, false };
    ndrv_post(&f->d, 1, &sb, 1);
    /* Honest: a full-size frame and a TSO frame. */
    tx_send(f, 1, NULL, frame, 1514);
    struct virtio_net_hdr_v1 tso = { .flags = 1, .csum_start = 34, .csum_offset = 16,
                                     .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1448,
                                     .hdr_len = 66 };
    tx_send(f, 1, &tso, frame, 2000);
    unsigned n = sizeof(bad) / sizeof(bad[0]) + 4;
    for (unsigned i = 0; i < n; i++) {
        assert_true(ndrv_used(&f->d, 1, &id, &len, WAIT_MS));
        assert_int_equal(len, 0);
    }
    assert_int_equal(ndrv_host_recv(&f->d, 0, got, sizeof(got), WAIT_MS), NDRV_HDR + 1514);
    assert_int_equal(ndrv_host_recv(&f->d, 0, got, sizeof(got), WAIT_MS), NDRV_HDR + 2000);
    assert_int_equal(((struct virtio_net_hdr_v1 *)got)->gso_size, 1448);
    assert_int_equal(ndrv_host_recv(&f->d, 0, got, sizeof(got), 50), -1);
    assert_int_equal(drops(f, NET_DROP_FLAGS), 2);
    assert_int_equal(drops(f, NET_DROP_CSUM), 2);
    assert_int_equal(drops(f, NET_DROP_RUNT), 1);
    assert_int_equal(drops(f, NET_DROP_OVERSIZE), 1);
    assert_int_equal(drops(f, NET_DROP_GSO), 6);
    assert_int_equal(drops(f, NET_DROP_TX_WRITABLE), 1);
    assert_int_equal(drops(f, NET_DROP_HDR_SHORT), 1);
    struct net_stats s;
    net_get_stats(&f->d.net, &s);
    assert_int_equal(s.q[0].tx.drops, n - 2);
    assert_int_equal(s.q[0].tx.packets, 2);
    assert_false(ndrv_status(&f->d) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* Without CSUM/HOST_TSO negotiated, the same offload requests are lies;
 * without F_MTU a 1500 floor applies even to a smaller mtu. */
static void test_tx_unnegotiated(void **state)
{
    struct fix *f = *state;
    uint8_t frame[1600];
    uint32_t id, len;
    uint64_t feat = F(VIRTIO_F_VERSION_1) | F(VIRTIO_NET_F_MAC);

    assert_true(ndrv_start(&f->d, feat, 3, QSIZE) & VIRTIO_CONFIG_S_DRIVER_OK);
    ndrv_frame(frame, sizeof(frame), 10);
    struct virtio_net_hdr_v1 c = { .flags = 1, .csum_start = 34, .csum_offset = 16 };
    tx_send(f, 1, &c, frame, 100);
    struct virtio_net_hdr_v1 g = { .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1000 };
    tx_send(f, 1, &g, frame, 1514);
    tx_send(f, 1, NULL, frame, 1518);
    for (unsigned i = 0; i < 3; i++)
        assert_true(ndrv_used(&f->d, 1, &id, &len, WAIT_MS));
    assert_int_equal(drops(f, NET_DROP_CSUM), 1);
    assert_int_equal(drops(f, NET_DROP_GSO), 1);
    assert_int_equal(drops(f, NET_DROP_OVERSIZE), 0);
}

/* Chains vq_pop cannot trust set NEEDS_RESET (config interrupt); an RX
 * chain that cannot be a receive buffer is handed back empty. */
static void test_bad_chains(void **state)
{
    struct fix *f = *state;
    struct fake_drv *tx = &f->d.q[1], *rx = &f->d.q[2];
    uint32_t id, len;

    /* rx1: a readable buffer, and one too short for the header. */
    uint64_t g = ndrv_alloc(&f->d, 4096);
    struct ndrv_buf r1 = { g, 512, false }, r2 = { g + 1024, 8, true };
    uint16_t h1 = ndrv_post(&f->d, 2, &r1, 1), h2 = ndrv_post(&f->d, 2, &r2, 1);
    assert_int_equal(set_pairs(f, 2), VIRTIO_NET_OK);
    ndrv_kick(&f->d, 2);
    assert_true(ndrv_used(&f->d, 2, &id, &len, WAIT_MS));
    assert_int_equal(id, h1);
    assert_int_equal(len, 0);
    assert_true(ndrv_used(&f->d, 2, &id, &len, WAIT_MS));
    assert_int_equal(id, h2);
    assert_int_equal(len, 0);
    assert_int_equal(drops(f, NET_DROP_RX_CHAIN), 2);
    assert_false(ndrv_status(&f->d) & VIRTIO_CONFIG_S_NEEDS_RESET);
    (void)rx;

    /* tx0: a descriptor loop. */
    ndrv_irq(&f->d, 0, 0);
    fake_desc(tx->desc, 10, g, 64, VRING_DESC_F_NEXT, 11);
    fake_desc(tx->desc, 11, g, 64, VRING_DESC_F_NEXT, 10);
    fake_avail(tx, 10);
    ndrv_kick(&f->d, 1);
    assert_true(ndrv_irq(&f->d, 0, WAIT_MS));
    assert_true(ndrv_status(&f->d) & VIRTIO_CONFIG_S_NEEDS_RESET);

    /* The driver resets; a buffer outside guest RAM on rx0 does it again. */
    assert_true(ndrv_start(&f->d, FEAT, QALL, QSIZE) & VIRTIO_CONFIG_S_DRIVER_OK);
    assert_false(ndrv_status(&f->d) & VIRTIO_CONFIG_S_NEEDS_RESET);
    struct ndrv_buf out = { 1ULL << 40, 2048, true };
    ndrv_post(&f->d, 0, &out, 1);
    ndrv_kick(&f->d, 0);
    assert_true(ndrv_irq(&f->d, 0, WAIT_MS));
    assert_true(ndrv_status(&f->d) & VIRTIO_CONFIG_S_NEEDS_RESET);

    /* And one that ends past the end of RAM on tx1. */
    assert_true(ndrv_start(&f->d, FEAT, QALL, QSIZE) & VIRTIO_CONFIG_S_DRIVER_OK);
    struct ndrv_buf edge = { 2 * NDRV_REGION - 100, 200, false };
    ndrv_post(&f->d, 3, &edge, 1);
    ndrv_kick(&f->d, 3);
    assert_true(ndrv_irq(&f->d, 0, WAIT_MS));
    assert_true(ndrv_status(&f->d) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static void test_ctrl(void **state)
{
    struct fix *f = *state;
    uint16_t n;
    struct net_stats s;

    net_get_stats(&f->d.net, &s);
    assert_int_equal(s.active, 1);          /* one pair until the driver asks */
    assert_int_equal(set_pairs(f, 2), VIRTIO_NET_OK);
    net_get_stats(&f->d.net, &s);
    assert_int_equal(s.active, 2);
    assert_int_equal(set_pairs(f, 0), VIRTIO_NET_ERR);
    assert_int_equal(set_pairs(f, 3), VIRTIO_NET_ERR);
    assert_int_equal(set_pairs(f, 0x8000), VIRTIO_NET_ERR);
    n = 1;
    assert_int_equal(ctrl_cmd(f, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &n, 1),
                     VIRTIO_NET_ERR);
    uint8_t three[3] = { 1, 0, 0 };
    assert_int_equal(ctrl_cmd(f, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, three, 3),
                     VIRTIO_NET_ERR);
    assert_int_equal(ctrl_cmd(f, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_RSS_CONFIG, &n, 2),
                     VIRTIO_NET_ERR);
    uint8_t on = 1;
    assert_int_equal(ctrl_cmd(f, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &on, 1),
                     VIRTIO_NET_ERR);
    assert_int_equal(ctrl_cmd(f, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET,
                              "\x02\0\0\0\0\x09", 6), VIRTIO_NET_ERR);
    assert_int_equal(ctrl_cmd(f, 0xff, 0xff, NULL, 0), VIRTIO_NET_ERR);
    net_get_stats(&f->d.net, &s);
    assert_int_equal(s.active, 2);          /* refused commands change nothing */
    assert_int_equal(s.ctrl_ok, 1);
    assert_int_equal(s.ctrl_err, 9);
    assert_int_equal(set_pairs(f, 1), VIRTIO_NET_OK);
    net_get_stats(&f->d.net, &s);
    assert_int_equal(s.active, 1);
    assert_false(ndrv_status(&f->d) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* A command of one byte, and one with no ack byte at all. */
static void test_ctrl_garbage(void **state)
{
    struct fix *f = *state;
    uint64_t g = ndrv_alloc(&f->d, 64);
    uint8_t *p = ndrv_hva(&f->d, g);
    uint32_t id, len;

    p[0] = VIRTIO_NET_CTRL_MQ;
    p[10] = 0xee;
    struct ndrv_buf b[2] = { { g, 1, false }, { g + 10, 1, true } };
    ndrv_post(&f->d, CTRLQ, b, 2);
    ndrv_kick(&f->d, CTRLQ);
    assert_true(ndrv_used(&f->d, CTRLQ, &id, &len, WAIT_MS));
    assert_int_equal(p[10], VIRTIO_NET_ERR);
    assert_false(ndrv_status(&f->d) & VIRTIO_CONFIG_S_NEEDS_RESET);

    ndrv_irq(&f->d, 0, 0);
    struct ndrv_buf ro = { g, 4, false };
    ndrv_post(&f->d, CTRLQ, &ro, 1);
    ndrv_kick(&f->d, CTRLQ);
    assert_true(ndrv_irq(&f->d, 0, WAIT_MS));
    assert_true(ndrv_status(&f->d) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* Without MQ the control queue is queue 2 (5.1.2), and pair 1 is unused. */
static void test_ctrl_without_mq(void **state)
{
    struct fix *f = *state;
    uint64_t feat = FEAT & ~F(VIRTIO_NET_F_MQ);
    uint64_t g;
    uint32_t id, len;

    assert_true(ndrv_start(&f->d, feat, 0x7, QSIZE) & VIRTIO_CONFIG_S_DRIVER_OK);
    g = ndrv_alloc(&f->d, 64);
    uint8_t *p = ndrv_hva(&f->d, g);
    p[0] = VIRTIO_NET_CTRL_MQ;
    p[1] = VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET;
    p[2] = 2;
    p[3] = 0;
    p[8] = 0xee;
    struct ndrv_buf b[2] = { { g, 4, false }, { g + 8, 1, true } };
    ndrv_post(&f->d, 2, b, 2);
    ndrv_kick(&f->d, 2);
    assert_true(ndrv_used(&f->d, 2, &id, &len, WAIT_MS));
    assert_int_equal(p[8], VIRTIO_NET_ERR);  /* MQ not negotiated */
}

/* Pair 1 takes frames only once VQ_PAIRS_SET made it active. */
static void test_inactive_pair(void **state)
{
    struct fix *f = *state;
    uint8_t frame[64];
    uint32_t id, len;

    uint16_t head = rx_post(f, 2, 2048, NULL);
    ndrv_kick(&f->d, 2);
    ndrv_frame(frame, sizeof(frame), 11);
    ndrv_host_send(&f->d, 1, NULL, frame, sizeof(frame));
    ndrv_sleep_ms(50);
    assert_false(ndrv_used(&f->d, 2, &id, &len, 0));
    assert_int_equal(set_pairs(f, 2), VIRTIO_NET_OK);
    assert_true(ndrv_used(&f->d, 2, &id, &len, WAIT_MS));
    assert_int_equal(id, head);
    assert_int_equal(len, NDRV_HDR + 64);
    assert_true(ndrv_irq(&f->d, 3, WAIT_MS));
}

/* The network stops reading: the device stops popping TX (no spin), and
 * goes on once the network drains. */
static void test_tx_backpressure(void **state)
{
    struct fix *f = *state;
    enum { N = 48, LEN = 16000 };
    static uint8_t frame[LEN], got[LEN + 64];
    uint32_t id, len;
    unsigned done = 0, seen = 0;

    /* The network's queue holds net.unix.max_dgram_qlen (10) frames. */
    struct virtio_net_hdr_v1 tso = { .flags = 1, .csum_start = 34, .csum_offset = 16,
                                     .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1448,
                                     .hdr_len = 66 };
    for (unsigned i = 0; i < N; i++) {
        ndrv_frame(frame, LEN, i);
        tx_send(f, 1, &tso, frame, LEN);
    }
    ndrv_sleep_ms(100);
    while (ndrv_used(&f->d, 1, &id, &len, 0))
        done++;
    assert_true(done < N);
    double c0 = cpu_ms();
    ndrv_sleep_ms(300);
    double spent = cpu_ms() - c0;
    print_message("# TX blocked with %u of %u frames sent: %.1f ms CPU in 300 ms\n", done, N,
                  spent);
    assert_true(spent < 60);
    while (ndrv_used(&f->d, 1, &id, &len, 0))
        done++;
    while (seen < N) {
        ssize_t n = ndrv_host_recv(&f->d, 0, got, sizeof(got), WAIT_MS);
        assert_int_equal(n, NDRV_HDR + LEN);
        assert_int_equal(got[NDRV_HDR + 100], (uint8_t)(seen * 31 + 700));
        seen++;
    }
    while (done < N && ndrv_used(&f->d, 1, &id, &len, WAIT_MS))
        done++;
    assert_int_equal(done, N);
    assert_int_equal(drops(f, NET_DROP_TAP), 0);
}

/* No RX buffers: frames wait in the network's queue (no spin), then all
 * arrive in order once buffers come. */
static void test_rx_backpressure(void **state)
{
    struct fix *f = *state;
    enum { N = 8 };            /* within net.unix.max_dgram_qlen (10) */
    uint8_t frame[300];
    uint64_t gpa[N];
    uint32_t id, len;

    for (unsigned i = 0; i < N; i++) {
        ndrv_frame(frame, sizeof(frame), 100 + i);
        assert_int_equal(ndrv_host_send(&f->d, 0, NULL, frame, sizeof(frame)),
                         NDRV_HDR + sizeof(frame));
    }
    double c0 = cpu_ms();
    ndrv_sleep_ms(300);
    double spent = cpu_ms() - c0;
    print_message("# RX with no buffers: %.1f ms CPU in 300 ms\n", spent);
    assert_true(spent < 60);
    for (unsigned i = 0; i < N; i++)
        rx_post(f, 0, 2048, &gpa[i]);
    ndrv_kick(&f->d, 0);
    for (unsigned i = 0; i < N; i++) {
        assert_true(ndrv_used(&f->d, 0, &id, &len, WAIT_MS));
        assert_int_equal(len, NDRV_HDR + sizeof(frame));
        ndrv_frame(frame, sizeof(frame), 100 + i);
        assert_memory_equal((uint8_t *)ndrv_hva(&f->d, gpa[i]) + NDRV_HDR, frame, sizeof(frame));
    }
}

static void test_link(void **state)
{
    struct fix *f = *state;
    uint8_t frame[100], got[256];
    uint32_t id, len;

    ndrv_irq(&f->d, 0, 0);
    net_set_link(&f->d.net, false);
    assert_true(ndrv_irq(&f->d, 0, WAIT_MS));          /* config change */
    assert_int_equal(ndrv_rd(&f->d, VP_DEVCFG_OFF + 6, 2), 0);
    ndrv_frame(frame, sizeof(frame), 12);
    tx_send(f, 1, NULL, frame, sizeof(frame));
    assert_true(ndrv_used(&f->d, 1, &id, &len, WAIT_MS));
    assert_int_equal(ndrv_host_recv(&f->d, 0, got, sizeof(got), 50), -1);
    rx_post(f, 0, 2048, NULL);
    ndrv_kick(&f->d, 0);
    ndrv_host_send(&f->d, 0, NULL, frame, sizeof(frame));
    ndrv_sleep_ms(50);
    assert_false(ndrv_used(&f->d, 0, &id, &len, 0));
    assert_int_equal(drops(f, NET_DROP_LINK_DOWN), 2);

    net_set_link(&f->d.net, true);
    assert_true(ndrv_irq(&f->d, 0, WAIT_MS));
    assert_int_equal(ndrv_rd(&f->d, VP_DEVCFG_OFF + 6, 2), VIRTIO_NET_S_LINK_UP);
    ndrv_host_send(&f->d, 0, NULL, frame, sizeof(frame));
    assert_true(ndrv_used(&f->d, 0, &id, &len, WAIT_MS));
    assert_int_equal(len, NDRV_HDR + sizeof(frame));
    tx_send(f, 1, NULL, frame, sizeof(frame));
    assert_int_equal(ndrv_host_recv(&f->d, 0, got, sizeof(got), WAIT_MS), NDRV_HDR + 100);
}

/* Without STATUS negotiated the link change raises no interrupt. */
static void test_link_no_status(void **state)
{
    struct fix *f = *state;
    assert_true(ndrv_start(&f->d, FEAT & ~F(VIRTIO_NET_F_STATUS), QALL, QSIZE) &
                VIRTIO_CONFIG_S_DRIVER_OK);
    ndrv_irq(&f->d, 0, 0);
    net_set_link(&f->d.net, false);
    assert_false(ndrv_irq(&f->d, 0, 50));
    net_set_link(&f->d.net, true);
}

struct flood {
    struct fix *f;
    volatile bool stop;
    unsigned sent;
};

static void *flood_thread(void *arg)
{
    struct flood *fl = arg;
    uint8_t frame[1400];
    ndrv_frame(frame, sizeof(frame), 13);
    while (!fl->stop) {
        for (unsigned p = 0; p < 2; p++)
            if (ndrv_host_send(&fl->f->d, p, NULL, frame, sizeof(frame)) > 0)
                fl->sent++;
        sched_yield();
    }
    return NULL;
}

/* Reset while frames pour in on both pairs and the guest transmits: once
 * status reads 0, no ring changes and no interrupt comes; then the device
 * comes back. */
static void test_reset_in_flight(void **state)
{
    struct fix *f = *state;
    struct flood fl = { .f = f };
    pthread_t t;
    uint8_t frame[1000], got[2048];
    uint32_t id, len;

    assert_int_equal(pthread_create(&t, NULL, flood_thread, &fl), 0);
    for (unsigned iter = 0; iter < 20; iter++) {
        assert_int_equal(set_pairs(f, 2), VIRTIO_NET_OK);
        for (unsigned q = 0; q < 4; q += 2)
            for (unsigned i = 0; i < 16; i++)
                rx_post(f, q, 1536, NULL);
        ndrv_kick(&f->d, 0);
        ndrv_kick(&f->d, 2);
        ndrv_frame(frame, sizeof(frame), iter);
        for (unsigned i = 0; i < 8; i++) {
            tx_send(f, 1, NULL, frame, sizeof(frame));
            tx_send(f, 3, NULL, frame, sizeof(frame));
        }
        ndrv_wr(&f->d, NDRV_CMN(device_status), 1, 0);
        assert_int_equal(ndrv_status(&f->d), 0);
        uint8_t before[5][6 + 8 * QSIZE];
        for (unsigned q = 0; q < 5; q++)
            memcpy(before[q], f->d.q[q].used, sizeof(before[q]));
        for (unsigned v = 0; v <= 5; v++)
            ndrv_irq(&f->d, v, 0);
        ndrv_sleep_ms(20);
        for (unsigned v = 0; v <= 5; v++)
            assert_false(ndrv_irq(&f->d, v, 0));
        for (unsigned q = 0; q < 5; q++)
            assert_memory_equal(before[q], f->d.q[q].used, sizeof(before[q]));
        assert_true(ndrv_start(&f->d, FEAT, QALL, QSIZE) & VIRTIO_CONFIG_S_DRIVER_OK);
    }
    fl.stop = true;
    pthread_join(t, NULL);
    print_message("# %u frames flooded in across 20 resets\n", fl.sent);
    /* Drain what the network holds for us, then a clean exchange. */
    while (ndrv_host_recv(&f->d, 0, got, sizeof(got), 20) > 0 ||
           ndrv_host_recv(&f->d, 1, got, sizeof(got), 0) > 0)
        ;
    for (unsigned i = 0; i < 40; i++)
        rx_post(f, 0, 1536, NULL);
    ndrv_kick(&f->d, 0);
    ndrv_frame(frame, sizeof(frame), 99);
    tx_send(f, 1, NULL, frame, sizeof(frame));
    assert_true(ndrv_used(&f->d, 1, &id, &len, WAIT_MS));
    ssize_t n;
    while ((n = ndrv_host_recv(&f->d, 0, got, sizeof(got), WAIT_MS)) > 0 &&
           memcmp(got + NDRV_HDR, frame, sizeof(frame)))
        ;
    assert_int_equal(n, NDRV_HDR + sizeof(frame));
    assert_false(ndrv_status(&f->d) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* Indirect descriptors and EVENT_IDX off: both work. */
static void test_indirect_no_event_idx(void **state)
{
    struct fix *f = *state;
    uint8_t frame[200], got[512];
    uint32_t id, len;

    assert_true(ndrv_start(&f->d, (FEAT & ~F(VIRTIO_RING_F_EVENT_IDX)) |
                           F(VIRTIO_RING_F_INDIRECT_DESC), QALL, QSIZE) &
                VIRTIO_CONFIG_S_DRIVER_OK);
    uint64_t t = ndrv_alloc(&f->d, 4096), b = ndrv_alloc(&f->d, 4096);
    struct vring_desc *tbl = ndrv_hva(&f->d, t);
    ndrv_frame(frame, sizeof(frame), 14);
    memset(ndrv_hva(&f->d, b), 0, NDRV_HDR);
    memcpy((uint8_t *)ndrv_hva(&f->d, b) + 512, frame, sizeof(frame));
    fake_desc(tbl, 0, b, NDRV_HDR, VRING_DESC_F_NEXT, 1);
    fake_desc(tbl, 1, b + 512, sizeof(frame), 0, 0);
    fake_desc(f->d.q[1].desc, 0, t, 32, VRING_DESC_F_INDIRECT, 0);
    fake_avail(&f->d.q[1], 0);
    ndrv_kick(&f->d, 1);
    assert_int_equal(ndrv_host_recv(&f->d, 0, got, sizeof(got), WAIT_MS), NDRV_HDR + 200);
    assert_memory_equal(got + NDRV_HDR, frame, sizeof(frame));
    assert_true(ndrv_used(&f->d, 1, &id, &len, WAIT_MS));
    assert_true(ndrv_irq(&f->d, 2, WAIT_MS));
}

/* --- a real TAP in a network namespace of our own -------------------------------- */

static int tap_child(void)
{
    struct ndrv d;
    struct cfg_net cfg = { .index = 0, .tap = "dvmmut0", .queues = 2, .queue_size = 64,
                           .mtu = 1500 };
    char err[512] = "";
    uint8_t frame[120], got[2048];
    uint32_t id, len;

    memcpy(cfg.mac, "\x02\x00\x00\x00\x00\x42", 6);
    memset(&d, 0, sizeof(d));
    if (mock_vm_init(&d.vm))
        return 10;
    fake_ram_init_size(&d.ram, 1, NDRV_REGION);
    /* No IPv6 chatter (DAD, MLD) on the interface about to come up. */
    int sc = open("/proc/sys/net/ipv6/conf/default/disable_ipv6", O_WRONLY);
    if (sc >= 0) {
        if (write(sc, "1", 1) != 1)
            fprintf(stderr, "# disable_ipv6: %s\n", strerror(errno));
        close(sc);
    }
    if (net_init(&d.net, &cfg, NULL, &d.vm.pci, &d.vm.vmif, &d.ram.gm, err, sizeof(err))) {
        fprintf(stderr, "# net_init: %s\n", err);
        return 11;
    }
    d.net_ok = true;
    d.pairs = 0;
    if (!if_nametoindex("dvmmut0") || !d.net.tap.created || !d.net.tap.multi_queue)
        return 12;
    if (!(ndrv_start(&d, FEAT, QALL, QSIZE) & VIRTIO_CONFIG_S_DRIVER_OK))
        return 13;
    /* TUNSETOFFLOAD took what the guest accepted. */
    if (d.net.tap.offload != (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6))
        return 26;
    /* The host side: a packet socket on the TAP. */
    int ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(0x88b5));
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(0x88b5),
                               .sll_ifindex = (int)if_nametoindex("dvmmut0") };
    if (ps < 0 || bind(ps, (struct sockaddr *)&sll, sizeof(sll)) < 0)
        return 14;
    /* Guest -> host. */
    ndrv_frame(frame, sizeof(frame), 15);
    uint64_t g = ndrv_alloc(&d, 4096);
    memset(ndrv_hva(&d, g), 0, NDRV_HDR);
    memcpy((uint8_t *)ndrv_hva(&d, g) + NDRV_HDR, frame, sizeof(frame));
    struct ndrv_buf b = { g, NDRV_HDR + sizeof(frame), false };
    ndrv_post(&d, 1, &b, 1);
    ndrv_kick(&d, 1);
    struct pollfd pf = { .fd = ps, .events = POLLIN };
    if (poll(&pf, 1, WAIT_MS) != 1 || recv(ps, got, sizeof(got), 0) != sizeof(frame) ||
        memcmp(got, frame, sizeof(frame)))
        return 15;
    /* Host -> guest, with both pairs attached and buffers on both. */
    uint64_t rg[2][8];
    for (unsigned q = 0; q < 2; q++) {
        for (unsigned i = 0; i < 8; i++) {
            rg[q][i] = ndrv_alloc(&d, 2048);
            struct ndrv_buf rb = { rg[q][i], 2048, true };
            ndrv_post(&d, 2 * q, &rb, 1);
        }
        ndrv_kick(&d, 2 * q);
    }
    uint16_t pairs = 2;
    uint64_t cg = ndrv_alloc(&d, 64);
    uint8_t *cp = ndrv_hva(&d, cg);
    cp[0] = VIRTIO_NET_CTRL_MQ;
    cp[1] = VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET;
    memcpy(cp + 2, &pairs, 2);
    struct ndrv_buf cb[2] = { { cg, 4, false }, { cg + 8, 1, true } };
    ndrv_post(&d, CTRLQ, cb, 2);
    ndrv_kick(&d, CTRLQ);
    if (!ndrv_used(&d, CTRLQ, &id, &len, WAIT_MS) || cp[8] != VIRTIO_NET_OK)
        return 16;
    if (send(ps, frame, sizeof(frame), 0) != sizeof(frame))
        return 17;
    /* It lands on whichever pair the kernel steers it to, maybe behind
     * frames of the kernel's own. */
    for (int t = 0; t < WAIT_MS; t++) {
        for (unsigned q = 0; q < 2; q++) {
            while (ndrv_used(&d, 2 * q, &id, &len, 0)) {
                if (id >= 8)
                    return 18;
                if (len == NDRV_HDR + sizeof(frame) &&
                    !memcmp((uint8_t *)ndrv_hva(&d, rg[q][id]) + NDRV_HDR, frame, sizeof(frame)))
                    goto received;
                fprintf(stderr, "# pair %u: a frame of %u bytes, not ours\n", q, len);
            }
        }
        ndrv_sleep_ms(1);
    }
    return 19;
received:
    close(ps);
    net_destroy(&d.net);
    d.net_ok = false;
    /* dvmm created it, so it went with our fds. */
    if (if_nametoindex("dvmmut0"))
        return 20;
    /* An existing single-queue TAP: one pair works, two are refused
     * naming the fix. */
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
    strcpy(ifr.ifr_name, "dvmmsq0");
    if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETPERSIST, 1) < 0)
        return 21;
    close(fd);
    strcpy(cfg.tap, "dvmmsq0");
    int r = net_init(&d.net, &cfg, NULL, &d.vm.pci, &d.vm.vmif, &d.ram.gm, err, sizeof(err));
    if (r == 0 || !strstr(err, "net.0.tap = 'dvmmsq0'") || !strstr(err, "multi_queue"))
        return 22;
    fprintf(stderr, "# two pairs on a single-queue TAP: %s\n", err);
    cfg.queues = 1;
    if (net_init(&d.net, &cfg, NULL, &d.vm.pci, &d.vm.vmif, &d.ram.gm, err, sizeof(err)))
        return 23;
    if (d.net.tap.created || d.net.tap.multi_queue)
        return 24;
    net_destroy(&d.net);
    if (!if_nametoindex("dvmmsq0"))
        return 25;          /* not ours: still there */
    mock_vm_destroy(&d.vm);
    fake_ram_free(&d.ram);
    return 0;
}

static void test_real_tap(void **state)
{
    (void)state;
    int sv[2];
    if (pipe(sv) < 0)
        fail();
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        if (unshare(CLONE_NEWNET) < 0) {
            dprintf(sv[1], "unshare(CLONE_NEWNET): %s", strerror(errno));
            _exit(77);
        }
        if (access("/dev/net/tun", R_OK | W_OK) < 0) {
            dprintf(sv[1], "/dev/net/tun: %s", strerror(errno));
            _exit(77);
        }
        _exit(tap_child());
    }
    close(sv[1]);
    char why[256] = "";
    ssize_t n = read(sv[0], why, sizeof(why) - 1);
    why[n > 0 ? n : 0] = '\0';
    close(sv[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77) {
        print_message("# SKIP: a TAP in a private network namespace needs %s\n", why);
        skip();
    }
    if (WEXITSTATUS(st))
        fail_msg("TAP scenario failed at step %d", WEXITSTATUS(st));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_config_space),
        cmocka_unit_test_setup_teardown(test_features_refused, setup_bare, teardown),
        T(test_tx),
        T(test_tx_split),
        T(test_rx),
        T(test_rx_mergeable),
        T(test_rx_partial),
        T(test_rx_no_mergeable),
        T(test_rx_header_translation),
        T(test_tx_malformed),
        T(test_tx_unnegotiated),
        T(test_bad_chains),
        T(test_ctrl),
        T(test_ctrl_garbage),
        T(test_ctrl_without_mq),
        T(test_inactive_pair),
        T(test_tx_backpressure),
        T(test_rx_backpressure),
        T(test_link),
        T(test_link_no_status),
        T(test_reset_in_flight),
        T(test_indirect_no_event_idx),
        cmocka_unit_test(test_real_tap),
    };
    log_set_level(LOG_ERR);
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
