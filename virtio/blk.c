#include "virtio/blk.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/log.h"
#include "vmm/sandbox.h"
#include "vmm/mce_route.h"

#define BLK_TAG_KICK 1ULL
#define BLK_TAG_STOP 2ULL

static void blk_drain_fd(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof(v)) == sizeof(v))
        ;
}

/* --- synchronous execution ------------------------------------------------ */

/* preadv/pwritev until r->len bytes from byte `done` on are through. */
static int blk_rw_sync(struct blk_req *r, int fd, uint64_t done)
{
    struct iovec *iov = r->iov;
    unsigned n = r->niov;
    uint64_t skip = done;

    while (done < r->len) {
        while (n && skip >= iov->iov_len) {
            skip -= iov->iov_len;
            iov++;
            n--;
        }
        if (!n)
            return -EIO;
        if (skip) {
            iov->iov_base = (uint8_t *)iov->iov_base + skip;
            iov->iov_len -= skip;
            skip = 0;
        }
        unsigned cnt = n > IOV_MAX ? IOV_MAX : n;
        mce_guard_syscall(true);
        ssize_t k = r->op == BLK_OP_READ ?
                    preadv(fd, iov, cnt, r->offset + done) :
                    pwritev(fd, iov, cnt, r->offset + done);
        mce_guard_syscall(false);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (k == 0)
            return -EIO;        /* EOF inside the capacity: image shrank */
        done += k;
        skip = k;
    }
    return 0;
}

static int blk_do_sync(struct blk *b, struct blk_req *r)
{
    int res;

    switch (r->op) {
    case BLK_OP_READ:
    case BLK_OP_WRITE:
        res = blk_rw_sync(r, b->fd, 0);
        if (res == -EINVAL && b->direct)
            res = blk_rw_sync(r, b->fd_buffered, 0);
        return res;
    case BLK_OP_FLUSH:
        return fdatasync(b->fd) < 0 ? -errno : 0;
    case BLK_OP_DISCARD:
        return fallocate(b->fd_buffered, FALLOC_FL_PUNCH_HOLE |
                         FALLOC_FL_KEEP_SIZE, r->offset, r->len) < 0 ? -errno : 0;
    case BLK_OP_WRITE_ZEROES: {
        int mode = r->unmap && b->lim.discard ?
                   FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE :
                   FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
        return fallocate(b->fd_buffered, mode, r->offset, r->len) < 0 ?
               -errno : 0;
    }
    default:
        return -EINVAL;
    }
}

/* --- memory failures in guest buffers -------------------------------------- */

/* The worker's own access (or its syscall's) met a failed guest page at
 * hva: count it and hand it to the VM, which poisons the page and tells the
 * guest.  what: the buffer, for the log ("read buffer", "rings"...). */
static void blk_report_poison(struct blk_queue *q, uint64_t hva, unsigned lsb,
                              const char *what)
{
    struct blk *b = q->blk;
    struct vmif *vi = b->vp.vmif;
    char origin[MCE_ORIGIN_LEN];

    __atomic_fetch_add(&q->npoisoned, 1, __ATOMIC_RELAXED);
    snprintf(origin, sizeof(origin), "%s queue %u: %s", b->name, q->idx, what);
    if (vi && vi->memory_failure)
        vi->memory_failure(vi->opaque, hva, lsb, origin);
    else
        log_warn("%s: memory failure at HVA 0x%llx", origin, (unsigned long long)hva);
}

/* The queue's rings (or a status byte, which the driver would read as an
 * answer) lie on a failed page: nothing more can be said on this queue. */
static void blk_poison_broken(struct blk_queue *q, const struct mce_guard *g,
                              const char *what)
{
    struct vq *vq = vp_vq(&q->blk->vp, q->idx);
    char why[128];

    blk_report_poison(q, g->addr, g->lsb, what);
    q->rings_lost = true;
    vq->broken = true;
    snprintf(why, sizeof(why), "queue %u: memory failure in the %s", q->idx, what);
    vp_set_needs_reset(&q->blk->vp, why);
}

/* A read or write failed with EFAULT: the kernel's copy (or O_DIRECT's
 * page pinning) met a failed page, and sent no signal.  Find
 * which one by touching each page of the buffers under a guard.  Returns
 * -EHWPOISON when one was found (and reported), else res. */
static int blk_find_poison(struct blk_queue *q, struct blk_req *r, int res)
{
    const char *what = r->op == BLK_OP_READ ? "read buffer" : "write buffer";
    uint64_t addr, sys_addr;
    unsigned lsb, sys_lsb;
    bool sys_hit;

    if (res != -EFAULT ||
        (r->op != BLK_OP_READ && r->op != BLK_OP_WRITE))
        return res;
    /* A signal the syscall's failed copy raised (mce_guard_syscall). */
    sys_hit = mce_guard_syscall_hit(&sys_addr, &sys_lsb);
    for (unsigned i = 0; i < r->niov; i++) {
        if (mce_guard_probe(r->iov[i].iov_base, r->iov[i].iov_len, &addr, &lsb) < 0) {
            blk_report_poison(q, addr, lsb, what);
            return -EHWPOISON;
        }
    }
    if (sys_hit) {
        blk_report_poison(q, sys_addr, sys_lsb, what);
        return -EHWPOISON;
    }
    return res;
}

/* --- completion ------------------------------------------------------------ */

static void blk_release(struct blk_queue *q, struct blk_req *r)
{
    q->free[q->nfree++] = r - q->reqs;
}

struct blk_fin {
    struct blk_queue *q;
    struct blk_req *r;
    uint8_t status;
};

/* Status byte and used element: guest memory, run under a guard. */
static void blk_finish_fn(void *arg)
{
    struct blk_fin *f = arg;
    uint32_t len = blk_req_finish(f->r, f->status);

    vq_fill(vp_vq(&f->q->blk->vp, f->q->idx), f->r->elem.head, len);
}

static void blk_complete(struct blk_queue *q, struct blk_req *r, int res)
{
    struct blk *b = q->blk;

    res = blk_find_poison(q, r, res);
    if (r->op == BLK_OP_FLUSH) {
        /* After a failed sync the image has lost writes that nobody will
         * retry: no FLUSH may succeed again. */
        if (res < 0 && !__atomic_exchange_n(&b->flush_failed, true, __ATOMIC_SEQ_CST))
            log_err("%s: fdatasync of %s failed: %s; every FLUSH fails from now on",
                    b->name, b->cfg.path, strerror(-res));
        else if (res >= 0 && __atomic_load_n(&b->flush_failed, __ATOMIC_SEQ_CST))
            res = -EIO;
    }
    if (res < 0) {
        /* The guest sees IOERR; the host log gets the first one per queue
         * (a full disk would otherwise flood it), the rest at debug level. */
        bool first = q->nerrors++ == 0;
        log_msg(first ? LOG_WARN : LOG_DEBUG,
                "%s: queue %u: %s at byte %llu (+%llu): %s -> IOERR%s", b->name,
                q->idx, r->op == BLK_OP_READ ? "read" : r->op == BLK_OP_WRITE ?
                "write" : r->op == BLK_OP_FLUSH ? "flush" : r->op == BLK_OP_NONE ? "request" :
                "discard/zeroes",
                (unsigned long long)r->offset, (unsigned long long)r->len,
                strerror(-res), first ? " (further errors at debug level)" : "");
    }
    /* A reset is waiting for us: the rings are no longer ours to write. */
    if (!q->stopping && !q->rings_lost) {
        struct blk_fin f = { .q = q, .r = r,
                             .status = res < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK };
        struct mce_guard g;

        if (mce_guard_run(&g, blk_finish_fn, &f) < 0)
            blk_poison_broken(q, &g, "status byte or used ring");
        else
            q->ncompleted++;
    }
    blk_release(q, r);
}

struct blk_notify {
    struct blk_queue *q;
    bool notify;
};

static void blk_flush_fn(void *arg)
{
    struct blk_notify *n = arg;
    struct vq *vq = vp_vq(&n->q->blk->vp, n->q->idx);

    vq_flush(vq);
    n->notify = vq_should_notify(vq);
}

static void blk_flush_notify(struct blk_queue *q)
{
    struct blk_notify n = { .q = q };
    struct mce_guard g;

    if (q->rings_lost)
        return;
    if (mce_guard_run(&g, blk_flush_fn, &n) < 0) {
        blk_poison_broken(q, &g, "used ring");
        return;
    }
    if (n.notify)
        vp_notify_queue(&q->blk->vp, q->idx);
}

/* --- io_uring ---------------------------------------------------------------- */

static struct io_uring_sqe *blk_sqe(struct blk_queue *q)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
    if (!sqe) {
        mce_guard_syscall(true);
        io_uring_submit(&q->ring);
        mce_guard_syscall(false);
        sqe = io_uring_get_sqe(&q->ring);
    }
    return sqe;
}

static int blk_arm_poll(struct blk_queue *q, int fd, uint64_t tag)
{
    struct io_uring_sqe *sqe = blk_sqe(q);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_poll_add(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

/* Queue r on the ring; -EOPNOTSUPP for ops done synchronously. */
static int blk_submit(struct blk_queue *q, struct blk_req *r)
{
    struct blk *b = q->blk;
    struct io_uring_sqe *sqe;

    if (r->op != BLK_OP_READ && r->op != BLK_OP_WRITE && r->op != BLK_OP_FLUSH)
        return -EOPNOTSUPP;
    sqe = blk_sqe(q);
    if (!sqe)
        return -EBUSY;
    if (r->op == BLK_OP_READ)
        io_uring_prep_readv(sqe, b->fd, r->iov, r->niov, r->offset);
    else if (r->op == BLK_OP_WRITE)
        io_uring_prep_writev(sqe, b->fd, r->iov, r->niov, r->offset);
    else
        io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data(sqe, r);
    q->inflight++;
    return 0;
}

static void blk_uring_done(struct blk_queue *q, struct blk_req *r, int res)
{
    struct blk *b = q->blk;

    q->inflight--;
    if (r->op == BLK_OP_READ || r->op == BLK_OP_WRITE) {
        if (res == -EINVAL && b->direct)
            res = blk_rw_sync(r, b->fd_buffered, 0);
        else if (res >= 0 && (uint64_t)res < r->len)
            res = blk_rw_sync(r, b->fd, res);   /* finish a short transfer */
        else if (res > 0)
            res = 0;
    }
    blk_complete(q, r, res);
}

/* --- the queue worker ------------------------------------------------------ */

/* Which request a memory failure would cut short (NULL: the rings).  The
 * signal fence keeps the compiler from moving guest accesses across it. */
static void blk_set_cur(struct blk_queue *q, struct blk_req *r)
{
    __atomic_store_n(&q->cur, r, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

/* Pop and start everything available.  True when a used element was filled
 * (the caller flushes and maybe interrupts).  Runs under the worker's
 * guard: see blk_process. */
static bool blk_process_pass(struct blk_queue *q)
{
    struct blk *b = q->blk;
    struct vq *vq = vp_vq(&b->vp, q->idx);
    bool filled = false;

    for (;;) {
        vq_disable_notify(vq);
        while (q->nfree) {
            struct blk_req *r = &q->reqs[q->free[q->nfree - 1]];
            int n = vq_pop(vq, &r->elem);
            if (n == 0)
                break;
            if (n < 0) {
                char why[128];
                snprintf(why, sizeof(why), "queue %u: %s", q->idx, vq->err);
                vp_set_needs_reset(&b->vp, why);
                return filled;
            }
            q->nfree--;
            blk_set_cur(q, r);
            int pr = blk_req_parse(r, &b->lim);
            blk_set_cur(q, NULL);
            if (pr < 0) {
                char why[128];
                snprintf(why, sizeof(why),
                         "queue %u: request %u has no status byte", q->idx,
                         r->elem.head);
                vq->broken = true;
                blk_release(q, r);
                vp_set_needs_reset(&b->vp, why);
                return filled;
            }
            if (r->op == BLK_OP_NONE ||
                ((r->op == BLK_OP_READ || r->op == BLK_OP_WRITE) && !r->len)) {
                vq_fill(vq, r->elem.head, blk_req_finish(r, r->status_val));
                q->ncompleted++;
                blk_release(q, r);
                filled = true;
                continue;
            }
            if (b->use_uring && blk_submit(q, r) == 0)
                continue;
            blk_complete(q, r, blk_do_sync(b, r));
            filled = true;
        }
        if (!q->nfree) {
            /* Completions will bring us back; kicks can stay off. */
            q->backlog = true;
            break;
        }
        q->backlog = false;
        if (!vq_enable_notify(vq))
            break;
    }
    return filled;
}

struct blk_run {
    struct blk_queue *q;
    bool filled;
};

static void blk_process_fn(void *arg)
{
    struct blk_run *run = arg;

    if (blk_process_pass(run->q))
        run->filled = true;
}

/* blk_process_pass under a guard.  A failed page in a request's header or
 * GET_ID buffer fails that request and the pass goes on; one in the rings
 * or descriptor tables ends the queue (NEEDS_RESET). */
static bool blk_process(struct blk_queue *q)
{
    struct blk_run run = { .q = q };
    struct mce_guard g;

    while (!q->rings_lost && mce_guard_run(&g, blk_process_fn, &run) < 0) {
        struct blk_req *r = __atomic_load_n(&q->cur, __ATOMIC_RELAXED);

        /* The pass may have filled used elements before it was cut short. */
        run.filled = true;
        blk_set_cur(q, NULL);
        if (!r) {
            blk_poison_broken(q, &g, "rings or descriptor table");
            break;
        }
        blk_report_poison(q, g.addr, g.lsb, "request header or id buffer");
        r->op = BLK_OP_NONE;
        blk_complete(q, r, -EHWPOISON);
    }
    return run.filled;
}

/* Every signal but SIGBUS stays blocked (blk_start); the guard needs it. */
static void blk_worker_init(struct blk_queue *q)
{
    int r = mce_guard_thread_init();

    if (r < 0)
        log_warn("%s: queue %u: unblocking SIGBUS: %s; a memory failure in guest "
                 "memory this worker touches ends dvmm", q->blk->name, q->idx,
                 strerror(-r));
}

static void *blk_worker_uring(void *arg)
{
    struct blk_queue *q = arg;
    struct blk *b = q->blk;
    int kick = vp_kick_fd(&b->vp, q->idx);

    blk_worker_init(q);
    blk_arm_poll(q, kick, BLK_TAG_KICK);
    blk_arm_poll(q, q->stop_fd, BLK_TAG_STOP);
    if (blk_process(q))
        blk_flush_notify(q);
    for (;;) {
        /* Reads and writes may run inline here, on guest buffers. */
        mce_guard_syscall(true);
        int r = io_uring_submit_and_wait(&q->ring, 1);
        mce_guard_syscall(false);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            log_err("%s: queue %u: io_uring: %s", b->name, q->idx, strerror(-r));
            vp_set_needs_reset(&b->vp, "io_uring failed");
            struct pollfd p = { .fd = q->stop_fd, .events = POLLIN };
            while (poll(&p, 1, -1) < 0 && errno == EINTR)
                ;
            break;
        }
        bool kicked = false, filled = false;
        unsigned head, n = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&q->ring, head, cqe) {
            n++;
            uint64_t tag = io_uring_cqe_get_data64(cqe);
            if (tag == BLK_TAG_KICK) {
                blk_drain_fd(kick);
                kicked = true;
                blk_arm_poll(q, kick, BLK_TAG_KICK);
            } else if (tag == BLK_TAG_STOP) {
                q->stopping = true;
            } else {
                blk_uring_done(q, io_uring_cqe_get_data(cqe), cqe->res);
                filled = true;
            }
        }
        io_uring_cq_advance(&q->ring, n);
        if (q->stopping) {
            if (!q->inflight)
                break;
            continue;
        }
        if (kicked || q->backlog)
            filled |= blk_process(q);
        if (filled)
            blk_flush_notify(q);
    }
    return NULL;
}

static void *blk_worker_sync(void *arg)
{
    struct blk_queue *q = arg;
    struct blk *b = q->blk;
    int kick = vp_kick_fd(&b->vp, q->idx);

    blk_worker_init(q);
    if (blk_process(q))
        blk_flush_notify(q);
    for (;;) {
        struct pollfd p[2] = {
            { .fd = kick, .events = POLLIN },
            { .fd = q->stop_fd, .events = POLLIN },
        };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_err("%s: queue %u: poll: %s", b->name, q->idx, strerror(errno));
            break;
        }
        if (p[1].revents)
            break;
        blk_drain_fd(kick);
        if (blk_process(q))
            blk_flush_notify(q);
    }
    return NULL;
}

/* --- start/stop (from the transport, under its lock) ---------------------- */

static void blk_stop_queue(struct blk_queue *q)
{
    uint64_t one = 1;
    if (!q->running)
        return;
    if (write(q->stop_fd, &one, sizeof(one)) != sizeof(one))
        log_err("%s: queue %u: stop eventfd: %s", q->blk->name, q->idx,
                strerror(errno));
    pthread_join(q->thread, NULL);
    q->running = false;
    if (q->ring_ok) {
        io_uring_queue_exit(&q->ring);
        q->ring_ok = false;
    }
    blk_drain_fd(q->stop_fd);
}

static void blk_stop(void *opaque)
{
    struct blk *b = opaque;
    for (unsigned i = 0; i < b->nq; i++)
        blk_stop_queue(&b->q[i]);
}

static int blk_start(void *opaque)
{
    struct blk *b = opaque;

    for (unsigned i = 0; i < b->nq; i++) {
        struct blk_queue *q = &b->q[i];
        if (!vp_queue_enabled(&b->vp, i))
            continue;
        uint16_t size = vp_vq(&b->vp, i)->size;
        q->nfree = 0;
        for (unsigned s = size; s-- > 0;)
            q->free[q->nfree++] = s;
        q->inflight = 0;
        q->stopping = false;
        q->backlog = false;
        q->rings_lost = false;
        blk_drain_fd(q->stop_fd);
        if (b->use_uring) {
            int r = io_uring_queue_init(2 * size + 4, &q->ring, 0);
            if (r < 0) {
                log_err("%s: queue %u: io_uring_queue_init: %s", b->name, i,
                        strerror(-r));
                blk_stop(b);
                return r;
            }
            q->ring_ok = true;
        }
        /* SIGINT/SIGTERM belong to main's signalfd; the worker unblocks
         * SIGBUS itself (blk_worker_init) for its memory-failure guard. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        char tname[32];
        snprintf(tname, sizeof(tname), "blk%u-q%u", b->cfg.index, i);
        int r = -sandbox_thread_create(&q->thread, SBX_BLK, tname,
                                       b->use_uring ? blk_worker_uring : blk_worker_sync,
                                       q);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r) {
            log_err("%s: queue %u: pthread_create: %s", b->name, i, strerror(r));
            if (q->ring_ok) {
                io_uring_queue_exit(&q->ring);
                q->ring_ok = false;
            }
            blk_stop(b);
            return -r;
        }
        q->running = true;
    }
    return 0;
}

static void blk_cfg_read(void *opaque, uint64_t off, uint8_t *data,
                         unsigned len)
{
    struct blk *b = opaque;
    memcpy(data, (uint8_t *)&b->vcfg + off, len);
}

static const struct vp_dev_ops blk_vp_ops = {
    .cfg_read = blk_cfg_read,
    .start = blk_start,
    .stop = blk_stop,
};

/* --- setup ---------------------------------------------------------------- */

/* Discard/write-zeroes only where the file really supports them: try both on
 * the byte range just past EOF (KEEP_SIZE: the size does not change). */
static void blk_probe_fallocate(struct blk *b, uint64_t size)
{
    b->lim.discard = fallocate(b->fd_buffered, FALLOC_FL_PUNCH_HOLE |
                               FALLOC_FL_KEEP_SIZE, size, 4096) == 0;
    b->lim.write_zeroes = fallocate(b->fd_buffered, FALLOC_FL_ZERO_RANGE |
                                    FALLOC_FL_KEEP_SIZE, size, 4096) == 0;
    if (b->lim.write_zeroes && b->lim.discard)
        fallocate(b->fd_buffered, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  size, 4096);
}

static bool blk_uring_available(void)
{
    struct io_uring t;
    if (io_uring_queue_init(4, &t, 0) < 0)
        return false;
    io_uring_queue_exit(&t);
    return true;
}

int blk_init(struct blk *b, const struct blk_config *disk, struct pci *pci,
             struct vmif *vmif, const struct guest_mem *gm, char *err,
             size_t errlen)
{
    unsigned n = disk->index;
    struct stat st;
    uint64_t size;
    int r;

    memset(b, 0, sizeof(*b));
    b->fd = b->fd_buffered = -1;
    b->cfg = *disk;
    b->gm = gm;
    snprintf(b->name, sizeof(b->name), "virtio-blk.%u", n);
    b->nq = disk->queues ? disk->queues : 1;
    uint16_t qsize = disk->queue_size ? disk->queue_size : VQ_MAX_SIZE;
    if (b->nq > VP_MAX_QUEUES)
        return log_fail(err, errlen, -EINVAL, "disk.%u.queues: %u is more than %u", n, b->nq,
                        VP_MAX_QUEUES);

    int flags = (disk->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    b->fd_buffered = open(disk->path, flags);
    if (b->fd_buffered < 0) {
        r = -errno;
        return log_fail(err, errlen, r, "disk.%u.path: cannot open %s: %s", n,
                        disk->path, strerror(-r));
    }
    if (fstat(b->fd_buffered, &st) < 0) {
        r = -errno;
        log_fail(err, errlen, r, "disk.%u.path: stat %s: %s", n, disk->path, strerror(-r));
        goto fail;
    }
    if (S_ISBLK(st.st_mode)) {
        if (ioctl(b->fd_buffered, BLKGETSIZE64, &size) < 0) {
            r = -errno;
            log_fail(err, errlen, r, "disk.%u.path: BLKGETSIZE64 on %s: %s", n,
                     disk->path, strerror(-r));
            goto fail;
        }
    } else if (S_ISREG(st.st_mode)) {
        size = st.st_size;
    } else {
        r = log_fail(err, errlen, -EINVAL,
                     "disk.%u.path: %s is not a regular file or block device", n, disk->path);
        goto fail;
    }
    if (size % BLK_SECTOR) {
        r = log_fail(err, errlen, -EINVAL,
                     "disk.%u.path: size %llu of %s is not a multiple of 512",
                     n, (unsigned long long)size, disk->path);
        goto fail;
    }

    b->fd = b->fd_buffered;
    if (disk->cache == BLK_CACHE_NONE) {
        if (!gm_backend_allows_odirect(gm)) {
            log_info("%s: cache=none: guest RAM (%s) cannot take O_DIRECT, using buffered I/O",
                     b->name, gm_backend_name(gm->backend));
        } else {
            int fd = open(disk->path, flags | O_DIRECT);
            if (fd < 0) {
                log_warn("%s: cache=none: %s refuses O_DIRECT (%s), using buffered I/O",
                         b->name, disk->path, strerror(errno));
            } else {
                b->fd = fd;
                b->direct = true;
            }
        }
    }

    b->use_uring = disk->engine != BLK_ENGINE_THREADS;
    if (b->use_uring && !blk_uring_available()) {
        if (disk->engine == BLK_ENGINE_IO_URING) {
            r = log_fail(err, errlen, -ENOSYS,
                         "disk.%u.engine: io_uring is not available on this host", n);
            goto fail;
        }
        log_info("%s: io_uring not available, using the threads engine",
                 b->name);
        b->use_uring = false;
    }

    b->lim.capacity = size / BLK_SECTOR;
    b->lim.ro = disk->readonly;
    b->lim.serial = b->cfg.serial;
    if (!disk->readonly && S_ISREG(st.st_mode))
        blk_probe_fallocate(b, size);

    uint64_t features = 1ULL << VIRTIO_BLK_F_FLUSH |
                        1ULL << VIRTIO_BLK_F_BLK_SIZE |
                        1ULL << VIRTIO_BLK_F_SEG_MAX |
                        1ULL << VIRTIO_BLK_F_MQ |
                        1ULL << VIRTIO_RING_F_EVENT_IDX |
                        1ULL << VIRTIO_RING_F_INDIRECT_DESC;
    if (disk->readonly)
        features |= 1ULL << VIRTIO_BLK_F_RO;
    if (b->lim.discard)
        features |= 1ULL << VIRTIO_BLK_F_DISCARD;
    if (b->lim.write_zeroes)
        features |= 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;

    b->vcfg.capacity = b->lim.capacity;
    /* header + data + status fit a chain of queue-size descriptors, and an
     * indirect table of VQ_MAX_IOV entries. */
    b->vcfg.seg_max = qsize > 2 ? qsize - 2 : 1;
    b->vcfg.blk_size = BLK_SECTOR;
    b->vcfg.num_queues = b->nq;
    b->vcfg.max_discard_sectors = BLK_MAX_DISCARD_SECTORS;
    b->vcfg.max_discard_seg = 1;
    b->vcfg.discard_sector_alignment = 4096 / BLK_SECTOR;
    b->vcfg.max_write_zeroes_sectors = BLK_MAX_DISCARD_SECTORS;
    b->vcfg.max_write_zeroes_seg = 1;
    b->vcfg.write_zeroes_may_unmap = b->lim.discard;

    for (unsigned i = 0; i < b->nq; i++) {
        struct blk_queue *q = &b->q[i];
        q->blk = b;
        q->idx = i;
        q->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        q->reqs = calloc(qsize, sizeof(*q->reqs));
        q->free = calloc(qsize, sizeof(*q->free));
        if (q->stop_fd < 0 || !q->reqs || !q->free) {
            r = q->stop_fd < 0 ? -errno : -ENOMEM;
            log_fail(err, errlen, r, "disk.%u: queue %u setup: %s", n, i, strerror(-r));
            goto fail_queues;
        }
    }

    struct vp_params p = {
        .name = b->name, .virtio_id = VIRTIO_ID_BLOCK,
        .class_code = 0x018000, .features = features, .nqueues = b->nq,
        .queue_size = qsize, .cfg_size = sizeof(b->vcfg),
        .ops = &blk_vp_ops, .opaque = b,
    };
    r = vp_init(&b->vp, &p, pci, vmif, gm);
    if (r < 0) {
        log_fail(err, errlen, r, "disk.%u: cannot add the PCI device: %s", n, strerror(-r));
        goto fail_queues;
    }
    log_info("%s: %s, %llu sectors%s, %u queue(s) of %u, %s%s, engine %s, slot %02x.0",
             b->name, disk->path, (unsigned long long)b->lim.capacity,
             disk->readonly ? " (read-only)" : "", b->nq, qsize,
             b->direct ? "O_DIRECT" : "buffered",
             b->lim.discard ? ", discard" : "",
             b->use_uring ? "io_uring" : "threads", r);
    return 0;

fail_queues:
    for (unsigned i = 0; i < b->nq; i++) {
        if (b->q[i].stop_fd > 0)
            close(b->q[i].stop_fd);
        free(b->q[i].reqs);
        free(b->q[i].free);
        b->q[i].reqs = NULL;
        b->q[i].free = NULL;
    }
fail:
    if (b->fd >= 0 && b->fd != b->fd_buffered)
        close(b->fd);
    if (b->fd_buffered >= 0)
        close(b->fd_buffered);
    b->fd = b->fd_buffered = -1;
    return r;
}

void blk_reset(struct blk *b)
{
    vp_device_reset(&b->vp);
}

void blk_destroy(struct blk *b)
{
    if (b->fd_buffered < 0)
        return;
    vp_destroy(&b->vp);
    /* Workers have drained: what the guest wrote reaches the image before
     * dvmm lets go of it, as QEMU's exit flushes its drives. */
    if (!b->cfg.readonly && fdatasync(b->fd_buffered) < 0)
        log_warn("%s: fdatasync of %s at shutdown failed: %s", b->name, b->cfg.path,
                 strerror(errno));
    for (unsigned i = 0; i < b->nq; i++) {
        close(b->q[i].stop_fd);
        free(b->q[i].reqs);
        free(b->q[i].free);
    }
    if (b->fd != b->fd_buffered)
        close(b->fd);
    close(b->fd_buffered);
    b->fd = b->fd_buffered = -1;
}
