/* Application processor start-up.  An AP leaves wait-for-SIPI in real mode
 * at TRAMPOLINE_ADDR (CS = 0x6000, IP = 0).  Only the 16-bit part must live
 * below 1 MiB, so only it is copied there; it jumps straight on to 32-bit
 * code in the guest image, which is identity-mapped below 4 GiB. */
#include "asm.h"

	.section .tramp16, "ax"
	.code16
	.globl	tramp_start, tramp_end
tramp_start:
	cli
	cld
	movw	%cs, %ax
	movw	%ax, %ds
	/* Offsets are relative to the copy, since DS = CS = its segment. */
	lgdtl	tramp_gdtr - tramp_start
	movl	%cr0, %eax
	orl	$CR0_PE, %eax
	movl	%eax, %cr0
	ljmpl	$SEL_CODE32, $ap_entry32

	.balign 8
tramp_gdtr:
	.word	guest_gdt_limit
	.long	guest_gdt
tramp_end:

	.section .text32, "ax"
	.code32
ap_entry32:
	LOAD_DATA_SEGMENTS
	ENTER_LONG_MODE paging_pml4, ap_entry64

	.text
	.code64
ap_entry64:
	LOAD_DATA_SEGMENTS
	/* Each AP takes a ticket that selects its stack, so even an AP that
	 * arrives late (after the BSP gave up on it) never shares a stack. */
	movl	$1, %eax
	lock xaddl %eax, ap_ticket(%rip)
	cmpl	$(MAX_CPUS - 1), %eax
	jae	2f
	movl	%eax, %edi
	leal	1(%eax), %eax
	imull	$AP_STACK_SIZE, %eax
	leaq	ap_stacks(%rip), %rsp
	addq	%rax, %rsp
	call	smp_ap_main
2:	cli
	hlt
	jmp	2b

	.section .bss.stacks, "aw", @nobits
	.balign 4096
ap_stacks:
	.skip	AP_STACK_SIZE * (MAX_CPUS - 1)

	.bss
	.balign 4
ap_ticket:
	.long	0

	.section .note.GNU-stack, "", @progbits
