#include "virtio/net_pkt.h"

#include <errno.h>
#include <linux/if_tun.h>
#include <string.h>

#define F(bit) (1ULL << (bit))

static const char *const net_drop_names[NET_DROP_NR] = {
    [NET_PASS] = "pass",
    [NET_DROP_TX_WRITABLE] = "tx_writable",
    [NET_DROP_HDR_SHORT] = "hdr_short",
    [NET_DROP_RUNT] = "runt",
    [NET_DROP_OVERSIZE] = "oversize",
    [NET_DROP_FLAGS] = "bad_flags",
    [NET_DROP_CSUM] = "bad_csum",
    [NET_DROP_GSO] = "bad_gso",
    [NET_DROP_TAP] = "tap_error",
    [NET_DROP_MEMORY_FAILURE] = "memory_failure",
    [NET_DROP_LINK_DOWN] = "link_down",
    [NET_DROP_RX_CHAIN] = "rx_bad_chain",
    [NET_DROP_NO_ROOM] = "rx_no_room",
};

const char *net_drop_name(enum net_drop d)
{
    return (unsigned)d < NET_DROP_NR ? net_drop_names[d] : "?";
}

/* The checksum the kernel is asked to fill: a 16-bit field inside the frame. */
static bool net_csum_fits(const struct virtio_net_hdr_v1 *h, size_t frame_len)
{
    return (uint64_t)h->csum_start + h->csum_offset + 2 <= frame_len;
}

enum net_drop net_tx_parse(const struct vq_elem *e, uint64_t features, unsigned mtu,
                           struct net_tx *tx)
{
    struct virtio_net_hdr_v1 *h = &tx->hdr;
    size_t skip = NET_HDR_LEN;

    tx->niov = 0;
    tx->frame_len = 0;
    if (e->nin)
        return NET_DROP_TX_WRITABLE;
    if (e->out_len < NET_HDR_LEN)
        return NET_DROP_HDR_SHORT;
    /* The only read of the header: the guest may rewrite it under us. */
    vq_iov_to_buf(e->iov, e->nout, 0, h, NET_HDR_LEN);
    tx->frame_len = e->out_len - NET_HDR_LEN;
    if (tx->frame_len < NET_ETH_HLEN)
        return NET_DROP_RUNT;

    /* DATA_VALID and RSC_INFO belong to received frames (5.1.6.2.1). */
    if (h->flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
        return NET_DROP_FLAGS;
    if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
        if (!(features & F(VIRTIO_NET_F_CSUM)) || !net_csum_fits(h, tx->frame_len))
            return NET_DROP_CSUM;
    } else {
        h->csum_start = h->csum_offset = 0;
    }

    if (h->gso_type == VIRTIO_NET_HDR_GSO_NONE) {
        unsigned lim = mtu;
        if (!(features & F(VIRTIO_NET_F_MTU)) && lim < NET_DEFAULT_MTU)
            lim = NET_DEFAULT_MTU;
        if (tx->frame_len > (size_t)lim + NET_ETH_HLEN + NET_VLAN_HLEN)
            return NET_DROP_OVERSIZE;
        h->gso_size = h->hdr_len = 0;
    } else {
        switch (h->gso_type) {
        case VIRTIO_NET_HDR_GSO_TCPV4:
            if (!(features & F(VIRTIO_NET_F_HOST_TSO4)))
                return NET_DROP_GSO;
            break;
        case VIRTIO_NET_HDR_GSO_TCPV6:
            if (!(features & F(VIRTIO_NET_F_HOST_TSO6)))
                return NET_DROP_GSO;
            break;
        default:            /* UDP, ECN: never offered */
            return NET_DROP_GSO;
        }
        if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || !h->gso_size ||
            h->hdr_len > tx->frame_len)
            return NET_DROP_GSO;
        if (tx->frame_len > NET_MAX_GSO_FRAME)
            return NET_DROP_OVERSIZE;
    }
    h->num_buffers = 0;

    tx->iov[0].iov_base = h;
    tx->iov[0].iov_len = NET_HDR_LEN;
    tx->niov = 1;
    for (unsigned i = 0; i < e->nout; i++) {
        const struct iovec *v = &e->iov[i];
        if (skip >= v->iov_len) {
            skip -= v->iov_len;
            continue;
        }
        tx->iov[tx->niov].iov_base = (uint8_t *)v->iov_base + skip;
        tx->iov[tx->niov].iov_len = v->iov_len - skip;
        tx->niov++;
        skip = 0;
    }
    return NET_PASS;
}

enum net_drop net_rx_fixup(struct virtio_net_hdr_v1 *h, size_t frame_len, uint64_t features)
{
    bool csum = features & F(VIRTIO_NET_F_GUEST_CSUM);
    uint8_t flags = h->flags;

    if (frame_len < NET_ETH_HLEN)
        return NET_DROP_RUNT;
    if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
        if (!csum || !net_csum_fits(h, frame_len))
            return NET_DROP_CSUM;
    } else {
        h->csum_start = h->csum_offset = 0;
    }
    /* Without GUEST_CSUM the flags must be 0 (5.1.6.4.1). */
    flags = csum ? flags & (VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID) : 0;

    if (h->gso_type == VIRTIO_NET_HDR_GSO_NONE) {
        h->gso_size = h->hdr_len = 0;
    } else {
        uint8_t base = h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
        if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !(features & F(VIRTIO_NET_F_GUEST_ECN)))
            return NET_DROP_GSO;
        if (!(base == VIRTIO_NET_HDR_GSO_TCPV4 && (features & F(VIRTIO_NET_F_GUEST_TSO4))) &&
            !(base == VIRTIO_NET_HDR_GSO_TCPV6 && (features & F(VIRTIO_NET_F_GUEST_TSO6))))
            return NET_DROP_GSO;
        if (!(flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || !h->gso_size)
            return NET_DROP_GSO;
    }
    h->flags = flags;
    return NET_PASS;
}

size_t net_rx_need(uint64_t features, unsigned mtu)
{
    if (features & (F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6)))
        return NET_HDR_LEN + NET_MAX_GSO_FRAME;
    if (mtu < NET_DEFAULT_MTU)
        mtu = NET_DEFAULT_MTU;
    return NET_HDR_LEN + mtu + NET_ETH_HLEN + NET_VLAN_HLEN;
}

unsigned net_tun_offloads(uint64_t features)
{
    unsigned o = 0;

    /* TUN wants CSUM under every segmentation offload. */
    if (!(features & F(VIRTIO_NET_F_GUEST_CSUM)))
        return 0;
    o |= TUN_F_CSUM;
    if (features & F(VIRTIO_NET_F_GUEST_TSO4))
        o |= TUN_F_TSO4;
    if (features & F(VIRTIO_NET_F_GUEST_TSO6))
        o |= TUN_F_TSO6;
    if ((o & (TUN_F_TSO4 | TUN_F_TSO6)) && (features & F(VIRTIO_NET_F_GUEST_ECN)))
        o |= TUN_F_TSO_ECN;
    return o;
}

unsigned net_rx_pack(const uint32_t *cap, unsigned n, size_t len, uint32_t *used)
{
    unsigned k = 0;

    while (len && k < n) {
        uint32_t c = len < cap[k] ? (uint32_t)len : cap[k];
        used[k++] = c;
        len -= c;
    }
    return len ? 0 : k;
}

static int net_ctrl_err(struct net_ctrl *c, const char *why)
{
    c->ack = VIRTIO_NET_ERR;
    c->why = why;
    return 0;
}

int net_ctrl_parse(const struct vq_elem *e, uint64_t features, unsigned max_pairs,
                   struct net_ctrl *c)
{
    uint8_t hdr[2];
    uint16_t pairs;
    size_t dlen;

    memset(c, 0, sizeof(*c));
    c->ack = VIRTIO_NET_ERR;
    if (!e->nin)
        return -EINVAL;
    /* vq_map never makes a zero-length iovec: the last one has a byte. */
    const struct iovec *last = &e->iov[e->nout + e->nin - 1];
    c->ack_ptr = (uint8_t *)last->iov_base + last->iov_len - 1;

    if (vq_iov_to_buf(e->iov, e->nout, 0, hdr, 2) != 2)
        return net_ctrl_err(c, "command shorter than its class and command bytes");
    c->cls = hdr[0];
    c->cmd = hdr[1];
    dlen = e->out_len - 2;
    switch (c->cls) {
    case VIRTIO_NET_CTRL_MQ:
        if (!(features & F(VIRTIO_NET_F_MQ)))
            return net_ctrl_err(c, "MQ command without VIRTIO_NET_F_MQ");
        if (c->cmd != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET)
            return net_ctrl_err(c, "MQ command other than VQ_PAIRS_SET (no RSS or hash report)");
        if (dlen != sizeof(pairs))
            return net_ctrl_err(c, "VQ_PAIRS_SET with other than 2 bytes of data");
        vq_iov_to_buf(e->iov, e->nout, 2, &pairs, sizeof(pairs));
        if (pairs < VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN || pairs > max_pairs)
            return net_ctrl_err(c, "VQ_PAIRS_SET outside 1..max_virtqueue_pairs");
        c->pairs = pairs;
        c->ack = VIRTIO_NET_OK;
        return 0;
    case VIRTIO_NET_CTRL_RX:
        return net_ctrl_err(c, "RX mode command without VIRTIO_NET_F_CTRL_RX");
    case VIRTIO_NET_CTRL_MAC:
        return net_ctrl_err(c, "MAC command without VIRTIO_NET_F_CTRL_MAC_ADDR");
    case VIRTIO_NET_CTRL_VLAN:
        return net_ctrl_err(c, "VLAN command without VIRTIO_NET_F_CTRL_VLAN");
    case VIRTIO_NET_CTRL_ANNOUNCE:
        return net_ctrl_err(c, "ANNOUNCE command without VIRTIO_NET_F_GUEST_ANNOUNCE");
    case VIRTIO_NET_CTRL_GUEST_OFFLOADS:
        return net_ctrl_err(c, "offload command without VIRTIO_NET_F_CTRL_GUEST_OFFLOADS");
    default:
        return net_ctrl_err(c, "unknown command class");
    }
}
