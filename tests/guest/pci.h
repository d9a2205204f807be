/* PCI for the test guest: configuration mechanism #1 (0xCF8/0xCFC) on bus
 * 0, memory BAR decoding, the capability list, and making sure a BAR is
 * reachable through the guest's identity map. */
#ifndef GUEST_PCI_H
#define GUEST_PCI_H

#include <stdbool.h>
#include <stdint.h>

#define PCI_CMD_MEMORY		0x0002
#define PCI_CMD_MASTER		0x0004
#define PCI_CMD_INTX_DISABLE	0x0400
#define PCI_CAP_ID_MSIX		0x11
#define PCI_CAP_ID_VNDR		0x09

struct pci_fn {
	uint8_t bus, dev, fn;
};

uint32_t pci_read32(struct pci_fn f, uint8_t off);
uint16_t pci_read16(struct pci_fn f, uint8_t off);
uint8_t pci_read8(struct pci_fn f, uint8_t off);
void pci_write32(struct pci_fn f, uint8_t off, uint32_t v);
void pci_write16(struct pci_fn f, uint8_t off, uint16_t v);

/* The nth (from 0) function on bus 0 with this vendor:device; false when
 * there are fewer. */
bool pci_find(uint16_t vendor, uint16_t device, unsigned nth, struct pci_fn *out);

/* Memory BAR `bar`: its address and size (probed with all-ones while
 * memory decoding is off).  Returns false for an unimplemented or I/O BAR,
 * or the upper half of a 64-bit one. */
bool pci_bar(struct pci_fn f, unsigned bar, uint64_t *addr, uint64_t *size);

/* Offset of the next capability with this id in list order after the
 * capability at `after` (0: from the head of the list); 0 when there is
 * none.  List order is not offset order (QEMU links new capabilities in
 * first).  The walk is bounded, so a looping list cannot hang the guest. */
uint8_t pci_find_cap(struct pci_fn f, uint8_t id, uint8_t after);

/* Makes [addr, addr+size) reachable at the same virtual address, with
 * uncached 2 MiB pages, when it lies above what paging_init mapped.
 * Returns false when the page-table pool is exhausted or addr is beyond
 * what 4-level paging reaches. */
bool pci_map_mmio(uint64_t addr, uint64_t size, uint64_t mapped_top);

#endif
