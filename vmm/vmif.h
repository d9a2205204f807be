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
    /* A device's own access to guest memory at host address `hva` met a
     * failed page (its worker's guard caught the SIGBUS BUS_MCEERR_AR, or a
     * probe found the page after a syscall's EFAULT); lsb is si_addr_lsb.
     * The VM puts the page on its poisoned list and tells the guest as the
     * kernel's action-optional report would be told (vCPU 0); origin names
     * device, queue and buffer for the MCE log.  Any thread; NULL where
     * nothing stands behind the device. */
    int (*memory_failure)(void *opaque, uint64_t hva, unsigned lsb, const char *origin);
};

#endif
