/* Memory-failure signals: the SIGBUS handler, per-thread event slots, and
 * the synthetic sender.  The handler only records (it must stay
 * async-signal-safe); the thread that owns the slot acts on the record after
 * KVM_RUN or epoll_wait returns.  See DESIGN.md "Memory-failure routing". */
#ifndef DVMM_MCE_ROUTE_H
#define DVMM_MCE_ROUTE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm/mce.h"

#define MCE_SLOT_RING 16

struct mce_sig {
    uint64_t addr;      /* si_addr */
    unsigned lsb;       /* si_addr_lsb */
    enum mce_kind kind;
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

#endif
