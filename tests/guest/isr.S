/* One 16-byte stub per interrupt vector; the stub for vector v is at
 * isr_stubs + 16 * v.  Each pushes a uniform frame (vector, error code,
 * then the CPU's own rip/cs/rflags/rsp/ss) and calls idt_exception(). */
#include "asm.h"

/* Vectors for which the CPU pushes an error code itself. */
#define HAS_ERR(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)

	.text
	.code64
	.balign 16
	.globl	isr_stubs
isr_stubs:
	.set	vec, 0
	.rept	256
	.balign 16
	.if	!HAS_ERR(vec)
	pushq	$0
	.endif
	pushq	$vec
	jmp	isr_common
	.set	vec, vec + 1
	.endr

isr_common:
	movq	%rsp, %rdi
	andq	$-16, %rsp
	call	idt_exception
1:	cli
	hlt
	jmp	1b

	.section .note.GNU-stack, "", @progbits
