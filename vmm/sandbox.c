/* The per-thread seccomp sandbox; the interface and the reasons are in
 * sandbox.h.  The allow-lists are in sandbox_list.c; the programs dvmm
 * loads were compiled from them at build time (sandbox_bpf.c), and
 * sandbox_build.c is the libseccomp side of that, which dvmm never calls. */
#include "vmm/sandbox.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <sys/utsname.h>
#include <grp.h>
#include <time.h>
#include <unistd.h>

#include "vmm/log.h"

/* ---- process state --------------------------------------------------------- */

/* A spawn request: the creator waits on it; the child reports on `entered`
 * whether it is in its sandbox. */
struct sbx_start {
    void *(*fn)(void *);
    void *arg;
    enum sandbox_kind kind;
    char name[16];
    pthread_t *thread;
    int ret;
    sem_t entered;
    bool done;          /* the spawner finished the request */
};

/* The sandbox is process-wide, like the filters' effect: written by main
 * in sandbox_init before any thread that reads it exists, then read-only except
 * for the spawner's request slot (under lock) and the one-shot test hook
 * (atomic).  Thread entry points in guest-mem/ and virtio/ reach it here
 * rather than through every device's struct. */
static struct {
    enum sandbox_mode mode;
    struct sock_fprog prog[SBX_NKINDS];
    int selftest;                   /* kind, or -1 */
    int selftest_fired;             /* atomic */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct sbx_start *req;          /* the spawner's one pending request */
    bool spawner_up;                /* atomic; set by main before its filter */
} sbx = {
    .selftest = -1,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .cond = PTHREAD_COND_INITIALIZER,
};

/* Per thread, for the SIGSYS handler (which may only read, not ask
 * anyone): the thread's name, and whether it is filtered (a filtered thread
 * creates threads through the spawner). */
static __thread char sbx_name[16];
static __thread bool sbx_filtered;

/* ---- the SIGSYS report ----------------------------------------------------- */

static size_t sbx_put(char *buf, size_t len, size_t at, const char *s)
{
    while (*s && at + 1 < len)
        buf[at++] = *s++;
    return at;
}

size_t sandbox_format_violation(char *buf, size_t len, const char *thread, long nr)
{
    const char *name = sandbox_syscall_name(nr);
    char num[24];
    unsigned long v = nr < 0 ? (unsigned long)-nr : (unsigned long)nr;
    size_t at = 0, n = sizeof(num);

    if (!len)
        return 0;
    num[--n] = 0;
    do {
        num[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n);
    if (nr < 0 && n)
        num[--n] = '-';
    at = sbx_put(buf, len, at, "dvmm: sandbox: ");
    at = sbx_put(buf, len, at, thread && *thread ? thread : "unnamed thread");
    at = sbx_put(buf, len, at, " made forbidden system call ");
    at = sbx_put(buf, len, at, name ? name : "unknown");
    at = sbx_put(buf, len, at, " (");
    at = sbx_put(buf, len, at, num + n);
    at = sbx_put(buf, len, at, "); exiting\n");
    if (at < len)
        buf[at] = 0;
    return at;
}

/* Async-signal-safe: TLS, a const table, write(2), _exit(2).  The whole
 * process ends: a thread that made a call its list does not have is not to
 * be trusted, and neither is the memory it shares. */
static void sbx_sigsys(int sig, siginfo_t *si, void *uc)
{
    char line[160];
    size_t n;

    (void)sig;
    (void)uc;
    n = sandbox_format_violation(line, sizeof(line), sbx_name, (long)si->si_syscall);
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nothing left to tell it with */
    }
    _exit(1);
}

/* ---- threads --------------------------------------------------------------- */

static void *sbx_trampoline(void *p)
{
    struct sbx_start *s = p;
    void *(*fn)(void *) = s->fn;
    void *arg = s->arg;
    int ret = sandbox_enter(s->kind, s->name);

    /* s lives on the creator's stack until it sees the post. */
    s->ret = ret;
    sem_post(&s->entered);
    return ret ? NULL : fn(arg);
}

/* pthread_create with every signal blocked (SIGBUS belongs to the vCPUs
 * and main, SIGINT/SIGTERM to main's signalfd), then wait until the child
 * is in its sandbox. */
static int sbx_create_direct(struct sbx_start *s)
{
    sigset_t all, old;
    int r;

    if (sem_init(&s->entered, 0, 0) < 0)
        return -errno;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(s->thread, NULL, sbx_trampoline, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r) {
        sem_destroy(&s->entered);
        return -r;
    }
    while (sem_wait(&s->entered) < 0 && errno == EINTR)
        ;
    sem_destroy(&s->entered);
    if (s->ret) {
        pthread_join(*s->thread, NULL);
        return s->ret;
    }
    return 0;
}

static void *sbx_spawner(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&sbx.lock);
    for (;;) {
        struct sbx_start *s;

        while (!sbx.req || sbx.req->done)
            pthread_cond_wait(&sbx.cond, &sbx.lock);
        s = sbx.req;
        pthread_mutex_unlock(&sbx.lock);
        s->ret = sbx_create_direct(s);
        pthread_mutex_lock(&sbx.lock);
        s->done = true;
        pthread_cond_broadcast(&sbx.cond);
    }
    return NULL;
}

int sandbox_thread_create(pthread_t *thread, enum sandbox_kind kind, const char *name,
                          void *(*fn)(void *), void *arg)
{
    struct sbx_start s = { .fn = fn, .arg = arg, .kind = kind, .thread = thread };
    int ret;

    snprintf(s.name, sizeof(s.name), "%s", name);
    if (!sbx_filtered)
        return sbx_create_direct(&s);
    if (!__atomic_load_n(&sbx.spawner_up, __ATOMIC_ACQUIRE)) {
        /* Only main's filter starts it, and vCPUs wait for that. */
        log_err("sandbox: %s wants thread %s before the spawner runs", sbx_name, s.name);
        return -EAGAIN;
    }
    pthread_mutex_lock(&sbx.lock);
    while (sbx.req)
        pthread_cond_wait(&sbx.cond, &sbx.lock);
    sbx.req = &s;
    pthread_cond_broadcast(&sbx.cond);
    while (!s.done)
        pthread_cond_wait(&sbx.cond, &sbx.lock);
    sbx.req = NULL;
    pthread_cond_broadcast(&sbx.cond);
    ret = s.ret;
    pthread_mutex_unlock(&sbx.lock);
    return ret;
}

int sandbox_enter(enum sandbox_kind kind, const char *name)
{
    sigset_t sys;
    int rc;

    snprintf(sbx_name, sizeof(sbx_name), "%s", name);
    /* main keeps its comm ("dvmm"): that is what ps and pgrep look for. */
    if (kind != SBX_MAIN && prctl(PR_SET_NAME, sbx_name, 0, 0, 0) < 0)
        log_warn("sandbox: naming thread %s: %s", sbx_name, strerror(errno));
    if (sbx.mode == SANDBOX_OFF || (unsigned)kind >= SBX_NKINDS)
        return 0;
    /* The kernel resets a blocked SIGSYS to its default action (a core
     * dump, no line) before it delivers a seccomp trap: workers start with
     * every signal blocked, so each thread takes it back here. */
    sigemptyset(&sys);
    sigaddset(&sys, SIGSYS);
    pthread_sigmask(SIG_UNBLOCK, &sys, NULL);
    /* main's turn is the last moment without a filter: the spawner starts
     * now, with main's final credentials (after sandbox_drop_user). */
    if (kind == SBX_MAIN && !__atomic_load_n(&sbx.spawner_up, __ATOMIC_ACQUIRE)) {
        pthread_t spawner;

        rc = sandbox_thread_create(&spawner, SBX_SPAWNER, "dvmm-spawner", sbx_spawner, NULL);
        if (rc) {
            log_err("sandbox: spawner thread: %s", strerror(-rc));
            return rc;
        }
        pthread_detach(spawner);
        __atomic_store_n(&sbx.spawner_up, true, __ATOMIC_RELEASE);
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &sbx.prog[kind]) < 0) {
        int e = errno;

        log_err("sandbox: %s: loading the %s filter: %s", sbx_name, sandbox_kind_name(kind),
                strerror(e));
        return -e;
    }
    sbx_filtered = true;
    if (sbx.selftest == (int)kind &&
        !__atomic_exchange_n(&sbx.selftest_fired, 1, __ATOMIC_SEQ_CST)) {
        struct utsname u;

        log_warn("sandbox: DVMM_SANDBOX_SELFTEST=%s: %s calls uname(2), which no "
                 "list allows", sandbox_kind_name(kind), sbx_name);
        syscall(SYS_uname, &u);
    }
    return 0;
}

int sandbox_drop_user(const char *user, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    uid_t r, e, su;

    /* No capability may come back: empty the bounding set while we still
     * may (CAP_SETPCAP), then the ids; a uid change from 0 to non-zero
     * clears the permitted, effective and ambient sets. */
    for (int cap = 0; geteuid() == 0 && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return log_fail(err, errlen, -errno, "sandbox.user = '%s': dropping "
                            "capability %d from the bounding set: %s", user, cap,
                            strerror(errno));
    if (setgroups(0, NULL) < 0 && !(errno == EPERM && getegid() == gid))
        return log_fail(err, errlen, -errno, "sandbox.user = '%s': setgroups: %s%s", user,
                        strerror(errno), errno == EPERM ? " (dvmm must start as root "
                        "to change user)" : "");
    if (setresgid(gid, gid, gid) < 0)
        return log_fail(err, errlen, -errno, "sandbox.user = '%s': setresgid(%u): %s%s",
                        user, (unsigned)gid, strerror(errno), errno == EPERM ?
                        " (dvmm must start as root to change user)" : "");
    if (setresuid(uid, uid, uid) < 0)
        return log_fail(err, errlen, -errno, "sandbox.user = '%s': setresuid(%u): %s%s",
                        user, (unsigned)uid, strerror(errno), errno == EPERM ?
                        " (dvmm must start as root to change user)" : "");
    /* Prove it: no way back to root. */
    if (getresuid(&r, &e, &su) < 0 || r != uid || e != uid || su != uid ||
        (uid != 0 && setresuid(0, 0, 0) == 0))
        return log_fail(err, errlen, -EPERM, "sandbox.user = '%s': the uid did not "
                        "change for good", user);
    log_info("sandbox: now user %s (uid %u, gid %u), no capabilities", user,
             (unsigned)uid, (unsigned)gid);
    return 0;
}

int sandbox_init(enum sandbox_mode mode, char *err, size_t errlen)
{
    const char *st = getenv("DVMM_SANDBOX_SELFTEST");
    struct sigaction sa = { .sa_sigaction = sbx_sigsys, .sa_flags = SA_SIGINFO };
    int rc;

    /* Always, sandbox or not: no thread of dvmm ever gains privileges
     * through exec (it never execs; this makes sure). */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return log_fail(err, errlen, -errno, "sandbox: PR_SET_NO_NEW_PRIVS: %s",
                        strerror(errno));
    if (mode == SANDBOX_OFF)
        return 0;
    if (st && *st) {
        sbx.selftest = sandbox_kind_parse(st);
        if (sbx.selftest < 0 || sbx.selftest == SBX_SPAWNER)
            return log_fail(err, errlen, -EINVAL, "DVMM_SANDBOX_SELFTEST = '%.32s': use "
                            "main, vcpu, blk, net or prefault", st);
    }
    /* Compiled at build time (sandbox_bpf.c): nothing to build here.  The
     * kernel only reads a program, which may stay in .rodata. */
    for (int k = 0; k < SBX_NKINDS; k++) {
        const struct sock_filter *insns;
        unsigned short n;

        rc = sandbox_prebuilt((enum sandbox_kind)k, mode, &insns, &n);
        if (rc)
            return log_fail(err, errlen, rc, "sandbox: no %s filter for mode %d",
                            sandbox_kind_name((enum sandbox_kind)k), (int)mode);
        sbx.prog[k].filter = (struct sock_filter *)insns;
        sbx.prog[k].len = n;
    }
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) < 0)
        return log_fail(err, errlen, -errno, "sandbox: SIGSYS handler: %s", strerror(errno));
    sbx.mode = mode;
    /* sandbox_list_size walks each list 512 times: only for a line that
     * will be printed. */
    if (log_get_level() >= LOG_INFO)
        log_info("sandbox: seccomp %s, lists: main %u, vcpu %u, blk %u, net %u, "
                 "prefault %u system calls", mode == SANDBOX_LOG ? "log" : "enforced",
                 sandbox_list_size(SBX_MAIN), sandbox_list_size(SBX_VCPU),
                 sandbox_list_size(SBX_BLK), sandbox_list_size(SBX_NET),
                 sandbox_list_size(SBX_PREFAULT));
    return 0;
}
