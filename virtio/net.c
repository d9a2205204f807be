#include "virtio/net.h"

#include <errno.h>
#include <linux/virtio_ring.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "virtio/vhost_net.h"
#include "vmm/log.h"
#include "vmm/mce_route.h"
#include "vmm/sandbox.h"

#define F(bit) (1ULL << (bit))

/* --- small helpers ---------------------------------------------------------- */

static inline void net_bump(uint64_t *c, uint64_t by)
{
    /* One writer per counter (the pair's worker): no locked add needed. */
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + by, __ATOMIC_RELAXED);
}

static void net_drain_fd(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof(v)) == sizeof(v))
        ;
}

static void net_signal_fd(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof(one)) != sizeof(one) && errno != EAGAIN)
        log_err("virtio-net: eventfd write: %s", strerror(errno));
}

static uint64_t net_features(const struct net *n)
{
    return n->vp.features;
}

static bool net_link(const struct net *n)
{
    return __atomic_load_n(&n->link_up, __ATOMIC_ACQUIRE);
}

static bool net_pair_active(const struct net_pair *p)
{
    return p->idx < __atomic_load_n(&p->net->active, __ATOMIC_ACQUIRE);
}

static void net_drop(struct net_pair *p, bool rx, enum net_drop d)
{
    net_bump(rx ? &p->rx.drops : &p->tx.drops, 1);
    __atomic_fetch_add(&p->net->drops[d], 1, __ATOMIC_RELAXED);
}

void net_queue_irq(struct net *n, unsigned q)
{
    struct net_pair *p = &n->pair[q / 2];
    if (q < 2 * n->npairs)
        net_bump(q & 1 ? &p->tx.irqs : &p->rx.irqs, 1);
    vp_notify_queue(&n->vp, q);
}

/* Publish the used ring of queue q and interrupt if the driver wants it. */
static void net_publish(struct net *n, unsigned q)
{
    struct vq *vq = vp_vq(&n->vp, q);
    vq_flush(vq);
    if (vq_should_notify(vq))
        net_queue_irq(n, q);
}

static void net_needs_reset(struct net *n, unsigned q, const char *what)
{
    char why[160];
    snprintf(why, sizeof(why), "queue %u: %s", q, what);
    vp_set_needs_reset(&n->vp, why);
}

/* --- memory failures in guest buffers ----------------------------------------- */

/* Count the failed guest page at hva and hand it to the VM, which poisons
 * it and tells the guest.  what: the buffer, for the log. */
static void net_report_poison(struct net_pair *p, unsigned q, uint64_t hva, unsigned lsb,
                              const char *what)
{
    struct net *n = p->net;
    struct vmif *vi = n->vp.vmif;
    char origin[MCE_ORIGIN_LEN];

    snprintf(origin, sizeof(origin), "%s pair %u queue %u: %s", n->name, p->idx, q, what);
    if (vi && vi->memory_failure)
        vi->memory_failure(vi->opaque, hva, lsb, origin);
    else
        log_warn("%s: memory failure at HVA 0x%llx", origin, (unsigned long long)hva);
}

/* After a TAP readv/writev's EFAULT (the kernel's copy met a failed page and
 * sent no signal): find the page by touching the buffers under a guard.
 * True when one was found and reported. */
static bool net_find_poison(struct net_pair *p, unsigned q, const struct iovec *iov,
                            unsigned niov, const char *what)
{
    uint64_t addr, sys_addr;
    unsigned lsb, sys_lsb;
    /* A signal the syscall's failed copy raised (mce_guard_syscall). */
    bool sys_hit = mce_guard_syscall_hit(&sys_addr, &sys_lsb);

    for (unsigned i = 0; i < niov; i++)
        if (mce_guard_probe(iov[i].iov_base, iov[i].iov_len, &addr, &lsb) < 0) {
            net_report_poison(p, q, addr, lsb, what);
            return true;
        }
    if (sys_hit)
        net_report_poison(p, q, sys_addr, sys_lsb, what);
    return sys_hit;
}

/* What a memory failure would cut short; the signal fence keeps the
 * compiler from moving guest accesses across the store. */
static void net_set_flag(bool *flag, bool on)
{
    __atomic_store_n(flag, on, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

/* --- transmit --------------------------------------------------------------- */

/* 0: the frame went to the TAP or was dropped; -EAGAIN: no room, retry. */
static int net_tx_send(struct net_pair *p)
{
    struct net *n = p->net;
    struct net_tx *tx = p->txf;

    for (;;) {
        mce_guard_syscall(true);
        ssize_t r = writev(n->tap.fd[p->idx], tx->iov, (int)tx->niov);
        mce_guard_syscall(false);
        if (r >= 0) {
            net_bump(&p->tx.packets, 1);
            net_bump(&p->tx.bytes, tx->frame_len);
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
            return -EAGAIN;
        if (errno == EFAULT &&
            net_find_poison(p, 2 * p->idx + 1, tx->iov, tx->niov, "TX buffer")) {
            net_drop(p, false, NET_DROP_MEMORY_FAILURE);
            return 0;
        }
        if (!p->warned_tap)
            log_warn("%s: pair %u: TAP write of %zu bytes: %s (dropped; further ones at debug level)",
                     n->name, p->idx, tx->frame_len, strerror(errno));
        else
            log_debug("%s: pair %u: TAP write: %s", n->name, p->idx, strerror(errno));
        p->warned_tap = true;
        net_drop(p, false, NET_DROP_TAP);
        return 0;
    }
}

/* Drain the TX ring (up to the budget).  True when a used entry was filled;
 * *blocked when the TAP is full, *more when the budget ran out. */
static bool net_tx_run(struct net_pair *p, bool *blocked, bool *more)
{
    struct net *n = p->net;
    unsigned q = 2 * p->idx + 1, budget = NET_BUDGET;
    struct vq *vq = vp_vq(&n->vp, q);
    bool filled = false;

    *blocked = *more = false;
    if (p->tx_dead)
        return false;
    if (p->tx_pending) {
        if (net_tx_send(p) == -EAGAIN) {
            *blocked = true;
            return false;
        }
        p->tx_pending = false;
        vq_fill(vq, p->tx_head, 0);
        filled = true;
    }
    for (;;) {
        vq_disable_notify(vq);
        while (budget) {
            int r = vq_pop(vq, p->elem);
            if (r == 0)
                break;
            if (r < 0) {
                p->tx_dead = true;
                net_needs_reset(n, q, vq->err);
                return filled;
            }
            budget--;
            net_set_flag(&p->tx_in_frame, true);
            enum net_drop d = net_link(n) ? net_tx_parse(p->elem, net_features(n),
                                                          n->cfg.mtu, p->txf)
                                          : NET_DROP_LINK_DOWN;
            net_set_flag(&p->tx_in_frame, false);
            if (d == NET_PASS) {
                p->tx_head = p->elem->head;
                if (net_tx_send(p) == -EAGAIN) {
                    /* Kicks stay off: POLLOUT brings us back. */
                    p->tx_pending = true;
                    *blocked = true;
                    return filled;
                }
            } else {
                net_drop(p, false, d);
                log_debug("%s: pair %u: TX frame dropped: %s", n->name, p->idx,
                          net_drop_name(d));
            }
            vq_fill(vq, p->elem->head, 0);
            filled = true;
        }
        if (!budget) {
            *more = true;
            break;
        }
        if (!vq_enable_notify(vq))
            break;
    }
    return filled;
}

/* --- receive ---------------------------------------------------------------- */

static bool net_mrg(const struct net *n)
{
    return net_features(n) & F(VIRTIO_NET_F_MRG_RXBUF);
}

/* Hand back RX buffers 0..k-1 of the held list (used lengths in rx_ulen)
 * and forget them. */
static void net_rx_complete(struct net_pair *p, struct vq *vq, unsigned k)
{
    for (unsigned i = 0; i < k; i++)
        vq_fill(vq, p->rx_buf[i].head, p->rx_ulen[i]);
    unsigned iovs = k < p->rx_nbuf ? p->rx_buf[k].iov : p->rx_niov;
    memmove(p->rx_iov, p->rx_iov + iovs, (p->rx_niov - iovs) * sizeof(*p->rx_iov));
    p->rx_niov -= iovs;
    memmove(p->rx_buf, p->rx_buf + k, (p->rx_nbuf - k) * sizeof(*p->rx_buf));
    p->rx_nbuf -= k;
    p->rx_cap = 0;
    for (unsigned i = 0; i < p->rx_nbuf; i++) {
        p->rx_buf[i].iov -= iovs;
        p->rx_cap += p->rx_buf[i].cap;
    }
}

/* Pop RX chains until they hold `need` bytes (one chain without mergeable
 * buffers), the ring is empty (*empty: a kick is armed), or no more can be
 * held.  True when a used entry was filled (a chain handed back as
 * unusable).  -1 in *err when the queue broke. */
static bool net_rx_pop(struct net_pair *p, struct vq *vq, size_t need, int *err,
                       bool *empty)
{
    struct net *n = p->net;
    unsigned max = net_mrg(n) ? vq->size : 1;
    bool filled = false;

    *err = 0;
    *empty = false;
    while (p->rx_cap < need && p->rx_nbuf < max &&
           p->rx_niov + VQ_MAX_IOV <= NET_RX_IOV) {
        int r = vq_pop(vq, p->elem);
        if (r == 0) {
            /* Buffers in hand: read with them, and let the driver post
             * more without a kick each time. */
            if (p->rx_nbuf && !p->rx_partial)
                break;
            /* Ask for a kick, then look once more: buffers posted in
             * between would otherwise wait for the next kick. */
            if (!vq_enable_notify(vq)) {
                *empty = true;
                break;
            }
            continue;
        }
        if (r < 0) {
            p->rx_dead = true;
            net_needs_reset(n, 2 * p->idx, vq->err);
            *err = -1;
            return filled;
        }
        struct vq_elem *e = p->elem;
        if (e->nout || e->in_len < NET_HDR_LEN) {
            /* Not a receive buffer: give it back empty. */
            vq_fill(vq, e->head, 0);
            filled = true;
            net_drop(p, true, NET_DROP_RX_CHAIN);
            continue;
        }
        struct net_rx_buf *b = &p->rx_buf[p->rx_nbuf++];
        b->head = e->head;
        b->iov = (uint16_t)p->rx_niov;
        b->niov = (uint16_t)e->nin;
        b->cap = e->in_len > UINT32_MAX ? UINT32_MAX : (uint32_t)e->in_len;
        memcpy(p->rx_iov + p->rx_niov, e->iov, e->nin * sizeof(*e->iov));
        p->rx_niov += e->nin;
        p->rx_cap += b->cap;
    }
    if (!*empty)
        vq_disable_notify(vq);
    return filled;
}

/* The frame now fills rx_buf[0..k) (rx_ulen): header in, used entries out. */
static void net_rx_finish(struct net_pair *p, struct vq *vq, unsigned k)
{
    struct net_rx_buf *b = &p->rx_buf[0];
    p->rx_hdr.num_buffers = (uint16_t)k;
    net_set_flag(&p->rx_in_frame, true);
    vq_buf_to_iov(p->rx_iov + b->iov, b->niov, 0, &p->rx_hdr, NET_HDR_LEN);
    net_set_flag(&p->rx_in_frame, false);
    net_bump(&p->rx.packets, 1);
    net_bump(&p->rx.bytes, p->rx_len - NET_HDR_LEN);
    net_rx_complete(p, vq, k);
}

/* Copy what a partial frame still has in the overflow area into buffers
 * popped since.  True when the frame is complete. */
static bool net_rx_continue(struct net_pair *p, struct vq *vq)
{
    while (p->rx_left && p->rx_used < p->rx_nbuf) {
        struct net_rx_buf *b = &p->rx_buf[p->rx_used];
        size_t c = p->rx_left < b->cap ? p->rx_left : b->cap;
        net_set_flag(&p->rx_in_frame, true);
        vq_buf_to_iov(p->rx_iov + b->iov, b->niov, 0, p->overflow + p->rx_off, c);
        net_set_flag(&p->rx_in_frame, false);
        p->rx_ulen[p->rx_used++] = (uint32_t)c;
        p->rx_off += c;
        p->rx_left -= c;
    }
    if (p->rx_left)
        return false;
    p->rx_partial = false;
    net_rx_finish(p, vq, p->rx_used);
    return true;
}

/* Read one frame from the TAP into the held buffers.  1: a used entry was
 * filled (or a frame dropped); 0: the TAP had nothing; -EAGAIN likewise. */
static int net_rx_one(struct net_pair *p, struct vq *vq)
{
    struct net *n = p->net;
    struct iovec iov[NET_RX_IOV + 2];
    unsigned niov = 0, skip = NET_HDR_LEN;
    uint32_t cap[VQ_MAX_SIZE];

    iov[niov++] = (struct iovec){ &p->rx_hdr, NET_HDR_LEN };
    for (unsigned i = 0; i < p->rx_niov; i++) {
        struct iovec v = p->rx_iov[i];
        if (skip) {
            /* The header goes to the host copy: skip its room in buffer 0
             * (which holds at least NET_HDR_LEN bytes). */
            size_t s = skip < v.iov_len ? skip : v.iov_len;
            v.iov_base = (uint8_t *)v.iov_base + s;
            v.iov_len -= s;
            skip -= s;
            if (!v.iov_len)
                continue;
        }
        iov[niov++] = v;
    }
    iov[niov++] = (struct iovec){ p->overflow, NET_OVERFLOW };

    ssize_t r;
    do {
        mce_guard_syscall(true);
        r = readv(n->tap.fd[p->idx], iov, (int)niov);
        mce_guard_syscall(false);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -EAGAIN;
        if (errno == EFAULT &&
            net_find_poison(p, 2 * p->idx, p->rx_iov, p->rx_niov, "RX buffer")) {
            /* The frame is gone (the TAP dropped it); the held chains go
             * back empty, which the driver counts as a length error. */
            net_drop(p, true, NET_DROP_MEMORY_FAILURE);
            for (unsigned i = 0; i < p->rx_nbuf; i++)
                p->rx_ulen[i] = 0;
            net_rx_complete(p, vq, p->rx_nbuf);
            return 1;
        }
        /* A detached queue (EBADFD) or a TAP that went away. */
        log_debug("%s: pair %u: TAP read: %s", n->name, p->idx, strerror(errno));
        return -EAGAIN;
    }
    size_t len = (size_t)r;
    if (len < NET_HDR_LEN) {
        net_drop(p, true, NET_DROP_HDR_SHORT);
        return 1;
    }
    if (len >= p->rx_cap + NET_OVERFLOW) {
        /* Filled everything: it may have been cut short. */
        net_drop(p, true, NET_DROP_NO_ROOM);
        return 1;
    }
    enum net_drop d = net_rx_fixup(&p->rx_hdr, len - NET_HDR_LEN, net_features(n));
    if (d != NET_PASS) {
        net_drop(p, true, d);
        log_debug("%s: pair %u: RX frame dropped: %s", n->name, p->idx, net_drop_name(d));
        return 1;
    }
    p->rx_len = len;
    for (unsigned i = 0; i < p->rx_nbuf; i++)
        cap[i] = p->rx_buf[i].cap;
    unsigned k = net_rx_pack(cap, p->rx_nbuf, len, p->rx_ulen);
    if (k) {
        net_rx_finish(p, vq, k);
        return 1;
    }
    if (!net_mrg(n)) {
        /* One chain per frame, and this one is too small. */
        net_drop(p, true, NET_DROP_NO_ROOM);
        return 1;
    }
    /* Every held buffer is full; the rest waits in the overflow area. */
    for (unsigned i = 0; i < p->rx_nbuf; i++)
        p->rx_ulen[i] = cap[i];
    p->rx_used = p->rx_nbuf;
    p->rx_off = 0;
    p->rx_left = len - p->rx_cap;
    p->rx_partial = true;
    return 1;
}

/* While the link is down: read and drop, the rings untouched. */
static void net_rx_discard(struct net_pair *p)
{
    struct net *n = p->net;
    for (unsigned i = 0; i < NET_BUDGET; i++) {
        ssize_t r = read(n->tap.fd[p->idx], p->overflow, NET_OVERFLOW);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return;
        net_drop(p, true, NET_DROP_LINK_DOWN);
    }
}

enum net_rx_wait { RX_WAIT_NONE, RX_WAIT_TAP, RX_WAIT_KICK };

/* Receive up to the budget.  True when used entries were filled; *wait says
 * what the worker waits on next, *more when the budget ran out. */
static bool net_rx_run(struct net_pair *p, enum net_rx_wait *wait, bool *more)
{
    struct net *n = p->net;
    unsigned q = 2 * p->idx;
    struct vq *vq = vp_vq(&n->vp, q);
    size_t need = net_rx_need(net_features(n), n->cfg.mtu);
    bool filled = false;
    int err;

    *wait = RX_WAIT_NONE;
    *more = false;
    if (p->rx_dead || p->tap_dead || !net_pair_active(p))
        return false;
    if (!net_link(n)) {
        net_rx_discard(p);
        *wait = RX_WAIT_TAP;
        return false;
    }
    for (unsigned budget = NET_BUDGET; budget; budget--) {
        bool empty;
        filled |= net_rx_pop(p, vq, p->rx_partial ? p->rx_len : need, &err, &empty);
        if (err)
            return filled;
        if (p->rx_partial) {
            if (net_rx_continue(p, vq)) {
                filled = true;
                continue;
            }
            if (empty) {
                *wait = RX_WAIT_KICK;
                return filled;
            }
            /* Larger than all the buffers we can ever hold at once. */
            p->rx_partial = false;
            net_drop(p, true, NET_DROP_NO_ROOM);
            continue;
        }
        if (!p->rx_nbuf) {
            *wait = RX_WAIT_KICK;
            return filled;
        }
        int r = net_rx_one(p, vq);
        if (r < 0) {
            *wait = RX_WAIT_TAP;
            return filled;
        }
        filled = true;
    }
    *more = true;
    return filled;
}

/* --- control queue ------------------------------------------------------------ */

static int net_set_active(struct net *n, unsigned pairs)
{
    int r = 0;
    for (unsigned i = 0; i < n->run_pairs; i++) {
        int e = tap_set_queue(&n->tap, i, i < pairs);
        if (e < 0 && !r)
            r = e;
        if (e < 0)
            log_warn("%s: TAP %s: %s queue %u: %s", n->name, n->tap.name,
                     i < pairs ? "attaching" : "detaching", i, strerror(-e));
    }
    if (n->vhost)
        vhost_net_set_active(n->vhost, pairs);
    __atomic_store_n(&n->active, pairs, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < n->run_pairs; i++)
        if (n->pair[i].running)
            net_signal_fd(n->pair[i].wake_fd);
    return r;
}

/* Serve the control queue (worker 0).  True when a used entry was filled. */
static bool net_ctrl_run(struct net_pair *p)
{
    struct net *n = p->net;
    struct vq *vq = vp_vq(&n->vp, n->ctrl_q);
    bool filled = false;

    for (;;) {
        vq_disable_notify(vq);
        for (;;) {
            struct net_ctrl c;
            int r = vq_pop(vq, p->elem);
            if (r == 0)
                break;
            if (r < 0) {
                p->ctrl_on = false;
                net_needs_reset(n, n->ctrl_q, vq->err);
                return filled;
            }
            if (net_ctrl_parse(p->elem, net_features(n), n->npairs, &c) < 0) {
                p->ctrl_on = false;
                vq->broken = true;
                net_needs_reset(n, n->ctrl_q, "control command without an ack byte");
                return filled;
            }
            if (c.ack == VIRTIO_NET_OK && c.cls == VIRTIO_NET_CTRL_MQ) {
                if (net_set_active(n, c.pairs) < 0) {
                    c.ack = VIRTIO_NET_ERR;
                    c.why = "the TAP refused to attach or detach a queue";
                } else {
                    log_info("%s: %u queue pair%s in use", n->name, c.pairs,
                             c.pairs == 1 ? "" : "s");
                }
            }
            if (c.ack == VIRTIO_NET_OK) {
                __atomic_fetch_add(&n->ctrl_ok, 1, __ATOMIC_RELAXED);
            } else {
                __atomic_fetch_add(&n->ctrl_err, 1, __ATOMIC_RELAXED);
                log_debug("%s: control command %u.%u refused: %s", n->name, c.cls, c.cmd, c.why);
            }
            *c.ack_ptr = c.ack;
            vq_fill(vq, p->elem->head, 1);
            filled = true;
        }
        if (!vq_enable_notify(vq))
            break;
    }
    return filled;
}

/* --- the worker ---------------------------------------------------------------- */

static bool net_fd_ready(struct pollfd *pf, int fd)
{
    return fd >= 0 && pf->fd == fd && (pf->revents & (POLLIN | POLLERR | POLLHUP));
}

/* With vhost the kernel moves the frames: the worker relays vhost's call
 * eventfds to the queue interrupts (so MSI-X masking and INTx stay ours)
 * and serves the control queue. */
static void net_vhost_loop(struct net_pair *p)
{
    struct net *n = p->net;
    int ctrl_kick = p->ctrl_on ? vp_kick_fd(&n->vp, n->ctrl_q) : -1;

    for (;;) {
        if (p->ctrl_on && net_ctrl_run(p))
            net_publish(n, n->ctrl_q);

        struct pollfd pf[5];
        unsigned np = 0;
        pf[np++] = (struct pollfd){ .fd = p->stop_fd, .events = POLLIN };
        pf[np++] = (struct pollfd){ .fd = p->wake_fd, .events = POLLIN };
        unsigned call0 = np;
        pf[np++] = (struct pollfd){ .fd = p->rx_on ? p->call_fd[0] : -1, .events = POLLIN };
        pf[np++] = (struct pollfd){ .fd = p->tx_on ? p->call_fd[1] : -1, .events = POLLIN };
        if (p->ctrl_on)
            pf[np++] = (struct pollfd){ .fd = ctrl_kick, .events = POLLIN };
        if (poll(pf, np, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_err("%s: pair %u: poll: %s", n->name, p->idx, strerror(errno));
            vp_set_needs_reset(&n->vp, "worker poll failed");
            return;
        }
        /* A stop wins over a pending call: the reset drops it. */
        if (pf[0].revents)
            return;
        if (pf[1].revents)
            net_drain_fd(p->wake_fd);
        for (unsigned r = 0; r < 2; r++) {
            if (pf[call0 + r].revents & POLLIN) {
                net_drain_fd(pf[call0 + r].fd);
                net_queue_irq(n, 2 * p->idx + r);
            }
        }
        if (p->ctrl_on && (pf[np - 1].revents & POLLIN))
            net_drain_fd(ctrl_kick);
    }
}

/* One pass of the worker over its queues, under its guard. */
struct net_pass {
    struct net_pair *p;
    bool rx_fill, tx_fill, ctrl_fill;
    bool blocked, tx_more, rx_more;
    enum net_rx_wait rxw;
};

/* Which queue the pass touches now; the fence keeps guest accesses on
 * their side of the store. */
static void net_set_cur(struct net_pair *p, unsigned q)
{
    __atomic_store_n(&p->cur_q, q, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

static void net_pass_fn(void *arg)
{
    struct net_pass *s = arg;
    struct net_pair *p = s->p;
    struct net *n = p->net;

    if (p->tx_on) {
        net_set_cur(p, 2 * p->idx + 1);
        s->tx_fill = net_tx_run(p, &s->blocked, &s->tx_more);
    }
    if (p->rx_on) {
        net_set_cur(p, 2 * p->idx);
        s->rx_fill = net_rx_run(p, &s->rxw, &s->rx_more);
    }
    if (p->ctrl_on) {
        net_set_cur(p, n->ctrl_q);
        s->ctrl_fill = net_ctrl_run(p);
    }
    net_set_cur(p, 2 * p->idx + 1);
    if (s->tx_fill)
        net_publish(n, 2 * p->idx + 1);
    net_set_cur(p, 2 * p->idx);
    if (s->rx_fill)
        net_publish(n, 2 * p->idx);
    net_set_cur(p, n->ctrl_q);
    if (s->ctrl_fill)
        net_publish(n, n->ctrl_q);
}

struct net_txdrop {
    struct net_pair *p;
    unsigned q;
};

/* Give the dropped frame's chain back (used ring: guest memory). */
static void net_txdrop_fn(void *arg)
{
    struct net_txdrop *t = arg;
    struct net *n = t->p->net;

    vq_fill(vp_vq(&n->vp, t->q), t->p->elem->head, 0);
    net_publish(n, t->q);
}

/* Give every held RX chain back empty (the frame is dropped). */
static void net_rxdrop_fn(void *arg)
{
    struct net_txdrop *t = arg;
    struct net_pair *p = t->p;
    struct vq *vq = vp_vq(&p->net->vp, t->q);

    for (unsigned i = 0; i < p->rx_nbuf; i++)
        p->rx_ulen[i] = 0;
    net_rx_complete(p, vq, p->rx_nbuf);
    net_publish(p->net, t->q);
}

/* The worker's own access to guest memory met a failed page.  A TX frame's
 * header, or an RX frame's header or overflow copy: that frame is dropped
 * and counted, its chains given back (RX: empty), and the queue goes on.  Anything else (a ring, a descriptor table, the RX side,
 * the control queue): report it and stop that queue (NEEDS_RESET), as for
 * a chain that cannot be trusted. */
static void net_pass_poisoned(struct net_pair *p, const struct mce_guard *g)
{
    struct net *n = p->net;
    unsigned q = __atomic_load_n(&p->cur_q, __ATOMIC_RELAXED);

    if (q == 2 * p->idx + 1 && __atomic_load_n(&p->tx_in_frame, __ATOMIC_RELAXED)) {
        struct net_txdrop t = { .p = p, .q = q };
        struct mce_guard g2;

        net_set_flag(&p->tx_in_frame, false);
        net_report_poison(p, q, g->addr, g->lsb, "TX frame");
        net_drop(p, false, NET_DROP_MEMORY_FAILURE);
        if (mce_guard_run(&g2, net_txdrop_fn, &t) == 0)
            return;
        g = &g2;
    } else if (q == 2 * p->idx && __atomic_load_n(&p->rx_in_frame, __ATOMIC_RELAXED)) {
        /* The TAP's readv does not fail on a failed page (tun ignores
         * its copy error); dvmm's own store of the header or of the
         * overflow into the buffer is what meets it. */
        struct net_txdrop t = { .p = p, .q = q };
        struct mce_guard g2;

        net_set_flag(&p->rx_in_frame, false);
        p->rx_partial = false;
        net_report_poison(p, q, g->addr, g->lsb, "RX buffer");
        net_drop(p, true, NET_DROP_MEMORY_FAILURE);
        if (mce_guard_run(&g2, net_rxdrop_fn, &t) == 0)
            return;
        g = &g2;
    }

    net_report_poison(p, q, g->addr, g->lsb, q == n->ctrl_q ? "control queue" :
                      q & 1 ? "TX ring or header" : "RX ring or buffer");
    if (q == n->ctrl_q)
        p->ctrl_on = false;
    else if (q & 1)
        p->tx_dead = true;
    else
        p->rx_dead = true;
    vp_vq(&n->vp, q)->broken = true;
    net_needs_reset(n, q, "memory failure in guest memory the device uses");
}

static void *net_worker(void *arg)
{
    struct net_pair *p = arg;
    struct net *n = p->net;
    int gr = mce_guard_thread_init();

    if (gr < 0)
        log_warn("%s: pair %u: unblocking SIGBUS: %s; a memory failure in guest memory "
                 "this worker touches ends dvmm", n->name, p->idx, strerror(-gr));
    if (n->vhost) {
        net_vhost_loop(p);
        return NULL;
    }
    int rx_kick = vp_kick_fd(&n->vp, 2 * p->idx);
    int tx_kick = vp_kick_fd(&n->vp, 2 * p->idx + 1);
    int ctrl_kick = p->ctrl_on ? vp_kick_fd(&n->vp, n->ctrl_q) : -1;
    int tap = n->tap.fd[p->idx];

    for (;;) {
        struct net_pass s = { .p = p, .rxw = RX_WAIT_NONE };
        struct mce_guard g;

        if (mce_guard_run(&g, net_pass_fn, &s) < 0) {
            net_pass_poisoned(p, &g);
            continue;
        }
        bool blocked = s.blocked, tx_more = s.tx_more, rx_more = s.rx_more;
        enum net_rx_wait rxw = s.rxw;

        struct pollfd pf[5];
        unsigned np = 0;
        short tap_ev = 0;
        pf[np++] = (struct pollfd){ .fd = p->stop_fd, .events = POLLIN };
        pf[np++] = (struct pollfd){ .fd = p->wake_fd, .events = POLLIN };
        if (p->tx_on && !p->tx_dead && !blocked)
            pf[np++] = (struct pollfd){ .fd = tx_kick, .events = POLLIN };
        if (p->rx_on && rxw == RX_WAIT_KICK)
            pf[np++] = (struct pollfd){ .fd = rx_kick, .events = POLLIN };
        if (p->ctrl_on)
            pf[np++] = (struct pollfd){ .fd = ctrl_kick, .events = POLLIN };
        if (!p->tap_dead) {
            if (rxw == RX_WAIT_TAP)
                tap_ev |= POLLIN;
            if (blocked)
                tap_ev |= POLLOUT;
        }
        unsigned tap_slot = np;
        if (tap_ev)
            pf[np++] = (struct pollfd){ .fd = tap, .events = tap_ev };

        /* With budget left over, only look: the stop must not starve. */
        int r = poll(pf, np, tx_more || rx_more ? 0 : -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            log_err("%s: pair %u: poll: %s", n->name, p->idx, strerror(errno));
            vp_set_needs_reset(&n->vp, "worker poll failed");
            break;
        }
        if (pf[0].revents)
            break;
        if (pf[1].revents)
            net_drain_fd(p->wake_fd);
        for (unsigned i = 2; i < np; i++) {
            if (i == tap_slot)
                continue;
            if (net_fd_ready(&pf[i], pf[i].fd))
                net_drain_fd(pf[i].fd);
        }
        if (tap_ev && (pf[tap_slot].revents & (POLLERR | POLLHUP | POLLNVAL)) &&
            net_pair_active(p)) {
            /* The interface was deleted under us: stop polling it. */
            log_warn("%s: pair %u: TAP %s reports an error (deleted?); its queue stops",
                     n->name, p->idx, n->tap.name);
            p->tap_dead = true;
        }
    }
    return NULL;
}

/* --- start / stop ---------------------------------------------------------------- */

static void net_stop_pair(struct net_pair *p)
{
    if (!p->running)
        return;
    net_signal_fd(p->stop_fd);
    pthread_join(p->thread, NULL);
    p->running = false;
    net_drain_fd(p->stop_fd);
    net_drain_fd(p->wake_fd);
}

static void net_stop(void *opaque)
{
    struct net *n = opaque;

    /* vhost first: after this the kernel writes no ring and signals no
     * call fd, then the relays stop. */
    if (n->vhost)
        vhost_net_stop(n->vhost);
    for (unsigned i = 0; i < n->npairs; i++)
        net_stop_pair(&n->pair[i]);
    for (unsigned i = 0; i < n->npairs; i++) {
        struct net_pair *p = &n->pair[i];
        /* What the old rings held is the driver's again. */
        p->rx_nbuf = p->rx_niov = 0;
        p->rx_cap = 0;
        p->rx_partial = p->tx_pending = false;
        p->rx_on = p->tx_on = p->ctrl_on = false;
    }
}

static int net_start(void *opaque)
{
    struct net *n = opaque;
    uint64_t f = net_features(n);
    bool mq = f & F(VIRTIO_NET_F_MQ);
    int r;

    n->run_pairs = mq ? n->npairs : 1;
    n->ctrl_q = NET_NO_QUEUE;
    if (f & F(VIRTIO_NET_F_CTRL_VQ)) {
        unsigned cq = mq ? 2 * n->npairs : 2;
        if (vp_queue_enabled(&n->vp, cq))
            n->ctrl_q = (uint16_t)cq;
    }
    r = tap_set_offload(&n->tap, net_tun_offloads(f));
    if (r < 0)
        log_warn("%s: TUNSETOFFLOAD 0x%x: %s; offloaded frames will be dropped",
                 n->name, net_tun_offloads(f), strerror(-r));
    /* One pair until the driver asks for more (5.1.6.5.5). */
    net_set_active(n, 1);

    for (unsigned i = 0; i < n->run_pairs; i++) {
        struct net_pair *p = &n->pair[i];
        p->rx_on = vp_queue_enabled(&n->vp, 2 * i);
        p->tx_on = vp_queue_enabled(&n->vp, 2 * i + 1);
        p->ctrl_on = i == 0 && n->ctrl_q != NET_NO_QUEUE;
        p->rx_dead = p->tx_dead = p->tap_dead = false;
        p->rx_nbuf = p->rx_niov = 0;
        p->rx_cap = 0;
        p->rx_partial = p->tx_pending = false;
    }
    if (n->vhost) {
        r = vhost_net_start(n->vhost, f);
        if (r < 0) {
            net_stop(n);
            return r;
        }
    }
    for (unsigned i = 0; i < n->run_pairs; i++) {
        struct net_pair *p = &n->pair[i];
        if (!p->rx_on && !p->tx_on && !p->ctrl_on)
            continue;
        net_drain_fd(p->stop_fd);
        net_drain_fd(p->wake_fd);
        /* SIGINT/SIGTERM belong to main's signalfd; the worker unblocks
         * SIGBUS itself (net_worker) for its memory-failure guard. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        char tname[32];
        snprintf(tname, sizeof(tname), "net%u-p%u", n->cfg.index, i);
        r = -sandbox_thread_create(&p->thread, SBX_NET, tname, net_worker, p);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r) {
            log_err("%s: pair %u: pthread_create: %s", n->name, i, strerror(r));
            net_stop(n);
            return -r;
        }
        p->running = true;
    }
    return 0;
}

static bool net_features_ok(void *opaque, uint64_t f)
{
    (void)opaque;
    if ((f & (F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6))) &&
        !(f & F(VIRTIO_NET_F_GUEST_CSUM)))
        return false;
    if ((f & (F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6))) &&
        !(f & F(VIRTIO_NET_F_CSUM)))
        return false;
    if ((f & F(VIRTIO_NET_F_MQ)) && !(f & F(VIRTIO_NET_F_CTRL_VQ)))
        return false;
    return true;
}

static void net_cfg_read(void *opaque, uint64_t off, uint8_t *data, unsigned len)
{
    struct net *n = opaque;
    memcpy(data, (uint8_t *)&n->vcfg + off, len);
}

static const struct vp_dev_ops net_vp_ops = {
    .cfg_read = net_cfg_read,
    .features_ok = net_features_ok,
    .start = net_start,
    .stop = net_stop,
};

/* --- link, stats ------------------------------------------------------------------- */

void net_set_link(struct net *n, bool up)
{
    pthread_mutex_lock(&n->vp.lock);
    n->vcfg.status = up ? VIRTIO_NET_S_LINK_UP : 0;
    __atomic_store_n(&n->link_up, up, __ATOMIC_RELEASE);
    bool tell = (__atomic_load_n(&n->vp.status, __ATOMIC_ACQUIRE) &
                 VIRTIO_CONFIG_S_DRIVER_OK) && vp_has_feature(&n->vp, VIRTIO_NET_F_STATUS);
    pthread_mutex_unlock(&n->vp.lock);
    tap_set_carrier(&n->tap, up);
    if (n->vhost)
        vhost_net_set_link(n->vhost, up);
    for (unsigned i = 0; i < n->npairs; i++)
        if (n->pair[i].running)
            net_signal_fd(n->pair[i].wake_fd);
    if (tell)
        vp_notify_config(&n->vp);
    log_info("%s: link %s", n->name, up ? "up" : "down");
}

void net_get_stats(struct net *n, struct net_stats *s)
{
    memset(s, 0, sizeof(*s));
    s->link_up = net_link(n);
    s->vhost = n->vhost != NULL;
    s->pairs = n->npairs;
    s->active = __atomic_load_n(&n->active, __ATOMIC_ACQUIRE);
    s->irq_direct = n->vhost && vhost_net_direct_irq(n->vhost, 0, 0);
    for (unsigned i = 0; i < n->npairs; i++) {
        const struct net_pair *p = &n->pair[i];
        const uint64_t *src[2] = { &p->rx.packets, &p->tx.packets };
        struct net_qstats *dst[2] = { &s->q[i].rx, &s->q[i].tx };
        for (unsigned d = 0; d < 2; d++) {
            dst[d]->packets = __atomic_load_n(src[d], __ATOMIC_RELAXED);
            dst[d]->bytes = __atomic_load_n(src[d] + 1, __ATOMIC_RELAXED);
            dst[d]->drops = __atomic_load_n(src[d] + 2, __ATOMIC_RELAXED);
            dst[d]->irqs = __atomic_load_n(src[d] + 3, __ATOMIC_RELAXED);
        }
    }
    for (unsigned d = 0; d < NET_DROP_NR; d++)
        s->drops[d] = __atomic_load_n(&n->drops[d], __ATOMIC_RELAXED);
    s->ctrl_ok = __atomic_load_n(&n->ctrl_ok, __ATOMIC_RELAXED);
    s->ctrl_err = __atomic_load_n(&n->ctrl_err, __ATOMIC_RELAXED);
}

/* --- setup ---------------------------------------------------------------------------- */

static void net_free_pairs(struct net *n)
{
    for (unsigned i = 0; i < CFG_NET_MAX_PAIRS; i++) {
        struct net_pair *p = &n->pair[i];
        if (p->stop_fd >= 0)
            close(p->stop_fd);
        if (p->wake_fd >= 0)
            close(p->wake_fd);
        p->stop_fd = p->wake_fd = -1;
        free(p->rx_iov);
        free(p->overflow);
        free(p->elem);
        free(p->txf);
        p->rx_iov = NULL;
        p->overflow = NULL;
        p->elem = NULL;
        p->txf = NULL;
    }
}

int net_init(struct net *n, const struct cfg_net *cfg, const int *fds, struct pci *pci,
             struct vmif *vmif, const struct guest_mem *gm, char *err, size_t errlen)
{
    unsigned idx = cfg->index;
    char what[32];
    int r;

    memset(n, 0, sizeof(*n));
    for (unsigned i = 0; i < CFG_NET_MAX_PAIRS; i++) {
        struct net_pair *p = &n->pair[i];
        p->net = n;
        p->idx = i;
        p->stop_fd = p->wake_fd = -1;
        p->call_fd[0] = p->call_fd[1] = -1;
    }
    n->cfg = *cfg;
    n->gm = gm;
    snprintf(n->name, sizeof(n->name), "virtio-net.%u", idx);
    n->npairs = cfg->queues ? cfg->queues : 1;
    uint16_t qsize = cfg->queue_size ? (uint16_t)cfg->queue_size : VQ_MAX_SIZE;
    if (!n->cfg.mtu)
        n->cfg.mtu = NET_DEFAULT_MTU;
    if (n->npairs > CFG_NET_MAX_PAIRS)
        return log_fail(err, errlen, -EINVAL, "net.%u.queues: %u is more than %u", idx,
                        n->npairs, CFG_NET_MAX_PAIRS);

    snprintf(what, sizeof(what), "net.%u.tap", idx);
    if (fds)
        tap_adopt(&n->tap, fds, n->npairs);
    else if ((r = tap_open(&n->tap, cfg->tap, n->npairs, n->cfg.mtu, what, err, errlen)) < 0)
        return r;

    n->offered = F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_GUEST_CSUM) |
                 F(VIRTIO_NET_F_MTU) | F(VIRTIO_NET_F_MAC) |
                 F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6) |
                 F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6) |
                 F(VIRTIO_NET_F_MRG_RXBUF) | F(VIRTIO_NET_F_STATUS) |
                 F(VIRTIO_NET_F_CTRL_VQ) | F(VIRTIO_NET_F_MQ) |
                 F(VIRTIO_RING_F_EVENT_IDX) | F(VIRTIO_RING_F_INDIRECT_DESC);

    if (cfg->vhost != CFG_VHOST_NO && !fds) {
        char verr[256];
        r = vhost_net_open(&n->vhost, n, verr, sizeof(verr));
        if (r < 0) {
            if (cfg->vhost == CFG_VHOST_YES) {
                tap_close(&n->tap);
                return log_fail(err, errlen, r,
                                "net.%u.vhost = yes: %s (or set vhost = auto or no)", idx, verr);
            }
            log_info("%s: vhost = auto: %s; using the user-space datapath", n->name, verr);
        } else {
            n->offered = vhost_net_features(n->vhost, n->offered);
        }
    }

    memcpy(n->vcfg.mac, cfg->mac, 6);
    n->vcfg.status = VIRTIO_NET_S_LINK_UP;
    n->link_up = true;
    n->vcfg.max_virtqueue_pairs = (uint16_t)n->npairs;
    n->vcfg.mtu = (uint16_t)n->cfg.mtu;

    for (unsigned i = 0; i < n->npairs; i++) {
        struct net_pair *p = &n->pair[i];
        p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        p->rx_iov = calloc(NET_RX_IOV, sizeof(*p->rx_iov));
        p->overflow = malloc(NET_OVERFLOW);
        p->elem = malloc(sizeof(*p->elem));
        p->txf = malloc(sizeof(*p->txf));
        if (p->stop_fd < 0 || p->wake_fd < 0 || !p->rx_iov || !p->overflow || !p->elem ||
            !p->txf) {
            r = p->stop_fd < 0 || p->wake_fd < 0 ? -errno : -ENOMEM;
            log_fail(err, errlen, r, "net.%u: pair %u setup: %s", idx, i, strerror(-r));
            goto fail;
        }
    }

    struct vp_params vpp = {
        .name = n->name, .virtio_id = VIRTIO_ID_NET,
        .class_code = 0x020000, .features = n->offered, .nqueues = 2 * n->npairs + 1,
        .queue_size = qsize,
        .cfg_size = offsetof(struct virtio_net_config, mtu) + sizeof(n->vcfg.mtu),
        .ops = &net_vp_ops, .opaque = n,
    };
    r = vp_init(&n->vp, &vpp, pci, vmif, gm);
    if (r < 0) {
        log_fail(err, errlen, r, "net.%u: cannot add the PCI device: %s", idx, strerror(-r));
        goto fail;
    }
    log_info("%s: TAP %s (%s%s), mac %02x:%02x:%02x:%02x:%02x:%02x, %u queue pair%s of %u, "
             "mtu %u, %s, slot %02x.0",
             n->name, n->tap.name, fds ? "adopted fds" : n->tap.created ? "created" : "existing",
             n->tap.multi_queue ? ", multi-queue" : "", cfg->mac[0], cfg->mac[1], cfg->mac[2],
             cfg->mac[3], cfg->mac[4], cfg->mac[5], n->npairs, n->npairs == 1 ? "" : "s",
             qsize, n->cfg.mtu, n->vhost ? "vhost-net" : "user-space datapath", r);
    return 0;

fail:
    net_free_pairs(n);
    if (n->vhost)
        vhost_net_close(n->vhost);
    n->vhost = NULL;
    tap_close(&n->tap);
    return r;
}

void net_reset(struct net *n)
{
    vp_device_reset(&n->vp);
}

void net_destroy(struct net *n)
{
    if (!n->npairs)
        return;
    vp_destroy(&n->vp);
    if (n->vhost)
        vhost_net_close(n->vhost);
    n->vhost = NULL;
    net_free_pairs(n);
    tap_close(&n->tap);
    n->npairs = 0;
}
