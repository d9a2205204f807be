/* triple: make the CPU shut down on purpose.  With an empty IDT an
 * exception cannot be delivered, so #UD escalates to #DF and then to a
 * triple fault.  dvmm must report it as a guest crash (exit 1, registers
 * and the bytes at RIP); the check never returns. */
#include "checks.h"
#include "console.h"

void check_triple(struct check_ctx *c)
{
	static const struct __attribute__((packed)) {
		uint16_t limit;
		uint64_t base;
	} empty_idt = { 0, 0 };

	console_puts("# triple: loading an empty IDT and executing ud2\n");
	__asm__ volatile("cli; lidt %0; ud2" : : "m"(empty_idt) : "memory");
	check_fail(c, "the CPU survived an undeliverable #UD");
}
