#include "idt.h"

#include "asm.h"
#include "console.h"
#include "exit.h"
#include "io.h"

struct idt_gate {
	uint16_t off_lo;
	uint16_t sel;
	uint8_t ist;
	uint8_t type;	/* present, DPL 0, 64-bit interrupt gate */
	uint16_t off_mid;
	uint32_t off_hi;
	uint32_t zero;
} __attribute__((packed));

struct idt_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

extern const char isr_stubs[];

static struct idt_gate idt[256] __attribute__((aligned(16)));
/* Global like the IDT itself: the CPU finds handlers without context. */
static idt_hook_fn *idt_hooks[256];

static const char *const exc_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
	"#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "?15",
	"#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "?22", "?23",
	"?24", "?25", "?26", "?27", "#HV", "#VC", "#SX", "?31",
};

void idt_init(void)
{
	for (unsigned v = 0; v < 256; v++) {
		uint64_t a = (uintptr_t)isr_stubs + 16 * v;

		idt[v].off_lo = (uint16_t)a;
		idt[v].sel = SEL_CODE64;
		idt[v].ist = 0;
		idt[v].type = 0x8e;
		idt[v].off_mid = (uint16_t)(a >> 16);
		idt[v].off_hi = (uint32_t)(a >> 32);
		idt[v].zero = 0;
	}
	idt_load();
}

void idt_load(void)
{
	struct idt_ptr p = { sizeof(idt) - 1, (uintptr_t)idt };

	__asm__ volatile("lidt %0" : : "m"(p));
}

void idt_set_hook(uint8_t vector, idt_hook_fn *fn)
{
	idt_hooks[vector] = fn;
}

void idt_dispatch(struct exc_frame *f)
{
	idt_hook_fn *hook = idt_hooks[f->vector & 0xff];
	uint32_t a, b, c, d;

	if (hook && hook(f))
		return;
	cpuid(1, &a, &b, &c, &d);
	console_printf("# exception: vector %lu (%s) error 0x%lx rip 0x%lx cr2 0x%lx rsp 0x%lx apic %u\n",
		       f->vector, f->vector < 32 ? exc_names[f->vector] : "irq",
		       f->error, f->rip, read_cr2(), f->rsp, b >> 24);
	console_printf("not ok - unexpected exception vector %lu at rip 0x%lx\n", f->vector, f->rip);
	guest_exit(1);
}
