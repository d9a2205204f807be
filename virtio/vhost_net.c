#include "virtio/vhost_net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "virtio/net.h"
#include "vmm/log.h"

#define F(bit) (1ULL << (bit))
/* Ring-level features: what vhost must support for us to offer them. */
#define VHOST_RING_FEATURES (F(VIRTIO_RING_F_EVENT_IDX) | F(VIRTIO_RING_F_INDIRECT_DESC) | \
                             F(VIRTIO_NET_F_MRG_RXBUF) | F(VIRTIO_F_VERSION_1))

struct vhost_net {
    struct net *net;
    pthread_mutex_t lock;
    unsigned npairs;
    int fd[CFG_NET_MAX_PAIRS];
    uint64_t features;           /* VHOST_GET_FEATURES */
    bool started;
    bool ring_on[CFG_NET_MAX_PAIRS][2];  /* programmed at start */
    int direct[CFG_NET_MAX_PAIRS][2];    /* MSI-X vector vhost signals itself, or -1 */
    bool backend[CFG_NET_MAX_PAIRS];     /* SET_BACKEND = TAP fd now */
    unsigned active;
    bool link_up;
};

int vhost_net_open(struct vhost_net **out, struct net *n, char *err, size_t errlen)
{
    struct vhost_net *v = calloc(1, sizeof(*v));
    int r = 0;

    *out = NULL;
    if (!v)
        return log_fail(err, errlen, -ENOMEM, "%s", strerror(ENOMEM));
    pthread_mutex_init(&v->lock, NULL);
    v->net = n;
    v->npairs = n->npairs;
    v->active = 1;
    v->link_up = true;
    for (unsigned i = 0; i < CFG_NET_MAX_PAIRS; i++) {
        v->fd[i] = -1;
        v->direct[i][0] = v->direct[i][1] = -1;
    }
    for (unsigned i = 0; i < v->npairs; i++) {
        struct net_pair *p = &n->pair[i];
        uint64_t f;

        v->fd[i] = open(VHOST_NET_DEV, O_RDWR | O_CLOEXEC);
        if (v->fd[i] < 0) {
            r = -errno;
            log_fail(err, errlen, r, "cannot open %s: %s%s", VHOST_NET_DEV, strerror(-r),
                     r == -ENOENT ? " (modprobe vhost_net)" : "");
            goto fail;
        }
        if (ioctl(v->fd[i], VHOST_SET_OWNER) < 0 ||
            ioctl(v->fd[i], VHOST_GET_FEATURES, &f) < 0) {
            r = -errno;
            log_fail(err, errlen, r, "%s: VHOST_SET_OWNER/GET_FEATURES: %s", VHOST_NET_DEV,
                     strerror(-r));
            goto fail;
        }
        v->features = i ? v->features & f : f;
        for (unsigned k = 0; k < 2; k++) {
            p->call_fd[k] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (p->call_fd[k] < 0) {
                r = -errno;
                log_fail(err, errlen, r, "eventfd: %s", strerror(-r));
                goto fail;
            }
        }
    }
    if (!(v->features & F(VIRTIO_F_VERSION_1))) {
        r = log_fail(err, errlen, -EOPNOTSUPP,
                     "%s lacks VIRTIO_F_VERSION_1 (features 0x%llx; kernel too old)",
                     VHOST_NET_DEV, (unsigned long long)v->features);
        goto fail;
    }
    *out = v;
    return 0;

fail:
    vhost_net_close(v);
    return r;
}

void vhost_net_close(struct vhost_net *v)
{
    if (!v)
        return;
    for (unsigned i = 0; i < CFG_NET_MAX_PAIRS; i++) {
        if (v->fd[i] >= 0)
            close(v->fd[i]);
        if (i < v->npairs) {
            struct net_pair *p = &v->net->pair[i];
            for (unsigned k = 0; k < 2; k++) {
                if (p->call_fd[k] >= 0)
                    close(p->call_fd[k]);
                p->call_fd[k] = -1;
            }
        }
    }
    pthread_mutex_destroy(&v->lock);
    free(v);
}

uint64_t vhost_net_features(const struct vhost_net *v, uint64_t offered)
{
    return offered & ~(VHOST_RING_FEATURES & ~v->features);
}

static int vhost_ioctl(struct vhost_net *v, unsigned pair, unsigned long req, void *arg,
                       const char *what)
{
    if (ioctl(v->fd[pair], req, arg) == 0)
        return 0;
    int e = errno;
    log_err("%s: vhost pair %u: %s: %s", v->net->name, pair, what, strerror(e));
    return -e;
}

/* Backend of pair i on or off, from active, link and started.  Under lock. */
static void vhost_apply(struct vhost_net *v, unsigned i)
{
    bool on = v->started && v->link_up && i < v->active &&
              (v->ring_on[i][0] || v->ring_on[i][1]);
    if (on == v->backend[i])
        return;
    for (unsigned k = 0; k < 2; k++) {
        if (!v->ring_on[i][k])
            continue;
        struct vhost_vring_file b = { .index = k, .fd = on ? v->net->tap.fd[i] : -1 };
        vhost_ioctl(v, i, VHOST_NET_SET_BACKEND, &b, on ? "SET_BACKEND" : "SET_BACKEND -1");
    }
    v->backend[i] = on;
}

static int vhost_mem_table(struct vhost_net *v, unsigned i)
{
    const struct gm_layout *l = &v->net->gm->layout;
    struct vhost_memory *m = calloc(1, sizeof(*m) + l->nr * sizeof(m->regions[0]));
    int r;

    if (!m)
        return -ENOMEM;
    m->nregions = l->nr;
    for (unsigned k = 0; k < l->nr; k++) {
        m->regions[k].guest_phys_addr = l->r[k].gpa;
        m->regions[k].memory_size = l->r[k].size;
        m->regions[k].userspace_addr = (uint64_t)(uintptr_t)l->r[k].hva;
    }
    r = vhost_ioctl(v, i, VHOST_SET_MEM_TABLE, m, "SET_MEM_TABLE");
    free(m);
    return r;
}

static int vhost_ring(struct vhost_net *v, unsigned i, unsigned k)
{
    struct net *n = v->net;
    unsigned q = 2 * i + k;
    struct vq *vq = vp_vq(&n->vp, q);
    struct vhost_vring_state num = { .index = k, .num = vq->size };
    struct vhost_vring_state base = { .index = k, .num = 0 };
    struct vhost_vring_addr addr = {
        .index = k,
        .desc_user_addr = (uint64_t)(uintptr_t)vq->desc,
        .avail_user_addr = (uint64_t)(uintptr_t)vq->avail,
        .used_user_addr = (uint64_t)(uintptr_t)vq->used,
    };
    struct vhost_vring_file kick = { .index = k, .fd = vp_kick_fd(&n->vp, q) };
    struct vhost_vring_file call = { .index = k, .fd = n->pair[i].call_fd[k] };
    unsigned vec = n->vp.q[q].msix_vector;
    int r;

    /* With MSI-X on, vhost writes the vector's irqfd eventfd itself (no
     * hop through the worker); msix_set_direct keeps masking exact.
     * Without it (INTx, or no vector) the worker relays. */
    if (msix_enabled(&n->vp.msix) && vec < n->vp.msix.nvec) {
        call.fd = msix_vector_fd(&n->vp.msix, vec);
        msix_set_direct(&n->vp.msix, vec, true);
        v->direct[i][k] = (int)vec;
    }

    if ((r = vhost_ioctl(v, i, VHOST_SET_VRING_NUM, &num, "SET_VRING_NUM")) ||
        (r = vhost_ioctl(v, i, VHOST_SET_VRING_BASE, &base, "SET_VRING_BASE")) ||
        (r = vhost_ioctl(v, i, VHOST_SET_VRING_ADDR, &addr, "SET_VRING_ADDR")) ||
        (r = vhost_ioctl(v, i, VHOST_SET_VRING_KICK, &kick, "SET_VRING_KICK")) ||
        (r = vhost_ioctl(v, i, VHOST_SET_VRING_CALL, &call, "SET_VRING_CALL")))
        return r;
    v->ring_on[i][k] = true;
    return 0;
}

static void vhost_unbind(struct vhost_net *v, unsigned i)
{
    for (unsigned k = 0; k < 2; k++) {
        if (!v->ring_on[i][k])
            continue;
        struct vhost_vring_file f = { .index = k, .fd = VHOST_FILE_UNBIND };
        ioctl(v->fd[i], VHOST_SET_VRING_KICK, &f);
        ioctl(v->fd[i], VHOST_SET_VRING_CALL, &f);
        v->ring_on[i][k] = false;
    }
    for (unsigned k = 0; k < 2; k++) {
        if (v->direct[i][k] >= 0)
            msix_set_direct(&v->net->vp.msix, (unsigned)v->direct[i][k], false);
        v->direct[i][k] = -1;
    }
}

int vhost_net_start(struct vhost_net *v, uint64_t features)
{
    struct net *n = v->net;
    uint64_t f = features & v->features;
    int r = 0;

    pthread_mutex_lock(&v->lock);
    for (unsigned i = 0; i < n->run_pairs && !r; i++) {
        struct net_pair *p = &n->pair[i];
        if (!p->rx_on && !p->tx_on)
            continue;
        if ((r = vhost_ioctl(v, i, VHOST_SET_FEATURES, &f, "SET_FEATURES")) ||
            (r = vhost_mem_table(v, i)))
            break;
        if (p->rx_on && (r = vhost_ring(v, i, 0)))
            break;
        if (p->tx_on && (r = vhost_ring(v, i, 1)))
            break;
    }
    v->started = r == 0;
    for (unsigned i = 0; i < v->npairs; i++) {
        if (r)
            vhost_unbind(v, i);
        else
            vhost_apply(v, i);
    }
    pthread_mutex_unlock(&v->lock);
    return r;
}

void vhost_net_stop(struct vhost_net *v)
{
    pthread_mutex_lock(&v->lock);
    v->started = false;
    for (unsigned i = 0; i < v->npairs; i++) {
        /* SET_BACKEND -1 flushes: the kernel is done with the rings. */
        vhost_apply(v, i);
        vhost_unbind(v, i);
    }
    pthread_mutex_unlock(&v->lock);
}

bool vhost_net_direct_irq(struct vhost_net *v, unsigned pair, unsigned ring)
{
    pthread_mutex_lock(&v->lock);
    bool d = pair < CFG_NET_MAX_PAIRS && ring < 2 && v->direct[pair][ring] >= 0;
    pthread_mutex_unlock(&v->lock);
    return d;
}

void vhost_net_set_active(struct vhost_net *v, unsigned pairs)
{
    pthread_mutex_lock(&v->lock);
    v->active = pairs;
    for (unsigned i = 0; i < v->npairs; i++)
        vhost_apply(v, i);
    pthread_mutex_unlock(&v->lock);
}

void vhost_net_set_link(struct vhost_net *v, bool up)
{
    pthread_mutex_lock(&v->lock);
    v->link_up = up;
    for (unsigned i = 0; i < v->npairs; i++)
        vhost_apply(v, i);
    pthread_mutex_unlock(&v->lock);
}
