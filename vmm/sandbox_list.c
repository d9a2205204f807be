/* The sandbox's allow-lists (the interface is in sandbox.h, the data types
 * in sandbox_list.h).  They were measured, not guessed: every integration
 * test ran with `seccomp = log`, and each call the kernel logged for a
 * thread kind was looked up in the code before it went in.
 *
 * Everything here is a compile-time constant (system call numbers, ioctl
 * requests, mmap/madvise/open flags): a kind's filter depends on the kind
 * and the mode only, which is what lets the build compile the filters once
 * (tools/sandbox_gen.c) instead of dvmm at every start. */
#include "vmm/sandbox_list.h"

#include <errno.h>
#include <linux/kvm.h>
#include <linux/if_tun.h>
#include <linux/vhost.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <termios.h>

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

#define SBX_N(a) (unsigned)(sizeof(a) / sizeof((a)[0]))

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

_Static_assert(1 + SBX_N(sbx_spawned) <= SBX_MAX_PARTS, "SBX_MAX_PARTS too small");

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

unsigned sandbox_list_parts(enum sandbox_kind kind,
                            const struct sbx_list *parts[SBX_MAX_PARTS])
{
    unsigned n = 0;

    if ((unsigned)kind >= SBX_NKINDS)
        return 0;
    parts[n++] = &sbx_lists[kind];
    if (kind == SBX_SPAWNER)
        for (unsigned i = 0; i < SBX_N(sbx_spawned); i++)
            parts[n++] = &sbx_lists[sbx_spawned[i]];
    return n;
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
    const struct sbx_list *parts[SBX_MAX_PARTS];
    unsigned n = sandbox_list_parts(kind, parts);

    for (unsigned i = 0; i < n; i++)
        if (sbx_list_has(parts[i], nr))
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
