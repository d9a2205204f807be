/* One 16-byte stub per interrupt vector; the stub for vector v is at
 * isr_stubs + 16 * v.  Each pushes a uniform frame (vector, error code,
 * then the CPU's own rip/cs/rflags/rsp/ss), saves the general registers
 * and calls idt_dispatch(). */
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
	pushq	%rax
	pushq	%rcx
	pushq	%rdx
	pushq	%rbx
	pushq	%rbp
	pushq	%rsi
	pushq	%rdi
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, %rdi		/* struct exc_frame * */
	movq	%rsp, %rbx
	andq	$-16, %rsp
	call	idt_dispatch		/* returns only when a hook handled it */
	movq	%rbx, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rdi
	popq	%rsi
	popq	%rbp
	popq	%rbx
	popq	%rdx
	popq	%rcx
	popq	%rax
	addq	$16, %rsp		/* vector, error code */

	/* Resume without iretq: KVM's instruction emulator only emulates
	 * real-mode iret.  Same CPL and no IST, so the frame sits on the
	 * interrupted stack: put rip just below the interrupted rsp (at worst
	 * over the frame's unused ss slot), restore rflags, switch to that
	 * stack and ret.  Stack now: rip, cs, rflags, rsp, ss. */
	pushq	%rax
	pushq	%rbx
	movq	40(%rsp), %rax		/* interrupted rsp */
	movq	16(%rsp), %rbx		/* rip to resume at */
	movq	%rbx, -8(%rax)
	subq	$8, %rax
	movq	%rax, 40(%rsp)
	popq	%rbx
	popq	%rax
	addq	$16, %rsp		/* rip, cs */
	popfq
	movq	(%rsp), %rsp
	ret

	.section .note.GNU-stack, "", @progbits
