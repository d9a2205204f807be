#include "bootinfo.h"

#include <asm/bootparam.h>

#include "lib.h"

/* From Xen's public/arch-x86/hvm/start_info.h (not a uapi header). */
#define HVM_START_MAGIC	0x336ec578

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;		/* version >= 1 */
	uint32_t memmap_entries;	/* version >= 1 */
	uint32_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info layout");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "memmap entry layout");

static void bootinfo_common(struct bootinfo *bi, uint64_t cmdline_pa)
{
	const uint16_t *bda_ebda = (const uint16_t *)0x40e;

	if (cmdline_pa)
		strlcpy(bi->cmdline, (const char *)(uintptr_t)cmdline_pa, sizeof(bi->cmdline));
	else
		bi->cmdline[0] = '\0';
	bi->ebda = (uint64_t)*bda_ebda << 4;
}

int bootinfo_from_boot_params(struct bootinfo *bi, const void *boot_params, const char **why)
{
	const struct boot_params *bp = boot_params;
	unsigned n = bp->e820_entries;

	memset(bi, 0, sizeof(*bi));
	bi->kind = BOOT_LINUX64;
	if (n > E820_MAX_ENTRIES_ZEROPAGE)
		n = E820_MAX_ENTRIES_ZEROPAGE;
	for (unsigned i = 0; i < n && i < BI_MAX_E820; i++) {
		bi->e820[i].addr = bp->e820_table[i].addr;
		bi->e820[i].size = bp->e820_table[i].size;
		bi->e820[i].type = bp->e820_table[i].type;
		bi->n_e820++;
	}
	bootinfo_common(bi, bp->hdr.cmd_line_ptr | ((uint64_t)bp->ext_cmd_line_ptr << 32));
	if (!bi->n_e820) {
		*why = "boot_params has no e820 entries";
		return -1;
	}
	return 0;
}

int bootinfo_from_pvh(struct bootinfo *bi, const void *start_info, const char **why)
{
	const struct hvm_start_info *si = start_info;
	const struct hvm_memmap_table_entry *mm;

	memset(bi, 0, sizeof(*bi));
	bi->kind = BOOT_PVH;
	if (si->magic != HVM_START_MAGIC) {
		*why = "bad hvm_start_info magic";
		return -1;
	}
	bootinfo_common(bi, si->cmdline_paddr);
	if (si->version < 1 || !si->memmap_paddr || !si->memmap_entries) {
		*why = "hvm_start_info has no memory map (version < 1)";
		return -1;
	}
	mm = (const struct hvm_memmap_table_entry *)(uintptr_t)si->memmap_paddr;
	for (unsigned i = 0; i < si->memmap_entries && bi->n_e820 < BI_MAX_E820; i++) {
		/* qboot counts an empty terminator entry: drop it. */
		if (!mm[i].size)
			continue;
		bi->e820[bi->n_e820].addr = mm[i].addr;
		bi->e820[bi->n_e820].size = mm[i].size;
		bi->e820[bi->n_e820].type = mm[i].type;
		bi->n_e820++;
	}
	return 0;
}

uint64_t bootinfo_ram_bytes(const struct bootinfo *bi)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < bi->n_e820; i++)
		if (bi->e820[i].type == E820_RAM)
			sum += bi->e820[i].size;
	return sum;
}

uint64_t bootinfo_ram_top(const struct bootinfo *bi)
{
	uint64_t top = 0;

	for (unsigned i = 0; i < bi->n_e820; i++)
		if (bi->e820[i].type == E820_RAM && bi->e820[i].addr + bi->e820[i].size > top)
			top = bi->e820[i].addr + bi->e820[i].size;
	return top;
}
