/* The boot path against Debian's real bzImage: the one tests/lib/linux-kernel.sh
 * fetches for the nested KVM host and caches at
 * $DVMM_BUILD/linux/<kver>/boot/vmlinuz-<kver>.  DVMM_BUILD defaults to
 * "build"; a relative one is taken from the current directory, the
 * repository root under `make test` (which exports DVMM_BUILD and fetches
 * the kernel before the unit tests run).  DVMM_LINUX_VERSION=<kver> asks for
 * that version, as it does of linux-kernel.sh; otherwise the newest cached
 * one is used.  Without a kernel (nothing fetched yet, no network) the whole
 * binary is a TAP skip naming the path looked at, never a pass. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "test_boot_mem.h"
#include "vmm/x86_boot.h"

#define MiB (1ULL << 20)

static char kpath[PATH_MAX];

/* $DVMM_BUILD/linux/<kver>/boot/vmlinuz-<kver> into kpath; false with the
 * path looked at in `looked`. */
static bool find_kernel(char *looked, size_t len)
{
    const char *b = getenv("DVMM_BUILD"), *ver = getenv("DVMM_LINUX_VERSION");
    char cwd[PATH_MAX], cache[PATH_MAX + 16], p[2 * PATH_MAX], best[NAME_MAX + 1] = "";
    struct stat st;

    if (!b || !*b)
        b = "build";
    if (b[0] == '/' || !getcwd(cwd, sizeof(cwd)))
        snprintf(cache, sizeof(cache), "%s/linux", b);
    else
        snprintf(cache, sizeof(cache), "%s/%s/linux", cwd, b);
    if (ver && *ver) {
        snprintf(looked, len, "%s/%s/boot/vmlinuz-%s", cache, ver, ver);
        if (stat(looked, &st) || !S_ISREG(st.st_mode))
            return false;
        return snprintf(kpath, sizeof(kpath), "%s", looked) < (int)sizeof(kpath);
    }
    snprintf(looked, len, "%s/<kver>/boot/vmlinuz-<kver>", cache);
    DIR *d = opendir(cache);
    if (!d)
        return false;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')        /* ".", "..", ".fetch-*" in progress */
            continue;
        snprintf(p, sizeof(p), "%s/%s/boot/vmlinuz-%s", cache, e->d_name, e->d_name);
        if (!stat(p, &st) && S_ISREG(st.st_mode) && (!best[0] || strverscmp(e->d_name, best) > 0))
            snprintf(best, sizeof(best), "%s", e->d_name);
    }
    closedir(d);
    if (!best[0])
        return false;
    return snprintf(kpath, sizeof(kpath), "%s/%s/boot/vmlinuz-%s", cache, best, best) < (int)sizeof(kpath);
}

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
    char looked[2 * PATH_MAX];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_loader),
        cmocka_unit_test(t_boot_load),
    };

    if (!find_kernel(looked, sizeof(looked))) {
        printf("1..0 # SKIP no Debian kernel at %s (tests/lib/linux-kernel.sh fetches it; "
               "make test runs it first, and it needs apt and the network once)\n", looked);
        return 0;
    }
    printf("# kernel: %s\n", kpath);
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
