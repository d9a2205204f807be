#include "pci.h"

#include "lib.h"
#include "paging.h"

#define CONF1_ADDR	0xcf8
#define CONF1_DATA	0xcfc
#define PCI_VENDOR	0x00
#define PCI_COMMAND	0x04
#define PCI_STATUS	0x06
#define PCI_HEADER	0x0e
#define PCI_BAR0	0x10
#define PCI_CAP_PTR	0x34
#define PCI_STATUS_CAPS	0x0010
#define BAR_IO		0x1
#define BAR_TYPE_MASK	0x6
#define BAR_TYPE_64	0x4

#define PTE_P		0x001ULL
#define PTE_RW		0x002ULL
#define PTE_PWT		0x008ULL
#define PTE_PCD		0x010ULL
#define PTE_PS		0x080ULL
#define PTE_ADDR	0x000ffffffffff000ULL
#define MIB2		(1ULL << 21)
#define POOL_TABLES	8

/* Page tables for BARs that firmware put above the identity map (SeaBIOS
 * places 64-bit BARs high); only the BSP adds entries, before APs run. */
static uint64_t pci_pt_pool[POOL_TABLES][512] __attribute__((aligned(4096)));
static unsigned pci_pt_used;

static inline void outl_(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw_(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint32_t inl_(uint16_t port)
{
	uint32_t v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint16_t inw_(uint16_t port)
{
	uint16_t v;

	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint8_t inb_(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void pci_select(struct pci_fn f, uint8_t off)
{
	outl_(CONF1_ADDR, 0x80000000U | (uint32_t)f.bus << 16 | (uint32_t)f.dev << 11 |
			  (uint32_t)f.fn << 8 | (off & 0xfc));
}

uint32_t pci_read32(struct pci_fn f, uint8_t off)
{
	pci_select(f, off);
	return inl_(CONF1_DATA);
}

uint16_t pci_read16(struct pci_fn f, uint8_t off)
{
	pci_select(f, off);
	return inw_(CONF1_DATA + (off & 2));
}

uint8_t pci_read8(struct pci_fn f, uint8_t off)
{
	pci_select(f, off);
	return inb_(CONF1_DATA + (off & 3));
}

void pci_write32(struct pci_fn f, uint8_t off, uint32_t v)
{
	pci_select(f, off);
	outl_(CONF1_DATA, v);
}

void pci_write16(struct pci_fn f, uint8_t off, uint16_t v)
{
	pci_select(f, off);
	outw_(CONF1_DATA + (off & 2), v);
}

bool pci_find(uint16_t vendor, uint16_t device, unsigned nth, struct pci_fn *out)
{
	for (unsigned dev = 0; dev < 32; dev++) {
		for (unsigned fn = 0; fn < 8; fn++) {
			struct pci_fn f = { 0, (uint8_t)dev, (uint8_t)fn };
			uint32_t id = pci_read32(f, PCI_VENDOR);

			if ((id & 0xffff) == 0xffff) {
				if (fn == 0)
					break;
				continue;
			}
			if ((id & 0xffff) == vendor && id >> 16 == device && nth-- == 0) {
				*out = f;
				return true;
			}
			/* Only multi-function devices have functions 1..7. */
			if (fn == 0 && !(pci_read8(f, PCI_HEADER) & 0x80))
				break;
		}
	}
	return false;
}

bool pci_bar(struct pci_fn f, unsigned bar, uint64_t *addr, uint64_t *size)
{
	uint8_t off = (uint8_t)(PCI_BAR0 + 4 * bar);
	uint16_t cmd = pci_read16(f, PCI_COMMAND);
	uint32_t lo = pci_read32(f, off), hi = 0, mlo, mhi = 0xffffffffU;
	bool is64 = (lo & BAR_TYPE_MASK) == BAR_TYPE_64;
	uint64_t mask;

	if (bar > 5 || (lo & BAR_IO) || (is64 && bar == 5))
		return false;
	/* Probe with decoding off, so the all-ones address never claims a
	 * range while we look. */
	pci_write16(f, PCI_COMMAND, cmd & (uint16_t)~PCI_CMD_MEMORY);
	pci_write32(f, off, 0xffffffffU);
	mlo = pci_read32(f, off);
	pci_write32(f, off, lo);
	if (is64) {
		hi = pci_read32(f, off + 4);
		pci_write32(f, off + 4, 0xffffffffU);
		mhi = pci_read32(f, off + 4);
		pci_write32(f, off + 4, hi);
	}
	pci_write16(f, PCI_COMMAND, cmd);
	mask = ((uint64_t)mhi << 32) | (mlo & ~0xfULL);
	if (!is64)
		mask |= 0xffffffff00000000ULL;
	if (!(mlo & ~0xfU) && !mhi)
		return false;
	*size = ~mask + 1;
	*addr = ((uint64_t)hi << 32) | (lo & ~0xfULL);
	return *size != 0;
}

uint8_t pci_find_cap(struct pci_fn f, uint8_t id, uint8_t after)
{
	bool past = after == 0;
	uint8_t p;

	if (!(pci_read16(f, PCI_STATUS) & PCI_STATUS_CAPS))
		return 0;
	p = pci_read8(f, PCI_CAP_PTR) & 0xfc;
	/* A config space holds at most 48 capabilities. */
	for (unsigned n = 0; p >= 0x40 && n < 48; n++) {
		if (past && pci_read8(f, p) == id)
			return p;
		if (p == after)
			past = true;
		p = pci_read8(f, p + 1) & 0xfc;
	}
	return 0;
}

static uint64_t *pci_next_table(uint64_t *entry)
{
	uint64_t *t;

	if (*entry & PTE_P)
		return (uint64_t *)(uintptr_t)(*entry & PTE_ADDR);
	if (pci_pt_used == POOL_TABLES)
		return NULL;
	t = pci_pt_pool[pci_pt_used++];
	memset(t, 0, 4096);
	*entry = (uintptr_t)t | PTE_P | PTE_RW;
	return t;
}

bool pci_map_mmio(uint64_t addr, uint64_t size, uint64_t mapped_top)
{
	uint64_t a = addr & ~(MIB2 - 1), end = addr + size;

	if (end <= mapped_top)
		return true;
	if (end > (1ULL << 47))
		return false;
	for (; a < end; a += MIB2) {
		uint64_t *pdpt, *pd;

		if (a < mapped_top)
			continue;
		pdpt = pci_next_table(&paging_pml4[(a >> 39) & 511]);
		if (!pdpt)
			return false;
		if (pdpt[(a >> 30) & 511] & PTE_PS)
			return false;	/* someone else's 1 GiB leaf: leave it */
		pd = pci_next_table(&pdpt[(a >> 30) & 511]);
		if (!pd)
			return false;
		pd[(a >> 21) & 511] = a | PTE_P | PTE_RW | PTE_PS | PTE_PCD | PTE_PWT;
		__asm__ volatile("invlpg (%0)" : : "r"(a) : "memory");
	}
	return true;
}
