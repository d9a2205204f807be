#include "reenter.h"

#include <asm/bootparam.h>

#include "lib.h"

/* Where dvmm puts them (the boot contract). */
#define BOOT_PARAMS_ADDR	0x7000
#define CMDLINE_ADDR		0x50000

void linux64_entry(void);

void reenter_linux64(const struct bootinfo *bi)
{
	struct boot_params *bp = (struct boot_params *)BOOT_PARAMS_ADDR;
	char *cmdline = (char *)CMDLINE_ADDR;
	unsigned n = bi->n_e820 < E820_MAX_ENTRIES_ZEROPAGE ? bi->n_e820 : E820_MAX_ENTRIES_ZEROPAGE;

	memset(bp, 0, sizeof(*bp));
	for (unsigned i = 0; i < n; i++) {
		bp->e820_table[i].addr = bi->e820[i].addr;
		bp->e820_table[i].size = bi->e820[i].size;
		bp->e820_table[i].type = bi->e820[i].type;
	}
	bp->e820_entries = (uint8_t)n;
	strlcpy(cmdline, bi->cmdline, BI_CMDLINE_MAX);
	bp->hdr.cmd_line_ptr = CMDLINE_ADDR;
	bp->hdr.type_of_loader = 0xff;
	/* The stack is abandoned: the entry sets up its own, as with dvmm,
	 * and the PVH page tables still map the low 4 GiB. */
	__asm__ volatile("cli; jmp *%1" : : "S"(bp), "r"(linux64_entry) : "memory");
	__builtin_unreachable();
}
