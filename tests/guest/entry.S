/* The two ways in: the Linux 64-bit boot protocol entry (ELF e_entry, used
 * by dvmm) and the PVH 32-bit entry (ELF note, used by QEMU -kernel).  Both
 * end in guest_start(info, kind) on our own stack with our own GDT. */
#include "asm.h"

/* XEN_ELFNOTE_PHYS32_ENTRY: QEMU enters here in 32-bit protected mode,
 * paging off, %ebx = struct hvm_start_info *. */
	.section .note.pvh, "a"
	.balign 4
	.long	4		/* namesz: "Xen\0" */
	.long	4		/* descsz */
	.long	18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz	"Xen"
	.balign 4
	.long	pvh_entry32
	.balign 4

	.section .data
	.balign 16
	.globl	guest_gdt
guest_gdt:
	.quad	0
	.quad	0x00cf9b000000ffff	/* 0x08: 32-bit code */
	.quad	0x00af9b000000ffff	/* 0x10: 64-bit code */
	.quad	0x00cf93000000ffff	/* 0x18: flat data */
guest_gdt_end:
	/* Absolute, so the AP trampoline in another file can use it. */
	.globl	guest_gdt_limit
	.set	guest_gdt_limit, guest_gdt_end - guest_gdt - 1

	/* The low 6 bytes double as the 32-bit form for lgdt in 32-bit mode. */
	.balign 16
guest_gdtr:
	.word	guest_gdt_end - guest_gdt - 1
	.quad	guest_gdt

/* PVH enters with paging off, so it needs page tables before long mode:
 * a fixed identity map of the low 4 GiB with 2 MiB pages (1 GiB leaves
 * are avoided everywhere: KVM's emulator triple-faults on them).
 * guest_start later replaces it with a map of all RAM. */
	.balign 4096
boot_pml4:
	.quad	boot_pdpt + 0x3
	.fill	511, 8, 0
boot_pdpt:
	.quad	boot_pd + 0x0000 + 0x3
	.quad	boot_pd + 0x1000 + 0x3
	.quad	boot_pd + 0x2000 + 0x3
	.quad	boot_pd + 0x3000 + 0x3
	.fill	508, 8, 0
boot_pd:
	.set	pfn2m, 0
	.rept	2048
	.quad	(pfn2m << 21) | 0x83	/* present, writable, 2 MiB */
	.set	pfn2m, pfn2m + 1
	.endr

	.section .bss.stacks, "aw", @nobits
	.balign 4096
	.globl	bsp_stack_top
bsp_stack:
	.skip	BSP_STACK_SIZE
bsp_stack_top:

	.section .text32, "ax"
	.code32
	.globl	pvh_entry32
pvh_entry32:
	cli
	cld
	movl	%ebx, %esi		/* survives to 64-bit code */
	lgdt	guest_gdtr
	ljmp	$SEL_CODE32, $1f
1:	LOAD_DATA_SEGMENTS
	ENTER_LONG_MODE boot_pml4, pvh_entry64

	.text
	.code64
pvh_entry64:
	LOAD_DATA_SEGMENTS
	movl	%esi, %r12d		/* hvm_start_info, below 4 GiB */
	movl	$BOOT_KIND_PVH, %r13d
	jmp	common64

/* dvmm: long mode, paging on (identity map >= 4 GiB), interrupts off,
 * %rsi = struct boot_params *, %rsp undefined. */
	.globl	linux64_entry
linux64_entry:
	cli
	cld
	movq	%rsi, %r12
	movl	$BOOT_KIND_LINUX64, %r13d
	lgdt	guest_gdtr(%rip)
	movq	$bsp_stack_top, %rsp
	/* A far return is the portable way to reload %cs in long mode. */
	pushq	$SEL_CODE64
	leaq	1f(%rip), %rax
	pushq	%rax
	lretq
1:	LOAD_DATA_SEGMENTS

common64:
	movq	$bsp_stack_top, %rsp
	/* Only the small .bss is zeroed here; stacks and page tables live in
	 * their own sections and are fully written before use. */
	movq	$__bss_start, %rdi
	movq	$__bss_end, %rcx
	subq	%rdi, %rcx
	shrq	$3, %rcx
	xorl	%eax, %eax
	rep stosq
	movq	%r12, %rdi
	movl	%r13d, %esi
	call	guest_start
2:	cli
	hlt
	jmp	2b

	.section .note.GNU-stack, "", @progbits
