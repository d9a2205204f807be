/* Parsing one virtio-blk request (virtio 1.x 5.2.6) from a popped chain:
 * the 16-byte header, the data buffers, the status byte.  Pure: no I/O,
 * so unit tests and the fuzzer can drive it directly.
 *
 * Everything the guest wrote is read exactly once, into the request
 * (header, discard/write-zeroes segment); the data iovecs point into guest
 * RAM and were bounds-checked by vq_pop. */
#ifndef DVMM_BLK_REQ_H
#define DVMM_BLK_REQ_H

#include <linux/virtio_blk.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtq.h"

#define BLK_SECTOR 512ULL
/* DISCARD and WRITE_ZEROES: one segment per request (max_*_seg = 1). */
#define BLK_MAX_DISCARD_SECTORS (1U << 22)

struct blk_limits {
    uint64_t capacity;          /* sectors */
    bool ro;
    bool discard, write_zeroes; /* offered */
    const char *serial;         /* GET_ID, <= VIRTIO_BLK_ID_BYTES */
};

enum blk_op { BLK_OP_NONE, BLK_OP_READ, BLK_OP_WRITE, BLK_OP_FLUSH,
              BLK_OP_DISCARD, BLK_OP_WRITE_ZEROES };

struct blk_req {
    struct vq_elem elem;
    enum blk_op op;             /* NONE: already complete (see status_val) */
    uint32_t type;
    uint64_t offset, len;       /* bytes in the image */
    struct iovec *iov;          /* data buffers (inside elem.iov) */
    unsigned niov;
    uint8_t *status;            /* guest status byte */
    uint8_t status_val;         /* VIRTIO_BLK_S_* when op == NONE */
    uint32_t used_len;          /* bytes written to the guest on success */
    bool unmap;                 /* WRITE_ZEROES may punch holes */
};

/* Fill r from r->elem.  0: r->op says what to do (NONE: r->status_val is the
 * outcome: an error, or GET_ID already written).  -EINVAL: the chain has no
 * device-writable byte for the status, so the request cannot be answered
 * (the device should set NEEDS_RESET). */
int blk_req_parse(struct blk_req *r, const struct blk_limits *lim);

/* Write the status byte; returns the used length to report. */
uint32_t blk_req_finish(struct blk_req *r, uint8_t status);

#endif
