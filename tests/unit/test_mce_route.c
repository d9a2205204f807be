/* The SIGBUS handler's routing decisions, driven by real signals with the
 * kernel's siginfo (mce_route_send): an AR inside its expected window (KVM_RUN,
 * a self-send) and any AO are recorded and wake the owner; an AR outside it is
 * the thread's own access to a failed page and ends the process with a reason
 * on stderr and a JSON line; a SIGBUS that is not a memory failure takes the
 * default action.  The fatal cases run in a child process.
 * Device workers' guards: an AR inside mce_guard_run comes back as
 * -EHWPOISON with the address (nested guards: the innermost), SIGBUS is
 * deliverable again afterwards, an AO on a worker is not fatal, and an AR
 * outside any guard still takes the default action. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "vmm/mce_route.h"

#define HVA 0x7f0012345000ULL

static pid_t gettid_(void)
{
    return (pid_t)syscall(SYS_gettid);
}

static void test_expected_ar_is_recorded(void **state)
{
    struct mce_slot slot;
    struct mce_sig sig;
    uint64_t cnt = 0;
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    (void)state;
    assert_true(efd >= 0);
    assert_int_equal(mce_route_install(), 0);
    mce_slot_init(&slot, efd);
    mce_route_bind_thread(&slot);
    mce_slot_expect_ar(&slot, true);
    assert_int_equal(mce_route_send(gettid_(), MCE_AR, HVA, 12), 0);
    mce_slot_expect_ar(&slot, false);
    mce_route_bind_thread(NULL);

    assert_true(mce_slot_pop(&slot, &sig));
    assert_true(sig.addr == HVA);
    assert_int_equal(sig.lsb, 12);
    assert_int_equal(sig.kind, MCE_AR);
    assert_false(mce_slot_pop(&slot, &sig));
    assert_int_equal(read(efd, &cnt, sizeof(cnt)), sizeof(cnt));
    assert_true(cnt == 1);
    close(efd);
}

/* AO is a report, never a fault of the thread's own: no window needed. */
static void test_ao_is_recorded_without_window(void **state)
{
    struct mce_slot slot;
    struct mce_sig sig;

    (void)state;
    assert_int_equal(mce_route_install(), 0);
    mce_slot_init(&slot, -1);
    mce_route_bind_thread(&slot);
    assert_int_equal(mce_route_send(gettid_(), MCE_AO, HVA + 0x1000, 21), 0);
    mce_route_bind_thread(NULL);
    assert_true(mce_slot_pop(&slot, &sig));
    assert_true(sig.addr == HVA + 0x1000);
    assert_int_equal(sig.lsb, 21);
    assert_int_equal(sig.kind, MCE_AO);
}

/* More events than the ring holds: the overflow is counted, not written
 * past the ring. */
static void test_ring_overflow_counted(void **state)
{
    struct mce_slot slot;
    struct mce_sig sig;
    unsigned n = 0;

    (void)state;
    assert_int_equal(mce_route_install(), 0);
    mce_slot_init(&slot, -1);
    mce_route_bind_thread(&slot);
    for (unsigned i = 0; i < MCE_SLOT_RING + 3; i++)
        assert_int_equal(mce_route_send(gettid_(), MCE_AO, HVA + i * 0x1000ULL, 12), 0);
    mce_route_bind_thread(NULL);
    while (mce_slot_pop(&slot, &sig)) {
        assert_true(sig.addr == HVA + n * 0x1000ULL);
        n++;
    }
    assert_int_equal(n, MCE_SLOT_RING);
    assert_int_equal(slot.dropped, 3);
}

static size_t read_all(int fd, char *buf, size_t len)
{
    size_t used = 0;
    ssize_t r;

    while (used < len - 1 && (r = read(fd, buf + used, len - 1 - used)) > 0)
        used += (size_t)r;
    buf[used] = '\0';
    return used;
}

/* Runs `kind` through a bound slot in a child with stderr and the MCE log
 * on pipes.  Returns the wait status. */
static int run_child(int si_code_kind, bool expect, char *err, size_t errlen,
                     char *log, size_t loglen)
{
    int ep[2], lp[2], status;
    pid_t pid;

    assert_int_equal(pipe(ep), 0);
    assert_int_equal(pipe(lp), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct mce_slot slot;

        close(ep[0]);
        close(lp[0]);
        dup2(ep[1], STDERR_FILENO);
        if (mce_route_install() < 0)
            _exit(90);
        mce_slot_init(&slot, -1);
        slot.log_fd = lp[1];
        mce_route_bind_thread(&slot);
        mce_slot_expect_ar(&slot, expect);
        if (si_code_kind < 0) {
            siginfo_t si;

            /* A SIGBUS that is no memory failure (a bad mapping access). */
            memset(&si, 0, sizeof(si));
            si.si_signo = SIGBUS;
            si.si_code = BUS_ADRERR;
            si.si_addr = (void *)(uintptr_t)HVA;
            syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid_(), SIGBUS, &si);
        } else {
            mce_route_send(gettid_(), (enum mce_kind)si_code_kind, HVA, 12);
        }
        _exit(0);
    }
    close(ep[1]);
    close(lp[1]);
    read_all(ep[0], err, errlen);
    read_all(lp[0], log, loglen);
    close(ep[0]);
    close(lp[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

/* Returning from the handler would re-run the faulting access forever. */
static void test_unexpected_ar_is_fatal(void **state)
{
    char err[2048], log[2048];
    time_t before = time(NULL), after, logged;
    json_object *o, *v;
    struct tm tm;
    int status = run_child(MCE_AR, false, err, sizeof(err), log, sizeof(log));

    (void)state;
    after = time(NULL);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    assert_non_null(strstr(err, "memory failure (SIGBUS BUS_MCEERR_AR) at HVA 0x7f0012345000"));
    assert_non_null(strstr(err, "dvmm's own access"));

    assert_non_null(strchr(log, '\n'));
    o = json_tokener_parse(log);
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "kind", &v));
    assert_string_equal(json_object_get_string(v), "AR");
    assert_true(json_object_object_get_ex(o, "hva", &v));
    assert_string_equal(json_object_get_string(v), "0x7f0012345000");
    assert_true(json_object_object_get_ex(o, "gpa", &v) && v == NULL);
    assert_true(json_object_object_get_ex(o, "vcpu", &v) && v == NULL);
    assert_true(json_object_object_get_ex(o, "page_size", &v));
    assert_int_equal(json_object_get_int64(v), 4096);
    assert_true(json_object_object_get_ex(o, "injected", &v));
    assert_false(json_object_get_boolean(v));
    assert_true(json_object_object_get_ex(o, "reason", &v));
    assert_non_null(strstr(json_object_get_string(v), "dvmm's own access"));
    /* The hand-made ISO date must be the one gmtime would give. */
    assert_true(json_object_object_get_ex(o, "time", &v));
    memset(&tm, 0, sizeof(tm));
    assert_non_null(strptime(json_object_get_string(v), "%Y-%m-%dT%H:%M:%S", &tm));
    assert_int_equal(strlen(json_object_get_string(v)), strlen("2026-11-21T19:30:06.310979Z"));
    logged = timegm(&tm);
    assert_true(logged >= before && logged <= after);
    json_object_put(o);
}

/* Inside the window the same signal is only recorded: the child lives. */
static void test_expected_ar_in_child_survives(void **state)
{
    char err[2048], log[2048];
    int status = run_child(MCE_AR, true, err, sizeof(err), log, sizeof(log));

    (void)state;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_string_equal(log, "");
}

static void test_other_sigbus_takes_default_action(void **state)
{
    char err[2048], log[2048];
    int status = run_child(-1, true, err, sizeof(err), log, sizeof(log));

    (void)state;
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGBUS);
    assert_string_equal(log, "");
}

/* ---- device-worker guards ------------------------------------------------ */

/* What a guarded stretch does: its own access "faults" (the kernel's
 * siginfo, sent to this very thread, arrives before the send returns). */
static void guard_fault_fn(void *arg)
{
    const uint64_t *hva = arg;

    mce_route_send(gettid_(), MCE_AR, *hva, 12);
    /* Never reached: the handler jumped back to mce_guard_run. */
    abort();
}

static void guard_nop_fn(void *arg)
{
    (*(int *)arg)++;
}

struct guard_nest {
    uint64_t hva;
    int inner_ret;
    uint64_t inner_addr;
    int after;
};

static void guard_outer_fn(void *arg)
{
    struct guard_nest *n = arg;
    struct mce_guard inner;

    n->inner_ret = mce_guard_run(&inner, guard_fault_fn, &n->hva);
    n->inner_addr = inner.addr;
    n->after = 1;
}

struct guard_result {
    int init, first, second, nop, nop_ret;
    uint64_t addr1, addr2;
    unsigned lsb1;
    struct guard_nest nest;
    int outer_ret;
};

static void *guard_worker(void *arg)
{
    struct guard_result *r = arg;
    struct mce_guard g;
    uint64_t a = HVA, b = HVA + 0x3000;

    r->init = mce_guard_thread_init();
    r->first = mce_guard_run(&g, guard_fault_fn, &a);
    r->addr1 = g.addr;
    r->lsb1 = g.lsb;
    /* SIGBUS is blocked while a handler runs; the way back unblocks it, or
     * this second failure would kill the process. */
    r->second = mce_guard_run(&g, guard_fault_fn, &b);
    r->addr2 = g.addr;
    r->nop_ret = mce_guard_run(&g, guard_nop_fn, &r->nop);
    r->nest.hva = HVA + 0x5000;
    r->outer_ret = mce_guard_run(&g, guard_outer_fn, &r->nest);
    return NULL;
}

static void test_guard_catches_ar(void **state)
{
    struct guard_result r = { 0 };
    pthread_t t;

    (void)state;
    assert_int_equal(mce_route_install(), 0);
    assert_int_equal(pthread_create(&t, NULL, guard_worker, &r), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(r.init, 0);
    assert_int_equal(r.first, -EHWPOISON);
    assert_true(r.addr1 == HVA);
    assert_int_equal(r.lsb1, 12);
    assert_int_equal(r.second, -EHWPOISON);
    assert_true(r.addr2 == HVA + 0x3000);
    assert_int_equal(r.nop_ret, 0);
    assert_int_equal(r.nop, 1);
    /* Nested: the inner guard takes it, the outer stretch runs on. */
    assert_int_equal(r.nest.inner_ret, -EHWPOISON);
    assert_true(r.nest.inner_addr == HVA + 0x5000);
    assert_int_equal(r.nest.after, 1);
    assert_int_equal(r.outer_ret, 0);
}

struct sys_result {
    int hit1, hit2;
    uint64_t addr;
    unsigned lsb;
};

/* An AR that arrives while the syscall window is open (a provider that
 * signals a failed copy, as dmemfs's module does) is recorded, not fatal. */
static void *sys_worker(void *arg)
{
    struct sys_result *r = arg;

    mce_guard_thread_init();
    mce_guard_syscall(true);
    mce_route_send(gettid_(), MCE_AR, HVA + 0x9000, 12);
    mce_guard_syscall(false);
    r->hit1 = mce_guard_syscall_hit(&r->addr, &r->lsb);
    r->hit2 = mce_guard_syscall_hit(&r->addr, &r->lsb);
    return NULL;
}

static void test_worker_ar_in_syscall_recorded(void **state)
{
    struct sys_result r = { 0 };
    pthread_t t;

    (void)state;
    assert_int_equal(mce_route_install(), 0);
    assert_int_equal(pthread_create(&t, NULL, sys_worker, &r), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(r.hit1);
    assert_true(r.addr == HVA + 0x9000);
    assert_int_equal(r.lsb, 12);
    assert_false(r.hit2);
}

static void *ao_worker(void *arg)
{
    (void)arg;
    if (mce_guard_thread_init() < 0)
        return (void *)1;
    mce_route_send(gettid_(), MCE_AO, HVA + 0x7000, 12);
    return NULL;
}

/* An AO that lands on a worker (the kernel sends them to main) is said on
 * stderr and survived, guard or not. */
static void test_worker_ao_not_fatal(void **state)
{
    pthread_t t;
    void *ret;

    (void)state;
    assert_int_equal(mce_route_install(), 0);
    assert_int_equal(pthread_create(&t, NULL, ao_worker, NULL), 0);
    assert_int_equal(pthread_join(t, &ret), 0);
    assert_null(ret);
}

static void *unguarded_worker(void *arg)
{
    (void)arg;
    mce_guard_thread_init();
    mce_route_send(gettid_(), MCE_AR, HVA, 12);
    return NULL;
}

/* No guard armed: nothing expects the access to be cut short, so the
 * default action, as before guards existed. */
static void test_worker_ar_outside_guard_default(void **state)
{
    int status;
    pid_t pid;

    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pthread_t t;

        if (mce_route_install() < 0 || pthread_create(&t, NULL, unguarded_worker, NULL))
            _exit(90);
        pthread_join(t, NULL);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGBUS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expected_ar_is_recorded),
        cmocka_unit_test(test_ao_is_recorded_without_window),
        cmocka_unit_test(test_ring_overflow_counted),
        cmocka_unit_test(test_unexpected_ar_is_fatal),
        cmocka_unit_test(test_expected_ar_in_child_survives),
        cmocka_unit_test(test_other_sigbus_takes_default_action),
        cmocka_unit_test(test_guard_catches_ar),
        cmocka_unit_test(test_worker_ao_not_fatal),
        cmocka_unit_test(test_worker_ar_in_syscall_recorded),
        cmocka_unit_test(test_worker_ar_outside_guard_default),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
