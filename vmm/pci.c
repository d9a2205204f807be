#include "vmm/pci.h"

#include <errno.h>
#include <linux/pci_regs.h>
#include <string.h>

#include "guest-mem/gm.h"
#include "vmm/log.h"

#define PCI_BAR_MIN_ALIGN 4096ULL

static void pci_bar_bus_io(void *ctx, uint64_t off, uint8_t *data,
                           unsigned len, bool is_write)
{
    struct pci_bar *b = ctx;
    struct pci_dev *dev = b->dev;

    if (dev->info.ops && dev->info.ops->bar_io)
        dev->info.ops->bar_io(dev->info.opaque, b->idx, off, data, len,
                              is_write);
    else if (!is_write)
        memset(data, 0xff, len);
}

static uint64_t pci_bar_addr(const struct pci_dev *dev, unsigned i)
{
    const struct pci_bar *b = &dev->bar[i];
    uint64_t a = pci_cfg_get(dev->cfg, PCI_BASE_ADDRESS_0 + 4 * i, 4) &
                 (uint32_t)PCI_BASE_ADDRESS_MEM_MASK;

    if (b->is64)
        a |= (uint64_t)pci_cfg_get(dev->cfg, PCI_BASE_ADDRESS_0 + 4 * (i + 1),
                                   4) << 32;
    return a;
}

/* Make the MMIO bus agree with the command register and BAR values.  A BAR
 * being sized (all ones) or at 0 is not mapped: real devices would decode
 * it, but nothing sane lives there and Linux turns decoding off first. */
static void pci_update_bars(struct pci *pci, struct pci_dev *dev)
{
    uint16_t cmd = pci_cfg_get(dev->cfg, PCI_COMMAND, 2);

    for (unsigned i = 0; i < PCI_NR_BARS; i++) {
        struct pci_bar *b = &dev->bar[i];
        if (!b->size)
            continue;
        uint64_t addr = pci_bar_addr(dev, i);
        uint64_t lim = b->is64 ? UINT64_MAX : 0xffffffffULL;
        bool want = (cmd & PCI_COMMAND_MEMORY) && addr != 0 &&
                    addr <= lim - b->size + 1 &&
                    addr != (lim & ~(b->size - 1)) &&
                    !(addr < (1ULL << 32) && addr + b->size > PCI_MMIO32_END);
        if (b->mapped && (!want || addr != b->mapped_addr)) {
            bus_unregister(pci->mmio, b->mapped_addr, b);
            b->mapped = false;
            if (dev->info.ops && dev->info.ops->bar_moved)
                dev->info.ops->bar_moved(dev->info.opaque, i, b->mapped_addr,
                                         false);
        }
        if (want && !b->mapped) {
            int r = bus_register(pci->mmio, addr, b->size, pci_bar_bus_io, b,
                                 dev->info.name);
            if (r < 0) {
                log_warn("pci %02x.0 %s: BAR%u at 0x%llx+0x%llx not mapped: %s",
                         dev->slot, dev->info.name, i,
                         (unsigned long long)addr,
                         (unsigned long long)b->size, strerror(-r));
                continue;
            }
            b->mapped = true;
            b->mapped_addr = addr;
            log_debug("pci %02x.0 %s: BAR%u mapped at 0x%llx", dev->slot,
                      dev->info.name, i, (unsigned long long)addr);
            if (dev->info.ops && dev->info.ops->bar_moved)
                dev->info.ops->bar_moved(dev->info.opaque, i, addr, true);
        }
    }
}

void pci_dev_init(struct pci_dev *dev, const struct pci_dev_info *info)
{
    memset(dev, 0, sizeof(*dev));
    dev->info = *info;
    pci_cfg_put(dev->cfg, PCI_VENDOR_ID, 2, info->vendor_id);
    pci_cfg_put(dev->cfg, PCI_DEVICE_ID, 2, info->device_id);
    pci_cfg_put(dev->cfg, PCI_CLASS_REVISION, 4,
                info->class_code << 8 | info->revision);
    pci_cfg_put(dev->cfg, PCI_SUBSYSTEM_VENDOR_ID, 2, info->subsys_vendor_id);
    pci_cfg_put(dev->cfg, PCI_SUBSYSTEM_ID, 2, info->subsys_id);
    dev->cfg[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;
    /* Memory space, bus master, interrupt disable are the guest's to set. */
    pci_cfg_put(dev->wmask, PCI_COMMAND, 2,
                PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
                PCI_COMMAND_INTX_DISABLE);
    dev->wmask[PCI_INTERRUPT_LINE] = 0xff;
    dev->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
    dev->wmask[PCI_LATENCY_TIMER] = 0xff;
    dev->cap_end = PCI_STD_HEADER_SIZEOF;
    for (unsigned i = 0; i < PCI_NR_BARS; i++) {
        dev->bar[i].dev = dev;
        dev->bar[i].idx = i;
    }
}

int pci_add_bar(struct pci *pci, struct pci_dev *dev, unsigned bar,
                uint64_t size, bool is64, bool high)
{
    if (bar >= PCI_NR_BARS || (is64 && bar + 1 >= PCI_NR_BARS) ||
        size < 16 || (size & (size - 1)) || (!is64 && size > (1ULL << 31)) ||
        dev->bar[bar].size || (is64 && dev->bar[bar + 1].size))
        return -EINVAL;
    if (size < PCI_BAR_MIN_ALIGN)
        size = PCI_BAR_MIN_ALIGN;

    uint64_t addr;
    pthread_mutex_lock(&pci->lock);
    if (is64 && high) {
        addr = gm_align_up(pci->mmio64_next, size);
        pci->mmio64_next = addr + size;
    } else {
        addr = gm_align_up(pci->mmio32_next, size);
        if (addr + size > PCI_MMIO32_END) {
            pthread_mutex_unlock(&pci->lock);
            log_err("pci %s: no room for a 0x%llx-byte BAR in the 32-bit hole",
                    dev->info.name, (unsigned long long)size);
            return -ENOSPC;
        }
        pci->mmio32_next = addr + size;
    }
    pthread_mutex_unlock(&pci->lock);

    struct pci_bar *b = &dev->bar[bar];
    b->size = size;
    b->is64 = is64;
    uint32_t flags = PCI_BASE_ADDRESS_SPACE_MEMORY |
                     (is64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0);
    unsigned off = PCI_BASE_ADDRESS_0 + 4 * bar;
    pci_cfg_put(dev->cfg, off, 4, (uint32_t)addr | flags);
    pci_cfg_put(dev->wmask, off, 4, (uint32_t)~(size - 1) & ~0xfU);
    if (is64) {
        pci_cfg_put(dev->cfg, off + 4, 4, addr >> 32);
        pci_cfg_put(dev->wmask, off + 4, 4, (uint32_t)(~(size - 1) >> 32));
        dev->bar[bar + 1].size = 0;
    }
    return 0;
}

int pci_add_cap(struct pci_dev *dev, uint8_t id, const void *body,
                unsigned len, const void *wmask)
{
    unsigned off = (dev->cap_end + 3u) & ~3u;

    if (off + 2 + len > PCI_CFG_SPACE)
        return -ENOSPC;
    dev->cfg[off] = id;
    dev->cfg[off + 1] = 0;
    memcpy(&dev->cfg[off + 2], body, len);
    if (wmask)
        memcpy(&dev->wmask[off + 2], wmask, len);
    if (dev->last_cap)
        dev->cfg[dev->last_cap + 1] = off;
    else
        dev->cfg[PCI_CAPABILITY_LIST] = off;
    pci_cfg_put(dev->cfg, PCI_STATUS, 2,
                pci_cfg_get(dev->cfg, PCI_STATUS, 2) | PCI_STATUS_CAP_LIST);
    dev->last_cap = off;
    dev->cap_end = off + 2 + len;
    return off;
}

int pci_add_device(struct pci *pci, struct pci_dev *dev)
{
    pthread_mutex_lock(&pci->lock);
    for (unsigned s = 1; s < PCI_NR_SLOTS; s++) {
        if (pci->slot[s])
            continue;
        dev->pci = pci;
        dev->slot = s;
        dev->cfg[PCI_INTERRUPT_PIN] = 1;   /* INTA# */
        dev->cfg[PCI_INTERRUPT_LINE] = pci_intx_pin(s);
        pci->slot[s] = dev;
        memcpy(dev->init_cfg, dev->cfg, sizeof(dev->cfg));
        pthread_mutex_unlock(&pci->lock);
        log_debug("pci %02x.0 %s: vendor %04x device %04x, INTA# -> IOAPIC pin %u",
                  s, dev->info.name, dev->info.vendor_id, dev->info.device_id,
                  pci_intx_pin(s));
        return s;
    }
    pthread_mutex_unlock(&pci->lock);
    log_err("pci %s: all 31 slots are taken", dev->info.name);
    return -ENOSPC;
}

void pci_remove_device(struct pci *pci, struct pci_dev *dev)
{
    pthread_mutex_lock(&pci->lock);
    for (unsigned i = 0; i < PCI_NR_BARS; i++) {
        if (dev->bar[i].mapped) {
            bus_unregister(pci->mmio, dev->bar[i].mapped_addr, &dev->bar[i]);
            dev->bar[i].mapped = false;
        }
    }
    if (dev->slot && pci->slot[dev->slot] == dev)
        pci->slot[dev->slot] = NULL;
    pthread_mutex_unlock(&pci->lock);
}

void pci_dev_reset(struct pci *pci, struct pci_dev *dev)
{
    pthread_mutex_lock(&pci->lock);
    for (unsigned i = 0; i < PCI_CFG_SPACE; i++)
        __atomic_store_n(&dev->cfg[i], dev->init_cfg[i], __ATOMIC_RELAXED);
    pci_update_bars(pci, dev);
    if (dev->info.ops && dev->info.ops->cfg_write)
        dev->info.ops->cfg_write(dev->info.opaque, PCI_STD_HEADER_SIZEOF,
                                 PCI_CFG_SPACE - PCI_STD_HEADER_SIZEOF);
    pthread_mutex_unlock(&pci->lock);
}

bool pci_intx_disabled(const struct pci_dev *dev)
{
    uint8_t hi = __atomic_load_n(&dev->cfg[PCI_COMMAND + 1], __ATOMIC_RELAXED);
    return hi & (PCI_COMMAND_INTX_DISABLE >> 8);
}

int pci_set_intx(struct pci_dev *dev, int level)
{
    struct vmif *v = dev->pci ? dev->pci->vmif : NULL;

    if (!v || !v->irq_line)
        return -ENOSYS;
    if (level && pci_intx_disabled(dev))
        return 0;
    return v->irq_line(v->opaque, pci_intx_pin(dev->slot), level);
}

void pci_conf1_addr_io(void *opaque, uint64_t off, uint8_t *data,
                       unsigned len, bool is_write)
{
    struct pci *pci = opaque;

    /* Only dword accesses reach the latch; byte writes to 0xCFB are the
     * type-2 probe and must not disturb it. */
    pthread_mutex_lock(&pci->lock);
    if (is_write) {
        if (off == 0 && len == 4)
            pci->conf_addr = pci_cfg_get(data, 0, 4) & 0x80fffffcU;
    } else {
        uint8_t v[4];
        pci_cfg_put(v, 0, 4, pci->conf_addr);
        for (unsigned i = 0; i < len; i++)
            data[i] = off + i < 4 ? v[off + i] : 0xff;
    }
    pthread_mutex_unlock(&pci->lock);
}

static struct pci_dev *pci_conf1_target(struct pci *pci, unsigned *reg)
{
    uint32_t a = pci->conf_addr;

    if (!(a & 0x80000000U))
        return NULL;
    unsigned bus = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f, fn = (a >> 8) & 7;
    *reg = a & 0xfc;
    if (bus != 0 || fn != 0)
        return NULL;
    return pci->slot[slot];
}

void pci_conf1_data_io(void *opaque, uint64_t off, uint8_t *data,
                       unsigned len, bool is_write)
{
    struct pci *pci = opaque;
    unsigned reg = 0;

    if (off >= 4 || len > 4 - off || !len) {
        if (!is_write)
            memset(data, 0xff, len);
        return;
    }
    pthread_mutex_lock(&pci->lock);
    struct pci_dev *dev = pci_conf1_target(pci, &reg);
    if (!dev) {
        if (!is_write)
            memset(data, 0xff, len);
        pthread_mutex_unlock(&pci->lock);
        return;
    }
    reg += off;
    const struct pci_dev_ops *ops = dev->info.ops;
    if (!is_write) {
        if (reg >= PCI_STD_HEADER_SIZEOF && ops && ops->cfg_read)
            ops->cfg_read(dev->info.opaque, reg, len);
        memcpy(data, &dev->cfg[reg], len);
        pthread_mutex_unlock(&pci->lock);
        return;
    }
    for (unsigned i = 0; i < len; i++) {
        uint8_t m = dev->wmask[reg + i];
        uint8_t nv = (dev->cfg[reg + i] & ~m) | (data[i] & m);
        __atomic_store_n(&dev->cfg[reg + i], nv, __ATOMIC_RELAXED);
    }
    if (reg < PCI_BASE_ADDRESS_5 + 4 && reg + len > PCI_COMMAND)
        pci_update_bars(pci, dev);
    if (reg + len > PCI_STD_HEADER_SIZEOF && ops && ops->cfg_write)
        ops->cfg_write(dev->info.opaque, reg, len);
    pthread_mutex_unlock(&pci->lock);
}

void pci_set_ram_top(struct pci *pci, uint64_t ram_top)
{
    pthread_mutex_lock(&pci->lock);
    uint64_t top = ram_top > (1ULL << 32) ? ram_top : (1ULL << 32);
    /* 1 GiB aligned so BARs never share a guest 1 GiB page with RAM. */
    top = (top + (1ULL << 30) - 1) & ~((1ULL << 30) - 1);
    if (pci->mmio64_next < top)
        pci->mmio64_next = top;
    pthread_mutex_unlock(&pci->lock);
}

int pci_init(struct pci *pci, struct bus *pio, struct bus *mmio,
             struct vmif *vmif)
{
    static const struct pci_dev_info bridge = {
        .name = "host-bridge",
        .vendor_id = 0x8086, .device_id = 0x29c0,   /* as Q35's MCH */
        .class_code = 0x060000,
    };
    int r;

    memset(pci, 0, sizeof(*pci));
    pci->pio = pio;
    pci->mmio = mmio;
    pci->vmif = vmif;
    pci->mmio32_next = PCI_MMIO32_BASE;
    pci->mmio64_next = 1ULL << 32;
    r = pthread_mutex_init(&pci->lock, NULL);
    if (r)
        return -r;
    pci_dev_init(&pci->host_bridge, &bridge);
    /* The bridge has no interrupt and nothing to decode. */
    pci_cfg_put(pci->host_bridge.wmask, PCI_COMMAND, 2, 0);
    pci->host_bridge.wmask[PCI_INTERRUPT_LINE] = 0;
    pci->slot[0] = &pci->host_bridge;

    r = bus_register(pio, PCI_CONF1_ADDR, 4, pci_conf1_addr_io, pci,
                     "pci-conf1-addr");
    if (r < 0) {
        log_err("pci: cannot register conf1 at 0x%x: %s", PCI_CONF1_ADDR,
                strerror(-r));
        goto err;
    }
    r = bus_register(pio, PCI_CONF1_DATA, 4, pci_conf1_data_io, pci,
                     "pci-conf1-data");
    if (r < 0) {
        log_err("pci: cannot register conf1 at 0x%x: %s", PCI_CONF1_DATA,
                strerror(-r));
        bus_unregister(pio, PCI_CONF1_ADDR, pci);
        goto err;
    }
    pci->conf1_registered = true;
    return 0;
err:
    pthread_mutex_destroy(&pci->lock);
    return r;
}

void pci_destroy(struct pci *pci)
{
    for (unsigned s = 1; s < PCI_NR_SLOTS; s++)
        if (pci->slot[s])
            pci_remove_device(pci, pci->slot[s]);
    if (pci->conf1_registered) {
        bus_unregister(pci->pio, PCI_CONF1_DATA, pci);
        bus_unregister(pci->pio, PCI_CONF1_ADDR, pci);
        pci->conf1_registered = false;
    }
    pthread_mutex_destroy(&pci->lock);
}
