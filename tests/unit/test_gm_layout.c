/* Guest layout arithmetic and GPA<->HVA translation edge cases (no host
 * memory is mapped: the HVAs are made-up addresses). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "guest-mem/gm.h"

#define G GM_GiB

static void expect_layout(uint64_t ram, uint64_t rounded, unsigned nr,
                          uint64_t low, uint64_t high)
{
    struct gm_layout l;

    assert_int_equal(gm_layout_compute(ram, &l), 0);
    assert_true(l.ram_size == rounded);
    assert_int_equal(l.nr, nr);
    assert_true(l.r[0].gpa == 0);
    assert_true(l.r[0].size == low);
    assert_true(l.r[0].file_off == 0);
    assert_null(l.r[0].hva);
    if (nr == 2) {
        assert_true(l.r[1].gpa == GM_HIGH_RAM_BASE);
        assert_true(l.r[1].size == high);
        assert_true(l.r[1].file_off == 3 * G);
        assert_null(l.r[1].hva);
    }
    assert_true(l.r[0].size + (nr == 2 ? l.r[1].size : 0) == l.ram_size);
}

static void test_layout_sizes(void **state)
{
    (void)state;
    expect_layout(64 * GM_MiB, 64 * GM_MiB, 1, 64 * GM_MiB, 0);
    expect_layout(G, G, 1, G, 0);
    expect_layout(3 * G - 1, 3 * G, 1, 3 * G, 0);     /* rounds up to 4 KiB */
    expect_layout(3 * G, 3 * G, 1, 3 * G, 0);
    expect_layout(3 * G + 4096, 3 * G + 4096, 2, 3 * G, 4096);
    expect_layout(4 * G, 4 * G, 2, 3 * G, G);
    expect_layout(6 * G, 6 * G, 2, 3 * G, 3 * G);
    expect_layout(1, 4096, 1, 4096, 0);
}

static void test_layout_bad(void **state)
{
    struct gm_layout l;

    (void)state;
    assert_int_equal(gm_layout_compute(0, &l), -EINVAL);
    assert_int_equal(gm_layout_compute(GM_MAX_RAM + 1, &l), -ERANGE);
    assert_int_equal(gm_layout_compute(UINT64_MAX, &l), -ERANGE);
    assert_int_equal(gm_layout_compute(UINT64_MAX - 4094, &l), -ERANGE);
    assert_int_equal(gm_layout_compute(GM_MAX_RAM, &l), 0);
    assert_true(l.r[1].gpa + l.r[1].size == GM_MAX_RAM + G);
}

static void test_align(void **state)
{
    (void)state;
    assert_true(gm_align_up(0, 4096) == 0);
    assert_true(gm_align_up(1, 4096) == 4096);
    assert_true(gm_align_up(4096, 4096) == 4096);
    assert_true(gm_align_up(4097, 4096) == 8192);
    assert_true(gm_align_down(4097, 4096) == 4096);
    assert_true(gm_align_down(4095, 4096) == 0);
    assert_true(gm_align_up(3 * G - 1, 2 * GM_MiB) == 3 * G);
    assert_true(gm_align_up(G + 1, G) == 2 * G);
    assert_true(gm_align_down(2 * G - 1, G) == G);
    assert_true(gm_align_up(0x7fff1234abcdULL, G) % G == 0);
    assert_true(gm_align_up(0x7fff1234abcdULL, G) - 0x7fff1234abcdULL < G);
}

/* A 4 GiB guest with HVAs that keep the GPA offset mod 1 GiB. */
static void fake_gm(struct guest_mem *gm, uint64_t ram)
{
    uint8_t *base = (uint8_t *)(uintptr_t)0x7f0000000000ULL;

    memset(gm, 0, sizeof(*gm));
    assert_int_equal(gm_layout_compute(ram, &gm->layout), 0);
    for (unsigned i = 0; i < gm->layout.nr; i++)
        gm->layout.r[i].hva = base + gm->layout.r[i].file_off;
}

static void test_translate(void **state)
{
    struct guest_mem gm;
    uint8_t *lo, *hi;

    (void)state;
    fake_gm(&gm, 4 * G);
    lo = gm.layout.r[0].hva;
    hi = gm.layout.r[1].hva;
    assert_ptr_equal(gm_gpa_to_hva(&gm, 0, 1), lo);
    assert_ptr_equal(gm_gpa_to_hva(&gm, 0x1234, 8), lo + 0x1234);
    assert_ptr_equal(gm_gpa_to_hva(&gm, 0, 3 * G), lo);              /* whole region */
    assert_ptr_equal(gm_gpa_to_hva(&gm, 3 * G - 1, 1), lo + 3 * G - 1); /* last byte */
    assert_ptr_equal(gm_gpa_to_hva(&gm, 3 * G - 1, 0), lo + 3 * G - 1); /* len 0 = 1 */
    assert_null(gm_gpa_to_hva(&gm, 3 * G - 1, 2));                   /* crosses end */
    assert_null(gm_gpa_to_hva(&gm, 0, 3 * G + 1));
    assert_null(gm_gpa_to_hva(&gm, 3 * G, 1));                       /* hole */
    assert_null(gm_gpa_to_hva(&gm, 4 * G - 1, 1));
    assert_null(gm_gpa_to_hva(&gm, 4 * G - 1, 2));                   /* hole into RAM */
    assert_null(gm_gpa_to_hva(&gm, 3 * G - 4096, G + 8192));         /* spans the hole */
    assert_ptr_equal(gm_gpa_to_hva(&gm, 4 * G, 4096), hi);
    assert_ptr_equal(gm_gpa_to_hva(&gm, 5 * G - 1, 1), hi + G - 1);
    assert_null(gm_gpa_to_hva(&gm, 5 * G, 0));                       /* past the end */
    assert_null(gm_gpa_to_hva(&gm, 5 * G - 1, 2));
    /* gpa + len would wrap */
    assert_null(gm_gpa_to_hva(&gm, UINT64_MAX, 1));
    assert_null(gm_gpa_to_hva(&gm, UINT64_MAX - 1, 4));
    assert_null(gm_gpa_to_hva(&gm, 4 * G, UINT64_MAX));
    assert_null(gm_gpa_to_hva(&gm, 16, UINT64_MAX - 8));
    /* HVA congruent to GPA mod 1 GiB */
    assert_true((uintptr_t)gm_gpa_to_hva(&gm, 4 * G + 0x5000, 1) % G == 0x5000);
}

static void test_translate_unmapped(void **state)
{
    struct guest_mem gm;

    (void)state;
    memset(&gm, 0, sizeof(gm));
    assert_int_equal(gm_layout_compute(64 * GM_MiB, &gm.layout), 0);
    assert_null(gm_gpa_to_hva(&gm, 0, 1));      /* layout only, nothing mapped */
}

static void test_hva_to_gpa(void **state)
{
    struct guest_mem gm;
    uint64_t gpa = 0xdead;
    uint8_t *lo, *hi;

    (void)state;
    fake_gm(&gm, 6 * G);
    lo = gm.layout.r[0].hva;
    hi = gm.layout.r[1].hva;
    assert_int_equal(gm_hva_to_gpa(&gm, lo, &gpa), 0);
    assert_true(gpa == 0);
    assert_int_equal(gm_hva_to_gpa(&gm, lo + 3 * G - 1, &gpa), 0);
    assert_true(gpa == 3 * G - 1);
    assert_int_equal(gm_hva_to_gpa(&gm, hi, &gpa), 0);
    assert_true(gpa == 4 * G);
    assert_int_equal(gm_hva_to_gpa(&gm, hi + 3 * G - 1, &gpa), 0);
    assert_true(gpa == 7 * G - 1);
    gpa = 0xdead;
    assert_int_equal(gm_hva_to_gpa(&gm, hi + 3 * G, &gpa), -EFAULT);
    assert_int_equal(gm_hva_to_gpa(&gm, lo - 1, &gpa), -EFAULT);
    assert_true(gpa == 0xdead);
    for (uint64_t g = 0; g < 7 * G; g += 0x3fffe001) {
        void *h = gm_gpa_to_hva(&gm, g, 1);

        if (!h)
            continue;
        assert_int_equal(gm_hva_to_gpa(&gm, h, &gpa), 0);
        assert_true(gpa == g);
    }
}

static void test_contains(void **state)
{
    struct gm_layout l;

    (void)state;
    assert_int_equal(gm_layout_compute(3 * G + 4096, &l), 0);
    assert_true(gm_layout_contains(&l, 0, 0));
    assert_true(gm_layout_contains(&l, 3 * G - 4096, 4096));
    assert_false(gm_layout_contains(&l, 3 * G - 4096, 4097));
    assert_false(gm_layout_contains(&l, 3 * G, 1));
    assert_true(gm_layout_contains(&l, 4 * G, 4096));
    assert_false(gm_layout_contains(&l, 4 * G, 4097));
    assert_false(gm_layout_contains(&l, 4 * G + 4095, UINT64_MAX));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_sizes),
        cmocka_unit_test(test_layout_bad),
        cmocka_unit_test(test_align),
        cmocka_unit_test(test_translate),
        cmocka_unit_test(test_translate_unmapped),
        cmocka_unit_test(test_hva_to_gpa),
        cmocka_unit_test(test_contains),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
