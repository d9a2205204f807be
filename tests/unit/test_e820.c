/* e820 map: layout shapes at several RAM sizes, and poisoned pages cut out. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "test_boot_mem.h"
#include "vmm/e820.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

struct want { uint64_t addr, size; uint32_t type; };

static void check_map(struct guest_mem *gm, const struct want *w, unsigned nw)
{
    struct boot_e820_entry e[E820_MAX_ENTRIES_ZEROPAGE];
    int n = e820_build(gm, e, E820_MAX_ENTRIES_ZEROPAGE);

    assert_int_equal(n, nw);
    for (unsigned i = 0; i < nw; i++) {
        assert_int_equal(e[i].addr, w[i].addr);
        assert_int_equal(e[i].size, w[i].size);
        assert_int_equal(e[i].type, w[i].type);
        if (i)   /* ascending, non-overlapping */
            assert_true(e[i - 1].addr + e[i - 1].size <= e[i].addr);
    }
}

#define LOW_PART \
    { 0, 0x9fc00, E820_RAM }, { 0x9fc00, 0x100000 - 0x9fc00, E820_RESERVED }

static void t_64m(void **s)
{
    (void)s;
    struct guest_mem *gm = tmem_new(64 * MiB);
    const struct want w[] = { LOW_PART, { 0x100000, 63 * MiB, E820_RAM } };
    check_map(gm, w, 3);
    tmem_free(gm);
}

static void t_1g(void **s)
{
    (void)s;
    struct guest_mem *gm = tmem_new(GiB);
    const struct want w[] = { LOW_PART, { 0x100000, GiB - MiB, E820_RAM } };
    check_map(gm, w, 3);
    tmem_free(gm);
}

static void t_4g(void **s)
{
    (void)s;
    struct guest_mem *gm = tmem_new(4 * GiB);
    const struct want w[] = { LOW_PART, { 0x100000, 3 * GiB - MiB, E820_RAM },
                              { 4 * GiB, GiB, E820_RAM } };
    check_map(gm, w, 4);
    tmem_free(gm);
}

static void t_6g(void **s)
{
    (void)s;
    struct guest_mem *gm = tmem_new(6 * GiB);
    const struct want w[] = { LOW_PART, { 0x100000, 3 * GiB - MiB, E820_RAM },
                              { 4 * GiB, 3 * GiB, E820_RAM } };
    check_map(gm, w, 4);
    tmem_free(gm);
}

static void t_exactly_3g(void **s)
{
    (void)s;
    struct guest_mem *gm = tmem_new(3 * GiB);
    const struct want w[] = { LOW_PART, { 0x100000, 3 * GiB - MiB, E820_RAM } };
    check_map(gm, w, 3);
    tmem_free(gm);
}

static void t_poison_splits(void **s)
{
    (void)s;
    struct guest_mem *gm = tmem_new(64 * MiB);
    assert_int_equal(gm_poison_add(gm, 32 * MiB + 123, 1), 0);
    const struct want w[] = { LOW_PART, { 0x100000, 31 * MiB, E820_RAM },
                              { 32 * MiB + 4096, 32 * MiB - 4096, E820_RAM } };
    check_map(gm, w, 4);
    tmem_free(gm);
}

static void t_poison_edges_and_runs(void **s)
{
    (void)s;
    struct guest_mem *gm = tmem_new(6 * GiB);
    /* First page of RAM, a run of three pages (one hole), the first page
     * above 1 MiB, a page in the reserved area (no effect), the last page
     * of high RAM. */
    assert_int_equal(gm_poison_add(gm, 0, 4096), 0);
    assert_int_equal(gm_poison_add(gm, 0x50000, 3 * 4096), 0);
    assert_int_equal(gm_poison_add(gm, 0x100000, 1), 0);
    assert_int_equal(gm_poison_add(gm, 0xa0000, 1), 0);
    assert_int_equal(gm_poison_add(gm, 7 * GiB - 4096, 4096), 0);
    const struct want w[] = {
        { 0x1000, 0x50000 - 0x1000, E820_RAM },
        { 0x53000, 0x9fc00 - 0x53000, E820_RAM },
        { 0x9fc00, 0x100000 - 0x9fc00, E820_RESERVED },
        { 0x101000, 3 * GiB - 0x101000, E820_RAM },
        { 4 * GiB, 3 * GiB - 4096, E820_RAM },
    };
    check_map(gm, w, 5);
    tmem_free(gm);
}

static void t_poison_whole_high(void **s)
{
    (void)s;
    struct guest_mem *gm = tmem_new(3 * GiB + 8192);
    assert_int_equal(gm_poison_add(gm, 4 * GiB, 8192), 0);
    const struct want w[] = { LOW_PART, { 0x100000, 3 * GiB - MiB, E820_RAM } };
    check_map(gm, w, 3);
    tmem_free(gm);
}

static void t_too_many(void **s)
{
    (void)s;
    struct guest_mem *gm = tmem_new(64 * MiB);
    struct boot_e820_entry e[4];
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(gm_poison_add(gm, 8 * MiB + i * 2 * MiB, 1), 0);
    assert_int_equal(e820_build(gm, e, 4), -ENOSPC);
    tmem_free(gm);
}

static void t_tiny(void **s)
{
    (void)s;
    struct guest_mem *gm = tmem_new(512 * 1024);
    struct boot_e820_entry e[8];
    assert_int_equal(e820_build(gm, e, 8), -EINVAL);
    tmem_free(gm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_64m),
        cmocka_unit_test(t_1g),
        cmocka_unit_test(t_exactly_3g),
        cmocka_unit_test(t_4g),
        cmocka_unit_test(t_6g),
        cmocka_unit_test(t_poison_splits),
        cmocka_unit_test(t_poison_edges_and_runs),
        cmocka_unit_test(t_poison_whole_high),
        cmocka_unit_test(t_too_many),
        cmocka_unit_test(t_tiny),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
