/* Constants shared by the guest's assembly and C: GDT selectors, control
 * register bits, MSRs, and the 32-bit -> long mode switch. */
#ifndef GUEST_ASM_H
#define GUEST_ASM_H

/* Selectors match the Linux boot protocol's __BOOT_CS/__BOOT_DS so that the
 * state dvmm hands over and the state we build agree. */
#define SEL_CODE32	0x08
#define SEL_CODE64	0x10
#define SEL_DATA	0x18

#define CR0_PE		0x00000001
#define CR0_NE		0x00000020
#define CR0_PG		0x80000000
#define CR4_PAE		0x00000020
#define MSR_EFER	0xc0000080
#define EFER_LME	0x00000100

/* enum boot_kind values, also passed from assembly. */
#define BOOT_KIND_LINUX64 0
#define BOOT_KIND_PVH	1

#define BSP_STACK_SIZE	0x8000
#define AP_STACK_SIZE	0x2000
#define MAX_CPUS	64

/* Real-mode AP trampoline: copied here, started with SIPI vector 0x60.
 * dvmm never uses [0x60000, 0x70000). */
#define TRAMPOLINE_ADDR	0x60000
#define TRAMPOLINE_SIPI_VECTOR (TRAMPOLINE_ADDR >> 12)

#ifdef __ASSEMBLER__
/* From 32-bit protected mode with flat segments and paging off: load
 * \pml4, turn on PAE, EFER.LME and paging, then far-jump to 64-bit \target.
 * Needs no stack, so APs can use it before they own one. */
.macro ENTER_LONG_MODE pml4, target
	movl	%cr4, %eax
	orl	$CR4_PAE, %eax
	movl	%eax, %cr4
	movl	$\pml4, %eax
	movl	%eax, %cr3
	movl	$MSR_EFER, %ecx
	rdmsr
	orl	$EFER_LME, %eax
	wrmsr
	movl	%cr0, %eax
	orl	$(CR0_PG | CR0_PE | CR0_NE), %eax
	movl	%eax, %cr0
	ljmp	$SEL_CODE64, $\target
.endm

/* Load ds/es/ss/fs/gs with the flat data selector (clobbers %eax). */
.macro LOAD_DATA_SEGMENTS
	movl	$SEL_DATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
.endm
#endif

#endif
