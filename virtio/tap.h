/* The host side of virtio-net: a TAP interface (linux/if_tun.h), opened
 * with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and, for more than one queue
 * pair, IFF_MULTI_QUEUE with one file descriptor per pair.  Every fd reads
 * and writes whole frames behind a 12-byte struct virtio_net_hdr_v1
 * (TUNSETVNETHDRSZ), the header virtio 1.x uses on the wire, so a frame
 * goes between guest RAM and the kernel with no copy in between.
 *
 * An interface that does not exist is created and disappears when the last
 * fd closes (it is never made persistent); an existing one is attached to
 * and left as it was found.
 *
 * Unit tests hand the device other datagram fds (socketpair) with
 * tap_adopt: they carry the same header + frame, and every TAP-only ioctl
 * is then skipped. */
#ifndef DVMM_TAP_H
#define DVMM_TAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TAP_MAX_QUEUES 31          /* CFG_NET_MAX_PAIRS */
#define TAP_VNET_HDR_LEN 12        /* sizeof(struct virtio_net_hdr_v1) */

struct tap {
    char name[16];                 /* IFNAMSIZ */
    unsigned nq;
    int fd[TAP_MAX_QUEUES];        /* non-blocking, close-on-exec */
    bool attached[TAP_MAX_QUEUES]; /* queue takes frames (TUNSETQUEUE) */
    bool created;                  /* did not exist: goes away with our fds */
    bool multi_queue;
    bool is_tap;                   /* false for adopted test fds */
    unsigned offload;              /* TUN_F_* last set */
};

/* Open `nq` queues of TAP `name` (creating it, up, with `mtu`, when it
 * does not exist).  Errors are one line starting with `what` (the
 * "net.N.tap" the user wrote) in err, and -errno. */
int tap_open(struct tap *t, const char *name, unsigned nq, unsigned mtu,
             const char *what, char *err, size_t errlen);
/* Use fds[0..nq) (datagram sockets) in place of a TAP; takes ownership. */
void tap_adopt(struct tap *t, const int *fds, unsigned nq);
void tap_close(struct tap *t);

/* TUNSETOFFLOAD: the TUN_F_* offloads the kernel may hand us (what the
 * guest accepted).  0 or -errno; a no-op on adopted fds. */
int tap_set_offload(struct tap *t, unsigned tun_flags);
/* TUNSETQUEUE: queue q takes frames (attach) or none (detach); a no-op
 * when the state is already that, for single-queue TAPs and adopted fds. */
int tap_set_queue(struct tap *t, unsigned q, bool attach);
/* TUNSETCARRIER, so the host sees the guest's link state too.  Best
 * effort (kernels before 5.0 lack it). */
void tap_set_carrier(struct tap *t, bool up);

/* For hostcheck: whether /dev/net/tun opens and its TUNGETFEATURES
 * (IFF_* flags).  0, or -errno of the open/ioctl. */
int tap_probe(const char *dev, unsigned *features);

#endif
