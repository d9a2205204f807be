/* The x86 boot path: everything dvmm writes into guest memory before the
 * BSP runs (kernel, initrd, command line, boot_params, e820, GDT, identity
 * page tables, MP table), and the BSP's initial long-mode state.
 *
 * Guest-physical layout below 1 MiB (the x86 boot contract with guests):
 *   0x00500  GDT  [2]=0x10 64-bit code, [3]=0x18 data
 *   0x07000  struct boot_params (zero page)
 *   0x09000  PML4, 0x0a000 PDPT, 0x10000.. one PD per GiB (at most 64)
 *   0x50000  kernel command line (NUL-terminated, <= 2048 bytes)
 *   0x60000..0x6ffff never touched (the test guest's AP trampoline)
 *   0x9fc00  MP floating pointer + config table (e820-reserved)
 * Kernels and initrds load at or above 1 MiB. */
#ifndef DVMM_X86_BOOT_H
#define DVMM_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "guest-mem/gm.h"
#include "vmm/config.h"
#include "vmm/loader.h"

#define X86_BOOT_GDT_GPA        0x500ULL
#define X86_BOOT_GDT_ENTRIES    4
#define X86_BOOT_ZERO_PAGE_GPA  0x7000ULL
#define X86_BOOT_PML4_GPA       0x9000ULL
#define X86_BOOT_PDPT_GPA       0xa000ULL
#define X86_BOOT_PD_GPA         0x10000ULL
#define X86_BOOT_PD_MAX         64          /* GiB identity-mapped at most */
#define X86_BOOT_CMDLINE_GPA    0x50000ULL
#define X86_BOOT_CMDLINE_MAX    2048        /* NUL included */
#define X86_BOOT_AP_AREA_GPA    0x60000ULL  /* [0x60000, 0x70000): guest's */
#define X86_BOOT_AP_AREA_SIZE   0x10000ULL
#define X86_BOOT_MPTABLE_GPA    0x9fc00ULL
#define X86_BOOT_KERNEL_FLOOR   0x100000ULL /* nothing of the image below */

#define X86_BOOT_CS 0x10                    /* __BOOT_CS */
#define X86_BOOT_DS 0x18                    /* __BOOT_DS */
#define X86_BOOT_GDT_CODE64 0x00af9b000000ffffULL
#define X86_BOOT_GDT_DATA   0x00cf93000000ffffULL

#define X86_CR0_PE (1ULL << 0)
#define X86_CR0_MP (1ULL << 1)
#define X86_CR0_ET (1ULL << 4)
#define X86_CR0_NE (1ULL << 5)
#define X86_CR0_WP (1ULL << 16)
#define X86_CR0_PG (1ULL << 31)
#define X86_CR4_PAE (1ULL << 5)
#define X86_EFER_SCE (1ULL << 0)
#define X86_EFER_LME (1ULL << 8)
#define X86_EFER_LMA (1ULL << 10)

/* The BSP's entry state.  Registers not listed are zero except RFLAGS=0x2;
 * RSP is left to the guest. */
struct x86_boot {
    uint64_t entry;             /* RIP */
    uint64_t cr3;
    uint64_t boot_params_gpa;   /* RSI */
    uint64_t gdt_gpa;
    uint16_t gdt_limit;
    uint16_t cs, ds;            /* ds also for es, ss, fs, gs */
    uint64_t cr0, cr4, efer;
    /* What was loaded, for logs and tests. */
    enum loader_kind kind;
    uint64_t kernel_start, kernel_end;
    uint64_t initrd_gpa, initrd_size;   /* size 0: no initrd */
    uint64_t map_end;           /* identity map covers [0, map_end) */
    unsigned e820_entries;
    int mptable_len;
    /* CLOCK_MONOTONIC ns at the end of each part (--trace-startup): kernel,
     * initrd (equal to t_kernel without one), boot tables. */
    uint64_t t_kernel, t_initrd, t_tables;
};

/* The whole boot path into guest memory.  Re-runnable on the same memory
 * (guest reboot): everything is rewritten, and poisoned pages are cut out
 * of e820 and never written.  On failure err holds one line naming the
 * config key and file, and -errno is returned. */
int x86_boot_load(struct guest_mem *gm, const struct dvmm_config *cfg,
                  struct x86_boot *out, char *err, size_t errlen);
/* The same with cfg->vm.kernel already open as kernel_fd (-1: open the
 * path), which stays open. */
int x86_boot_load_fd(struct guest_mem *gm, const struct dvmm_config *cfg, int kernel_fd,
                     struct x86_boot *out, char *err, size_t errlen);

/* The kvm_segment for GDT selector `sel` as x86_boot_load writes the GDT
 * (X86_BOOT_CS or X86_BOOT_DS), so vCPU setup and the GDT agree. */
void x86_boot_segment(uint16_t sel, struct kvm_segment *out);

/* Identity page tables alone, for tests: returns the mapped size or -errno. */
int x86_boot_page_tables(struct guest_mem *gm, uint64_t *map_end);

#endif
