#include "virtio/blk_req.h"

#include <errno.h>
#include <string.h>

/* Drop `skip` bytes from the front of iov[0..*n), in place. */
static struct iovec *blk_iov_skip(struct iovec *iov, unsigned *n, size_t skip)
{
    while (*n && skip >= iov->iov_len) {
        skip -= iov->iov_len;
        iov++;
        (*n)--;
    }
    if (*n && skip) {
        iov->iov_base = (uint8_t *)iov->iov_base + skip;
        iov->iov_len -= skip;
    }
    return iov;
}

static int blk_req_fail(struct blk_req *r, uint8_t st)
{
    r->op = BLK_OP_NONE;
    r->status_val = st;
    r->used_len = 1;
    return 0;
}

/* Data must be whole sectors and inside the disk. */
static bool blk_range_ok(const struct blk_limits *lim, uint64_t sector,
                         uint64_t bytes)
{
    if (bytes % BLK_SECTOR)
        return false;
    uint64_t n = bytes / BLK_SECTOR;
    return sector <= lim->capacity && n <= lim->capacity - sector;
}

int blk_req_parse(struct blk_req *r, const struct blk_limits *lim)
{
    struct vq_elem *e = &r->elem;
    struct virtio_blk_outhdr h;

    r->op = BLK_OP_NONE;
    r->status = NULL;
    r->iov = NULL;
    r->niov = 0;
    r->len = 0;
    r->offset = 0;
    r->unmap = false;
    if (!e->nin)
        return -EINVAL;
    /* The status byte is the last writable byte (vq_map never makes a
     * zero-length iovec). */
    struct iovec *last = &e->iov[e->nout + e->nin - 1];
    r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
    last->iov_len--;
    uint64_t in_data = e->in_len - 1;

    if (vq_iov_to_buf(e->iov, e->nout, 0, &h, sizeof(h)) != sizeof(h))
        return blk_req_fail(r, VIRTIO_BLK_S_IOERR);
    r->type = h.type;
    uint64_t out_data = e->out_len - sizeof(h);
    unsigned nout = e->nout;
    struct iovec *out = blk_iov_skip(e->iov, &nout, sizeof(h));
    unsigned nin = e->nin;
    struct iovec *in = e->iov + e->nout;
    if (nin && in[nin - 1].iov_len == 0)
        nin--;

    switch (h.type) {
    case VIRTIO_BLK_T_IN:
        if (out_data || !blk_range_ok(lim, h.sector, in_data))
            return blk_req_fail(r, VIRTIO_BLK_S_IOERR);
        r->op = BLK_OP_READ;
        r->iov = in;
        r->niov = nin;
        r->len = in_data;
        r->offset = h.sector * BLK_SECTOR;
        r->used_len = in_data + 1;
        return 0;
    case VIRTIO_BLK_T_OUT:
        if (lim->ro || in_data || !blk_range_ok(lim, h.sector, out_data))
            return blk_req_fail(r, VIRTIO_BLK_S_IOERR);
        r->op = BLK_OP_WRITE;
        r->iov = out;
        r->niov = nout;
        r->len = out_data;
        r->offset = h.sector * BLK_SECTOR;
        r->used_len = 1;
        return 0;
    case VIRTIO_BLK_T_FLUSH:
        r->op = BLK_OP_FLUSH;
        r->used_len = 1;
        return 0;
    case VIRTIO_BLK_T_GET_ID: {
        char id[VIRTIO_BLK_ID_BYTES];
        memset(id, 0, sizeof(id));
        /* Not NUL-terminated when exactly 20 bytes long (spec 5.2.6). */
        if (lim->serial)
            memcpy(id, lim->serial, strnlen(lim->serial, sizeof(id)));
        size_t n = in_data < sizeof(id) ? in_data : sizeof(id);
        vq_buf_to_iov(in, nin, 0, id, n);
        r->op = BLK_OP_NONE;
        r->status_val = VIRTIO_BLK_S_OK;
        r->used_len = n + 1;
        return 0;
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES: {
        bool dis = h.type == VIRTIO_BLK_T_DISCARD;
        struct virtio_blk_discard_write_zeroes s;
        if (dis ? !lim->discard : !lim->write_zeroes)
            return blk_req_fail(r, VIRTIO_BLK_S_UNSUPP);
        if (lim->ro)
            return blk_req_fail(r, VIRTIO_BLK_S_IOERR);
        /* One segment (max_*_seg = 1); flags other than UNMAP are reserved. */
        if (out_data != sizeof(s) ||
            vq_iov_to_buf(out, nout, 0, &s, sizeof(s)) != sizeof(s))
            return blk_req_fail(r, VIRTIO_BLK_S_UNSUPP);
        uint32_t bad = dis ? ~0U : ~(uint32_t)VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
        if ((s.flags & bad) || s.num_sectors > BLK_MAX_DISCARD_SECTORS)
            return blk_req_fail(r, VIRTIO_BLK_S_UNSUPP);
        if (!blk_range_ok(lim, s.sector, (uint64_t)s.num_sectors * BLK_SECTOR))
            return blk_req_fail(r, VIRTIO_BLK_S_IOERR);
        r->op = dis ? BLK_OP_DISCARD : BLK_OP_WRITE_ZEROES;
        r->offset = s.sector * BLK_SECTOR;
        r->len = (uint64_t)s.num_sectors * BLK_SECTOR;
        r->unmap = s.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
        r->used_len = 1;
        return 0;
    }
    default:
        return blk_req_fail(r, VIRTIO_BLK_S_UNSUPP);
    }
}

uint32_t blk_req_finish(struct blk_req *r, uint8_t status)
{
    *(volatile uint8_t *)r->status = status;
    return status == VIRTIO_BLK_S_OK ? r->used_len : 1;
}
