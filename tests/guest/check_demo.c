/* demo: what `make run` shows off: a sampled memory check, all CPUs up,
 * and one summary line. */
#include "checks.h"
#include "console.h"

void check_demo(struct check_ctx *c)
{
	struct mem_stats ms = { 0 };
	struct smp_stats ss = { 0 };

	mem_run(c, 0, &ms);
	smp_run(c, &ss);
	console_printf("# demo: %s entry, %lu MiB of RAM verified (%lu pages, %lu with a full pattern), %u of %u CPUs up\n",
		       c->bi->kind == BOOT_PVH ? "pvh" : "linux64",
		       ms.pages * 4096 >> 20, ms.pages, ms.full_pages, ss.up, ss.mp_cpus);
}
