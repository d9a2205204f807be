/* MSI-X for a PCI function: the capability, the vector table and the PBA
 * (both in a memory BAR), and the mapping of each vector onto KVM: one
 * eventfd per vector, bound with vmif->irqfd to a GSI whose MSI route
 * (vmif->msi_route) follows the guest's address/data.
 *
 * Masking is done here, not in KVM: a device signalling a masked vector
 * (per-vector mask or function mask) sets its pending bit instead; unmasking
 * a pending vector delivers it.  Routes are (re)programmed when a vector is
 * unmasked with an address/data that differs from the routed one, and when
 * the guest rewrites address/data of an unmasked vector.
 *
 * All entry points are thread-safe (m->lock): vCPU threads touch the table,
 * device workers call msix_notify. */
#ifndef DVMM_MSIX_H
#define DVMM_MSIX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/pci.h"
#include "vmm/vmif.h"

#define MSIX_MAX_VECTORS 256

struct msix_vec {
    uint32_t addr_lo, addr_hi, data, ctrl;   /* the guest-visible entry */
    int fd;                /* eventfd bound to gsi */
    int gsi;               /* -1 until first routed */
    bool irqfd_bound;
    bool routed;
    uint64_t r_addr;       /* what the GSI routes to now */
    uint32_t r_data;
    bool pending;
    unsigned direct;       /* users writing fd themselves (msix_set_direct) */
};

struct msix {
    pthread_mutex_t lock;
    struct vmif *vmif;
    const char *name;      /* device, for logs */
    unsigned nvec;
    struct msix_vec *v;
    bool enabled, fmask;
    unsigned cap;          /* config offset of the capability */
    bool warned_no_irqfd;
};

/* nvec in 1..MSIX_MAX_VECTORS; creates the eventfds.  Entries start masked. */
int msix_init(struct msix *m, unsigned nvec, struct vmif *vmif,
              const char *name);
/* Unbinds irqfds, releases GSIs, closes eventfds. */
void msix_destroy(struct msix *m);

/* Add the MSI-X capability to dev: table at table_off and PBA at pba_off of
 * BAR `bar`.  Returns the capability offset or -errno. */
int msix_add_cap(struct msix *m, struct pci_dev *dev, unsigned bar,
                 uint32_t table_off, uint32_t pba_off);
/* From the pci cfg_write hook: picks up enable/function-mask changes. */
void msix_cfg_write(struct msix *m, const struct pci_dev *dev, unsigned off,
                    unsigned len);

/* BAR accesses, offsets relative to the table / PBA start. */
void msix_table_io(struct msix *m, uint64_t off, uint8_t *data, unsigned len,
                   bool is_write);
void msix_pba_io(struct msix *m, uint64_t off, uint8_t *data, unsigned len,
                 bool is_write);

/* Power-on state of the table: every entry masked and cleared, nothing
 * pending.  GSIs and irqfds stay allocated for reuse. */
void msix_reset(struct msix *m);

bool msix_enabled(struct msix *m);
/* Raise vector `vec` (or make it pending while masked).  Out-of-range
 * vectors (VIRTIO_MSI_NO_VECTOR) are ignored.  Returns 0 or -errno. */
int msix_notify(struct msix *m, unsigned vec);
/* The eventfd behind vector `vec`, for tests and benchmarks that play the
 * guest, and for msix_set_direct users. */
int msix_vector_fd(const struct msix *m, unsigned vec);

/* Someone else (vhost's call fd) writes vector `vec`'s eventfd directly;
 * counted, so several queues may share a vector.  While such a vector is
 * masked its irqfd is unbound, so a message waits in the eventfd and KVM
 * delivers it when the vector is unmasked and the irqfd bound again (KVM
 * checks the eventfd at bind time).  The PBA does not show such a waiting
 * message.  Out-of-range vectors are ignored. */
void msix_set_direct(struct msix *m, unsigned vec, bool on);

#endif
