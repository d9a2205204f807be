/* What a device may ask of the VM.  The KVM implementation lives in
 * vmm/kvm.c; unit tests and benchmarks supply their own (plain eventfds, no
 * KVM), which is why devices never include <linux/kvm.h> themselves.
 * Every hook returns 0 or -errno. */
#ifndef DVMM_VMIF_H
#define DVMM_VMIF_H

#include <stdbool.h>
#include <stdint.h>

struct vmif {
    void *opaque;
    /* Route guest writes of `len` bytes at `addr` (MMIO when `mmio`, else
     * PIO) to eventfd `fd` instead of an exit.  `assign` false removes it. */
    int (*ioeventfd)(void *opaque, uint64_t addr, unsigned len, bool mmio,
                     int fd, bool assign);
    /* Allocate an MSI GSI (*gsi == -1 on entry) or update an existing one
     * with a new address/data.  A masked vector keeps its GSI but is routed
     * nowhere until unmasked. */
    int (*msi_route)(void *opaque, int *gsi, uint64_t addr, uint32_t data);
    int (*msi_release)(void *opaque, int gsi);
    /* Bind eventfd `fd` to `gsi`: a write to fd raises the interrupt.
     * resample_fd >= 0 makes it level-triggered (INTx). */
    int (*irqfd)(void *opaque, unsigned gsi, int fd, int resample_fd,
                 bool assign);
    /* Drive a legacy IRQ line (IOAPIC/PIC pin) for the UART and friends. */
    int (*irq_line)(void *opaque, unsigned irq, int level);
};

#endif
