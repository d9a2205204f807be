/* reset: pulse the reset line through the i8042 (0xFE to port 0x64).  The
 * VMM ends or reboots the VM; getting control back is the failure. */
#include "checks.h"
#include "console.h"
#include "io.h"

/* A VMM may let a few instructions run before acting on the request. */
#define RESET_GRACE_CYCLES	2000000000ULL
#define RESET_GRACE_LOOPS	100000000ULL

void check_reset(struct check_ctx *c)
{
	uint64_t start;

	console_puts("# reset: writing 0xfe to port 0x64\n");
	outb(0x64, 0xfe);
	start = rdtsc();
	for (uint64_t i = 0; i < RESET_GRACE_LOOPS && rdtsc() - start < RESET_GRACE_CYCLES; i++)
		cpu_relax();
	check_fail(c, "still running after the i8042 reset command");
}
