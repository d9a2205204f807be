/* boot: show what the loader handed over (cmdline, e820) and compare the
 * RAM total with expect_mem= when given. */
#include "checks.h"
#include "cmdline.h"
#include "console.h"

#define MIB ((uint64_t)1 << 20)

void check_boot(struct check_ctx *c)
{
	const struct bootinfo *bi = c->bi;
	uint64_t ram = bootinfo_ram_bytes(bi), expect;
	int rc;

	console_printf("# entry: %s\n", bi->kind == BOOT_PVH ? "pvh" : "linux64 (boot_params)");
	console_printf("# cmdline: %s\n", bi->cmdline);
	for (unsigned i = 0; i < bi->n_e820; i++)
		console_printf("# e820: 0x%016lx - 0x%016lx type %u\n", bi->e820[i].addr,
			       bi->e820[i].addr + bi->e820[i].size, bi->e820[i].type);
	console_printf("# ram: %lu bytes (%lu MiB) in e820\n", ram, ram / MIB);
	if (c->mapped_top)
		console_printf("# identity map: [0, 0x%lx)\n", c->mapped_top);

	rc = cmdline_get_u64(bi->cmdline, "expect_mem", true, &expect);
	if (rc < 0) {
		check_fail(c, "malformed expect_mem=");
	} else if (rc > 0) {
		/* The legacy hole [0x9fc00, 0x100000) and firmware reservations
		 * take a little; more than 1 MiB missing is a real difference. */
		if (ram > expect || expect - ram > MIB)
			check_fail(c, "e820 RAM is %lu bytes, expect_mem=%lu", ram, expect);
		else
			console_printf("# expect_mem: %lu bytes, e820 RAM within 1 MiB\n", expect);
	}
}
