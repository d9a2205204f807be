/* The split virtqueue (virtio 1.x, 2.7): descriptor chains, indirect tables,
 * EVENT_IDX, the used ring.  The rings live in guest RAM and the guest is
 * hostile: every address and length is checked through gm_gpa_to_hva, every
 * descriptor is read once into a local copy and validated from the copy.
 *
 * A buffer that legally spans two guest RAM regions (only possible when the
 * regions are GPA-adjacent) is split into two iovecs; one that touches a gap
 * is rejected.  Rings and indirect tables must each lie in one region.
 *
 * Structural faults (descriptor index out of range, loop, chain longer than
 * the queue, nested or malformed indirect table, buffer outside RAM, device-
 * readable after device-writable, avail idx jumping by more than the queue
 * size) mark the queue broken: vq_pop fails from then on and the device sets
 * NEEDS_RESET.  The request can not be completed safely, because its status
 * byte is one of the buffers we could not trust.
 *
 * One thread uses a vq at a time (the queue's worker); the only cross-thread
 * contract is with the guest, through the barriers in virtq.c. */
#ifndef DVMM_VIRTQ_H
#define DVMM_VIRTQ_H

#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "guest-mem/gm.h"

#define VQ_MAX_SIZE 256
/* A chain holds at most VQ_MAX_SIZE descriptors (direct) or one indirect
 * table's worth; a few extra iovecs absorb region splits. */
#define VQ_MAX_IOV (VQ_MAX_SIZE + 8)

struct vq_elem {
    uint16_t head;
    unsigned nout, nin;         /* iov[0..nout) readable, then nin writable */
    uint64_t out_len, in_len;   /* bytes in each direction */
    struct iovec iov[VQ_MAX_IOV];
};

struct vq {
    const struct guest_mem *gm;
    uint16_t size;
    bool event_idx;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint16_t last_avail;        /* next avail entry to consume */
    uint16_t used_idx;          /* our copy of used->idx */
    uint16_t signalled_used;    /* used_idx at the last interrupt decision */
    bool signalled_valid;
    bool broken;
    const char *err;            /* why it broke, for the log */
};

/* Map the rings.  -EINVAL: size not a power of two in 1..VQ_MAX_SIZE or a
 * misaligned ring; -EFAULT: a ring not inside one RAM region. */
int vq_init(struct vq *vq, const struct guest_mem *gm, uint16_t size,
            uint64_t desc_gpa, uint64_t avail_gpa, uint64_t used_gpa,
            bool event_idx);

/* Next available chain into e: 1 got one, 0 none, -EIO the queue is (now)
 * broken; vq->err says why. */
int vq_pop(struct vq *vq, struct vq_elem *e);

/* Put a used element (not yet visible), then publish all of them. */
void vq_fill(struct vq *vq, uint16_t head, uint32_t len);
void vq_flush(struct vq *vq);
static inline void vq_push(struct vq *vq, uint16_t head, uint32_t len)
{ vq_fill(vq, head, len); vq_flush(vq); }

/* After vq_flush: whether the driver wants an interrupt now (EVENT_IDX
 * used_event, or VRING_AVAIL_F_NO_INTERRUPT). */
bool vq_should_notify(struct vq *vq);

/* Kick suppression while the worker drains the ring.  vq_enable_notify
 * returns true when more buffers arrived meanwhile (keep draining). */
void vq_disable_notify(struct vq *vq);
bool vq_enable_notify(struct vq *vq);

/* Bytes of avail and used rings for a queue of `size` (with event fields). */
static inline uint64_t vq_avail_bytes(uint16_t size) { return 6 + 2ULL * size; }
static inline uint64_t vq_used_bytes(uint16_t size) { return 6 + 8ULL * size; }

/* Copy between an iovec array and a flat buffer, for headers and status. */
size_t vq_iov_to_buf(const struct iovec *iov, unsigned n, size_t skip,
                     void *buf, size_t len);
size_t vq_buf_to_iov(const struct iovec *iov, unsigned n, size_t skip,
                     const void *buf, size_t len);

#endif
