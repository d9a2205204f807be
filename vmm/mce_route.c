#include "vmm/mce_route.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vmm/log.h"
#include "vmm/utc.h"

/* The one way a signal handler can find the state of the thread it
 * interrupted: each thread that takes SIGBUS (vCPUs, main) binds its own
 * slot, which lives in its vCPU or VM struct. */
static __thread struct mce_slot *mce_tls_slot;
/* Likewise for device workers: whether this thread is one, and its armed
 * guard (innermost first), so the handler can jump back out of a guest
 * memory access that hit a failed page (struct mce_guard). */
static __thread bool mce_tls_worker;
static __thread struct mce_guard *mce_tls_guard;
/* The syscall window (mce_guard_syscall) and the AR recorded in it. */
static __thread volatile int mce_tls_in_syscall;
static __thread volatile int mce_tls_sys_hit;
static __thread uint64_t mce_tls_sys_addr;
static __thread unsigned mce_tls_sys_lsb;

/* Async-signal-safe formatting for the fatal path: no stdio, no json-c. */
struct mce_sbuf {
    char b[512];
    size_t n;
};

static void mce_sb_str(struct mce_sbuf *sb, const char *s)
{
    while (*s && sb->n < sizeof(sb->b) - 1)
        sb->b[sb->n++] = *s++;
}

static void mce_sb_num(struct mce_sbuf *sb, uint64_t v, unsigned base, unsigned width)
{
    char tmp[24];
    unsigned i = 0;

    do {
        tmp[i++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v && i < sizeof(tmp));
    while (i < width && i < sizeof(tmp))
        tmp[i++] = '0';
    while (i && sb->n < sizeof(sb->b) - 1)
        sb->b[sb->n++] = tmp[--i];
}

/* ISO 8601 UTC like the other MCE log lines (vmm/utc.h: no libc time
 * function is async-signal-safe). */
static void mce_sb_time(struct mce_sbuf *sb, const struct timespec *ts)
{
    struct utc u;

    utc_from_secs(ts->tv_sec, &u);
    mce_sb_num(sb, (uint64_t)u.year, 10, 4);
    mce_sb_str(sb, "-");
    mce_sb_num(sb, u.mon, 10, 2);
    mce_sb_str(sb, "-");
    mce_sb_num(sb, u.day, 10, 2);
    mce_sb_str(sb, "T");
    mce_sb_num(sb, u.hour, 10, 2);
    mce_sb_str(sb, ":");
    mce_sb_num(sb, u.min, 10, 2);
    mce_sb_str(sb, ":");
    mce_sb_num(sb, u.sec, 10, 2);
    mce_sb_str(sb, ".");
    mce_sb_num(sb, (uint64_t)ts->tv_nsec / 1000, 10, 6);
    mce_sb_str(sb, "Z");
}

static void mce_write_all(int fd, const struct mce_sbuf *sb)
{
    size_t off = 0;

    while (off < sb->n) {
        ssize_t w = write(fd, sb->b + off, sb->n - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

/* An AR this thread did not expect: its own access to a failed page. */
static void __attribute__((noreturn)) mce_sigbus_fatal(const struct mce_slot *s,
                                                        const siginfo_t *si)
{
    uint64_t hva = (uint64_t)(uintptr_t)si->si_addr;
    unsigned lsb = (unsigned)si->si_addr_lsb;
    const char *reason = "dvmm's own access (not a guest vCPU's) hit the failed page; "
                         "the access cannot complete, so dvmm exits";
    struct mce_sbuf sb = { .n = 0 };
    struct timespec ts;

    mce_sb_str(&sb, "dvmm: error: memory failure (SIGBUS BUS_MCEERR_AR) at HVA 0x");
    mce_sb_num(&sb, hva, 16, 0);
    mce_sb_str(&sb, " on thread ");
    mce_sb_num(&sb, (uint64_t)syscall(SYS_gettid), 10, 0);
    mce_sb_str(&sb, ": ");
    mce_sb_str(&sb, reason);
    mce_sb_str(&sb, "\n");
    mce_write_all(STDERR_FILENO, &sb);
    if (s->log_fd >= 0) {
        clock_gettime(CLOCK_REALTIME, &ts);
        sb.n = 0;
        mce_sb_str(&sb, "{\"time\":\"");
        mce_sb_time(&sb, &ts);
        mce_sb_str(&sb, "\",\"kind\":\"AR\",");
        if (s->encoding) {
            mce_sb_str(&sb, "\"encoding\":\"");
            mce_sb_str(&sb, s->encoding);
            mce_sb_str(&sb, "\",");
        }
        mce_sb_str(&sb, "\"hva\":\"0x");
        mce_sb_num(&sb, hva, 16, 0);
        mce_sb_str(&sb, "\",\"gpa\":null,\"page_size\":");
        mce_sb_num(&sb, lsb < 64 ? UINT64_C(1) << lsb : 0, 10, 0);
        mce_sb_str(&sb, ",\"vcpu\":null,\"injected\":false,\"reason\":\"");
        mce_sb_str(&sb, reason);
        mce_sb_str(&sb, "\"}\n");
        mce_write_all(s->log_fd, &sb);
    }
    _exit(1);
}

/* A memory-failure SIGBUS on a device worker: an AR inside a guard jumps
 * back to mce_guard_run.  An AO is the main thread's business: the kernel
 * sends early-kill AOs to the first thread that asked for them (main, which
 * set PR_MCE_KILL_EARLY before any worker existed), so one here is not
 * expected; it cannot be passed on (a thread may queue a BUS_MCEERR_* only
 * to itself), so it is said on stderr and left to the AR that an access to
 * the page will raise.  Returns only for an AR outside any guard. */
static void mce_sigbus_worker(const siginfo_t *si)
{
    struct mce_guard *g = mce_tls_guard;

    if (si->si_code == BUS_MCEERR_AO) {
        struct mce_sbuf sb = { .n = 0 };

        mce_sb_str(&sb, "dvmm: warning: an action-optional memory failure at HVA 0x");
        mce_sb_num(&sb, (uint64_t)(uintptr_t)si->si_addr, 16, 0);
        mce_sb_str(&sb, " reached a device worker, not the main thread; not routed\n");
        mce_write_all(STDERR_FILENO, &sb);
        return;
    }
    if (!g || !__atomic_load_n(&g->armed, __ATOMIC_SEQ_CST)) {
        if (mce_tls_in_syscall) {
            mce_tls_sys_addr = (uint64_t)(uintptr_t)si->si_addr;
            mce_tls_sys_lsb = (unsigned)si->si_addr_lsb;
            mce_tls_sys_hit = 1;
        }
        return;
    }
    g->addr = (uint64_t)(uintptr_t)si->si_addr;
    g->lsb = (unsigned)si->si_addr_lsb;
    __atomic_store_n(&g->armed, 0, __ATOMIC_SEQ_CST);
    siglongjmp(g->jb, 1);
}

static void mce_sigbus(int sig, siginfo_t *si, void *uc)
{
    struct mce_slot *s = mce_tls_slot;
    unsigned head;

    (void)uc;
    if (mce_tls_worker && (si->si_code == BUS_MCEERR_AR || si->si_code == BUS_MCEERR_AO)) {
        mce_sigbus_worker(si);
        if (si->si_code == BUS_MCEERR_AO || mce_tls_in_syscall)
            return;
        /* An AR outside a guard and outside a syscall: the default action
         * below. */
    }
    if (!s || (si->si_code != BUS_MCEERR_AR && si->si_code != BUS_MCEERR_AO)) {
        /* Not a memory failure we route (or a thread that takes none):
         * the default action, as if dvmm had no handler. */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    if (si->si_code == BUS_MCEERR_AR && !__atomic_load_n(&s->ar_expected, __ATOMIC_SEQ_CST))
        mce_sigbus_fatal(s, si);
    head = __atomic_load_n(&s->head, __ATOMIC_RELAXED);
    if (head - s->tail >= MCE_SLOT_RING) {
        __atomic_fetch_add(&s->dropped, 1, __ATOMIC_RELAXED);
    } else {
        struct mce_sig *e = &s->ring[head % MCE_SLOT_RING];

        e->addr = (uint64_t)(uintptr_t)si->si_addr;
        e->lsb = (unsigned)si->si_addr_lsb;
        e->kind = si->si_code == BUS_MCEERR_AR ? MCE_AR : MCE_AO;
        __atomic_store_n(&s->head, head + 1, __ATOMIC_RELEASE);
    }
    if (s->wake_fd >= 0) {
        uint64_t one = 1;
        int saved = errno;

        if (write(s->wake_fd, &one, sizeof(one)) < 0) {
            /* eventfd full: the reader is awake already */
        }
        errno = saved;
    }
}

int mce_route_install(void)
{
    struct sigaction sa = { .sa_sigaction = mce_sigbus, .sa_flags = SA_SIGINFO };

    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, NULL) < 0)
        return -errno;
    /* The events this routes are logged from vCPU threads. */
    mce_log_prepare();
    if (prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0) < 0)
        log_warn("mce: prctl(PR_MCE_KILL_EARLY): %s; action-optional memory "
                 "errors may not be reported", strerror(errno));
    return 0;
}

void mce_route_bind_thread(struct mce_slot *slot)
{
    mce_tls_slot = slot;
}

void mce_slot_init(struct mce_slot *slot, int wake_fd)
{
    memset(slot, 0, sizeof(*slot));
    slot->wake_fd = wake_fd;
    slot->log_fd = -1;
}

bool mce_slot_pop(struct mce_slot *slot, struct mce_sig *out)
{
    unsigned head = __atomic_load_n(&slot->head, __ATOMIC_ACQUIRE);

    if (slot->tail == head)
        return false;
    *out = slot->ring[slot->tail % MCE_SLOT_RING];
    slot->tail++;
    return true;
}

int mce_route_send(pid_t tid, enum mce_kind kind, uint64_t hva, unsigned lsb)
{
    siginfo_t si;

    memset(&si, 0, sizeof(si));
    si.si_signo = SIGBUS;
    si.si_code = kind == MCE_AR ? BUS_MCEERR_AR : BUS_MCEERR_AO;
    si.si_addr = (void *)(uintptr_t)hva;
    si.si_addr_lsb = (short)lsb;
    /* The kernel lets a process queue any si_code to its own threads. */
    if (syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, SIGBUS, &si) < 0)
        return -errno;
    return 0;
}

/* ---- device workers ------------------------------------------------------ */

int mce_guard_thread_init(void)
{
    sigset_t bus;

    mce_tls_worker = true;
    mce_tls_guard = NULL;
    sigemptyset(&bus);
    sigaddset(&bus, SIGBUS);
    return -pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
}

int mce_guard_run(struct mce_guard *g, void (*fn)(void *), void *arg)
{
    g->outer = mce_tls_guard;
    g->addr = 0;
    g->lsb = 0;
    /* No signal mask saved: that would cost a syscall per guarded stretch
     * (per request, per packet); the rare way back unblocks SIGBUS, which
     * the kernel blocked for the handler, by hand. */
    if (sigsetjmp(g->jb, 0)) {
        sigset_t bus;

        sigemptyset(&bus);
        sigaddset(&bus, SIGBUS);
        pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
        mce_tls_guard = g->outer;
        return -EHWPOISON;
    }
    mce_tls_guard = g;
    __atomic_store_n(&g->armed, 1, __ATOMIC_SEQ_CST);
    fn(arg);
    __atomic_store_n(&g->armed, 0, __ATOMIC_SEQ_CST);
    mce_tls_guard = g->outer;
    return 0;
}

void mce_guard_syscall(bool open)
{
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    mce_tls_in_syscall = open;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

bool mce_guard_syscall_hit(uint64_t *addr, unsigned *lsb)
{
    if (!mce_tls_sys_hit)
        return false;
    *addr = mce_tls_sys_addr;
    *lsb = mce_tls_sys_lsb;
    mce_tls_sys_hit = 0;
    return true;
}

struct mce_probe {
    const volatile uint8_t *p;
    uint64_t len;
};

static void mce_probe_fn(void *arg)
{
    const struct mce_probe *pr = arg;
    uint64_t off = 0;

    while (off < pr->len) {
        (void)pr->p[off];
        /* The first byte of every page the buffer touches. */
        off = ((((uint64_t)(uintptr_t)pr->p + off) | 4095) + 1) - (uint64_t)(uintptr_t)pr->p;
    }
}

int mce_guard_probe(const void *p, uint64_t len, uint64_t *addr, unsigned *lsb)
{
    struct mce_probe pr = { .p = p, .len = len };
    struct mce_guard g;
    int ret = mce_guard_run(&g, mce_probe_fn, &pr);

    if (ret == -EHWPOISON) {
        *addr = g.addr;
        *lsb = g.lsb;
    }
    return ret;
}
