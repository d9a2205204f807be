/* The boot path against Debian's real bzImage, when one is unpacked under
 * /tmp/k/x/boot (the nested-KVM harness puts it there).  Without it the
 * whole binary is a TAP skip with the reason, never a pass. */
#include <errno.h>
#include <glob.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "test_boot_mem.h"
#include "vmm/x86_boot.h"

#define MiB (1ULL << 20)
#define KERNEL_GLOB "/tmp/k/x/boot/vmlinuz-*"

static char kpath[PATH_MAX];

static void t_loader(void **s)
{
    (void)s;
    struct guest_mem *gm = tmem_new(256 * MiB);
    struct loader_target t = { .gm = gm, .floor = MiB };
    struct loader_kernel k;
    char err[512];

    assert_int_equal(loader_kernel_file(&t, kpath, &k, err, sizeof(err)), 0);
    assert_int_equal(k.kind, LOADER_BZIMAGE);
    assert_int_equal(k.hdr.header, 0x53726448);
    assert_true(k.hdr.version >= 0x020c);
    assert_true(k.hdr.xloadflags & XLF_KERNEL_64);
    assert_true(k.hdr.loadflags & LOADED_HIGH);
    assert_true(k.hdr.relocatable_kernel);
    assert_int_equal(k.start, k.hdr.pref_address);
    assert_int_equal(k.entry, k.hdr.pref_address + 0x200);
    assert_int_equal(k.end, k.start + k.hdr.init_size);
    print_message("# %s: protocol %u.%02u, pref_address 0x%llx, init_size %u, cmdline_size %u\n",
                  kpath, k.hdr.version >> 8, k.hdr.version & 0xff,
                  (unsigned long long)k.hdr.pref_address, k.hdr.init_size, k.hdr.cmdline_size);
    tmem_free(gm);
}

static void t_boot_load(void **s)
{
    (void)s;
    struct guest_mem *gm = tmem_new(256 * MiB);
    struct dvmm_config *cfg = calloc(1, sizeof(*cfg));
    struct x86_boot b;
    char err[512], rd[64];
    uint8_t junk[100000];

    memset(junk, 0x5a, sizeof(junk));
    tfile_write(rd, sizeof(rd), junk, sizeof(junk));
    cfg->vm.vcpus = 2;
    snprintf(cfg->vm.kernel, sizeof(cfg->vm.kernel), "%s", kpath);
    snprintf(cfg->vm.initrd, sizeof(cfg->vm.initrd), "%s", rd);
    snprintf(cfg->vm.cmdline, sizeof(cfg->vm.cmdline), "console=ttyS0 earlyprintk=serial");
    assert_int_equal(x86_boot_load(gm, cfg, &b, err, sizeof(err)), 0);

    struct boot_params *bp = gm_gpa_to_hva(gm, X86_BOOT_ZERO_PAGE_GPA, sizeof(*bp));
    assert_int_equal(bp->hdr.type_of_loader, 0xff);
    assert_int_equal(bp->hdr.cmd_line_ptr, X86_BOOT_CMDLINE_GPA);
    assert_true(bp->hdr.ramdisk_image >= b.kernel_end);
    assert_true(bp->hdr.ramdisk_image + bp->hdr.ramdisk_size <= 256 * MiB);
    assert_true(bp->hdr.ramdisk_image + bp->hdr.ramdisk_size <= bp->hdr.initrd_addr_max + 1ULL);
    assert_int_equal(b.entry, bp->hdr.pref_address + 0x200);
    /* The kernel's own header bytes (setup_sects, syssize) came across. */
    assert_true(bp->hdr.syssize > 0);
    unlink(rd);
    free(cfg);
    tmem_free(gm);
}

int main(void)
{
    glob_t g;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_loader),
        cmocka_unit_test(t_boot_load),
    };

    if (glob(KERNEL_GLOB, 0, NULL, &g) != 0 || g.gl_pathc == 0) {
        printf("1..0 # SKIP no Debian kernel at %s (the nested-KVM harness unpacks one)\n",
               KERNEL_GLOB);
        return 0;
    }
    snprintf(kpath, sizeof(kpath), "%s", g.gl_pathv[g.gl_pathc - 1]);
    globfree(&g);
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
