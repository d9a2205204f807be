/* The x86 boot path into guest memory (see x86_boot.h for the layout).
 * Boot structures sit below 1 MiB at fixed addresses and images load at or
 * above it, so they cannot overlap; every write goes through
 * gm_gpa_to_hva and skips nothing silently. */
#include "vmm/x86_boot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/e820.h"
#include "vmm/log.h"
#include "vmm/mono.h"
#include "vmm/mptable.h"

#define PTE_P  0x1ULL
#define PTE_RW 0x2ULL
#define PTE_PS 0x80ULL
#define X86_BOOT_HEAP_END 0xfe00      /* boot.rst: end of setup heap - 0x200 */
#define X86_BOOT_ELF_ALIGN 0x1000000  /* kernel_alignment for vmlinux */

static const uint64_t boot_gdt[X86_BOOT_GDT_ENTRIES] = {
    0, 0, X86_BOOT_GDT_CODE64, X86_BOOT_GDT_DATA,
};

void x86_boot_segment(uint16_t sel, struct kvm_segment *out)
{
    unsigned idx = sel >> 3;
    uint64_t d = idx < X86_BOOT_GDT_ENTRIES ? boot_gdt[idx] : 0;
    uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));

    memset(out, 0, sizeof(*out));
    out->selector = sel;
    out->base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
    out->g = (d >> 55) & 1;
    out->limit = out->g ? (limit << 12) | 0xfff : limit;
    out->type = (d >> 40) & 0xf;
    out->s = (d >> 44) & 1;
    out->dpl = (d >> 45) & 3;
    out->present = (d >> 47) & 1;
    out->avl = (d >> 52) & 1;
    out->l = (d >> 53) & 1;
    out->db = (d >> 54) & 1;
    out->unusable = !out->present;
}

static uint64_t boot_top_of_ram(const struct guest_mem *gm)
{
    const struct gm_region *r = &gm->layout.r[gm->layout.nr - 1];
    return r->gpa + r->size;
}

static uint64_t boot_map_end(const struct guest_mem *gm)
{
    uint64_t end = gm_align_up(boot_top_of_ram(gm), GM_GiB);

    if (end < 4 * GM_GiB)
        end = 4 * GM_GiB;
    if (end > X86_BOOT_PD_MAX * GM_GiB)
        end = X86_BOOT_PD_MAX * GM_GiB;
    return end;
}

/* The identity map with 2 MiB leaves: the instruction emulator triple-
 * faults on 1 GiB leaves, and a guest that wants them builds its own. */
int x86_boot_page_tables(struct guest_mem *gm, uint64_t *map_end)
{
    uint64_t end = boot_map_end(gm);
    unsigned npd = (unsigned)(end / GM_GiB);
    uint64_t *pml4 = gm_gpa_to_hva(gm, X86_BOOT_PML4_GPA, GM_PAGE_SIZE);
    uint64_t *pdpt = gm_gpa_to_hva(gm, X86_BOOT_PDPT_GPA, GM_PAGE_SIZE);
    uint64_t *pd = gm_gpa_to_hva(gm, X86_BOOT_PD_GPA, npd * GM_PAGE_SIZE);

    if (!pml4 || !pdpt || !pd)
        return -EFAULT;
    if (boot_top_of_ram(gm) > end)
        log_warn("boot: guest RAM ends at 0x%llx but the boot identity map stops at %u GiB",
                 (unsigned long long)boot_top_of_ram(gm), X86_BOOT_PD_MAX);
    memset(pml4, 0, GM_PAGE_SIZE);
    memset(pdpt, 0, GM_PAGE_SIZE);
    pml4[0] = X86_BOOT_PDPT_GPA | PTE_P | PTE_RW;
    for (unsigned g = 0; g < npd; g++) {
        pdpt[g] = (X86_BOOT_PD_GPA + g * GM_PAGE_SIZE) | PTE_P | PTE_RW;
        for (unsigned i = 0; i < 512; i++)
            pd[g * 512 + i] = (g * GM_GiB + i * 2 * GM_MiB) | PTE_P | PTE_RW | PTE_PS;
    }
    *map_end = end;
    return 0;
}

/* The fixed boot structures must be RAM and unpoisoned: after a memory
 * failure there, the guest cannot be booted again on this memory. */
static int boot_check_fixed(const struct loader_target *t, unsigned npd, size_t mp_len,
                            char *err, size_t errlen)
{
    const struct { const char *name; uint64_t gpa, len; } fixed[] = {
        { "GDT", X86_BOOT_GDT_GPA, X86_BOOT_GDT_ENTRIES * 8 },
        { "boot_params", X86_BOOT_ZERO_PAGE_GPA, sizeof(struct boot_params) },
        { "PML4", X86_BOOT_PML4_GPA, GM_PAGE_SIZE },
        { "PDPT", X86_BOOT_PDPT_GPA, GM_PAGE_SIZE },
        { "page directories", X86_BOOT_PD_GPA, npd * GM_PAGE_SIZE },
        { "command line", X86_BOOT_CMDLINE_GPA, X86_BOOT_CMDLINE_MAX },
        { "MP table", X86_BOOT_MPTABLE_GPA, mp_len },
    };

    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (!loader_range_ok(t, fixed[i].gpa, fixed[i].len))
            return log_fail(err, errlen, -EFAULT,
                             "boot: %s at GPA 0x%llx (%llu bytes) is not usable guest RAM "
                             "(poisoned or missing)", fixed[i].name,
                             (unsigned long long)fixed[i].gpa, (unsigned long long)fixed[i].len);
    return 0;
}

/* boot_params.hdr: the bzImage's own header plus what the loader owns;
 * for an ELF, the minimal header a 64-bit vmlinux entry reads. */
static void boot_fill_hdr(struct setup_header *h, const struct loader_kernel *k,
                          uint64_t initrd_gpa, uint64_t initrd_size, uint32_t initrd_max)
{
    if (k->kind == LOADER_BZIMAGE) {
        *h = k->hdr;
        h->code32_start = (uint32_t)k->start;
        h->loadflags |= CAN_USE_HEAP;
        h->heap_end_ptr = X86_BOOT_HEAP_END;
    } else {
        memset(h, 0, sizeof(*h));
        h->boot_flag = 0xaa55;
        h->header = 0x53726448;          /* "HdrS" */
        h->version = 0x020f;
        h->loadflags = LOADED_HIGH;
        h->kernel_alignment = X86_BOOT_ELF_ALIGN;
        h->cmdline_size = X86_BOOT_CMDLINE_MAX - 1;
        h->initrd_addr_max = initrd_max;
        h->xloadflags = XLF_KERNEL_64;
    }
    h->type_of_loader = 0xff;
    h->vid_mode = 0xffff;
    h->cmd_line_ptr = (uint32_t)X86_BOOT_CMDLINE_GPA;
    h->ramdisk_image = (uint32_t)initrd_gpa;
    h->ramdisk_size = (uint32_t)initrd_size;
}

int x86_boot_load(struct guest_mem *gm, const struct dvmm_config *cfg,
                  struct x86_boot *out, char *err, size_t errlen)
{
    return x86_boot_load_fd(gm, cfg, -1, out, err, errlen);
}

int x86_boot_load_fd(struct guest_mem *gm, const struct dvmm_config *cfg, int kernel_fd,
                     struct x86_boot *out, char *err, size_t errlen)
{
    struct loader_target t = { .gm = gm, .floor = X86_BOOT_KERNEL_FLOOR };
    struct loader_kernel k;
    struct boot_params *bp;
    uint64_t low_end, initrd_gpa = 0, initrd_size = 0, initrd_hi, map_end;
    uint64_t *poison = NULL;
    unsigned npoison = 0, ncpus = cfg->vm.vcpus ? cfg->vm.vcpus : 1;
    size_t cmdlen = strnlen(cfg->vm.cmdline, sizeof(cfg->vm.cmdline));
    size_t mp_len = mptable_size(ncpus);
    uint32_t initrd_max;
    int rc, n;

    memset(out, 0, sizeof(*out));
    if (gm->layout.nr == 0 || gm->layout.r[0].gpa != 0 ||
        gm->layout.r[0].size <= X86_BOOT_KERNEL_FLOOR)
        return log_fail(err, errlen, -EINVAL,
                         "boot: guest RAM must start at GPA 0 and extend past 1 MiB");
    low_end = gm->layout.r[0].size;
    if (ncpus > MPTABLE_MAX_CPUS)
        return log_fail(err, errlen, -EINVAL, "vm.vcpus=%u: the MP table holds at most %u",
                         ncpus, MPTABLE_MAX_CPUS);
    if (cmdlen >= X86_BOOT_CMDLINE_MAX)
        return log_fail(err, errlen, -EINVAL, "vm.cmdline: %zu bytes, at most %u allowed",
                         cmdlen, X86_BOOT_CMDLINE_MAX - 1);

    rc = gm_poison_snapshot(gm, &poison, &npoison);
    if (rc < 0)
        return log_fail(err, errlen, rc, "boot: out of memory");
    t.poison = poison;
    t.npoison = npoison;
    rc = boot_check_fixed(&t, (unsigned)(boot_map_end(gm) / GM_GiB), mp_len, err, errlen);
    if (rc < 0)
        goto out;

    rc = kernel_fd >= 0 ? loader_kernel_fd(&t, kernel_fd, cfg->vm.kernel, &k, err, errlen)
                        : loader_kernel_file(&t, cfg->vm.kernel, &k, err, errlen);
    if (rc < 0)
        goto out;
    if (k.kind == LOADER_BZIMAGE && cmdlen > k.hdr.cmdline_size) {
        rc = log_fail(err, errlen, -EINVAL,
                       "vm.cmdline: %zu bytes, but vm.kernel=%s accepts at most %u",
                       cmdlen, cfg->vm.kernel, k.hdr.cmdline_size);
        goto out;
    }

    out->t_kernel = out->t_initrd = mono_ns();
    initrd_max = (uint32_t)(low_end - 1);
    if (k.kind == LOADER_BZIMAGE)
        initrd_max = k.hdr.version >= 0x0203 ? k.hdr.initrd_addr_max
                                             : (uint32_t)LOADER_INITRD_ADDR_MAX;
    if (cfg->vm.initrd[0]) {
        initrd_hi = (uint64_t)initrd_max + 1 < low_end ? (uint64_t)initrd_max + 1 : low_end;
        rc = loader_initrd_file(&t, cfg->vm.initrd, k.end, initrd_hi, &initrd_gpa,
                                &initrd_size, err, errlen);
        if (rc < 0)
            goto out;
        out->t_initrd = mono_ns();
    }

    bp = gm_gpa_to_hva(gm, X86_BOOT_ZERO_PAGE_GPA, sizeof(*bp));
    memset(bp, 0, sizeof(*bp));
    boot_fill_hdr(&bp->hdr, &k, initrd_gpa, initrd_size, initrd_max);
    n = e820_build(gm, bp->e820_table, E820_MAX_ENTRIES_ZEROPAGE);
    if (n < 0) {
        rc = log_fail(err, errlen, n, "boot: cannot build the e820 map: %s", strerror(-n));
        goto out;
    }
    bp->e820_entries = (uint8_t)n;

    {
        char *cl = gm_gpa_to_hva(gm, X86_BOOT_CMDLINE_GPA, X86_BOOT_CMDLINE_MAX);
        memset(cl, 0, X86_BOOT_CMDLINE_MAX);
        memcpy(cl, cfg->vm.cmdline, cmdlen);
    }
    memcpy(gm_gpa_to_hva(gm, X86_BOOT_GDT_GPA, sizeof(boot_gdt)), boot_gdt, sizeof(boot_gdt));

    rc = x86_boot_page_tables(gm, &map_end);
    if (rc < 0) {
        log_fail(err, errlen, rc, "boot: page tables do not fit in guest RAM");
        goto out;
    }
    rc = mptable_write(gm_gpa_to_hva(gm, X86_BOOT_MPTABLE_GPA, mp_len), mp_len,
                       X86_BOOT_MPTABLE_GPA, ncpus);
    if (rc < 0) {
        log_fail(err, errlen, rc, "boot: MP table for %u vCPUs: %s", ncpus, strerror(-rc));
        goto out;
    }
    out->mptable_len = rc;

    out->entry = k.entry;
    out->cr3 = X86_BOOT_PML4_GPA;
    out->boot_params_gpa = X86_BOOT_ZERO_PAGE_GPA;
    out->gdt_gpa = X86_BOOT_GDT_GPA;
    out->gdt_limit = sizeof(boot_gdt) - 1;
    out->cs = X86_BOOT_CS;
    out->ds = X86_BOOT_DS;
    out->cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE | X86_CR0_WP | X86_CR0_PG;
    out->cr4 = X86_CR4_PAE;
    out->efer = X86_EFER_LME | X86_EFER_LMA | X86_EFER_SCE;
    out->kind = k.kind;
    out->kernel_start = k.start;
    out->kernel_end = k.end;
    out->initrd_gpa = initrd_gpa;
    out->initrd_size = initrd_size;
    out->map_end = map_end;
    out->e820_entries = (unsigned)n;
    log_info("boot: %s kernel %s at [0x%llx, 0x%llx) entry 0x%llx, initrd %llu bytes at 0x%llx, "
             "%d e820 entries, %u vCPUs",
             k.kind == LOADER_BZIMAGE ? "bzImage" : "ELF64", cfg->vm.kernel,
             (unsigned long long)k.start, (unsigned long long)k.end,
             (unsigned long long)k.entry, (unsigned long long)initrd_size,
             (unsigned long long)initrd_gpa, n, ncpus);
    out->t_tables = mono_ns();
    rc = 0;
out:
    /* The guest's RAM now holds what was written here, whatever happened. */
    gm->pristine = false;
    free(poison);
    return rc;
}
