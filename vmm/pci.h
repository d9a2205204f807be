/* PCI: the conf1 mechanism (0xCF8 address latch, 0xCFC data window) on the
 * PIO bus, host bridge 00:00.0, and devices in slots 1..31 of bus 0 (function
 * 0 only).  Each device owns a 256-byte config space with a capability list;
 * this module owns the standard header (command register, BARs, interrupt
 * line/pin) and maps memory BARs on the MMIO bus while the guest enables
 * memory decoding, re-registering them when the guest moves them.
 *
 * BAR addresses are pre-assigned (there is no firmware) from the 32-bit hole
 * at 0xc0000000 upward, below the IOAPIC at 0xfec00000; a 64-bit BAR asked to
 * go high is placed above guest RAM.
 *
 * INTx: the INTA# of slot s is IOAPIC pin 16 + ((s-1) % 8), as the MP table
 * says; interrupt_line carries that pin number.
 *
 * Locking: pci->lock serialises config accesses (the latch is per VM: the
 * guest serialises its conf1 accesses itself).  Device hooks called from a
 * config access run under pci->lock, so a device must never call back into
 * this module while holding its own lock from a BAR access. */
#ifndef DVMM_PCI_H
#define DVMM_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "vmm/vmif.h"

#define PCI_NR_SLOTS      32
#define PCI_NR_BARS       6
#define PCI_CFG_SPACE     256
#define PCI_MMIO32_BASE   0xc0000000ULL
#define PCI_MMIO32_END    0xfec00000ULL   /* IOAPIC and LAPIC live above */
#define PCI_CONF1_ADDR    0xcf8
#define PCI_CONF1_DATA    0xcfc
#define PCI_INTX_PIN_BASE 16

struct pci_dev;

struct pci_dev_ops {
    /* Access to memory BAR `bar` at `off` (from the MMIO bus). */
    void (*bar_io)(void *opaque, unsigned bar, uint64_t off, uint8_t *data,
                   unsigned len, bool is_write);
    /* The BAR was mapped at `addr` (mapped) or unmapped; lets the device move
     * its ioeventfds along.  Optional.  Called under pci->lock. */
    void (*bar_moved)(void *opaque, unsigned bar, uint64_t addr, bool mapped);
    /* Called after a guest write of `len` bytes at config offset `off` inside
     * the capability area (>= 0x40) has been applied to dev->cfg, so the
     * device can react (MSI-X enable/mask).  Optional.  Under pci->lock. */
    void (*cfg_write)(void *opaque, unsigned off, unsigned len);
    /* Called before a guest read at `off` in the capability area, to let the
     * device refresh dev->cfg.  Optional.  Under pci->lock. */
    void (*cfg_read)(void *opaque, unsigned off, unsigned len);
};

struct pci_dev_info {
    const char *name;          /* for logs */
    uint16_t vendor_id, device_id;
    uint16_t subsys_vendor_id, subsys_id;
    uint32_t class_code;       /* 24 bits: base class, subclass, prog-if */
    uint8_t revision;
    const struct pci_dev_ops *ops;
    void *opaque;
};

struct pci_bar {
    struct pci_dev *dev;       /* back pointer: the bus callback context */
    unsigned idx;
    uint64_t size;             /* 0: not implemented */
    bool is64;
    bool mapped;
    uint64_t mapped_addr;
};

struct pci_dev {
    struct pci *pci;
    struct pci_dev_info info;
    unsigned slot;
    uint8_t cfg[PCI_CFG_SPACE];
    uint8_t wmask[PCI_CFG_SPACE];   /* guest-writable bits */
    struct pci_bar bar[PCI_NR_BARS];
    uint8_t init_cfg[PCI_CFG_SPACE];/* power-on config space, for reset */
    uint8_t cap_end;                /* next free config offset for a cap */
    uint8_t last_cap;               /* offset of the last cap, 0 if none */
};

struct pci {
    struct bus *pio, *mmio;
    struct vmif *vmif;
    pthread_mutex_t lock;
    uint32_t conf_addr;             /* the 0xCF8 latch */
    struct pci_dev host_bridge;
    struct pci_dev *slot[PCI_NR_SLOTS];
    uint64_t mmio32_next;
    uint64_t mmio64_next;           /* above RAM; set by pci_set_ram_top */
    bool conf1_registered;
};

/* Registers conf1 on `pio` and puts the host bridge in slot 0. */
int pci_init(struct pci *pci, struct bus *pio, struct bus *mmio,
             struct vmif *vmif);
/* Unmaps every BAR and unregisters conf1.  Devices are owned by their
 * modules; they must be torn down (no more BAR accesses) before this. */
void pci_destroy(struct pci *pci);
/* Where 64-bit BARs that ask to go high are placed (top of guest RAM). */
void pci_set_ram_top(struct pci *pci, uint64_t ram_top);

/* Fill dev's header from info; call pci_add_bar/pci_add_cap, then
 * pci_add_device. */
void pci_dev_init(struct pci_dev *dev, const struct pci_dev_info *info);
/* A memory BAR of `size` bytes (a power of two >= 16; rounded up to 4 KiB so
 * no two devices share a page).  is64: a 64-bit BAR (uses bar and bar+1);
 * high: place it above RAM instead of the 32-bit hole.  -EINVAL on a bad
 * index or size, -ENOSPC when the hole is full. */
int pci_add_bar(struct pci *pci, struct pci_dev *dev, unsigned bar,
                uint64_t size, bool is64, bool high);
/* Append a capability: `body` is everything after the id and next bytes
 * (len bytes).  wmask marks guest-writable bits of the body (NULL: read-only).
 * Returns the capability's config offset, or -ENOSPC. */
int pci_add_cap(struct pci_dev *dev, uint8_t id, const void *body,
                unsigned len, const void *wmask);
/* Put dev in the first free slot; returns the slot (1..31) or -ENOSPC. */
int pci_add_device(struct pci *pci, struct pci_dev *dev);
/* Unmaps dev's BARs and frees its slot. */
void pci_remove_device(struct pci *pci, struct pci_dev *dev);
/* Function-level reset (VM reboot): config space back to its power-on
 * contents (decoding off, BARs at their assigned addresses, capabilities as
 * added), BARs unmapped; the device's cfg_write hook is then called for the
 * whole capability area so it can drop MSI-X state. */
void pci_dev_reset(struct pci *pci, struct pci_dev *dev);

/* The IOAPIC pin INTA# of `slot` is wired to. */
static inline unsigned pci_intx_pin(unsigned slot)
{ return PCI_INTX_PIN_BASE + (slot - 1) % 8; }
/* Drive dev's INTA# (level, via vmif->irq_line); suppressed while the guest
 * sets Interrupt Disable in the command register. */
int pci_set_intx(struct pci_dev *dev, int level);
/* Whether the guest has disabled INTx (command bit 10); lock-free read. */
bool pci_intx_disabled(const struct pci_dev *dev);

/* The conf1 handlers, exported for tests that drive config space directly. */
void pci_conf1_addr_io(void *pci, uint64_t off, uint8_t *data, unsigned len,
                       bool is_write);
void pci_conf1_data_io(void *pci, uint64_t off, uint8_t *data, unsigned len,
                       bool is_write);

/* Little-endian helpers over a config space. */
static inline uint32_t pci_cfg_get(const uint8_t *cfg, unsigned off,
                                   unsigned len)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < len; i++)
        v |= (uint32_t)cfg[off + i] << (8 * i);
    return v;
}
static inline void pci_cfg_put(uint8_t *cfg, unsigned off, unsigned len,
                               uint32_t v)
{
    for (unsigned i = 0; i < len; i++)
        cfg[off + i] = (uint8_t)(v >> (8 * i));
}

#endif
