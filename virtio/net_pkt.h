/* virtio-net framing (virtio 1.x 5.1.6): the 12-byte struct
 * virtio_net_hdr_v1 in front of every frame, the checks a transmitted
 * frame must pass before the TAP sees it, the translation of a received
 * header to what the guest negotiated, and the control queue's commands.
 * Pure: no I/O and no device state, so unit tests and the fuzzer drive it
 * directly.
 *
 * The guest is hostile.  The TX header is read once into a host copy and
 * validated there; the TAP gets that copy, never guest memory, so the guest
 * cannot change a header between the check and the kernel's read.  Frame
 * bytes go from guest RAM to the TAP in place (bounds-checked by vq_pop).
 * A frame that fails a check is dropped and counted by reason; nothing in a
 * frame makes the device stop. */
#ifndef DVMM_NET_PKT_H
#define DVMM_NET_PKT_H

#include <linux/virtio_net.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtio/virtq.h"

#define NET_HDR_LEN   sizeof(struct virtio_net_hdr_v1)   /* 12 */
#define NET_ETH_HLEN  14
#define NET_VLAN_HLEN 4
#define NET_DEFAULT_MTU 1500
/* The largest frame a TSO packet can be: an IP datagram of 64 KiB - 1 behind
 * an Ethernet header with one VLAN tag. */
#define NET_MAX_GSO_FRAME (65535 + NET_ETH_HLEN + NET_VLAN_HLEN)

enum net_drop {
    NET_PASS = 0,
    NET_DROP_TX_WRITABLE,   /* TX chain holds device-writable buffers */
    NET_DROP_HDR_SHORT,     /* chain shorter than the 12-byte header */
    NET_DROP_RUNT,          /* frame shorter than an Ethernet header */
    NET_DROP_OVERSIZE,      /* frame longer than the MTU (or GSO limit) */
    NET_DROP_FLAGS,         /* header flags the driver may not set */
    NET_DROP_CSUM,          /* checksum request not negotiated or outside the frame */
    NET_DROP_GSO,           /* GSO type not negotiated, or a malformed GSO header */
    NET_DROP_TAP,           /* the TAP refused the frame */
    NET_DROP_LINK_DOWN,     /* link set down on the control socket */
    NET_DROP_RX_CHAIN,      /* RX chain not usable (readable, or no room for the header) */
    NET_DROP_NO_ROOM,       /* received frame larger than the guest's buffers */
    NET_DROP_MEMORY_FAILURE, /* a buffer lies on a failed (poisoned) guest page */
    NET_DROP_NR
};

/* Short name of a reason for logs and the status JSON ("tx_writable"...). */
const char *net_drop_name(enum net_drop d);

/* A frame to transmit: the sanitised header copy in iov[0], then the frame
 * (pointers into guest RAM). */
struct net_tx {
    struct virtio_net_hdr_v1 hdr;
    size_t frame_len;
    unsigned niov;
    struct iovec iov[VQ_MAX_IOV + 1];
};

/* Validate the TX chain in e against the negotiated features and the MTU
 * (enforced only when VIRTIO_NET_F_MTU was negotiated; otherwise 1500 is
 * the floor).  NET_PASS: tx is ready for writev. */
enum net_drop net_tx_parse(const struct vq_elem *e, uint64_t features, unsigned mtu,
                           struct net_tx *tx);

/* A header the TAP wrote, made fit for a guest with `features`: flags the
 * guest did not negotiate cleared (DATA_VALID without GUEST_CSUM), GSO
 * fields zeroed for non-GSO frames.  A frame the guest cannot take (GSO
 * type or NEEDS_CSUM it did not negotiate, a runt) is a drop.  num_buffers
 * is the caller's. */
enum net_drop net_rx_fixup(struct virtio_net_hdr_v1 *h, size_t frame_len, uint64_t features);

/* Bytes (header included) one received frame may need: what RX buffers must
 * add up to before a read from the TAP is sure to fit. */
size_t net_rx_need(uint64_t features, unsigned mtu);

/* TUN_F_* offloads for a guest with these features (TUNSETOFFLOAD). */
unsigned net_tun_offloads(uint64_t features);

/* Spread a received `len` bytes (header included) over buffers of
 * capacity cap[0..n) in order: used[i] is what buffer i holds.  Returns how
 * many buffers it takes, 0 when they cannot hold it all. */
unsigned net_rx_pack(const uint32_t *cap, unsigned n, size_t len, uint32_t *used);

/* One control-queue command (5.1.6.5). */
struct net_ctrl {
    uint8_t cls, cmd;
    uint8_t ack;               /* VIRTIO_NET_OK or VIRTIO_NET_ERR */
    uint16_t pairs;            /* MQ_VQ_PAIRS_SET accepted: the new count */
    uint8_t *ack_ptr;          /* the last device-writable byte */
    const char *why;           /* with VIRTIO_NET_ERR: the reason */
};

/* Parse and judge the command in e.  0: c->ack says OK/ERR and is to be
 * written at c->ack_ptr.  -EINVAL: the chain has no device-writable byte,
 * so it cannot be answered (the device sets NEEDS_RESET). */
int net_ctrl_parse(const struct vq_elem *e, uint64_t features, unsigned max_pairs,
                   struct net_ctrl *c);

#endif
