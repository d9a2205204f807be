/* x86_boot_load end to end on a hand-built guest_mem: BSP state,
 * boot_params fields, command line, GDT, page tables, MP table, the
 * untouched AP area, re-running after poisoning, and clean errors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "test_boot_mem.h"
#include "vmm/e820.h"
#include "vmm/mptable.h"
#include "vmm/x86_boot.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

struct fx {
    struct guest_mem *gm;
    struct dvmm_config *cfg;
    char kernel[64], initrd[64], elf[64];
    struct x86_boot b;
    char err[1024];
};

static struct fx *fx_new(uint64_t ram, unsigned vcpus)
{
    struct fx *f = calloc(1, sizeof(*f));
    size_t len;
    uint8_t *bz = tbz_build(0x4000, &len);
    struct telf *e = telf_build(0x200000, 0x200000);
    uint8_t rd[12345];

    memset(rd, 0x42, sizeof(rd));
    tfile_write(f->kernel, sizeof(f->kernel), bz, len);
    tfile_write(f->initrd, sizeof(f->initrd), rd, sizeof(rd));
    tfile_write(f->elf, sizeof(f->elf), e, sizeof(*e));
    free(bz);
    free(e);
    f->gm = tmem_new(ram);
    f->cfg = calloc(1, sizeof(*f->cfg));
    f->cfg->vm.vcpus = vcpus;
    f->cfg->vm.memory = ram;
    snprintf(f->cfg->vm.kernel, sizeof(f->cfg->vm.kernel), "%s", f->kernel);
    snprintf(f->cfg->vm.initrd, sizeof(f->cfg->vm.initrd), "%s", f->initrd);
    snprintf(f->cfg->vm.cmdline, sizeof(f->cfg->vm.cmdline), "console=ttyS0 dvmm.test=1");
    return f;
}

static void fx_free(struct fx *f)
{
    unlink(f->kernel);
    unlink(f->initrd);
    unlink(f->elf);
    tmem_free(f->gm);
    free(f->cfg);
    free(f);
}

static int boot(struct fx *f)
{
    f->err[0] = 0;
    return x86_boot_load(f->gm, f->cfg, &f->b, f->err, sizeof(f->err));
}

static struct boot_params *bp_of(struct fx *f)
{
    return (struct boot_params *)tmem_hva(f->gm, X86_BOOT_ZERO_PAGE_GPA);
}

static void t_bsp_state(void **s)
{
    (void)s;
    struct fx *f = fx_new(256 * MiB, 2);
    assert_int_equal(boot(f), 0);
    assert_int_equal(f->b.entry, 0x1000200);
    assert_int_equal(f->b.cr3, 0x9000);
    assert_int_equal(f->b.boot_params_gpa, 0x7000);
    assert_int_equal(f->b.gdt_gpa, 0x500);
    assert_int_equal(f->b.gdt_limit, 31);
    assert_int_equal(f->b.cs, 0x10);
    assert_int_equal(f->b.ds, 0x18);
    assert_int_equal(f->b.cr0, 0x80010033);   /* PE|MP|ET|NE|WP|PG */
    assert_int_equal(f->b.cr4, 0x20);
    assert_int_equal(f->b.efer, 0x501);       /* SCE|LME|LMA */
    assert_int_equal(f->b.kind, LOADER_BZIMAGE);
    fx_free(f);
}

static void t_boot_params(void **s)
{
    (void)s;
    struct fx *f = fx_new(256 * MiB, 2);
    struct boot_params *bp;
    struct boot_e820_entry e[E820_MAX_ENTRIES_ZEROPAGE];

    memset(tmem_hva(f->gm, X86_BOOT_ZERO_PAGE_GPA), 0xee, 4096);   /* stale junk */
    assert_int_equal(boot(f), 0);
    bp = bp_of(f);
    assert_int_equal(bp->hdr.header, 0x53726448);
    assert_int_equal(bp->hdr.version, 0x020f);
    assert_int_equal(bp->hdr.type_of_loader, 0xff);
    assert_int_equal(bp->hdr.vid_mode, 0xffff);
    assert_int_equal(bp->hdr.loadflags, LOADED_HIGH | CAN_USE_HEAP);
    assert_int_equal(bp->hdr.heap_end_ptr, 0xfe00);
    assert_int_equal(bp->hdr.code32_start, 0x1000000);
    assert_int_equal(bp->hdr.cmd_line_ptr, 0x50000);
    assert_int_equal(bp->ext_cmd_line_ptr, 0);
    assert_string_equal((char *)tmem_hva(f->gm, 0x50000), "console=ttyS0 dvmm.test=1");
    assert_int_equal(bp->sentinel, 0);
    assert_int_equal(bp->hdr.pref_address, 0x1000000);   /* the image's header survives */

    /* initrd: page-aligned, after the kernel's init_size, as high as low
     * RAM allows, with the file's contents. */
    assert_int_equal(bp->hdr.ramdisk_size, 12345);
    assert_int_equal(bp->hdr.ramdisk_image % 4096, 0);
    assert_true(bp->hdr.ramdisk_image >= 0x1000000 + 0x400000);
    assert_true(bp->hdr.ramdisk_image + 12345ULL <= 256 * MiB);
    assert_true(bp->hdr.ramdisk_image + 12345ULL + 4096 > 256 * MiB);
    assert_int_equal(tmem_hva(f->gm, bp->hdr.ramdisk_image)[12344], 0x42);
    assert_int_equal(f->b.initrd_gpa, bp->hdr.ramdisk_image);

    int n = e820_build(f->gm, e, E820_MAX_ENTRIES_ZEROPAGE);
    assert_int_equal(bp->e820_entries, n);
    assert_int_equal(f->b.e820_entries, n);
    assert_memory_equal(bp->e820_table, e, n * sizeof(e[0]));
    fx_free(f);
}

static void t_initrd_addr_max(void **s)
{
    (void)s;
    struct fx *f = fx_new(1 * GiB, 1);
    size_t len;
    uint8_t *bz = tbz_build(0x4000, &len);

    /* A kernel that only reaches 256 MiB - 1 gets its initrd below that. */
    tbz_hdr(bz)->initrd_addr_max = 256 * MiB - 1;
    unlink(f->kernel);   /* fx_new's kernel, replaced by this one */
    tfile_write(f->kernel, sizeof(f->kernel), bz, len);
    snprintf(f->cfg->vm.kernel, sizeof(f->cfg->vm.kernel), "%s", f->kernel);
    assert_int_equal(boot(f), 0);
    assert_true(f->b.initrd_gpa + f->b.initrd_size <= 256 * MiB);
    assert_true(f->b.initrd_gpa + f->b.initrd_size + 4096 > 256 * MiB);
    free(bz);
    fx_free(f);
}

static void t_gdt_and_segments(void **s)
{
    (void)s;
    struct fx *f = fx_new(64 * MiB, 1);
    uint64_t *gdt;
    struct kvm_segment cs, ds;

    assert_int_equal(boot(f), 0);
    gdt = (uint64_t *)tmem_hva(f->gm, 0x500);
    assert_int_equal(gdt[0], 0);
    assert_int_equal(gdt[1], 0);
    assert_int_equal(gdt[2], 0x00af9b000000ffffULL);
    assert_int_equal(gdt[3], 0x00cf93000000ffffULL);

    x86_boot_segment(X86_BOOT_CS, &cs);
    assert_int_equal(cs.selector, 0x10);
    assert_int_equal(cs.base, 0);
    assert_int_equal(cs.limit, 0xffffffff);
    assert_int_equal(cs.type, 0xb);
    assert_int_equal(cs.s, 1);
    assert_int_equal(cs.present, 1);
    assert_int_equal(cs.l, 1);
    assert_int_equal(cs.db, 0);
    assert_int_equal(cs.g, 1);
    assert_int_equal(cs.dpl, 0);
    x86_boot_segment(X86_BOOT_DS, &ds);
    assert_int_equal(ds.selector, 0x18);
    assert_int_equal(ds.type, 0x3);
    assert_int_equal(ds.l, 0);
    assert_int_equal(ds.db, 1);
    assert_int_equal(ds.present, 1);
    assert_int_equal(ds.unusable, 0);
    fx_free(f);
}

/* Walk the identity map for a few addresses: 4-level, 2 MiB leaves. */
static uint64_t walk(struct guest_mem *gm, uint64_t va)
{
    uint64_t *pml4 = (uint64_t *)tmem_hva(gm, 0x9000);
    uint64_t e = pml4[(va >> 39) & 511];
    if (!(e & 1))
        return ~0ULL;
    uint64_t *pdpt = (uint64_t *)tmem_hva(gm, e & ~0xfffULL);
    e = pdpt[(va >> 30) & 511];
    if (!(e & 1))
        return ~0ULL;
    assert_false(e & 0x80);                /* never a 1 GiB leaf */
    uint64_t *pd = (uint64_t *)tmem_hva(gm, e & ~0xfffULL);
    e = pd[(va >> 21) & 511];
    if (!(e & 1))
        return ~0ULL;
    assert_true(e & 0x80);
    assert_true(e & 0x2);
    return (e & ~0x1fffffULL & 0xffffffffff000ULL) | (va & 0x1fffff);
}

static void t_page_tables(void **s)
{
    (void)s;
    const struct { uint64_t ram, map_end; } cases[] = {
        { 64 * MiB, 4 * GiB }, { 4 * GiB, 5 * GiB }, { 6 * GiB, 7 * GiB },
    };
    for (unsigned c = 0; c < 3; c++) {
        struct fx *f = fx_new(cases[c].ram, 1);
        assert_int_equal(boot(f), 0);
        assert_int_equal(f->b.map_end, cases[c].map_end);
        const uint64_t probes[] = { 0, 0x7000, 0x1000200, 0x3fffffff, 0xfee00000,
                                    cases[c].map_end - 1 };
        for (unsigned i = 0; i < 6; i++)
            assert_int_equal(walk(f->gm, probes[i]), probes[i]);
        assert_int_equal(walk(f->gm, cases[c].map_end), ~0ULL);
        assert_int_equal(((uint64_t *)tmem_hva(f->gm, 0x9000))[1], 0);
        fx_free(f);
    }
}

static void t_page_tables_cap(void **s)
{
    (void)s;
    struct guest_mem *gm = tmem_new(100 * GiB);   /* NORESERVE: costs nothing */
    uint64_t end;
    assert_int_equal(x86_boot_page_tables(gm, &end), 0);
    assert_int_equal(end, 64 * GiB);
    assert_int_equal(walk(gm, 64 * GiB - 4096), 64 * GiB - 4096);
    tmem_free(gm);
}

static void t_mptable_and_ap_area(void **s)
{
    (void)s;
    struct fx *f = fx_new(64 * MiB, 4);
    uint8_t *ap = tmem_hva(f->gm, X86_BOOT_AP_AREA_GPA);

    memset(ap, 0xab, X86_BOOT_AP_AREA_SIZE);
    assert_int_equal(boot(f), 0);
    for (size_t i = 0; i < X86_BOOT_AP_AREA_SIZE; i++)
        if (ap[i] != 0xab)
            fail_msg("AP area byte 0x%zx written", i);

    struct mpt_floating *fp = (void *)tmem_hva(f->gm, 0x9fc00);
    assert_memory_equal(fp->signature, "_MP_", 4);
    assert_int_equal(mptable_checksum(fp, 16), 0);
    struct mpt_config *c = (void *)tmem_hva(f->gm, fp->physptr);
    assert_int_equal(mptable_checksum(c, c->length), 0);
    assert_int_equal(f->b.mptable_len, mptable_size(4));
    /* Four processors, then the IOAPIC with ID 4. */
    struct mpt_processor *p = (void *)(c + 1);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(p[i].apic_id, i);
    fx_free(f);
}

static void t_elf_kernel(void **s)
{
    (void)s;
    struct fx *f = fx_new(64 * MiB, 1);
    snprintf(f->cfg->vm.kernel, sizeof(f->cfg->vm.kernel), "%s", f->elf);
    assert_int_equal(boot(f), 0);
    assert_int_equal(f->b.kind, LOADER_ELF64);
    assert_int_equal(f->b.entry, 0x200010);
    struct boot_params *bp = bp_of(f);
    assert_int_equal(bp->hdr.boot_flag, 0xaa55);
    assert_int_equal(bp->hdr.header, 0x53726448);
    assert_int_equal(bp->hdr.type_of_loader, 0xff);
    assert_int_equal(bp->hdr.cmd_line_ptr, 0x50000);
    assert_int_equal(bp->hdr.ramdisk_size, 12345);
    assert_true(bp->hdr.ramdisk_image >= 0x205000);
    assert_true(bp->e820_entries >= 3);
    fx_free(f);
}

static void t_no_initrd(void **s)
{
    (void)s;
    struct fx *f = fx_new(64 * MiB, 1);
    f->cfg->vm.initrd[0] = 0;
    f->cfg->vm.cmdline[0] = 0;
    assert_int_equal(boot(f), 0);
    assert_int_equal(bp_of(f)->hdr.ramdisk_image, 0);
    assert_int_equal(bp_of(f)->hdr.ramdisk_size, 0);
    assert_int_equal(f->b.initrd_size, 0);
    assert_int_equal(*tmem_hva(f->gm, 0x50000), 0);
    fx_free(f);
}

/* Reboot: same memory, poisoned pages since the first boot. */
static void t_reboot_with_poison(void **s)
{
    (void)s;
    struct fx *f = fx_new(256 * MiB, 2);
    assert_int_equal(boot(f), 0);
    uint64_t first_initrd = f->b.initrd_gpa;

    /* Poison the page the initrd sat in and one in the middle of RAM. */
    assert_int_equal(gm_poison_add(f->gm, first_initrd, 1), 0);
    assert_int_equal(gm_poison_add(f->gm, 100 * MiB, 1), 0);
    assert_int_equal(boot(f), 0);
    assert_true(f->b.initrd_gpa + f->b.initrd_size <= first_initrd);

    struct boot_params *bp = bp_of(f);
    for (unsigned i = 0; i < bp->e820_entries; i++) {
        struct boot_e820_entry *e = &bp->e820_table[i];
        if (e->type != E820_RAM)
            continue;
        assert_false(100 * MiB >= e->addr && 100 * MiB < e->addr + e->size);
        assert_false(first_initrd >= e->addr && first_initrd < e->addr + e->size);
    }
    assert_int_equal(bp->e820_entries, 5);   /* low, reserved, 3 RAM pieces */

    /* A poisoned page inside the kernel's claim: no boot, clear message. */
    assert_int_equal(gm_poison_add(f->gm, 0x1100000, 1), 0);
    assert_int_equal(boot(f), -EFAULT);
    assert_non_null(strstr(f->err, "poisoned"));
    assert_non_null(strstr(f->err, f->kernel));
    fx_free(f);

    f = fx_new(64 * MiB, 1);
    assert_int_equal(gm_poison_add(f->gm, 0x7000, 1), 0);
    assert_int_equal(boot(f), -EFAULT);
    assert_non_null(strstr(f->err, "boot_params"));
    fx_free(f);
}

static void t_errors(void **s)
{
    (void)s;
    struct fx *f = fx_new(64 * MiB, 1);
    char saved[PATH_MAX];

    snprintf(saved, sizeof(saved), "%s", f->cfg->vm.kernel);
    snprintf(f->cfg->vm.kernel, sizeof(f->cfg->vm.kernel), "/nonexistent/vmlinuz");
    assert_int_equal(boot(f), -ENOENT);
    assert_non_null(strstr(f->err, "vm.kernel=/nonexistent/vmlinuz"));

    snprintf(f->cfg->vm.kernel, sizeof(f->cfg->vm.kernel), "%s", f->initrd);   /* junk */
    assert_int_equal(boot(f), -ENOEXEC);
    assert_non_null(strstr(f->err, "vm.kernel="));
    snprintf(f->cfg->vm.kernel, sizeof(f->cfg->vm.kernel), "%s", saved);

    snprintf(f->cfg->vm.initrd, sizeof(f->cfg->vm.initrd), "/nonexistent/initrd");
    assert_int_equal(boot(f), -ENOENT);
    assert_non_null(strstr(f->err, "vm.initrd=/nonexistent/initrd"));
    snprintf(f->cfg->vm.initrd, sizeof(f->cfg->vm.initrd), "%s", f->initrd);

    f->cfg->vm.vcpus = 255;
    assert_int_equal(boot(f), -EINVAL);
    assert_non_null(strstr(f->err, "vm.vcpus"));
    f->cfg->vm.vcpus = 1;
    fx_free(f);

    /* cmdline longer than the kernel's cmdline_size */
    f = fx_new(64 * MiB, 1);
    size_t len;
    uint8_t *bz = tbz_build(0x4000, &len);
    tbz_hdr(bz)->cmdline_size = 10;
    unlink(f->kernel);   /* fx_new's kernel, replaced by this one */
    tfile_write(f->kernel, sizeof(f->kernel), bz, len);
    snprintf(f->cfg->vm.kernel, sizeof(f->cfg->vm.kernel), "%s", f->kernel);
    assert_int_equal(boot(f), -EINVAL);
    assert_non_null(strstr(f->err, "vm.cmdline"));
    free(bz);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_bsp_state),
        cmocka_unit_test(t_boot_params),
        cmocka_unit_test(t_initrd_addr_max),
        cmocka_unit_test(t_gdt_and_segments),
        cmocka_unit_test(t_page_tables),
        cmocka_unit_test(t_page_tables_cap),
        cmocka_unit_test(t_mptable_and_ap_area),
        cmocka_unit_test(t_elf_kernel),
        cmocka_unit_test(t_no_initrd),
        cmocka_unit_test(t_reboot_with_poison),
        cmocka_unit_test(t_errors),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
