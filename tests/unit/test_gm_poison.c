/* The poisoned-page list: page rounding, bounds, ordering, and concurrent
 * additions from several threads (AR events come from vCPU threads). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guest-mem/gm.h"

#define G GM_GiB

static int setup(void **state)
{
    struct guest_mem *gm = calloc(1, sizeof(*gm));

    if (!gm || gm_layout_compute(4 * G, &gm->layout))
        return -1;
    gm_poison_init(gm);
    *state = gm;
    return 0;
}

static int teardown(void **state)
{
    struct guest_mem *gm = *state;

    gm_poison_destroy(gm);
    free(gm);
    return 0;
}

static void test_empty(void **state)
{
    struct guest_mem *gm = *state;
    uint64_t out[4];

    assert_int_equal(gm_poison_list(gm, out, 4), 0);
    assert_int_equal(gm_poison_list(gm, NULL, 0), 0);
    assert_false(gm_poison_query(gm, 0));
}

static void test_add_query_list(void **state)
{
    struct guest_mem *gm = *state;
    uint64_t out[8];

    assert_int_equal(gm_poison_add(gm, 4 * G + 0x5123, 1), 0);    /* rounds down */
    assert_int_equal(gm_poison_add(gm, 0x2000, 0x1000), 0);
    assert_int_equal(gm_poison_add(gm, 0x2fff, 1), 0);             /* same page again */
    assert_int_equal(gm_poison_list(gm, out, 8), 2);
    assert_true(out[0] == 0x2000);
    assert_true(out[1] == 4 * G + 0x5000);
    assert_true(gm_poison_query(gm, 0x2abc));
    assert_true(gm_poison_query(gm, 4 * G + 0x5fff));
    assert_false(gm_poison_query(gm, 0x3000));
    assert_false(gm_poison_query(gm, 0x1fff));

    /* An unaligned range touching 3 pages, and a 2 MiB dpage. */
    assert_int_equal(gm_poison_add(gm, 0x10ff0, 0x1020), 0);
    assert_true(gm_poison_query(gm, 0x10000));
    assert_true(gm_poison_query(gm, 0x11000));
    assert_true(gm_poison_query(gm, 0x12000));
    assert_false(gm_poison_query(gm, 0x13000));
    assert_int_equal(gm_poison_add(gm, 2 * GM_MiB, 2 * GM_MiB), 0);
    assert_int_equal(gm_poison_list(gm, NULL, 0), 2 + 3 + 512);

    /* max smaller than the count: a sorted prefix, full total returned. */
    memset(out, 0, sizeof(out));
    assert_int_equal(gm_poison_list(gm, out, 3), 517);
    assert_true(out[0] == 0x2000 && out[1] == 0x10000 && out[2] == 0x11000);
    assert_true(out[3] == 0);
}

static void test_bounds(void **state)
{
    struct guest_mem *gm = *state;
    unsigned before = gm_poison_list(gm, NULL, 0);

    assert_int_equal(gm_poison_add(gm, 3 * G, 4096), -EFAULT);       /* hole */
    assert_int_equal(gm_poison_add(gm, 3 * G - 4096, 8192), -EFAULT);/* crosses end */
    assert_int_equal(gm_poison_add(gm, 5 * G, 1), -EFAULT);          /* past RAM */
    assert_int_equal(gm_poison_add(gm, UINT64_MAX - 10, 100), -EFAULT);
    assert_int_equal(gm_poison_list(gm, NULL, 0), before);
    assert_int_equal(gm_poison_add(gm, 5 * G - 1, 0), 0);            /* last byte */
    assert_true(gm_poison_query(gm, 5 * G - 4096));
}

#define NTHREADS 4
#define PER_THREAD 500

struct adder { struct guest_mem *gm; unsigned id; };

static void *adder_run(void *arg)
{
    struct adder *a = arg;

    /* Interleaved pages so inserts land all over the sorted array. */
    for (unsigned i = 0; i < PER_THREAD; i++)
        if (gm_poison_add(a->gm, G + (uint64_t)(i * NTHREADS + a->id) * 4096, 1))
            return (void *)1;
    return NULL;
}

static void test_threads(void **state)
{
    struct guest_mem *gm = *state;
    pthread_t t[NTHREADS];
    struct adder a[NTHREADS];
    unsigned before = gm_poison_list(gm, NULL, 0), n;
    uint64_t *out;

    for (unsigned i = 0; i < NTHREADS; i++) {
        a[i] = (struct adder){ gm, i };
        assert_int_equal(pthread_create(&t[i], NULL, adder_run, &a[i]), 0);
    }
    for (unsigned i = 0; i < NTHREADS; i++) {
        void *ret;

        assert_int_equal(pthread_join(t[i], &ret), 0);
        assert_null(ret);
    }
    n = gm_poison_list(gm, NULL, 0);
    assert_int_equal(n, before + NTHREADS * PER_THREAD);
    out = calloc(n, sizeof(*out));
    assert_non_null(out);
    assert_int_equal(gm_poison_list(gm, out, n), n);
    for (unsigned i = 1; i < n; i++)
        assert_true(out[i - 1] < out[i]);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_add_query_list),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_threads),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, setup, teardown);
}
