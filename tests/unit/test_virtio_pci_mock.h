/* A vmif that records what a device asks of the VM, with real eventfds, and
 * helpers to drive a virtio-pci function through conf1 and its BAR. */
#ifndef TEST_VIRTIO_PCI_MOCK_H
#define TEST_VIRTIO_PCI_MOCK_H

#include <linux/pci_regs.h>
#include <linux/virtio_pci.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vmm/bus.h"
#include "vmm/pci.h"
#include "vmm/vmif.h"

#define MOCK_MAX_GSI 64

struct mock_vm {
    struct vmif vmif;
    struct bus pio, mmio;
    struct pci pci;
    pthread_mutex_t lock;
    int next_gsi;
    int nroute, nrelease, nirqfd, nioev, nirq;
    uint64_t gsi_addr[MOCK_MAX_GSI];
    uint32_t gsi_data[MOCK_MAX_GSI];
    int gsi_fd[MOCK_MAX_GSI];          /* irqfd bound to the gsi, or -1 */
    uint64_t ioev_addr[64];            /* last assigned address per fd slot */
    int ioev_fd[64];
    bool ioev_on[64];
    int ioev_fail;                     /* make ioeventfd return this */
    int irq_level[64];
};

static int mock_msi_route(void *o, int *gsi, uint64_t addr, uint32_t data)
{
    struct mock_vm *m = o;
    pthread_mutex_lock(&m->lock);
    if (*gsi < 0)
        *gsi = m->next_gsi++;
    m->gsi_addr[*gsi] = addr;
    m->gsi_data[*gsi] = data;
    m->nroute++;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int mock_msi_release(void *o, int gsi)
{
    struct mock_vm *m = o;
    (void)gsi;
    m->nrelease++;
    return 0;
}

static int mock_irqfd(void *o, unsigned gsi, int fd, int rfd, bool assign)
{
    struct mock_vm *m = o;
    (void)rfd;
    pthread_mutex_lock(&m->lock);
    m->gsi_fd[gsi] = assign ? fd : -1;
    m->nirqfd++;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int mock_ioeventfd(void *o, uint64_t addr, unsigned len, bool mmio,
                          int fd, bool assign)
{
    struct mock_vm *m = o;
    (void)len;
    (void)mmio;
    if (m->ioev_fail)
        return m->ioev_fail;
    unsigned slot = fd % 64;
    m->ioev_addr[slot] = addr;
    m->ioev_fd[slot] = fd;
    m->ioev_on[slot] = assign;
    m->nioev++;
    return 0;
}

static int mock_irq_line(void *o, unsigned irq, int level)
{
    struct mock_vm *m = o;
    m->irq_level[irq % 64] = level;
    m->nirq++;
    return 0;
}

static inline int mock_vm_init(struct mock_vm *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    for (int i = 0; i < MOCK_MAX_GSI; i++)
        m->gsi_fd[i] = -1;
    m->next_gsi = 24;
    m->vmif = (struct vmif){
        .opaque = m, .ioeventfd = mock_ioeventfd, .msi_route = mock_msi_route,
        .msi_release = mock_msi_release, .irqfd = mock_irqfd,
        .irq_line = mock_irq_line,
    };
    if (bus_init(&m->pio, "pio") || bus_init(&m->mmio, "mmio"))
        return -1;
    return pci_init(&m->pci, &m->pio, &m->mmio, &m->vmif);
}

static inline void mock_vm_destroy(struct mock_vm *m)
{
    pci_destroy(&m->pci);
    bus_destroy(&m->mmio);
    bus_destroy(&m->pio);
    pthread_mutex_destroy(&m->lock);
}

static inline uint32_t mock_cfg_read(struct mock_vm *m, unsigned slot,
                                     unsigned reg, unsigned len)
{
    uint8_t d[4];
    pci_cfg_put(d, 0, 4, 0x80000000U | slot << 11 | (reg & 0xfc));
    bus_dispatch(&m->pio, PCI_CONF1_ADDR, d, 4, true);
    bus_dispatch(&m->pio, PCI_CONF1_DATA + (reg & 3), d, len, false);
    return pci_cfg_get(d, 0, len);
}

static inline void mock_cfg_write(struct mock_vm *m, unsigned slot,
                                  unsigned reg, unsigned len, uint32_t v)
{
    uint8_t d[4];
    pci_cfg_put(d, 0, 4, 0x80000000U | slot << 11 | (reg & 0xfc));
    bus_dispatch(&m->pio, PCI_CONF1_ADDR, d, 4, true);
    pci_cfg_put(d, 0, 4, v);
    bus_dispatch(&m->pio, PCI_CONF1_DATA + (reg & 3), d, len, true);
}

static inline uint64_t mock_mmio_read(struct mock_vm *m, uint64_t addr,
                                      unsigned len)
{
    uint8_t d[8] = { 0 };
    if (bus_dispatch(&m->mmio, addr, d, len, false) < 0)
        return ~0ULL;
    uint64_t v = 0;
    memcpy(&v, d, len);
    return v;
}

static inline int mock_mmio_write(struct mock_vm *m, uint64_t addr,
                                  unsigned len, uint64_t v)
{
    uint8_t d[8];
    memcpy(d, &v, 8);
    return bus_dispatch(&m->mmio, addr, d, len, true);
}

/* Offset of the first vendor cap of virtio cfg_type `type`, or of the
 * capability `id` when type < 0. */
static inline unsigned mock_find_cap(struct mock_vm *m, unsigned slot,
                                     uint8_t id, int type)
{
    unsigned off = mock_cfg_read(m, slot, PCI_CAPABILITY_LIST, 1);
    for (int n = 0; off && n < 48; n++) {
        if (mock_cfg_read(m, slot, off, 1) == id &&
            (type < 0 || mock_cfg_read(m, slot, off + 3, 1) == (unsigned)type))
            return off;
        off = mock_cfg_read(m, slot, off + 1, 1);
    }
    return 0;
}

#endif
