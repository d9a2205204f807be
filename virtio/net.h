/* virtio-net over a TAP interface: one [net.N], multi-queue with one queue
 * pair per vCPU at most, one worker thread per pair and one MSI-X vector
 * per queue.
 *
 * Queues: receiveq i = 2i, transmitq i = 2i + 1, controlq = 2 *
 * max_virtqueue_pairs with VIRTIO_NET_F_MQ, else 2 (virtio 1.x 5.1.2).  TAP
 * queue i belongs to pair i; VQ_PAIRS_SET on the control queue attaches
 * TAP queues 0..N-1 and detaches the rest (TUNSETQUEUE), so the kernel only
 * steers frames to pairs the guest uses.  Until then pair 0 alone is used.
 *
 * A pair's worker polls: its TX kick (TX waits on the kick), the TAP fd for
 * reading while it holds RX buffers (RX waits on the TAP), its RX kick
 * while it has none, the TAP for writing while a frame waits for room, and
 * worker 0 also the control queue's kick.  Frames go between guest RAM and
 * the TAP with readv/writev in place.  Back-pressure, never a spin: with no
 * RX buffers the TAP is not read (its queue fills and the kernel drops);
 * with the TAP full (EAGAIN) the TX ring is not popped until it drains.
 *
 * Receive (mergeable buffers): the worker pops RX chains until they hold the
 * largest frame the guest negotiated or the ring is empty, and reads the
 * next frame across them (header into a host copy, frame straight into the
 * buffers) with a host overflow area behind; a frame that fits is
 * completed at once with num_buffers set.  One that overflows waits, the
 * chains it has kept, for more buffers, and only its overflowing bytes are
 * copied in once they arrive (a guest that posts too little pays a copy;
 * none is lost).  Without MRG_RXBUF a frame must fit its one chain or is
 * dropped.
 *
 * Hostile guests: see net_pkt.h for frames; a chain vq_pop cannot trust
 * sets NEEDS_RESET, an RX chain that cannot hold a header is handed back
 * empty and counted, a control command without an ack byte sets
 * NEEDS_RESET, any other bad command is answered VIRTIO_NET_ERR.
 *
 * Reset (status 0) stops every worker before the write returns: RX chains
 * it held are forgotten, a TX frame waiting for room is dropped, and from
 * then on nothing touches the old rings and no interrupt fires.
 *
 * vhost = yes|auto hands each pair's rings to /dev/vhost-net
 * (virtio/vhost_net.h); the worker then only relays vhost's interrupts
 * through the MSI-X emulation and serves the control queue. */
#ifndef DVMM_NET_H
#define DVMM_NET_H

#include <linux/virtio_net.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "guest-mem/gm.h"
#include "virtio/net_pkt.h"
#include "virtio/tap.h"
#include "virtio/virtio_pci.h"
#include "vmm/config.h"

#define NET_RX_IOV     1000         /* held RX iovecs (readv: + header + overflow) */
#define NET_OVERFLOW   (128 * 1024) /* > any frame a TAP hands out */
#define NET_BUDGET     64           /* frames per direction per pass */
#define NET_NO_QUEUE   0xffffu

struct net;
struct vhost_net;

struct net_qstats {
    uint64_t packets, bytes, drops, irqs;
};

/* An RX chain popped and not yet handed back. */
struct net_rx_buf {
    uint16_t head;
    uint16_t iov;                   /* first iovec in the pair's rx_iov */
    uint16_t niov;
    uint32_t cap;                   /* bytes it holds */
};

struct net_pair {
    struct net *net;
    unsigned idx;
    pthread_t thread;
    bool running;
    int stop_fd;                    /* eventfd: leave */
    int wake_fd;                    /* eventfd: link or active pairs changed */
    bool rx_on, tx_on, ctrl_on;     /* queues enabled at DRIVER_OK */
    bool rx_dead, tx_dead, tap_dead;
    bool warned_tap;
    unsigned cur_q;             /* queue the worker is serving: what a memory
                                 * failure in its own access cuts short */
    bool tx_in_frame;           /* reading a TX frame's header: a failure
                                 * there drops that frame only */
    bool rx_in_frame;           /* writing into held RX buffers: likewise */

    /* RX state (worker only) */
    struct iovec *rx_iov;
    unsigned rx_niov;
    struct net_rx_buf rx_buf[VQ_MAX_SIZE];
    unsigned rx_nbuf;
    uint64_t rx_cap;
    uint8_t *overflow;              /* NET_OVERFLOW bytes */
    bool rx_partial;                /* a frame waits for more buffers */
    struct virtio_net_hdr_v1 rx_hdr;
    size_t rx_len;                  /* its bytes, header included */
    size_t rx_left, rx_off;         /* still in overflow[rx_off..] */
    unsigned rx_used;               /* chains it fills so far */
    uint32_t rx_ulen[VQ_MAX_SIZE];

    /* TX state (worker only) */
    struct vq_elem *elem;
    struct net_tx *txf;             /* the frame being sent */
    bool tx_pending;                /* tx waits for room in the TAP */
    uint16_t tx_head;

    /* Counters: written by the worker, read anywhere (relaxed atomics). */
    struct net_qstats rx, tx;

    /* vhost: the eventfds vhost signals, relayed to the queue vectors */
    int call_fd[2];
};

struct net {
    struct virtio_pci vp;
    struct cfg_net cfg;
    char name[32];                  /* "virtio-net.N" */
    const struct guest_mem *gm;
    struct tap tap;
    struct virtio_net_config vcfg;  /* under vp.lock */
    unsigned npairs;                /* max_virtqueue_pairs */
    uint64_t offered;
    /* Between start and stop: */
    unsigned run_pairs;             /* pairs the driver may use */
    uint16_t ctrl_q;                /* NET_NO_QUEUE without a control queue */
    unsigned active;                /* atomic: pairs in use (VQ_PAIRS_SET) */
    bool link_up;                   /* atomic */
    uint64_t drops[NET_DROP_NR];    /* atomic, by reason */
    uint64_t ctrl_ok, ctrl_err;     /* atomic */
    struct vhost_net *vhost;        /* NULL: the user-space datapath */
    struct net_pair pair[CFG_NET_MAX_PAIRS];
};

/* Open the TAP (or adopt fds[0..cfg->queues) when fds is not NULL: unit
 * tests) and put the device on the PCI bus.  0, or -errno with one line
 * naming net.N.<key> in err. */
int net_init(struct net *n, const struct cfg_net *cfg, const int *fds, struct pci *pci,
             struct vmif *vmif, const struct guest_mem *gm, char *err, size_t errlen);
/* VM reboot: back to power-on (workers stopped, link state kept). */
void net_reset(struct net *n);
/* Stop the workers, leave the bus, close the TAP (a TAP dvmm created goes
 * away).  Call before pci_destroy and gm_close. */
void net_destroy(struct net *n);

/* `link net.N up|down`: the STATUS field, a config interrupt when the
 * driver runs, the TAP's carrier; while down both directions drop. */
void net_set_link(struct net *n, bool up);

struct net_stats {
    bool link_up, vhost;
    bool irq_direct;               /* vhost signals KVM itself: interrupts not counted */
    unsigned pairs, active;
    struct { struct net_qstats rx, tx; } q[CFG_NET_MAX_PAIRS];
    uint64_t drops[NET_DROP_NR];
    uint64_t ctrl_ok, ctrl_err;
};
void net_get_stats(struct net *n, struct net_stats *s);

/* For vhost_net.c: the interrupt of queue q, counted. */
void net_queue_irq(struct net *n, unsigned q);

#endif
