/* Loaders: synthetic bzImage and ELF64 images, malformed variants that
 * must fail cleanly, initrd placement, and a mutation sweep that must never
 * read or write out of bounds (run under ASan by `make asan`). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "test_boot_mem.h"
#include "vmm/loader.h"

#define MiB (1ULL << 20)
#define WHAT "vm.kernel=test"

struct fx {
    struct guest_mem *gm;
    struct loader_target t;
    char err[512];
};

static int setup(void **s)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->gm = tmem_new(64 * MiB);
    f->t = (struct loader_target){ .gm = f->gm, .floor = MiB };
    *s = f;
    return 0;
}

static int teardown(void **s)
{
    struct fx *f = *s;
    tmem_free(f->gm);
    free(f);
    return 0;
}

static int load(struct fx *f, const void *img, size_t len, struct loader_kernel *k)
{
    f->err[0] = 0;
    return loader_kernel_buf(&f->t, img, len, WHAT, k, f->err, sizeof(f->err));
}

static void expect_fail(struct fx *f, const void *img, size_t len, int rc, const char *needle)
{
    struct loader_kernel k;
    assert_int_equal(load(f, img, len, &k), rc);
    if (!strstr(f->err, WHAT) || (needle && !strstr(f->err, needle)))
        fail_msg("error \"%s\" lacks \"%s\"/\"%s\"", f->err, WHAT, needle ? needle : "");
}

static void t_bz_ok(void **s)
{
    struct fx *f = *s;
    size_t len;
    uint8_t *b = tbz_build(0x2000, &len);
    struct loader_kernel k;

    assert_int_equal(load(f, b, len, &k), 0);
    assert_int_equal(k.kind, LOADER_BZIMAGE);
    assert_int_equal(k.start, 0x1000000);
    assert_int_equal(k.entry, 0x1000200);
    assert_int_equal(k.end, 0x1000000 + 0x400000);        /* init_size */
    assert_int_equal(k.hdr.version, 0x020f);
    assert_int_equal(k.hdr.pref_address, 0x1000000);
    assert_int_equal(k.hdr_len, sizeof(struct setup_header));
    assert_memory_equal(tmem_hva(f->gm, 0x1000000), b + TBZ_SETUP_SIZE, 0x2000);
    free(b);
}

static void t_bz_not_relocatable(void **s)
{
    struct fx *f = *s;
    size_t len;
    uint8_t *b = tbz_build(0x2000, &len);
    struct loader_kernel k;

    tbz_hdr(b)->relocatable_kernel = 0;
    tbz_hdr(b)->init_size = 0;   /* payload size is the claim then */
    assert_int_equal(load(f, b, len, &k), 0);
    assert_int_equal(k.start, 0x100000);
    assert_int_equal(k.end, 0x102000);
    assert_int_equal(k.entry, 0x100200);
    free(b);
}

static void t_bz_setup_sects_zero(void **s)
{
    struct fx *f = *s;
    size_t len;
    uint8_t *b = tbz_build(0x2000, &len);
    struct loader_kernel k;

    /* 0 means 4, which is what tbz_build lays out. */
    tbz_hdr(b)->setup_sects = 0;
    assert_int_equal(load(f, b, len, &k), 0);
    assert_memory_equal(tmem_hva(f->gm, k.start), b + TBZ_SETUP_SIZE, 0x2000);
    free(b);
}

static void t_bz_malformed(void **s)
{
    struct fx *f = *s;
    size_t len;
    uint8_t *b = tbz_build(0x2000, &len);
    uint8_t *c = malloc(len);

#define MUT(stmt, rc, needle) do { memcpy(c, b, len); { struct setup_header *h = tbz_hdr(c); (void)h; stmt; } \
        expect_fail(f, c, len, rc, needle); } while (0)
    MUT(h->version = 0x0205, -EINVAL, "2.06");
    MUT(h->version = 0x020b, -EINVAL, "64-bit");
    MUT(h->xloadflags = 0, -EINVAL, "XLF_KERNEL_64");
    MUT(h->loadflags = 0, -EINVAL, "LOADED_HIGH");
    MUT(h->boot_flag = 0, -EINVAL, "boot_flag");
    MUT(h->syssize = 0x10000, -EINVAL, "truncated");
    MUT(h->setup_sects = 200, -EINVAL, "truncated");
    MUT(h->pref_address = 0x7000, -EINVAL, "boot structures");
    MUT(h->pref_address = 63 * MiB, -ENOSPC, "outside guest RAM");
    MUT(h->pref_address = 0xfffffffffffff000ULL, -ENOSPC, "outside guest RAM");
    MUT(h->init_size = 0xf0000000, -ENOSPC, "outside guest RAM");
    MUT(c[0x202] = 'X', -ENOEXEC, "neither");
#undef MUT
    /* Truncations: inside the header, and right after the setup code. */
    expect_fail(f, b, 0x210, -EINVAL, "truncated");
    expect_fail(f, b, TBZ_SETUP_SIZE, -EINVAL, "truncated");
    expect_fail(f, b, TBZ_SETUP_SIZE + 0x1000, -EINVAL, "truncated");
    {   /* a payload that ends before the 64-bit entry */
        size_t l2;
        uint8_t *tiny = tbz_build(0x100, &l2);
        expect_fail(f, tiny, l2, -EINVAL, "64-bit entry");
        free(tiny);
    }
    expect_fail(f, b, 0x100, -ENOEXEC, "neither");
    expect_fail(f, b, 0, -ENOEXEC, "neither");
    free(c);
    free(b);
}

static void t_bz_poisoned(void **s)
{
    struct fx *f = *s;
    size_t len;
    uint8_t *b = tbz_build(0x2000, &len);
    uint64_t p = 0x1200000;

    f->t.poison = &p;
    f->t.npoison = 1;
    expect_fail(f, b, len, -EFAULT, "poisoned page 0x1200000");
    f->t.npoison = 0;
    free(b);
}

static void t_elf_ok(void **s)
{
    struct fx *f = *s;
    struct telf *e = telf_build(0x200000, 0x200000);
    struct loader_kernel k;

    memset(tmem_hva(f->gm, 0x200000), 0xcc, 0x6000);
    assert_int_equal(load(f, e, sizeof(*e), &k), 0);
    assert_int_equal(k.kind, LOADER_ELF64);
    assert_int_equal(k.entry, 0x200010);
    assert_int_equal(k.start, 0x200000);
    assert_int_equal(k.end, 0x205000);
    assert_memory_equal(tmem_hva(f->gm, 0x200000), e->text, sizeof(e->text));
    assert_memory_equal(tmem_hva(f->gm, 0x202000), e->data, sizeof(e->data));
    for (unsigned i = 0x100; i < 0x3000; i++)            /* bss zeroed */
        assert_int_equal(tmem_hva(f->gm, 0x202000)[i], 0);
    assert_int_equal(tmem_hva(f->gm, 0x201000)[0], 0xcc);   /* gap untouched */
    free(e);
}

static void t_elf_virtual_entry(void **s)
{
    struct fx *f = *s;
    struct telf *e = telf_build(0x400000, 0xffffffff80400000ULL);
    struct loader_kernel k;

    e->eh.e_entry = 0xffffffff80400040ULL;
    assert_int_equal(load(f, e, sizeof(*e), &k), 0);
    assert_int_equal(k.entry, 0x400040);
    free(e);
}

static void t_elf_malformed(void **s)
{
    struct fx *f = *s;
    struct telf *e = telf_build(0x200000, 0x200000);
    struct telf *c = malloc(sizeof(*c));

#define MUT(stmt, rc, needle) do { memcpy(c, e, sizeof(*e)); stmt; \
        expect_fail(f, c, sizeof(*c), rc, needle); } while (0)
    MUT(c->eh.e_ident[EI_CLASS] = ELFCLASS32, -EINVAL, "ELF64");
    MUT(c->eh.e_machine = EM_386, -EINVAL, "x86-64");
    MUT(c->eh.e_type = ET_DYN, -EINVAL, "ET_EXEC");
    MUT(c->eh.e_phoff = sizeof(*e) - 8, -EINVAL, "program headers");
    MUT(c->eh.e_phoff = 0xffffffffffffff00ULL, -EINVAL, "program headers");
    MUT(c->eh.e_phnum = 0xffff, -EINVAL, "program headers");
    MUT(c->eh.e_phnum = 0, -EINVAL, "program headers");
    MUT(c->eh.e_phentsize = 32, -EINVAL, "program headers");
    MUT(c->ph[1].p_offset = sizeof(*e) - 0x80, -EINVAL, "beyond the file");
    MUT(c->ph[1].p_offset = 0xffffffffffffff00ULL, -EINVAL, "beyond the file");
    MUT(c->ph[1].p_filesz = 0x4000, -EINVAL, "beyond the file");
    MUT(c->ph[1].p_paddr = 0x7000, -EINVAL, "boot structures");
    MUT(c->ph[1].p_paddr = 64 * MiB - 0x1000, -ENOSPC, "outside guest RAM");
    MUT(c->ph[1].p_paddr = 0xc0000000ULL, -ENOSPC, "outside guest RAM");
    MUT(c->ph[1].p_memsz = 0xfffffffffffff000ULL, -ENOSPC, "outside guest RAM");
    MUT(c->eh.e_entry = 0x300000, -EINVAL, "entry");
    MUT(c->ph[0].p_type = PT_NULL; c->ph[1].p_type = PT_NULL, -EINVAL, "PT_LOAD");
#undef MUT
    expect_fail(f, e, 20, -EINVAL, "truncated");

    /* Nothing is written before the whole image is validated. */
    memset(tmem_hva(f->gm, 0x200000), 0xcc, 0x1000);
    memcpy(c, e, sizeof(*e));
    c->ph[1].p_paddr = 64 * MiB;
    expect_fail(f, c, sizeof(*c), -ENOSPC, NULL);
    assert_int_equal(tmem_hva(f->gm, 0x200000)[0], 0xcc);
    free(c);
    free(e);
}

static void t_kernel_file(void **s)
{
    struct fx *f = *s;
    struct loader_kernel k;
    char path[64];
    size_t len;
    uint8_t *b = tbz_build(0x2000, &len);

    tfile_write(path, sizeof(path), b, len);
    assert_int_equal(loader_kernel_file(&f->t, path, &k, f->err, sizeof(f->err)), 0);
    assert_int_equal(k.entry, 0x1000200);
    unlink(path);
    assert_int_equal(loader_kernel_file(&f->t, path, &k, f->err, sizeof(f->err)), -ENOENT);
    assert_non_null(strstr(f->err, "vm.kernel="));
    assert_non_null(strstr(f->err, path));
    assert_int_equal(loader_kernel_file(&f->t, "/tmp", &k, f->err, sizeof(f->err)), -EINVAL);
    free(b);
}

static void t_initrd(void **s)
{
    struct fx *f = *s;
    char path[64];
    uint8_t *data = malloc(100000);
    uint64_t gpa, size, hi = 48 * MiB;

    for (unsigned i = 0; i < 100000; i++)
        data[i] = (uint8_t)(i * 13);
    tfile_write(path, sizeof(path), data, 100000);

    /* Highest page-aligned slot below hi. */
    assert_int_equal(loader_initrd_file(&f->t, path, 20 * MiB, hi, &gpa, &size,
                                        f->err, sizeof(f->err)), 0);
    assert_int_equal(size, 100000);
    assert_int_equal(gpa, (hi - 100000) & ~4095ULL);
    assert_true(gpa + size <= hi);
    assert_memory_equal(tmem_hva(f->gm, gpa), data, 100000);

    /* A poisoned page near the top pushes it below that page. */
    uint64_t p = hi - 8192;
    f->t.poison = &p;
    f->t.npoison = 1;
    assert_int_equal(loader_initrd_file(&f->t, path, 20 * MiB, hi, &gpa, &size,
                                        f->err, sizeof(f->err)), 0);
    assert_true(gpa + size <= p);
    assert_int_equal(gpa, (p - 100000) & ~4095ULL);
    f->t.npoison = 0;

    /* No room between the kernel end and hi. */
    assert_int_equal(loader_initrd_file(&f->t, path, hi - 50000, hi, &gpa, &size,
                                        f->err, sizeof(f->err)), -ENOSPC);
    assert_non_null(strstr(f->err, "vm.initrd="));
    assert_non_null(strstr(f->err, "100000 bytes"));
    unlink(path);

    /* A 2 GiB (sparse) initrd into a 64 MiB guest. */
    tfile_write(path, sizeof(path), NULL, 0);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 2LL << 30), 0);
    close(fd);
    assert_int_equal(loader_initrd_file(&f->t, path, 20 * MiB, hi, &gpa, &size,
                                        f->err, sizeof(f->err)), -ENOSPC);
    assert_non_null(strstr(f->err, "2147483648 bytes"));
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(loader_initrd_file(&f->t, path, 20 * MiB, hi, &gpa, &size,
                                        f->err, sizeof(f->err)), -EINVAL);
    assert_non_null(strstr(f->err, "empty"));
    unlink(path);
    free(data);
}

/* Random byte flips and truncations of both formats: any result is fine
 * except a crash or an ASan report.  Deterministic seed. */
static void t_mutation_sweep(void **s)
{
    struct fx *f = *s;
    size_t bzlen;
    uint8_t *bz = tbz_build(0x2000, &bzlen);
    struct telf *e = telf_build(0x200000, 0x200000);
    uint64_t x = 0x9e3779b97f4a7c15ULL;

    for (unsigned iter = 0; iter < 4000; iter++) {
        const uint8_t *src = iter & 1 ? (const uint8_t *)e : bz;
        size_t len = iter & 1 ? sizeof(*e) : bzlen;
        uint8_t *c = malloc(len);
        struct loader_kernel k;

        memcpy(c, src, len);
        for (unsigned j = 0; j < 1 + iter % 8; j++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            /* Bias towards the headers, where the interesting fields are. */
            size_t at = (x >> 8) % (j & 1 ? len : (iter & 1 ? 0x140 : 0x280));
            c[at] = (uint8_t)x;
        }
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        if ((x & 3) == 0)
            len = (size_t)((x >> 16) % len);
        /* Exactly-sized heap copy, so reading past len trips ASan. */
        uint8_t *exact = malloc(len ? len : 1);
        memcpy(exact, c, len);
        int rc = load(f, exact, len, &k);
        if (rc == 0) {
            assert_true(k.start >= MiB);
            assert_true(k.end <= 64 * MiB);
            assert_true(k.entry >= k.start && k.entry < k.end);
        } else {
            assert_true(f->err[0] != 0);
        }
        free(exact);
        free(c);
    }
    free(e);
    free(bz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_bz_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(t_bz_not_relocatable, setup, teardown),
        cmocka_unit_test_setup_teardown(t_bz_setup_sects_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(t_bz_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(t_bz_poisoned, setup, teardown),
        cmocka_unit_test_setup_teardown(t_elf_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(t_elf_virtual_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(t_elf_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(t_kernel_file, setup, teardown),
        cmocka_unit_test_setup_teardown(t_initrd, setup, teardown),
        cmocka_unit_test_setup_teardown(t_mutation_sweep, setup, teardown),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
