/* Exception handling: every vector ends the run with a report and a
 * failing exit status, so a guest bug never hangs the VM. */
#ifndef GUEST_IDT_H
#define GUEST_IDT_H

#include <stdbool.h>
#include <stdint.h>

/* What isr.S saves, lowest address first. */
struct exc_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rdi, rsi, rbp, rbx, rdx, rcx, rax;
	uint64_t vector;
	uint64_t error;
	uint64_t rip;	/* a hook may change it to resume elsewhere */
	uint64_t cs;
	uint64_t rflags;
	uint64_t rsp;
	uint64_t ss;
};

/* Returns true when it handled the exception; the interrupted code then
 * resumes at f->rip with f's registers.  Resuming does not use iretq
 * (KVM's emulator cannot run it outside real mode), so after an NMI,
 * NMIs stay blocked; a #MC hook must clear MCG_STATUS.MCIP itself. */
typedef bool idt_hook_fn(struct exc_frame *f);

/* Builds the IDT (BSP, once) and loads it on the calling CPU. */
void idt_init(void);
void idt_load(void);

/* Installs (or with NULL removes) the hook for one vector; shared by all
 * CPUs.  Unhooked vectors report and end the run with status 1. */
void idt_set_hook(uint8_t vector, idt_hook_fn *fn);

void idt_dispatch(struct exc_frame *f);

#endif
