#include "virtio/msix.h"

#include <errno.h>
#include <linux/pci_regs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/log.h"

int msix_init(struct msix *m, unsigned nvec, struct vmif *vmif,
              const char *name)
{
    memset(m, 0, sizeof(*m));
    if (!nvec || nvec > MSIX_MAX_VECTORS)
        return -EINVAL;
    m->v = calloc(nvec, sizeof(*m->v));
    if (!m->v)
        return -ENOMEM;
    int r = pthread_mutex_init(&m->lock, NULL);
    if (r) {
        free(m->v);
        return -r;
    }
    m->vmif = vmif;
    m->name = name;
    m->nvec = nvec;
    for (unsigned i = 0; i < nvec; i++) {
        m->v[i].gsi = -1;
        m->v[i].ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT;
        m->v[i].fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (m->v[i].fd < 0) {
            r = -errno;
            log_err("%s: msix vector %u: eventfd: %s", name, i, strerror(errno));
            m->nvec = i;
            msix_destroy(m);
            return r;
        }
    }
    return 0;
}

void msix_destroy(struct msix *m)
{
    struct vmif *vi = m->vmif;

    if (!m->v)
        return;
    for (unsigned i = 0; i < m->nvec; i++) {
        struct msix_vec *v = &m->v[i];
        if (v->irqfd_bound && vi && vi->irqfd)
            vi->irqfd(vi->opaque, v->gsi, v->fd, -1, false);
        if (v->gsi >= 0 && vi && vi->msi_release)
            vi->msi_release(vi->opaque, v->gsi);
        if (v->fd >= 0)
            close(v->fd);
    }
    free(m->v);
    m->v = NULL;
    pthread_mutex_destroy(&m->lock);
}

int msix_add_cap(struct msix *m, struct pci_dev *dev, unsigned bar,
                 uint32_t table_off, uint32_t pba_off)
{
    uint8_t body[10], wmask[10] = { 0 };

    pci_cfg_put(body, 0, 2, m->nvec - 1);
    pci_cfg_put(body, 2, 4, table_off | bar);
    pci_cfg_put(body, 6, 4, pba_off | bar);
    pci_cfg_put(wmask, 0, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    int off = pci_add_cap(dev, PCI_CAP_ID_MSIX, body, sizeof(body), wmask);
    if (off >= 0)
        m->cap = off;
    return off;
}

static bool msix_vec_masked(const struct msix *m, const struct msix_vec *v)
{
    return !m->enabled || m->fmask || (v->ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

static void msix_signal(struct msix *m, unsigned i)
{
    uint64_t one = 1;
    if (write(m->v[i].fd, &one, sizeof(one)) != sizeof(one) && errno != EAGAIN)
        log_warn("%s: msix vector %u: eventfd write: %s", m->name, i,
                 strerror(errno));
}

/* Bring vector i's route in line with its entry and deliver a pending
 * message once it is unmasked.  Under m->lock. */
static void msix_update(struct msix *m, unsigned i)
{
    struct msix_vec *v = &m->v[i];
    struct vmif *vi = m->vmif;

    if (msix_vec_masked(m, v)) {
        /* A direct writer's message must wait, not reach the guest. */
        if (v->direct && v->irqfd_bound && vi && vi->irqfd) {
            int r = vi->irqfd(vi->opaque, v->gsi, v->fd, -1, false);
            if (r < 0)
                log_err("%s: msix vector %u: unbinding irqfd on gsi %d: %s",
                        m->name, i, v->gsi, strerror(-r));
            else
                v->irqfd_bound = false;
        }
        return;
    }
    uint64_t addr = (uint64_t)v->addr_hi << 32 | v->addr_lo;
    if (!v->routed || v->r_addr != addr || v->r_data != v->data) {
        if (!vi || !vi->msi_route || !vi->irqfd) {
            if (!m->warned_no_irqfd)
                log_warn("%s: no MSI routing/irqfd in this VM: MSI-X messages are dropped",
                         m->name);
            m->warned_no_irqfd = true;
        } else {
            int r = vi->msi_route(vi->opaque, &v->gsi, addr, v->data);
            if (r < 0) {
                log_err("%s: msix vector %u: route to 0x%llx/0x%x: %s",
                        m->name, i, (unsigned long long)addr, v->data,
                        strerror(-r));
            } else {
                v->routed = true;
                v->r_addr = addr;
                v->r_data = v->data;
            }
        }
    }
    /* Bound again after a mask unbound it (direct writers): KVM delivers a
     * message that waited in the eventfd. */
    if (v->routed && !v->irqfd_bound && vi && vi->irqfd) {
        int r = vi->irqfd(vi->opaque, v->gsi, v->fd, -1, true);
        if (r < 0)
            log_err("%s: msix vector %u: irqfd on gsi %d: %s",
                    m->name, i, v->gsi, strerror(-r));
        else
            v->irqfd_bound = true;
    }
    if (v->pending) {
        v->pending = false;
        msix_signal(m, i);
    }
}

void msix_cfg_write(struct msix *m, const struct pci_dev *dev, unsigned off,
                    unsigned len)
{
    unsigned ctl = m->cap + PCI_MSIX_FLAGS;
    if (off + len <= ctl || off > ctl + 1)
        return;
    uint16_t flags = pci_cfg_get(dev->cfg, ctl, 2);
    pthread_mutex_lock(&m->lock);
    m->enabled = flags & PCI_MSIX_FLAGS_ENABLE;
    m->fmask = flags & PCI_MSIX_FLAGS_MASKALL;
    for (unsigned i = 0; i < m->nvec; i++)
        msix_update(m, i);
    pthread_mutex_unlock(&m->lock);
}

void msix_table_io(struct msix *m, uint64_t off, uint8_t *data, unsigned len,
                   bool is_write)
{
    /* Dword and qword accesses, naturally aligned (PCI 3.0 6.8.2). */
    if ((len != 4 && len != 8) || (off & (len - 1)) ||
        off + len > (uint64_t)m->nvec * PCI_MSIX_ENTRY_SIZE) {
        if (!is_write)
            memset(data, 0xff, len);
        return;
    }
    pthread_mutex_lock(&m->lock);
    for (unsigned done = 0; done < len; done += 4) {
        uint64_t o = off + done;
        unsigned i = o / PCI_MSIX_ENTRY_SIZE;
        struct msix_vec *v = &m->v[i];
        uint32_t *field;
        switch (o % PCI_MSIX_ENTRY_SIZE) {
        case PCI_MSIX_ENTRY_LOWER_ADDR: field = &v->addr_lo; break;
        case PCI_MSIX_ENTRY_UPPER_ADDR: field = &v->addr_hi; break;
        case PCI_MSIX_ENTRY_DATA:       field = &v->data; break;
        default:                        field = &v->ctrl; break;
        }
        if (!is_write) {
            pci_cfg_put(data, done, 4, *field);
            continue;
        }
        uint32_t val = pci_cfg_get(data, done, 4);
        if (field == &v->ctrl)
            val &= PCI_MSIX_ENTRY_CTRL_MASKBIT;
        else if (field == &v->addr_lo)
            val &= ~3U;
        *field = val;
        msix_update(m, i);
    }
    pthread_mutex_unlock(&m->lock);
}

void msix_pba_io(struct msix *m, uint64_t off, uint8_t *data, unsigned len,
                 bool is_write)
{
    if (is_write)
        return;
    pthread_mutex_lock(&m->lock);
    for (unsigned b = 0; b < len; b++) {
        uint8_t byte = 0;
        for (unsigned bit = 0; bit < 8; bit++) {
            uint64_t i = (off + b) * 8 + bit;
            if (i < m->nvec && m->v[i].pending)
                byte |= 1u << bit;
        }
        data[b] = byte;
    }
    pthread_mutex_unlock(&m->lock);
}

void msix_reset(struct msix *m)
{
    pthread_mutex_lock(&m->lock);
    for (unsigned i = 0; i < m->nvec; i++) {
        struct msix_vec *v = &m->v[i];
        v->addr_lo = v->addr_hi = v->data = 0;
        v->ctrl = PCI_MSIX_ENTRY_CTRL_MASKBIT;
        v->pending = false;
    }
    pthread_mutex_unlock(&m->lock);
}

bool msix_enabled(struct msix *m)
{
    pthread_mutex_lock(&m->lock);
    bool e = m->enabled;
    pthread_mutex_unlock(&m->lock);
    return e;
}

int msix_notify(struct msix *m, unsigned vec)
{
    if (vec >= m->nvec)
        return 0;
    pthread_mutex_lock(&m->lock);
    struct msix_vec *v = &m->v[vec];
    if (msix_vec_masked(m, v))
        v->pending = true;
    else
        msix_signal(m, vec);
    pthread_mutex_unlock(&m->lock);
    return 0;
}

int msix_vector_fd(const struct msix *m, unsigned vec)
{
    return vec < m->nvec ? m->v[vec].fd : -1;
}

void msix_set_direct(struct msix *m, unsigned vec, bool on)
{
    if (vec >= m->nvec)
        return;
    pthread_mutex_lock(&m->lock);
    struct msix_vec *v = &m->v[vec];
    if (on)
        v->direct++;
    else if (v->direct)
        v->direct--;
    msix_update(m, vec);
    pthread_mutex_unlock(&m->lock);
}
