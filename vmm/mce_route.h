/* Memory-failure signals: the SIGBUS handler, per-thread event slots, and
 * the synthetic sender.  The handler only records (it must stay
 * async-signal-safe); the thread that owns the slot acts on the record after
 * KVM_RUN or epoll_wait returns.  See DESIGN.md "Memory-failure routing". */
#ifndef DVMM_MCE_ROUTE_H
#define DVMM_MCE_ROUTE_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm/mce.h"

#define MCE_SLOT_RING 16

#define MCE_ORIGIN_LEN 64

struct mce_sig {
    uint64_t addr;      /* si_addr */
    unsigned lsb;       /* si_addr_lsb */
    enum mce_kind kind;
    /* Who found the failure when it was not a signal (a device worker's
     * report: "virtio-blk.0 queue 1: read buffer"), else "".  The log's
     * reason starts with it. */
    char origin[MCE_ORIGIN_LEN];
};

/* Written by the signal handler of the owning thread, read by that same
 * thread outside the handler; the head counter is the only shared word. */
struct mce_slot {
    unsigned head;              /* handler: events recorded (atomic) */
    unsigned tail;              /* owner: events consumed */
    unsigned dropped;           /* ring overflow (atomic) */
    int wake_fd;                /* eventfd poked by the handler, or -1 */
    int log_fd;                 /* MCE log, for the fatal case's line, or -1 */
    const char *encoding;       /* the guest's, for that line, or NULL */
    /* Set while an AR can only be a report, not a fault of this thread's
     * own: inside KVM_RUN (KVM signals a vCPU whose guest hit the page)
     * and while the thread sends itself one.  Any other AR is dvmm's own
     * load or store hitting a failed page, which cannot be retried. */
    volatile int ar_expected;
    struct mce_sig ring[MCE_SLOT_RING];
};

/* Process-wide SIGBUS handler plus PR_MCE_KILL_EARLY for the calling
 * (main) thread.  Returns 0 or -errno; a missing early-kill is only a
 * warning (hosts without CONFIG_MEMORY_FAILURE). */
int mce_route_install(void);
/* Make `slot` the calling thread's: its SIGBUS MCE events land there. */
void mce_route_bind_thread(struct mce_slot *slot);
void mce_slot_init(struct mce_slot *slot, int wake_fd);
/* Mark the window in which an AR on the owning thread is expected (see
 * struct mce_slot).  An AR outside it ends dvmm: the handler writes the
 * reason to stderr and one JSON line to log_fd, then _exit(1), because
 * returning would re-run the faulting access forever. */
static inline void mce_slot_expect_ar(struct mce_slot *slot, bool on)
{
    __atomic_store_n(&slot->ar_expected, on, __ATOMIC_SEQ_CST);
}
/* Next recorded event, in arrival order. */
bool mce_slot_pop(struct mce_slot *slot, struct mce_sig *out);
/* Send thread `tid` of this process a SIGBUS with the siginfo the kernel's
 * memory-failure code would use (si_code BUS_MCEERR_AR/AO, si_addr,
 * si_addr_lsb), so the real handler runs.  0 or -errno. */
int mce_route_send(pid_t tid, enum mce_kind kind, uint64_t hva, unsigned lsb);

/* ---- device workers --------------------------------------------------------
 * A device worker (virtio-blk, virtio-net) reads and writes guest memory
 * itself: rings, request headers, status bytes, packet copies.  When that
 * memory has failed, its load or store takes a SIGBUS BUS_MCEERR_AR that the
 * kernel forces on the thread: an access that cannot be retried, but one the
 * worker can give up on (fail the request, drop the packet) if the handler
 * jumps back out of it instead of returning.  A guard is that way back.
 *
 * A worker thread calls mce_guard_thread_init once (SIGBUS unblocked: a
 * forced SIGBUS on a thread that blocks it resets the handler process-wide
 * and kills dvmm), then runs each stretch of guest-memory access through
 * mce_guard_run.  An AO that lands on such a thread (the kernel sends them
 * to main) is said on stderr, not routed.  An AR outside mce_guard_run
 * still takes the default action: no code outside a guard expects to be
 * cut short. */
struct mce_guard {
    sigjmp_buf jb;
    volatile int armed;
    struct mce_guard *outer;    /* the guard this one is nested in, or NULL */
    uint64_t addr;              /* si_addr of the failure that cut fn short */
    unsigned lsb;               /* its si_addr_lsb */
};

/* Make the calling thread a guarded device worker.  0 or -errno. */
int mce_guard_thread_init(void);
/* fn(arg) with the guard armed.  0: fn returned; -EHWPOISON: a memory
 * failure cut it short, g->addr and g->lsb say where.  fn must not hold a
 * lock, or be inside a non-reentrant library call, while it touches guest
 * memory: it may never come back from that access.  Nests. */
int mce_guard_run(struct mce_guard *g, void (*fn)(void *), void *arg);
/* Around a syscall that copies to or from guest buffers (preadv, pwritev,
 * io_uring_enter, TAP readv/writev).  Linux answers a failed page there with
 * EFAULT, but a memory-failure provider may also signal the thread
 * (dmemfs's module sends BUS_MCEERR_AR for the access), and that signal
 * arrives as the syscall returns: while the window is open such an AR is
 * recorded, not fatal.  The interrupted code is past the syscall, not a
 * load that would fault again, so the handler can return. */
void mce_guard_syscall(bool open);
/* The AR recorded in the window since the last call (and forgets it):
 * true with *addr and *lsb set, or false. */
bool mce_guard_syscall_hit(uint64_t *addr, unsigned *lsb);
/* Whether [p, p+len) can be read, one byte per page, under a guard: 0, or
 * -EHWPOISON with *addr and *lsb naming the failed page.  For the syscalls
 * that got EFAULT from a buffer: the kernel copies raise no signal. */
int mce_guard_probe(const void *p, uint64_t len, uint64_t *addr, unsigned *lsb);

#endif
