#include "vmm/mce_route.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm/log.h"

/* The one way a signal handler can find the state of the thread it
 * interrupted: each thread that takes SIGBUS (vCPUs, main) binds its own
 * slot, which lives in its vCPU or VM struct. */
static __thread struct mce_slot *mce_tls_slot;

static void mce_sigbus(int sig, siginfo_t *si, void *uc)
{
    struct mce_slot *s = mce_tls_slot;
    unsigned head;

    (void)uc;
    if (!s || (si->si_code != BUS_MCEERR_AR && si->si_code != BUS_MCEERR_AO)) {
        /* Not a memory failure we route (or a thread that takes none):
         * the default action, as if dvmm had no handler. */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
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
