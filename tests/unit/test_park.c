/* Parking without KVM: threads that loop on park_checkpoint as vCPUs do
 * (the "guest" is a counter they bump), and main's pause, resume, reboot
 * hand-over, start gate and stop.  What must hold: park_all returns only
 * once every vCPU is parked (no counter moves after it), reasons are
 * independent (resume during a reboot keeps them parked), before_park
 * sees the reasons, and a stop releases both vCPUs and park_all waiters. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "vmm/park.h"

#define NV 3

struct fake_vcpu {
    struct park *p;
    pthread_t thread;
    uint64_t runs;              /* loop iterations past the checkpoint (atomic) */
    unsigned last_reasons;      /* what before_park saw (atomic) */
    unsigned kicks;             /* atomic */
};

struct fixture {
    struct park p;
    struct fake_vcpu v[NV];
};

static void kick_all(void *ctx)
{
    struct fixture *f = ctx;

    for (unsigned i = 0; i < NV; i++)
        __atomic_add_fetch(&f->v[i].kicks, 1, __ATOMIC_RELAXED);
}

static void before_park(void *arg, unsigned reasons)
{
    struct fake_vcpu *v = arg;

    __atomic_store_n(&v->last_reasons, reasons, __ATOMIC_RELAXED);
}

static void *vcpu_loop(void *arg)
{
    struct fake_vcpu *v = arg;

    while (park_checkpoint(v->p, before_park, v)) {
        __atomic_add_fetch(&v->runs, 1, __ATOMIC_RELAXED);
        sched_yield();
    }
    return NULL;
}

static uint64_t total_runs(struct fixture *f)
{
    uint64_t n = 0;

    for (unsigned i = 0; i < NV; i++)
        n += __atomic_load_n(&f->v[i].runs, __ATOMIC_RELAXED);
    return n;
}

static void settle(void)
{
    struct timespec ts = { 0, 5 * 1000 * 1000 };

    nanosleep(&ts, NULL);
}


static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f || park_init(&f->p, kick_all, f) < 0)
        return -1;
    park_set_nvcpus(&f->p, NV);
    *state = f;
    return 0;
}

static void start(struct fixture *f)
{
    for (unsigned i = 0; i < NV; i++) {
        f->v[i].p = &f->p;
        assert_int_equal(pthread_create(&f->v[i].thread, NULL, vcpu_loop, &f->v[i]), 0);
    }
}

static void stop_and_join(struct fixture *f)
{
    park_stop(&f->p);
    for (unsigned i = 0; i < NV; i++)
        pthread_join(f->v[i].thread, NULL);
}

/* Parked since `at` runs: nothing moves while reason stays; once it is
 * released (the last one), they all run on, and then stop. */
static void release_and_finish(struct fixture *f, uint64_t at, unsigned reason)
{
    settle();
    assert_int_equal(total_runs(f), at);
    park_release(&f->p, reason);
    while (total_runs(f) < at + 100)
        sched_yield();
    stop_and_join(f);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    park_destroy(&f->p);
    free(f);
    return 0;
}

/* Nothing runs before main lets go; then everything does. */
static void test_start_gate(void **state)
{
    struct fixture *f = *state;

    park_request(&f->p, PARK_START);
    start(f);
    settle();
    assert_int_equal(total_runs(f), 0);
    park_release(&f->p, PARK_START);
    while (total_runs(f) < 100)
        sched_yield();
    for (unsigned i = 0; i < NV; i++)
        assert_int_equal(__atomic_load_n(&f->v[i].last_reasons, __ATOMIC_RELAXED), PARK_START);
    stop_and_join(f);
}

/* Paused means nobody runs, from park_all's return on. */
static void test_pause_resume(void **state)
{
    struct fixture *f = *state;

    start(f);
    while (total_runs(f) < 100)
        sched_yield();
    assert_true(park_all(&f->p, PARK_USER));
    assert_true(park_is(&f->p, PARK_USER));
    for (unsigned i = 0; i < NV; i++)
        assert_true(__atomic_load_n(&f->v[i].kicks, __ATOMIC_RELAXED) >= 1);
    release_and_finish(f, total_runs(f), PARK_USER);
}

/* A resume during a reboot does not let the vCPUs run; the reboot's end
 * does, unless the user paused meanwhile. */
static void test_reasons_are_independent(void **state)
{
    struct fixture *f = *state;
    uint64_t at;

    start(f);
    park_request(&f->p, PARK_REBOOT);
    assert_true(park_all(&f->p, PARK_REBOOT));
    assert_true(park_all(&f->p, PARK_USER));
    park_release(&f->p, PARK_USER);
    at = total_runs(f);
    settle();
    assert_int_equal(total_runs(f), at);
    assert_true(park_all(&f->p, PARK_USER));
    park_release(&f->p, PARK_REBOOT);
    release_and_finish(f, at, PARK_USER);
}

struct waiter {
    struct park *p;
    bool ret;
};

static void *park_all_thread(void *arg)
{
    struct waiter *w = arg;

    w->ret = park_all(w->p, PARK_USER);
    return NULL;
}

/* One vCPU short (it has "left"): park_all waits until the stop, then
 * says the VM is stopping; every parked vCPU leaves its loop. */
static void test_stop_releases_everyone(void **state)
{
    struct fixture *f = *state;
    struct waiter w = { .p = &f->p, .ret = true };
    pthread_t t;

    park_set_nvcpus(&f->p, NV + 1);
    start(f);
    assert_int_equal(pthread_create(&t, NULL, park_all_thread, &w), 0);
    settle();
    stop_and_join(f);
    pthread_join(t, NULL);
    assert_false(w.ret);
    assert_true(park_stopping(&f->p));
    assert_false(park_checkpoint(&f->p, NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_gate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reasons_are_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_releases_everyone, setup, teardown),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
