/* fault: read an address outside the identity map on purpose.  Proves the
 * exception path (report + exit status 1) works, so a guest bug can never
 * hang a test run.  It never passes: the run must end in the handler. */
#include "checks.h"
#include "console.h"

void check_fault(struct check_ctx *c)
{
	/* 128 TiB - 4 KiB: canonical, in PML4 slot 255, which is never mapped. */
	volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)0x00007ffffffff000ULL;

	console_puts("# fault: reading unmapped address 0x7ffffffff000, expect #PF\n");
	(void)*p;
	check_fail(c, "read of an unmapped address did not fault");
}
