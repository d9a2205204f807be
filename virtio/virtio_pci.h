/* The virtio 1.x modern PCI transport (virtio spec 4.1): one 32 KiB memory
 * BAR holding the common config, ISR, device config, notify area (one dword
 * per queue: notify_off_multiplier 4) and the MSI-X table and PBA; vendor
 * capabilities pointing at each, plus the VIRTIO_PCI_CAP_PCI_CFG window.
 *
 * Kicks: each queue has an eventfd, registered as an ioeventfd on its notify
 * address whenever the BAR is mapped.  A notify write that still arrives as
 * an MMIO exit (no ioeventfd in this VM) is turned into a write to the same
 * eventfd, so device workers only ever wait on vp_kick_fd().
 *
 * Interrupts: MSI-X vector per queue (through msix.h) when the guest enables
 * MSI-X; otherwise ISR bit + INTx level (pci_set_intx), lowered on ISR read.
 *
 * Status: FEATURES_OK is refused (left clear) unless the driver's features
 * are a subset of the device's and include VERSION_1; DRIVER_OK maps the
 * enabled queues (a bad ring sets NEEDS_RESET) and starts the device;
 * writing 0 stops the device (ops->stop waits for in-flight requests) before
 * the write completes, so once the driver reads back 0 nothing touches the
 * old rings and no interrupt fires. */
#ifndef DVMM_VIRTIO_PCI_H
#define DVMM_VIRTIO_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "guest-mem/gm.h"
#include "virtio/msix.h"
#include "virtio/virtq.h"
#include "vmm/pci.h"
#include "vmm/vmif.h"

#define VP_MAX_QUEUES 64

/* BAR 0 layout. */
#define VP_BAR            0
#define VP_BAR_SIZE       0x8000
#define VP_COMMON_OFF     0x0000
#define VP_ISR_OFF        0x1000
#define VP_DEVCFG_OFF     0x2000
#define VP_NOTIFY_OFF     0x3000
#define VP_MSIX_TABLE_OFF 0x4000
#define VP_MSIX_PBA_OFF   0x5000
#define VP_NOTIFY_MULT    4

struct vp_dev_ops {
    /* Device-specific config (offset within it; bounds already checked). */
    void (*cfg_read)(void *opaque, uint64_t off, uint8_t *data, unsigned len);
    void (*cfg_write)(void *opaque, uint64_t off, const uint8_t *data,
                      unsigned len);
    /* FEATURES_OK: may refuse a feature set that is a subset of the
     * offer but breaks the device's rules (a feature without the one it
     * depends on).  NULL accepts every subset. */
    bool (*features_ok)(void *opaque, uint64_t features);
    /* DRIVER_OK: vp_vq() of every enabled queue is ready.  <0 sets
     * NEEDS_RESET. */
    int (*start)(void *opaque);
    /* Reset or teardown: stop using the queues; return only when no request
     * is in flight and no worker will touch a ring or raise an interrupt. */
    void (*stop)(void *opaque);
};

struct vp_params {
    const char *name;            /* "virtio-blk.0", for logs */
    uint16_t virtio_id;          /* VIRTIO_ID_BLOCK... */
    uint32_t class_code;
    uint64_t features;           /* device features, VERSION_1 added */
    unsigned nqueues;            /* 1..VP_MAX_QUEUES */
    uint16_t queue_size;         /* max size, power of two <= VQ_MAX_SIZE */
    unsigned cfg_size;           /* bytes of device config (<= 0x1000) */
    const struct vp_dev_ops *ops;
    void *opaque;
};

struct vp_queue {
    uint16_t size;               /* driver's choice, <= max */
    uint16_t msix_vector;
    bool enabled;
    uint64_t desc, avail, used;
    int kick_fd;
    bool ioeventfd;              /* assigned at bar_addr now */
    struct vq vq;                /* valid between DRIVER_OK and reset */
};

struct virtio_pci {
    struct pci_dev pdev;
    struct pci *pci;
    struct vmif *vmif;
    const struct guest_mem *gm;
    struct vp_params p;
    pthread_mutex_t lock;        /* common config and status transitions */
    uint8_t status;              /* atomic: NEEDS_RESET is set by workers */
    uint8_t isr;                 /* atomic */
    uint8_t config_generation;
    uint32_t dfselect, gfselect;
    uint64_t driver_features;    /* as written */
    uint64_t features;           /* negotiated (valid after FEATURES_OK) */
    uint16_t queue_select;
    uint16_t msix_config;
    bool started;
    struct vp_queue q[VP_MAX_QUEUES];
    struct msix msix;
    unsigned cfgcap;             /* config offset of the PCI_CFG cap */
    uint64_t bar_addr;
    bool bar_mapped;
    bool warned_ioeventfd;
};

/* Build the PCI function and put it on the bus.  Returns the slot or
 * -errno. */
int vp_init(struct virtio_pci *vp, const struct vp_params *p, struct pci *pci,
            struct vmif *vmif, const struct guest_mem *gm);
/* Stop the device (ops->stop), remove it from the PCI bus, release kick
 * eventfds, MSI-X routes and irqfds. */
void vp_destroy(struct virtio_pci *vp);

/* Power-on reset for a VM reboot: virtio reset (waits for in-flight I/O),
 * MSI-X table cleared, PCI config space back to power-on. */
void vp_device_reset(struct virtio_pci *vp);

/* For the device and its workers. */
static inline int vp_kick_fd(const struct virtio_pci *vp, unsigned q)
{ return vp->q[q].kick_fd; }
static inline struct vq *vp_vq(struct virtio_pci *vp, unsigned q)
{ return &vp->q[q].vq; }
static inline bool vp_queue_enabled(const struct virtio_pci *vp, unsigned q)
{ return vp->q[q].enabled; }
static inline bool vp_has_feature(const struct virtio_pci *vp, unsigned bit)
{ return vp->features & (1ULL << bit); }
/* Interrupt for queue q: its MSI-X vector, or ISR bit 0 + INTx. */
void vp_notify_queue(struct virtio_pci *vp, unsigned q);
/* Device config changed: config vector or ISR bit 1. */
void vp_notify_config(struct virtio_pci *vp);
/* Set DEVICE_NEEDS_RESET and tell the driver.  Safe from any thread. */
void vp_set_needs_reset(struct virtio_pci *vp, const char *why);

/* The BAR handler, exported so tests can drive the device without a bus. */
void vp_bar_io(void *vp, unsigned bar, uint64_t off, uint8_t *data,
               unsigned len, bool is_write);

#endif
