/* trap: take a page fault, handle it in a hook and resume, twice.  This is
 * the path a machine-check handler needs (deliver through the IDT, return
 * without iretq), proven with an exception any VMM can produce. */
#include "checks.h"
#include "console.h"
#include "idt.h"
#include "io.h"

#define TRAP_ADDR	0x00007ffffffff000ULL	/* canonical, never mapped */

/* Set by the inline asm below: where the hook resumes. */
extern const char trap_resume[];

static bool trap_hook(struct exc_frame *f)
{
	if (read_cr2() != TRAP_ADDR)
		return false;
	f->rip = (uintptr_t)trap_resume;
	f->rax = 0x600dULL;	/* the faulting load "returns" this */
	return true;
}

static __attribute__((noinline)) uint64_t trap_load(void)
{
	uint64_t v;

	__asm__ volatile("movq %1, %%rax\n\t"
			 "movq (%%rax), %%rax\n\t"
			 ".globl trap_resume\n"
			 "trap_resume:\n\t"
			 "movq %%rax, %0"
			 : "=r"(v) : "i"(TRAP_ADDR) : "rax", "memory");
	return v;
}

void check_trap(struct check_ctx *c)
{
	uint64_t v1, v2;

	idt_set_hook(14, trap_hook);
	v1 = trap_load();
	v2 = trap_load();
	idt_set_hook(14, NULL);
	console_printf("# trap: #PF at 0x%llx handled and resumed twice\n", TRAP_ADDR);
	if (v1 != 0x600d || v2 != 0x600d)
		check_fail(c, "resumed with 0x%lx/0x%lx, expected 0x600d", v1, v2);
}
