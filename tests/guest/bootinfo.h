/* What the guest learns from its loader, in one shape whichever entry point
 * was used: the Linux 64-bit boot protocol (boot_params) or PVH
 * (hvm_start_info).  Everything is copied out of loader memory at start-up,
 * because the mem check later overwrites all RAM, loader data included. */
#ifndef GUEST_BOOTINFO_H
#define GUEST_BOOTINFO_H

#include <stdint.h>

#include "asm.h"

#define BI_MAX_E820	128
#define BI_CMDLINE_MAX	2048
#define E820_RAM	1

enum boot_kind {
	BOOT_LINUX64 = BOOT_KIND_LINUX64,	/* dvmm: ELF e_entry, RSI = boot_params */
	BOOT_PVH = BOOT_KIND_PVH,		/* QEMU -kernel: XEN_ELFNOTE_PHYS32_ENTRY */
};

struct bi_e820 {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

struct bootinfo {
	enum boot_kind kind;
	unsigned n_e820;
	struct bi_e820 e820[BI_MAX_E820];
	char cmdline[BI_CMDLINE_MAX];
	/* EBDA segment base from the BDA word at 0x40e, 0 if none; read early
	 * since page 0 is RAM that the mem check overwrites. */
	uint64_t ebda;
};

/* Both return 0, or a negative number with *why set when the loader data is
 * unusable (bad magic, no memory map). */
int bootinfo_from_boot_params(struct bootinfo *bi, const void *boot_params, const char **why);
int bootinfo_from_pvh(struct bootinfo *bi, const void *start_info, const char **why);

/* Sum of e820 RAM bytes, and the end of the highest RAM range. */
uint64_t bootinfo_ram_bytes(const struct bootinfo *bi);
uint64_t bootinfo_ram_top(const struct bootinfo *bi);

#endif
