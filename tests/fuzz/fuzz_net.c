/* libFuzzer target: the split virtqueue and virtio-net's parsers over guest
 * RAM the fuzzer controls: TX chains (net_tx_parse), control commands
 * (net_ctrl_parse), RX buffers (header written back, net_rx_fixup of a
 * header the "host" sends) and mergeable packing (net_rx_pack).
 *
 * Input: [0] log2 queue size (mod 9), [1] flags (bit 0 EVENT_IDX, bit 1
 * regions adjacent rather than with a gap), [2..3] the device's starting
 * ring index, [4..5] MTU, [6] role rotation (each popped chain is treated
 * as TX, control or RX in turn, starting at this), [7] feature bits (CSUM,
 * GUEST_CSUM, HOST_TSO4, HOST_TSO6, GUEST_TSO4, GUEST_TSO6, MTU, MQ), [8..19]
 * the header the host "sends" for RX, then two 64 KiB RAM regions.  Rings at
 * GPA 0 (descriptors), 0x1000 (avail), 0x2000 (used).
 *
 * Each region is its own heap block of exactly its size: an iovec the
 * parsers let out of guest RAM is caught by ASan when the harness touches
 * every byte the way the device would (writev reads TX frames, readv fills
 * RX buffers). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/net_pkt.h"
#include "virtio/virtq.h"

#define REGION 0x10000
#define F(b) (1ULL << (b))

static const unsigned feature_bits[8] = {
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_HOST_TSO4,
    VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_MTU, VIRTIO_NET_F_MQ,
};

static struct vq_elem elem;
static struct net_tx tx;

static void touch_read(const struct iovec *iov, unsigned n)
{
    volatile uint8_t sink = 0;
    for (unsigned i = 0; i < n; i++)
        for (size_t k = 0; k < iov[i].iov_len; k++)
            sink ^= ((const uint8_t *)iov[i].iov_base)[k];
    (void)sink;
}

static void do_tx(uint64_t feat, unsigned mtu)
{
    if (net_tx_parse(&elem, feat, mtu, &tx) != NET_PASS)
        return;
    size_t sum = 0;
    for (unsigned i = 1; i < tx.niov; i++)
        sum += tx.iov[i].iov_len;
    if (sum != tx.frame_len || tx.iov[0].iov_base != &tx.hdr || tx.niov > VQ_MAX_IOV + 1)
        abort();
    if (tx.hdr.flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
        abort();   /* a flag the TAP must never see */
    touch_read(tx.iov, tx.niov);
}

static void do_ctrl(uint64_t feat)
{
    struct net_ctrl c;
    if (net_ctrl_parse(&elem, feat, 8, &c) < 0)
        return;
    if (c.ack == VIRTIO_NET_OK && (c.pairs < 1 || c.pairs > 8 || !(feat & F(VIRTIO_NET_F_MQ))))
        abort();
    *c.ack_ptr = c.ack;
}

static void do_rx(uint64_t feat, const struct virtio_net_hdr_v1 *sent)
{
    static uint8_t frame[4096];
    struct virtio_net_hdr_v1 h = *sent;
    if (elem.nout || elem.in_len < NET_HDR_LEN)
        return;
    size_t len = elem.in_len - NET_HDR_LEN;
    if (len > sizeof(frame))
        len = sizeof(frame);
    if (net_rx_fixup(&h, len, feat) == NET_PASS) {
        if (!(feat & F(VIRTIO_NET_F_GUEST_CSUM)) && h.flags)
            abort();
        h.num_buffers = 1;
        vq_buf_to_iov(elem.iov, elem.nin, 0, &h, NET_HDR_LEN);
        vq_buf_to_iov(elem.iov, elem.nin, NET_HDR_LEN, frame, len);
    }
    uint32_t cap[4] = { (uint32_t)elem.in_len, 1500, 1, 65535 }, used[4];
    unsigned k = net_rx_pack(cap, 4, elem.in_len + h.gso_size, used);
    uint64_t s = 0;
    for (unsigned i = 0; i < k; i++)
        s += used[i];
    if (k && s != elem.in_len + h.gso_size)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct virtio_net_hdr_v1 sent;
    if (size < 20)
        return 0;
    uint16_t qsize = 1u << (data[0] % 9);
    uint8_t flags = data[1];
    uint16_t start = data[2] | data[3] << 8;
    unsigned mtu = data[4] | data[5] << 8;
    unsigned role = data[6];
    uint64_t feat = 0;
    for (unsigned i = 0; i < 8; i++)
        if (data[7] & (1u << i))
            feat |= F(feature_bits[i]);
    memcpy(&sent, data + 8, sizeof(sent));
    data += 20;
    size -= 20;
    if (mtu < 68)
        mtu = 68;

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

    struct vq vq;
    if (vq_init(&vq, &gm, qsize, 0, 0x1000, 0x2000, flags & 1) == 0) {
        vq.last_avail = vq.used_idx = start;
        for (unsigned i = 0; i < 2u * VQ_MAX_SIZE; i++) {
            if (i % 3 == 0)
                vq_disable_notify(&vq);
            if (vq_pop(&vq, &elem) <= 0)
                break;
            switch ((role + i) % 3) {
            case 0: do_tx(feat, mtu); break;
            case 1: do_ctrl(feat); break;
            default: do_rx(feat, &sent); break;
            }
            vq_push(&vq, elem.head, 0);
            vq_should_notify(&vq);
            if (i % 3 == 2)
                vq_enable_notify(&vq);
        }
    }
    free(ram[0]);
    free(ram[1]);
    return 0;
}
