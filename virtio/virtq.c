#include "virtio/virtq.h"

#include <errno.h>
#include <string.h>


int vq_init(struct vq *vq, const struct guest_mem *gm, uint16_t size,
            uint64_t desc_gpa, uint64_t avail_gpa, uint64_t used_gpa,
            bool event_idx)
{
    memset(vq, 0, sizeof(*vq));
    if (!size || size > VQ_MAX_SIZE || (size & (size - 1)))
        return -EINVAL;
    /* Alignments from virtio 1.x 2.7 table "Virtqueue Part Alignment". */
    if ((desc_gpa & 15) || (avail_gpa & 1) || (used_gpa & 3))
        return -EINVAL;
    vq->desc = gm_gpa_to_hva(gm, desc_gpa, 16ULL * size);
    vq->avail = gm_gpa_to_hva(gm, avail_gpa, vq_avail_bytes(size));
    vq->used = gm_gpa_to_hva(gm, used_gpa, vq_used_bytes(size));
    if (!vq->desc || !vq->avail || !vq->used)
        return -EFAULT;
    vq->gm = gm;
    vq->size = size;
    vq->event_idx = event_idx;
    /* A fresh queue starts at the indices the driver last left there; for a
     * queue just enabled after reset those are 0, and we own used->idx. */
    vq->last_avail = 0;
    vq->used_idx = 0;
    return 0;
}

static int vq_fail(struct vq *vq, const char *why)
{
    vq->broken = true;
    vq->err = why;
    return -EIO;
}

/* Map [gpa, gpa+len) as one or more iovecs (split at a region end when the
 * next region continues at the very next GPA). */
static int vq_map(struct vq *vq, struct vq_elem *e, uint64_t gpa,
                  uint32_t len, bool write)
{
    const struct gm_layout *l = &vq->gm->layout;

    while (len) {
        unsigned n = e->nout + e->nin;
        if (n >= VQ_MAX_IOV)
            return -E2BIG;
        uint64_t chunk = len;
        void *hva = gm_gpa_to_hva(vq->gm, gpa, chunk);
        if (!hva) {
            chunk = 0;
            for (unsigned i = 0; i < l->nr; i++) {
                const struct gm_region *r = &l->r[i];
                if (gpa >= r->gpa && gpa - r->gpa < r->size) {
                    chunk = r->size - (gpa - r->gpa);
                    break;
                }
            }
            if (!chunk || chunk >= len)
                return -EFAULT;
            hva = gm_gpa_to_hva(vq->gm, gpa, chunk);
            if (!hva)
                return -EFAULT;
        }
        e->iov[n].iov_base = hva;
        e->iov[n].iov_len = chunk;
        if (write) {
            e->nin++;
            e->in_len += chunk;
        } else {
            e->nout++;
            e->out_len += chunk;
        }
        gpa += chunk;
        len -= chunk;
    }
    return 0;
}

/* One descriptor, read once: the guest may rewrite it under us. */
static inline void vq_read_desc(const struct vring_desc *tbl, unsigned i,
                                struct vring_desc *d)
{
    const volatile struct vring_desc *s = &tbl[i];
    d->addr = s->addr;
    d->len = s->len;
    d->flags = s->flags;
    d->next = s->next;
}

static int vq_walk(struct vq *vq, struct vq_elem *e, uint16_t head)
{
    const struct vring_desc *tbl = vq->desc;
    unsigned max = vq->size, idx = head, count = 0, total = 0;
    bool indirect = false;
    struct vring_desc d;

    e->head = head;
    e->nout = e->nin = 0;
    e->out_len = e->in_len = 0;
    for (;;) {
        if (idx >= max)
            return vq_fail(vq, "descriptor index out of range");
        /* Each table holds at most `max` entries, so more steps than that
         * means a loop; the total bound covers direct-then-indirect. */
        if (++count > max || ++total > 2u * VQ_MAX_SIZE + VQ_MAX_IOV)
            return vq_fail(vq, "descriptor chain loops or exceeds queue size");
        vq_read_desc(tbl, idx, &d);
        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (indirect)
                return vq_fail(vq, "nested indirect descriptor");
            if (d.flags & VRING_DESC_F_NEXT)
                return vq_fail(vq, "indirect descriptor with NEXT");
            if (d.len == 0 || d.len % sizeof(struct vring_desc))
                return vq_fail(vq, "indirect table length not a multiple of 16");
            tbl = gm_gpa_to_hva(vq->gm, d.addr, d.len);
            if (!tbl)
                return vq_fail(vq, "indirect table outside guest RAM");
            max = d.len / sizeof(struct vring_desc);
            if (max > VQ_MAX_IOV)
                return vq_fail(vq, "indirect table too long");
            indirect = true;
            idx = 0;
            count = 0;
            continue;
        }
        bool write = d.flags & VRING_DESC_F_WRITE;
        if (!write && e->nin)
            return vq_fail(vq, "device-readable descriptor after a writable one");
        int r = vq_map(vq, e, d.addr, d.len, write);
        if (r == -E2BIG)
            return vq_fail(vq, "descriptor chain has too many segments");
        if (r < 0)
            return vq_fail(vq, "buffer outside guest RAM");
        if (!(d.flags & VRING_DESC_F_NEXT))
            return 1;
        idx = d.next;
    }
}

int vq_pop(struct vq *vq, struct vq_elem *e)
{
    if (vq->broken)
        return -EIO;
    uint16_t avail_idx = __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE);
    uint16_t pending = avail_idx - vq->last_avail;
    if (pending == 0)
        return 0;
    if (pending > vq->size)
        return vq_fail(vq, "avail index moved by more than the queue size");
    uint16_t head = ((volatile __virtio16 *)vq->avail->ring)
                        [vq->last_avail & (vq->size - 1)];
    /* avail_event is only advanced by vq_enable_notify: while the worker
     * drains the ring, a stale avail_event keeps the driver from kicking. */
    vq->last_avail++;
    return vq_walk(vq, e, head);
}

void vq_fill(struct vq *vq, uint16_t head, uint32_t len)
{
    volatile struct vring_used_elem *u =
        &vq->used->ring[vq->used_idx & (vq->size - 1)];
    u->id = head;
    u->len = len;
    vq->used_idx++;
}

void vq_flush(struct vq *vq)
{
    /* Element writes must be visible before the index that covers them. */
    __atomic_store_n(&vq->used->idx, vq->used_idx, __ATOMIC_RELEASE);
}

bool vq_should_notify(struct vq *vq)
{
    /* Our used->idx store must be ordered before reading the driver's
     * suppression state, or both sides may decide the other will act. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!vq->event_idx)
        return !(__atomic_load_n(&vq->avail->flags, __ATOMIC_RELAXED) &
                 VRING_AVAIL_F_NO_INTERRUPT);
    uint16_t old = vq->signalled_used, new = vq->used_idx;
    bool valid = vq->signalled_valid;
    vq->signalled_used = new;
    vq->signalled_valid = true;
    if (!valid)
        return true;
    uint16_t ev = __atomic_load_n(&vq->avail->ring[vq->size], __ATOMIC_RELAXED);
    return vring_need_event(ev, new, old);
}

void vq_disable_notify(struct vq *vq)
{
    if (!vq->event_idx)
        __atomic_store_n(&vq->used->flags, VRING_USED_F_NO_NOTIFY,
                         __ATOMIC_RELAXED);
}

bool vq_enable_notify(struct vq *vq)
{
    if (vq->event_idx)
        __atomic_store_n((uint16_t *)&vq->used->ring[vq->size],
                         vq->last_avail, __ATOMIC_RELAXED);
    else
        __atomic_store_n(&vq->used->flags, 0, __ATOMIC_RELAXED);
    /* The flag/event store must land before we re-read avail->idx, else a
     * kick sent in between is lost. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE) != vq->last_avail;
}

size_t vq_iov_to_buf(const struct iovec *iov, unsigned n, size_t skip,
                     void *buf, size_t len)
{
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t c = iov[i].iov_len - skip;
        if (c > len - done)
            c = len - done;
        memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + skip, c);
        done += c;
        skip = 0;
    }
    return done;
}

size_t vq_buf_to_iov(const struct iovec *iov, unsigned n, size_t skip,
                     const void *buf, size_t len)
{
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t c = iov[i].iov_len - skip;
        if (c > len - done)
            c = len - done;
        memcpy((uint8_t *)iov[i].iov_base + skip, (const uint8_t *)buf + done, c);
        done += c;
        skip = 0;
    }
    return done;
}
