#include "virtio/virtio_pci.h"

#include <errno.h>
#include <linux/pci_regs.h>
#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>
#include <stddef.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/log.h"

#define VP_COMMON_LEN sizeof(struct virtio_pci_common_cfg)
/* ISR bit 0: a used buffer notification (bit 1 is VIRTIO_PCI_ISR_CONFIG). */
#define VP_ISR_QUEUE 0x1

static uint8_t vp_status(struct virtio_pci *vp)
{
    return __atomic_load_n(&vp->status, __ATOMIC_ACQUIRE);
}

void vp_notify_queue(struct virtio_pci *vp, unsigned q)
{
    if (msix_enabled(&vp->msix)) {
        msix_notify(&vp->msix, vp->q[q].msix_vector);
        return;
    }
    __atomic_or_fetch(&vp->isr, VP_ISR_QUEUE, __ATOMIC_SEQ_CST);
    pci_set_intx(&vp->pdev, 1);
}

void vp_notify_config(struct virtio_pci *vp)
{
    if (msix_enabled(&vp->msix)) {
        msix_notify(&vp->msix, vp->msix_config);
        return;
    }
    __atomic_or_fetch(&vp->isr, VIRTIO_PCI_ISR_CONFIG, __ATOMIC_SEQ_CST);
    pci_set_intx(&vp->pdev, 1);
}

void vp_set_needs_reset(struct virtio_pci *vp, const char *why)
{
    uint8_t old = __atomic_fetch_or(&vp->status, VIRTIO_CONFIG_S_NEEDS_RESET,
                                    __ATOMIC_SEQ_CST);
    if (old & VIRTIO_CONFIG_S_NEEDS_RESET)
        return;
    log_err("%s: device needs reset: %s", vp->p.name, why);
    if (old & VIRTIO_CONFIG_S_DRIVER_OK)
        vp_notify_config(vp);
}

/* --- ioeventfds follow the BAR ------------------------------------------ */

static void vp_ioeventfds(struct virtio_pci *vp, bool assign)
{
    struct vmif *vi = vp->vmif;

    for (unsigned i = 0; i < vp->p.nqueues; i++) {
        struct vp_queue *q = &vp->q[i];
        uint64_t addr = vp->bar_addr + VP_NOTIFY_OFF + i * VP_NOTIFY_MULT;
        if (assign == q->ioeventfd)
            continue;
        if (!vi || !vi->ioeventfd)
            continue;
        /* Linux's vp_notify writes the 16-bit queue index. */
        int r = vi->ioeventfd(vi->opaque, addr, 2, true, q->kick_fd, assign);
        if (r < 0) {
            if (!vp->warned_ioeventfd)
                log_warn("%s: queue %u: ioeventfd at 0x%llx: %s; kicks take MMIO exits",
                         vp->p.name, i, (unsigned long long)addr, strerror(-r));
            vp->warned_ioeventfd = true;
            continue;
        }
        q->ioeventfd = assign;
    }
}

static void vp_bar_moved(void *opaque, unsigned bar, uint64_t addr,
                         bool mapped)
{
    struct virtio_pci *vp = opaque;
    if (bar != VP_BAR)
        return;
    if (vp->bar_mapped)
        vp_ioeventfds(vp, false);
    vp->bar_mapped = mapped;
    vp->bar_addr = addr;
    if (mapped)
        vp_ioeventfds(vp, true);
}

/* --- status machine ------------------------------------------------------ */

static void vp_drain_kicks(struct virtio_pci *vp)
{
    uint64_t v;
    for (unsigned i = 0; i < vp->p.nqueues; i++)
        while (read(vp->q[i].kick_fd, &v, sizeof(v)) == sizeof(v))
            ;
}

/* Status 0.  Under vp->lock. */
static void vp_reset(struct virtio_pci *vp)
{
    if (vp->started && vp->p.ops->stop)
        vp->p.ops->stop(vp->p.opaque);
    vp->started = false;
    vp->dfselect = vp->gfselect = 0;
    vp->driver_features = vp->features = 0;
    vp->queue_select = 0;
    vp->msix_config = VIRTIO_MSI_NO_VECTOR;
    for (unsigned i = 0; i < vp->p.nqueues; i++) {
        struct vp_queue *q = &vp->q[i];
        q->size = vp->p.queue_size;
        q->msix_vector = VIRTIO_MSI_NO_VECTOR;
        q->enabled = false;
        q->desc = q->avail = q->used = 0;
        memset(&q->vq, 0, sizeof(q->vq));
    }
    vp_drain_kicks(vp);
    __atomic_store_n(&vp->isr, 0, __ATOMIC_SEQ_CST);
    pci_set_intx(&vp->pdev, 0);
    __atomic_store_n(&vp->status, 0, __ATOMIC_RELEASE);
}

static bool vp_features_ok(struct virtio_pci *vp)
{
    uint64_t f = vp->driver_features;
    if (f & ~vp->p.features) {
        log_warn("%s: driver accepted features 0x%llx the device does not offer",
                 vp->p.name, (unsigned long long)(f & ~vp->p.features));
        return false;
    }
    if (!(f & (1ULL << VIRTIO_F_VERSION_1))) {
        log_warn("%s: driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported)",
                 vp->p.name);
        return false;
    }
    if (vp->p.ops->features_ok && !vp->p.ops->features_ok(vp->p.opaque, f)) {
        log_warn("%s: driver features 0x%llx refused (a feature without one it depends on)",
                 vp->p.name, (unsigned long long)f);
        return false;
    }
    vp->features = f;
    return true;
}

static int vp_start(struct virtio_pci *vp)
{
    bool ev = vp_has_feature(vp, VIRTIO_RING_F_EVENT_IDX);
    for (unsigned i = 0; i < vp->p.nqueues; i++) {
        struct vp_queue *q = &vp->q[i];
        if (!q->enabled)
            continue;
        int r = vq_init(&q->vq, vp->gm, q->size, q->desc, q->avail, q->used, ev);
        if (r < 0) {
            log_err("%s: queue %u: bad ring (size %u desc 0x%llx avail 0x%llx used 0x%llx): %s",
                    vp->p.name, i, q->size, (unsigned long long)q->desc,
                    (unsigned long long)q->avail, (unsigned long long)q->used,
                    strerror(-r));
            return r;
        }
    }
    int r = vp->p.ops->start ? vp->p.ops->start(vp->p.opaque) : 0;
    if (r < 0)
        return r;
    vp->started = true;
    return 0;
}

static void vp_write_status(struct virtio_pci *vp, uint8_t val)
{
    uint8_t old = vp_status(vp);

    if (val == 0) {
        vp_reset(vp);
        return;
    }
    if ((old & ~VIRTIO_CONFIG_S_NEEDS_RESET) & ~val) {
        log_warn("%s: driver cleared status bits (0x%x -> 0x%x) without reset; ignored",
                 vp->p.name, old, val);
        return;
    }
    val &= ~VIRTIO_CONFIG_S_NEEDS_RESET;
    if ((val & VIRTIO_CONFIG_S_FEATURES_OK) &&
        !(old & VIRTIO_CONFIG_S_FEATURES_OK) && !vp_features_ok(vp))
        val &= ~VIRTIO_CONFIG_S_FEATURES_OK;
    bool go = (val & VIRTIO_CONFIG_S_DRIVER_OK) &&
              !(old & VIRTIO_CONFIG_S_DRIVER_OK);
    if (go && !(val & VIRTIO_CONFIG_S_FEATURES_OK)) {
        log_warn("%s: DRIVER_OK without FEATURES_OK", vp->p.name);
        val &= ~VIRTIO_CONFIG_S_DRIVER_OK;
        go = false;
    }
    __atomic_or_fetch(&vp->status, val, __ATOMIC_SEQ_CST);
    if (go && vp_start(vp) < 0)
        vp_set_needs_reset(vp, "queue setup failed at DRIVER_OK");
}

/* --- common config ------------------------------------------------------- */

static void vp_common_snapshot(struct virtio_pci *vp,
                               struct virtio_pci_common_cfg *c)
{
    unsigned qs = vp->queue_select;
    memset(c, 0, sizeof(*c));
    c->device_feature_select = vp->dfselect;
    c->device_feature = vp->dfselect < 2 ?
        (uint32_t)(vp->p.features >> (32 * vp->dfselect)) : 0;
    c->guest_feature_select = vp->gfselect;
    c->guest_feature = vp->gfselect < 2 ?
        (uint32_t)(vp->driver_features >> (32 * vp->gfselect)) : 0;
    c->msix_config = vp->msix_config;
    c->num_queues = vp->p.nqueues;
    c->device_status = vp_status(vp);
    c->config_generation = vp->config_generation;
    c->queue_select = qs;
    if (qs < vp->p.nqueues) {
        const struct vp_queue *q = &vp->q[qs];
        c->queue_size = q->size;
        c->queue_msix_vector = q->msix_vector;
        c->queue_enable = q->enabled;
        c->queue_notify_off = qs;
        c->queue_desc_lo = q->desc;
        c->queue_desc_hi = q->desc >> 32;
        c->queue_avail_lo = q->avail;
        c->queue_avail_hi = q->avail >> 32;
        c->queue_used_lo = q->used;
        c->queue_used_hi = q->used >> 32;
    }
}

static void vp_set_half(uint64_t *v, bool hi, uint32_t val)
{
    if (hi)
        *v = (*v & 0xffffffffULL) | (uint64_t)val << 32;
    else
        *v = (*v & ~0xffffffffULL) | val;
}

static void vp_common_write(struct virtio_pci *vp, unsigned off, uint32_t val,
                            unsigned len)
{
    uint8_t st = vp_status(vp);
    struct vp_queue *q = vp->queue_select < vp->p.nqueues ?
                         &vp->q[vp->queue_select] : NULL;
    /* Queue fields are frozen once the device runs. */
    bool qlocked = !q || (st & VIRTIO_CONFIG_S_DRIVER_OK) || q->enabled;

#define F(field) offsetof(struct virtio_pci_common_cfg, field)
#define W(field) (off == F(field) && len == sizeof(((struct virtio_pci_common_cfg *)0)->field))
    if (W(device_feature_select)) {
        vp->dfselect = val;
    } else if (W(guest_feature_select)) {
        vp->gfselect = val;
    } else if (W(guest_feature)) {
        if (st & VIRTIO_CONFIG_S_FEATURES_OK)
            log_warn("%s: feature write after FEATURES_OK ignored", vp->p.name);
        else if (vp->gfselect < 2)
            vp_set_half(&vp->driver_features, vp->gfselect, val);
    } else if (W(msix_config)) {
        vp->msix_config = val < vp->msix.nvec ? val : VIRTIO_MSI_NO_VECTOR;
    } else if (W(device_status)) {
        vp_write_status(vp, val);
    } else if (W(queue_select)) {
        vp->queue_select = val;
    } else if (W(queue_msix_vector)) {
        if (q)
            q->msix_vector = val < vp->msix.nvec ? val : VIRTIO_MSI_NO_VECTOR;
    } else if (qlocked) {
        log_debug("%s: write to queue config at 0x%x ignored (queue %u running or absent)",
                  vp->p.name, off, vp->queue_select);
    } else if (W(queue_size)) {
        if (!val || val > vp->p.queue_size || (val & (val - 1)))
            log_warn("%s: queue %u: size %u refused (power of two <= %u)",
                     vp->p.name, vp->queue_select, val, vp->p.queue_size);
        else
            q->size = val;
    } else if (W(queue_enable)) {
        if (val == 1)
            q->enabled = true;
    } else if (W(queue_desc_lo) || W(queue_desc_hi)) {
        vp_set_half(&q->desc, off == F(queue_desc_hi), val);
    } else if (W(queue_avail_lo) || W(queue_avail_hi)) {
        vp_set_half(&q->avail, off == F(queue_avail_hi), val);
    } else if (W(queue_used_lo) || W(queue_used_hi)) {
        vp_set_half(&q->used, off == F(queue_used_hi), val);
    } else {
        log_debug("%s: common config write at 0x%x len %u ignored", vp->p.name,
                  off, len);
    }
#undef W
#undef F
}

/* --- the BAR ------------------------------------------------------------- */

static void vp_kick(struct virtio_pci *vp, uint64_t off, unsigned len)
{
    uint64_t one = 1;
    unsigned q = off / VP_NOTIFY_MULT;
    (void)len;
    if (q >= vp->p.nqueues)
        return;
    if (write(vp->q[q].kick_fd, &one, sizeof(one)) != sizeof(one) &&
        errno != EAGAIN)
        log_warn("%s: queue %u: kick eventfd: %s", vp->p.name, q,
                 strerror(errno));
}

void vp_bar_io(void *opaque, unsigned bar, uint64_t off, uint8_t *data,
               unsigned len, bool is_write)
{
    struct virtio_pci *vp = opaque;

    if (bar != VP_BAR || !len || len > 8) {
        if (!is_write)
            memset(data, 0xff, len);
        return;
    }
    if (off + len <= VP_COMMON_OFF + VP_COMMON_LEN) {
        unsigned o = off - VP_COMMON_OFF;
        pthread_mutex_lock(&vp->lock);
        if (is_write) {
            vp_common_write(vp, o, pci_cfg_get(data, 0, len > 4 ? 4 : len),
                            len);
        } else {
            struct virtio_pci_common_cfg c;
            vp_common_snapshot(vp, &c);
            memcpy(data, (uint8_t *)&c + o, len);
        }
        pthread_mutex_unlock(&vp->lock);
    } else if (off >= VP_ISR_OFF && off < VP_ISR_OFF + 4) {
        if (is_write)
            return;
        memset(data, 0, len);
        if (off == VP_ISR_OFF) {
            /* Reading ISR acknowledges it and drops INTx. */
            data[0] = __atomic_exchange_n(&vp->isr, 0, __ATOMIC_SEQ_CST);
            pci_set_intx(&vp->pdev, 0);
        }
    } else if (off >= VP_DEVCFG_OFF &&
               off + len <= VP_DEVCFG_OFF + vp->p.cfg_size) {
        uint64_t o = off - VP_DEVCFG_OFF;
        pthread_mutex_lock(&vp->lock);
        if (is_write) {
            if (vp->p.ops->cfg_write)
                vp->p.ops->cfg_write(vp->p.opaque, o, data, len);
        } else if (vp->p.ops->cfg_read) {
            vp->p.ops->cfg_read(vp->p.opaque, o, data, len);
        } else {
            memset(data, 0, len);
        }
        pthread_mutex_unlock(&vp->lock);
    } else if (off >= VP_NOTIFY_OFF &&
               off < VP_NOTIFY_OFF + (uint64_t)vp->p.nqueues * VP_NOTIFY_MULT) {
        if (is_write)
            vp_kick(vp, off - VP_NOTIFY_OFF, len);
        else
            memset(data, 0, len);
    } else if (off >= VP_MSIX_TABLE_OFF &&
               off < VP_MSIX_TABLE_OFF + (uint64_t)vp->msix.nvec * 16) {
        msix_table_io(&vp->msix, off - VP_MSIX_TABLE_OFF, data, len, is_write);
    } else if (off >= VP_MSIX_PBA_OFF && off < VP_MSIX_PBA_OFF + 0x1000) {
        msix_pba_io(&vp->msix, off - VP_MSIX_PBA_OFF, data, len, is_write);
    } else if (!is_write) {
        memset(data, 0, len);
    }
}

/* --- PCI config hooks: MSI-X control and the PCI_CFG access window -------- */

static void vp_cfgcap_access(struct virtio_pci *vp, bool is_write)
{
    uint8_t *c = &vp->pdev.cfg[vp->cfgcap];
    unsigned bar = c[offsetof(struct virtio_pci_cap, bar)];
    uint32_t off = pci_cfg_get(c, offsetof(struct virtio_pci_cap, offset), 4);
    uint32_t len = pci_cfg_get(c, offsetof(struct virtio_pci_cap, length), 4);
    uint8_t *win = c + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data);

    /* Spec 4.1.4.9: only 1, 2 or 4 byte accesses aligned to their size. */
    if (bar != VP_BAR || (len != 1 && len != 2 && len != 4) || (off % len) ||
        off >= VP_BAR_SIZE)
        return;
    vp_bar_io(vp, bar, off, win, len, is_write);
}

static void vp_pci_cfg_write(void *opaque, unsigned off, unsigned len)
{
    struct virtio_pci *vp = opaque;
    unsigned win = vp->cfgcap + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data);

    msix_cfg_write(&vp->msix, &vp->pdev, off, len);
    if (off < win + 4 && off + len > win)
        vp_cfgcap_access(vp, true);
}

static void vp_pci_cfg_read(void *opaque, unsigned off, unsigned len)
{
    struct virtio_pci *vp = opaque;
    unsigned win = vp->cfgcap + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data);

    if (off < win + 4 && off + len > win)
        vp_cfgcap_access(vp, false);
}

static const struct pci_dev_ops vp_pci_ops = {
    .bar_io = vp_bar_io,
    .bar_moved = vp_bar_moved,
    .cfg_write = vp_pci_cfg_write,
    .cfg_read = vp_pci_cfg_read,
};

static int vp_add_vcap(struct virtio_pci *vp, uint8_t type, uint32_t off,
                       uint32_t len, bool notify)
{
    struct virtio_pci_notify_cap c;
    memset(&c, 0, sizeof(c));
    c.cap.cap_len = notify ? sizeof(c) : sizeof(c.cap);
    c.cap.cfg_type = type;
    c.cap.bar = VP_BAR;
    c.cap.offset = off;
    c.cap.length = len;
    c.notify_off_multiplier = VP_NOTIFY_MULT;
    /* pci_add_cap writes id and next itself. */
    return pci_add_cap(&vp->pdev, PCI_CAP_ID_VNDR, (uint8_t *)&c + 2,
                       c.cap.cap_len - 2, NULL);
}

static int vp_add_cfgcap(struct virtio_pci *vp)
{
    struct virtio_pci_cfg_cap c, w;
    memset(&c, 0, sizeof(c));
    memset(&w, 0, sizeof(w));
    c.cap.cap_len = sizeof(c);
    c.cap.cfg_type = VIRTIO_PCI_CAP_PCI_CFG;
    memset(&w.cap.bar, 0xff, 1);
    memset(&w.cap.offset, 0xff, 4);
    memset(&w.cap.length, 0xff, 4);
    memset(w.pci_cfg_data, 0xff, 4);
    return pci_add_cap(&vp->pdev, PCI_CAP_ID_VNDR, (uint8_t *)&c + 2,
                       sizeof(c) - 2, (uint8_t *)&w + 2);
}

int vp_init(struct virtio_pci *vp, const struct vp_params *p, struct pci *pci,
            struct vmif *vmif, const struct guest_mem *gm)
{
    int r;

    memset(vp, 0, sizeof(*vp));
    if (!p->nqueues || p->nqueues > VP_MAX_QUEUES || !p->queue_size ||
        p->queue_size > VQ_MAX_SIZE || (p->queue_size & (p->queue_size - 1)) ||
        p->cfg_size > 0x1000 || !p->ops)
        return -EINVAL;
    vp->p = *p;
    vp->p.features |= 1ULL << VIRTIO_F_VERSION_1;
    vp->pci = pci;
    vp->vmif = vmif;
    vp->gm = gm;
    for (unsigned i = 0; i < VP_MAX_QUEUES; i++)
        vp->q[i].kick_fd = -1;
    r = pthread_mutex_init(&vp->lock, NULL);
    if (r)
        return -r;
    r = msix_init(&vp->msix, p->nqueues + 1, vmif, p->name);
    if (r < 0)
        goto err_lock;
    for (unsigned i = 0; i < p->nqueues; i++) {
        vp->q[i].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (vp->q[i].kick_fd < 0) {
            r = -errno;
            log_err("%s: queue %u: eventfd: %s", p->name, i, strerror(errno));
            goto err_fds;
        }
    }
    vp_reset(vp);

    struct pci_dev_info info = {
        .name = p->name,
        .vendor_id = 0x1af4, .device_id = 0x1040 + p->virtio_id,
        .subsys_vendor_id = 0x1af4, .subsys_id = 0x40 + p->virtio_id,
        .class_code = p->class_code, .revision = 1,
        .ops = &vp_pci_ops, .opaque = vp,
    };
    pci_dev_init(&vp->pdev, &info);
    r = pci_add_bar(pci, &vp->pdev, VP_BAR, VP_BAR_SIZE, false, false);
    if (r < 0)
        goto err_fds;
    if ((r = vp_add_vcap(vp, VIRTIO_PCI_CAP_COMMON_CFG, VP_COMMON_OFF,
                         VP_COMMON_LEN, false)) < 0 ||
        (r = vp_add_vcap(vp, VIRTIO_PCI_CAP_ISR_CFG, VP_ISR_OFF, 4, false)) < 0 ||
        (p->cfg_size &&
         (r = vp_add_vcap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, VP_DEVCFG_OFF,
                          p->cfg_size, false)) < 0) ||
        (r = vp_add_vcap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, VP_NOTIFY_OFF,
                         p->nqueues * VP_NOTIFY_MULT, true)) < 0 ||
        (r = msix_add_cap(&vp->msix, &vp->pdev, VP_BAR, VP_MSIX_TABLE_OFF,
                          VP_MSIX_PBA_OFF)) < 0 ||
        (r = vp_add_cfgcap(vp)) < 0)
        goto err_fds;
    vp->cfgcap = r;
    r = pci_add_device(pci, &vp->pdev);
    if (r < 0)
        goto err_fds;
    return r;

err_fds:
    for (unsigned i = 0; i < p->nqueues; i++)
        if (vp->q[i].kick_fd >= 0)
            close(vp->q[i].kick_fd);
    msix_destroy(&vp->msix);
err_lock:
    pthread_mutex_destroy(&vp->lock);
    return r;
}

void vp_device_reset(struct virtio_pci *vp)
{
    pthread_mutex_lock(&vp->lock);
    vp_reset(vp);
    pthread_mutex_unlock(&vp->lock);
    msix_reset(&vp->msix);
    pci_dev_reset(vp->pci, &vp->pdev);
}

void vp_destroy(struct virtio_pci *vp)
{
    pthread_mutex_lock(&vp->lock);
    if (vp->started && vp->p.ops->stop)
        vp->p.ops->stop(vp->p.opaque);
    vp->started = false;
    pthread_mutex_unlock(&vp->lock);
    /* Unmapping the BAR drops the ioeventfds through vp_bar_moved. */
    pci_remove_device(vp->pci, &vp->pdev);
    if (vp->bar_mapped) {
        vp_ioeventfds(vp, false);
        vp->bar_mapped = false;
    }
    for (unsigned i = 0; i < vp->p.nqueues; i++)
        if (vp->q[i].kick_fd >= 0)
            close(vp->q[i].kick_fd);
    msix_destroy(&vp->msix);
    pthread_mutex_destroy(&vp->lock);
}
