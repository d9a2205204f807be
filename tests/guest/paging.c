#include "paging.h"

#include "io.h"

#define PTE_P		0x001
#define PTE_RW		0x002
#define PTE_PWT		0x008
#define PTE_PCD		0x010
#define PTE_PS		0x080
#define GIB		(1ULL << 30)
#define MIB2		(1ULL << 21)
/* IOAPIC and LAPIC live in the top 32 MiB below 4 GiB: map it uncached. */
#define MMIO_UC_START	0xfe000000ULL
#define MMIO_UC_END	0x100000000ULL

uint64_t paging_pml4[512] __attribute__((section(".bss.pgtables"), aligned(4096)));
static uint64_t paging_pdpt[512] __attribute__((section(".bss.pgtables"), aligned(4096)));
static uint64_t paging_pd[PAGING_MAX_GIB][512] __attribute__((section(".bss.pgtables"), aligned(4096)));

uint64_t paging_init(const struct bootinfo *bi)
{
	uint64_t top = bootinfo_ram_top(bi);
	unsigned ngib;

	if (top < 4 * GIB)
		top = 4 * GIB;
	ngib = (unsigned)((top + GIB - 1) / GIB);
	if (ngib > PAGING_MAX_GIB)
		ngib = PAGING_MAX_GIB;

	/* Every entry is written: these sections are not zeroed by anyone. */
	for (unsigned i = 0; i < 512; i++) {
		paging_pml4[i] = 0;
		paging_pdpt[i] = i < ngib ? (uintptr_t)paging_pd[i] | PTE_P | PTE_RW : 0;
	}
	paging_pml4[0] = (uintptr_t)paging_pdpt | PTE_P | PTE_RW;
	for (unsigned g = 0; g < ngib; g++) {
		for (unsigned j = 0; j < 512; j++) {
			uint64_t pa = (uint64_t)g * GIB + (uint64_t)j * MIB2;
			uint64_t e = pa | PTE_P | PTE_RW | PTE_PS;

			if (pa >= MMIO_UC_START && pa < MMIO_UC_END)
				e |= PTE_PCD | PTE_PWT;
			paging_pd[g][j] = e;
		}
	}
	write_cr3((uintptr_t)paging_pml4);
	return (uint64_t)ngib * GIB;
}
