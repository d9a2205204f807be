/* Exception handling: every vector ends the run with a report and a
 * failing exit status, so a guest bug never hangs the VM. */
#ifndef GUEST_IDT_H
#define GUEST_IDT_H

#include <stdint.h>

struct exc_frame {
	uint64_t vector;
	uint64_t error;
	uint64_t rip;
	uint64_t cs;
	uint64_t rflags;
	uint64_t rsp;
	uint64_t ss;
};

/* Builds the IDT (BSP, once) and loads it on the calling CPU. */
void idt_init(void);
void idt_load(void);

void idt_exception(const struct exc_frame *f) __attribute__((noreturn));

#endif
