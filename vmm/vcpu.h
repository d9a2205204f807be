/* One vCPU: its KVM fd and kvm_run page, its thread, and the KVM_RUN loop
 * that dispatches exits to the buses.  A vCPU parks (for pause and guest
 * reboot) and stops only at the top of its loop, after a kick. */
#ifndef DVMM_VCPU_H
#define DVMM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>
#include <time.h>

#include "vmm/mce_route.h"

/* What makes a vCPU leave KVM_RUN: vcpu_kick's signal, and the retry timer
 * of a mode=user machine check. */
#define VCPU_KICK_SIGNAL SIGUSR1

struct vm;

/* An `mce-inject ... mode=user` in progress on one vCPU: the vCPU thread
 * checks at each return from KVM_RUN (a timer kicks it every
 * VCPU_MCE_USER_RETRY_NS) until the guest is in user mode, then injects;
 * it hands the outcome to the main thread, which answers the control
 * request (token).  Under the vCPU's mce_lock. */
struct vcpu_mce_user {
    bool active;                /* waiting for user mode (vCPU side) */
    bool done;                  /* outcome ready (main side) */
    uint64_t token;
    struct mce_sig sig;
    uint64_t start_ns, deadline_ns;   /* CLOCK_MONOTONIC */
    unsigned checks;            /* vCPU states looked at */
    const char *blocker;        /* the last reason it could not land */
    uint64_t rip;               /* RIP/CS at the last check (the landing one) */
    uint16_t cs;
    /* outcome */
    int ret;                    /* 0: landed; -ETIMEDOUT: gave up; -errno */
    uint64_t end_ns;
    bool injected;
    char reason[160];
};

struct vcpu {
    struct vm *vm;
    unsigned idx;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    pid_t tid;                  /* for SIGBUS injection by thread id */
    bool thread_started;
    bool reset_on_wake;         /* re-run the boot register setup after a park */
    bool cpuid_set;             /* KVM_SET_CPUID2 done: never again after KVM_RUN */
    uint64_t exits;             /* KVM_RUN returns, for status */

    /* Memory failures: the SIGBUS handler fills mce_slot (AR on this
     * thread); the main thread queues AO events in mce_queue. */
    struct mce_slot mce_slot;
    pthread_mutex_t mce_lock;
    struct mce_sig mce_queue[MCE_SLOT_RING];
    unsigned mce_nqueued;       /* atomic read outside the lock */
    /* Synthetic AR requests (control socket) this thread must signal to
     * itself: the kernel refuses a kernel-style si_code from one thread to
     * another (rt_tgsigqueueinfo: EPERM unless the target is the caller). */
    struct mce_sig mce_selfsend[MCE_SLOT_RING];
    unsigned mce_nselfsend;     /* under mce_lock; atomic read outside */
    bool mce_ready;             /* KVM_X86_SETUP_MCE succeeded */
    bool mce_shutdown_armed;    /* injected while MCIP set: next SHUTDOWN is that */
    uint64_t mcg_cap;           /* MCG_CAP as the guest reads it (0: unknown) */
    struct vcpu_mce_user mce_user;
    unsigned mce_user_active;   /* atomic copy of mce_user.active, read unlocked */
    timer_t mce_timer;          /* mode=user retry kicks */
    bool mce_timer_ok;
};

int vcpu_create(struct vcpu *v, struct vm *vm, unsigned idx, char *err, size_t errlen);
void vcpu_destroy(struct vcpu *v);
/* KVM_SET_CPUID2, once per vCPU (vcpu_reset does it if not yet done). */
int vcpu_init_cpuid(struct vcpu *v);
/* Power-on state: CPUID, MSRs, FPU, LAPIC LINT0/LINT1 and, for the BSP, the
 * long-mode entry registers from vm->boot; APs wait for INIT-SIPI-SIPI. */
int vcpu_reset(struct vcpu *v);
int vcpu_start(struct vcpu *v);
/* Force the vCPU out of KVM_RUN (any thread may call it). */
void vcpu_kick(struct vcpu *v);
/* Registers, segments and the 16 instruction bytes at RIP, to stderr. */
void vcpu_dump(struct vcpu *v, const char *why);
/* The no-op handler that makes a kick interrupt KVM_RUN: main installs it. */
int vcpu_install_kick_handler(void);

#endif
