/* The per-thread seccomp sandbox; the interface and the reasons are in
 * sandbox.h.  The allow-lists below were measured, not guessed: every
 * integration test ran with `seccomp = log`, and each call the kernel
 * logged for a thread kind was looked up in the code before it went in. */
#include "vmm/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/kvm.h>
#include <linux/if_tun.h>
#include <linux/seccomp.h>
#include <linux/vhost.h>
#include <seccomp.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <sys/utsname.h>
#include <grp.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "vmm/log.h"

/* ---- the lists ------------------------------------------------------------- */

/* How a rule constrains its arguments. */
enum sbx_arg {
    A_ANY,
    A_NOEXEC,           /* mmap/mprotect: arg 2 (prot) without PROT_EXEC */
    A_IOCTL,            /* ioctl: arg 1 (request) in the kind's ioctl list */
    A_MADV_FREE,        /* madvise: MADV_DONTNEED only (free(), thread exit) */
    A_MADV_POPULATE,    /* madvise: MADV_POPULATE_WRITE (prefault) */
    A_OPEN_RDONLY,      /* openat: O_RDONLY, no O_CREAT (reboot re-reads the kernel) */
};

struct sbx_rule {
    int nr;
    enum sbx_arg arg;
};

/* What every thread does: log (write), wait (futex), allocate (mmap,
 * brk, madvise, munmap: glibc's malloc and its thread exit), signals (the
 * kick's return, masks), time, exit. */
#define SBX_COMMON                                                              \
    { SYS_write, A_ANY }, { SYS_futex, A_ANY }, { SYS_exit, A_ANY },            \
    { SYS_exit_group, A_ANY }, { SYS_rt_sigreturn, A_ANY },                     \
    { SYS_rt_sigprocmask, A_ANY }, { SYS_restart_syscall, A_ANY },              \
    { SYS_mmap, A_NOEXEC }, { SYS_mprotect, A_NOEXEC }, { SYS_munmap, A_ANY },  \
    { SYS_brk, A_ANY }, { SYS_madvise, A_MADV_FREE },                           \
    { SYS_clock_gettime, A_ANY }, { SYS_clock_nanosleep, A_ANY },               \
    { SYS_getpid, A_ANY }, { SYS_gettid, A_ANY }, { SYS_sched_yield, A_ANY }

static const struct sbx_rule sbx_main_rules[] = {
    SBX_COMMON,
    /* the event loop: eventfds, signalfd, console input */
    { SYS_read, A_ANY }, { SYS_epoll_wait, A_ANY }, { SYS_epoll_pwait, A_ANY },
    { SYS_epoll_ctl, A_ANY }, { SYS_close, A_ANY },
    /* the control socket; json-c seeds its hash tables (getrandom) */
    { SYS_getrandom, A_ANY }, { SYS_accept4, A_ANY }, { SYS_recvfrom, A_ANY },
    { SYS_recvmsg, A_ANY }, { SYS_sendto, A_ANY }, { SYS_sendmsg, A_ANY },
    { SYS_getsockopt, A_ANY }, { SYS_geteuid, A_ANY }, { SYS_unlink, A_ANY },
    /* KVM (irqchip reset on reboot, routes, serial IRQ), terminal, TAP link */
    { SYS_ioctl, A_IOCTL },
    /* kicks and the MCE path: SIGBUS to a thread, hwpoison */
    { SYS_tgkill, A_ANY }, { SYS_rt_tgsigqueueinfo, A_ANY },
    { SYS_madvise, A_ANY },
    /* guest reboot re-reads the kernel and initrd; --memstat reads /proc */
    { SYS_openat, A_OPEN_RDONLY }, { SYS_fstat, A_ANY }, { SYS_newfstatat, A_ANY },
    { SYS_lseek, A_ANY }, { SYS_pread64, A_ANY },
    /* exit: the disks are synced (blk_destroy), io_uring rings torn down
     * (munmap, close: no io_uring_enter outside the disk workers) */
    { SYS_fdatasync, A_ANY }, { SYS_fsync, A_ANY },
    { SYS_timer_settime, A_ANY }, { SYS_timer_delete, A_ANY },
};

static const struct sbx_rule sbx_vcpu_rules[] = {
    SBX_COMMON,
    { SYS_ioctl, A_IOCTL }, { SYS_read, A_ANY }, { SYS_close, A_ANY },
    /* kick others (pause), SIGBUS to itself (mce-inject AR), mode=user timer */
    { SYS_tgkill, A_ANY }, { SYS_rt_tgsigqueueinfo, A_ANY },
    { SYS_timer_create, A_ANY }, { SYS_timer_settime, A_ANY },
    { SYS_timer_delete, A_ANY },
    /* a driver starting a disk: its io_uring rings are made on this thread
     * (io_uring_setup, mmap); only the worker submits.  Every eventfd is
     * made at set-up, before any filter. */
    { SYS_io_uring_setup, A_ANY },
};

static const struct sbx_rule sbx_blk_rules[] = {
    SBX_COMMON,
    { SYS_read, A_ANY }, { SYS_poll, A_ANY }, { SYS_ppoll, A_ANY },
    { SYS_preadv, A_ANY }, { SYS_pwritev, A_ANY }, { SYS_pread64, A_ANY },
    { SYS_pwrite64, A_ANY }, { SYS_fdatasync, A_ANY }, { SYS_fallocate, A_ANY },
    { SYS_io_uring_enter, A_ANY },
};

static const struct sbx_rule sbx_net_rules[] = {
    SBX_COMMON,
    { SYS_read, A_ANY }, { SYS_readv, A_ANY }, { SYS_writev, A_ANY },
    { SYS_poll, A_ANY }, { SYS_ppoll, A_ANY },
    /* VQ_PAIRS_SET on the control queue (sbx_net_ioctls) */
    { SYS_ioctl, A_IOCTL },
};

static const struct sbx_rule sbx_prefault_rules[] = {
    SBX_COMMON,
    { SYS_madvise, A_MADV_POPULATE },
};

/* Its own work only; the union of its children's lists is added. */
static const struct sbx_rule sbx_spawner_rules[] = {
    SBX_COMMON,
    { SYS_clone, A_ANY }, { SYS_clone3, A_ANY },
    /* what a new thread does before its own filter is in */
    { SYS_set_robust_list, A_ANY }, { SYS_rseq, A_ANY }, { SYS_prctl, A_ANY },
    { SYS_seccomp, A_ANY },
};

/* Both main and the vCPUs run device code (a reset from the guest on a
 * vCPU, a reboot on main): KVM VM-fd requests, TAP and vhost requests. */
#define SBX_DEVICE_IOCTLS                                                         \
    KVM_IRQ_LINE, KVM_IRQ_LINE_STATUS, KVM_SET_GSI_ROUTING, KVM_IRQFD,            \
    KVM_IOEVENTFD, KVM_SIGNAL_MSI,                                                \
    TUNSETOFFLOAD, TUNSETQUEUE, TUNSETCARRIER,                                    \
    VHOST_SET_FEATURES, VHOST_SET_MEM_TABLE, VHOST_SET_VRING_NUM,                 \
    VHOST_SET_VRING_BASE, VHOST_SET_VRING_ADDR, VHOST_SET_VRING_KICK,             \
    VHOST_SET_VRING_CALL, VHOST_NET_SET_BACKEND

static const unsigned long sbx_main_ioctls[] = {
    SBX_DEVICE_IOCTLS,
    KVM_GET_IRQCHIP, KVM_SET_IRQCHIP, KVM_GET_PIT2, KVM_SET_PIT2,
    /* status and mce-inject read a vCPU's state */
    KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_VCPU_EVENTS, KVM_GET_MSRS,
    TCGETS, TCSETS, TCSETSW, TCSETSF,
};

static const unsigned long sbx_vcpu_ioctls[] = {
    SBX_DEVICE_IOCTLS,
    KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS,
    KVM_GET_MSRS, KVM_SET_MSRS, KVM_SET_FPU, KVM_GET_LAPIC, KVM_SET_LAPIC,
    KVM_SET_MP_STATE, KVM_GET_MP_STATE, KVM_SET_CPUID2, KVM_TRANSLATE,
    KVM_X86_SET_MCE, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS,
};

/* VQ_PAIRS_SET: TAP queues attached or detached, and with vhost each
 * pair's backend set or cleared (vhost_apply). */
static const unsigned long sbx_net_ioctls[] = {
    TUNSETQUEUE, VHOST_NET_SET_BACKEND,
};

struct sbx_list {
    const struct sbx_rule *rules;
    unsigned nrules;
    const unsigned long *ioctls;
    unsigned nioctls;
};

#define SBX_N(a) (unsigned)(sizeof(a) / sizeof((a)[0]))
#define SBX_LIST(r, i) { r, SBX_N(r), i, i ? SBX_N(i) : 0 }

static const struct sbx_list sbx_lists[SBX_NKINDS] = {
    [SBX_MAIN] = { sbx_main_rules, SBX_N(sbx_main_rules), sbx_main_ioctls,
                   SBX_N(sbx_main_ioctls) },
    [SBX_VCPU] = { sbx_vcpu_rules, SBX_N(sbx_vcpu_rules), sbx_vcpu_ioctls,
                   SBX_N(sbx_vcpu_ioctls) },
    [SBX_BLK] = { sbx_blk_rules, SBX_N(sbx_blk_rules), NULL, 0 },
    [SBX_NET] = { sbx_net_rules, SBX_N(sbx_net_rules), sbx_net_ioctls,
                  SBX_N(sbx_net_ioctls) },
    [SBX_PREFAULT] = { sbx_prefault_rules, SBX_N(sbx_prefault_rules), NULL, 0 },
    [SBX_SPAWNER] = { sbx_spawner_rules, SBX_N(sbx_spawner_rules), NULL, 0 },
};

/* The kinds whose threads the spawner creates: its filter is the union. */
static const enum sandbox_kind sbx_spawned[] = { SBX_BLK, SBX_NET, SBX_PREFAULT };

static const char *const sbx_kind_names[SBX_NKINDS] = {
    "main", "vcpu", "blk", "net", "prefault", "spawner",
};

const char *sandbox_kind_name(enum sandbox_kind kind)
{
    return (unsigned)kind < SBX_NKINDS ? sbx_kind_names[kind] : NULL;
}

int sandbox_kind_parse(const char *s)
{
    for (int k = 0; k < SBX_NKINDS; k++)
        if (!strcmp(s, sbx_kind_names[k]))
            return k;
    return -EINVAL;
}

static bool sbx_list_has(const struct sbx_list *l, long nr)
{
    for (unsigned i = 0; i < l->nrules; i++)
        if (l->rules[i].nr == nr)
            return true;
    return false;
}

int sandbox_list_allows(enum sandbox_kind kind, long nr)
{
    if ((unsigned)kind >= SBX_NKINDS)
        return 0;
    if (sbx_list_has(&sbx_lists[kind], nr))
        return 1;
    if (kind == SBX_SPAWNER)
        for (unsigned i = 0; i < SBX_N(sbx_spawned); i++)
            if (sbx_list_has(&sbx_lists[sbx_spawned[i]], nr))
                return 1;
    return 0;
}

unsigned sandbox_list_size(enum sandbox_kind kind)
{
    unsigned n = 0;

    for (long nr = 0; nr < 512; nr++)
        n += (unsigned)sandbox_list_allows(kind, nr);
    return n;
}

/* ---- building the filters -------------------------------------------------- */

static int sbx_add_rule(scmp_filter_ctx ctx, const struct sbx_list *l,
                        const struct sbx_rule *r)
{
    int rc = 0;

    switch (r->arg) {
    case A_ANY:
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 0);
        break;
    case A_NOEXEC:
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
        break;
    case A_IOCTL:
        /* The kernel takes the request as an unsigned int: compare the low
         * 32 bits only, as it does. */
        for (unsigned i = 0; i < l->nioctls && !rc; i++)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1,
                                  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL,
                                          (scmp_datum_t)(uint32_t)l->ioctls[i]));
        break;
    case A_MADV_FREE:
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1,
                              SCMP_A2(SCMP_CMP_EQ, MADV_DONTNEED));
        break;
    case A_MADV_POPULATE:
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1,
                              SCMP_A2(SCMP_CMP_EQ, MADV_POPULATE_WRITE));
        break;
    case A_OPEN_RDONLY:
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC,
                                      O_RDONLY));
        break;
    }
    /* An unconditional rule next to a conditional one for the same call
     * (the spawner's union) is redundant, not wrong. */
    return rc == -EEXIST ? 0 : rc;
}

static int sbx_add_list(scmp_filter_ctx ctx, const struct sbx_list *l)
{
    for (unsigned i = 0; i < l->nrules; i++) {
        int rc = sbx_add_rule(ctx, l, &l->rules[i]);

        if (rc)
            return rc;
    }
    return 0;
}

/* Build kind's filter and export it to memfd `fd`, whose write offset is
 * *off: libseccomp 2.5 exports to a file descriptor only, and one memfd
 * serves all of sandbox_init's builds (a memfd and its fstat per kind were
 * a third of the system calls of the sandbox's start-up).  The program is
 * read back with one pread, whose length is the program's. */
static int sbx_build_fd(enum sandbox_kind kind, enum sandbox_mode mode, int fd, off_t *off,
                        struct sock_filter **insns, unsigned short *ninsns)
{
    /* One instruction more than the kernel takes, to notice a longer one. */
    const size_t max = (BPF_MAXINSNS + 1) * sizeof(struct sock_filter);
    scmp_filter_ctx ctx;
    struct sock_filter *buf = NULL, *fit;
    ssize_t n;
    int rc;

    if ((unsigned)kind >= SBX_NKINDS || mode == SANDBOX_OFF)
        return -EINVAL;
    ctx = seccomp_init(mode == SANDBOX_LOG ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
    if (!ctx)
        return -ENOMEM;
    /* sandbox_enter sets no_new_privs itself; the program is loaded with
     * one seccomp(2) call, no libseccomp on the thread's side. */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    if (!rc)
        rc = sbx_add_list(ctx, &sbx_lists[kind]);
    for (unsigned i = 0; !rc && kind == SBX_SPAWNER && i < SBX_N(sbx_spawned); i++)
        rc = sbx_add_list(ctx, &sbx_lists[sbx_spawned[i]]);
    if (rc)
        goto out;
    if ((rc = seccomp_export_bpf(ctx, fd)))
        goto out;
    buf = malloc(max);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    n = pread(fd, buf, max, *off);
    if (n < 0) {
        rc = -errno;
        goto out;
    }
    if (n == 0 || (size_t)n % sizeof(struct sock_filter) || (size_t)n == max) {
        rc = -E2BIG;
        goto out;
    }
    *off += n;
    /* Keep only the program's bytes (the buffer has room for the largest). */
    fit = realloc(buf, (size_t)n);
    *insns = fit ? fit : buf;
    *ninsns = (unsigned short)((size_t)n / sizeof(struct sock_filter));
    buf = NULL;
out:
    free(buf);
    seccomp_release(ctx);
    return rc;
}

int sandbox_build(enum sandbox_kind kind, enum sandbox_mode mode,
                  struct sock_filter **insns, unsigned short *ninsns)
{
    off_t off = 0;
    int fd, rc;

    if ((unsigned)kind >= SBX_NKINDS || mode == SANDBOX_OFF)
        return -EINVAL;
    fd = memfd_create("dvmm-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    rc = sbx_build_fd(kind, mode, fd, &off, insns, ninsns);
    close(fd);
    return rc;
}

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
 * in sandbox_init before any other thread exists, then read-only except
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

        log_err("sandbox: %s: loading the %s filter: %s", sbx_name, sbx_kind_names[kind],
                strerror(e));
        return -e;
    }
    sbx_filtered = true;
    if (sbx.selftest == (int)kind &&
        !__atomic_exchange_n(&sbx.selftest_fired, 1, __ATOMIC_SEQ_CST)) {
        struct utsname u;

        log_warn("sandbox: DVMM_SANDBOX_SELFTEST=%s: %s calls uname(2), which no "
                 "list allows", sbx_kind_names[kind], sbx_name);
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
    off_t off = 0;
    int fd, rc;

    /* Always, sandbox or not: no thread of dvmm ever gains privileges
     * through exec (it never execs; this makes sure). */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return log_fail(err, errlen, -errno, "sandbox: PR_SET_NO_NEW_PRIVS: %s",
                        strerror(errno));
    if (mode == SANDBOX_OFF)
        return 0;
    /* strftime (the MCE log's time stamps, on a vCPU) calls tzset, whose
     * first run opens /etc/localtime: do it now, while files may be opened;
     * later calls see the same TZ and touch nothing. */
    tzset();
    if (st && *st) {
        sbx.selftest = sandbox_kind_parse(st);
        if (sbx.selftest < 0 || sbx.selftest == SBX_SPAWNER)
            return log_fail(err, errlen, -EINVAL, "DVMM_SANDBOX_SELFTEST = '%.32s': use "
                            "main, vcpu, blk, net or prefault", st);
    }
    fd = memfd_create("dvmm-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return log_fail(err, errlen, -errno, "sandbox: memfd for the filters: %s",
                        strerror(errno));
    for (int k = 0; k < SBX_NKINDS; k++) {
        struct sock_filter *insns;
        unsigned short n;

        rc = sbx_build_fd((enum sandbox_kind)k, mode, fd, &off, &insns, &n);
        if (rc) {
            close(fd);
            return log_fail(err, errlen, rc, "sandbox: building the %s filter: %s",
                            sbx_kind_names[k], strerror(-rc));
        }
        sbx.prog[k].filter = insns;
        sbx.prog[k].len = n;
    }
    close(fd);
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
