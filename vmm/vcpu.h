/* One vCPU: its KVM fd and kvm_run page, its thread, and the KVM_RUN loop
 * that dispatches exits to the buses.
 *
 * A vCPU does not know the VM.  It sees a vcpu_env: the VM fd, the buses,
 * guest memory, the supported CPUID and the boot state, which the VM fills
 * in before the first vcpu_create and leaves alone after; and it reports
 * upward only through the env's ops (as Firecracker's Vcpu reports through
 * its exit events, and Cloud Hypervisor's through VmOps): an event for
 * what ends or resets the guest, a checkpoint at the top of each loop
 * (where the VM parks it for pause and reboot, or stops it), and a poll
 * after each KVM_RUN for the machine checks the VM queued for it. */
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

struct bus;
struct guest_mem;
struct x86_boot;

/* What makes a vCPU leave KVM_RUN: vcpu_kick's signal, and the retry timer
 * of a mode=user machine check. */
#define VCPU_KICK_SIGNAL SIGUSR1

struct vcpu;

/* What a vCPU tells its VM.  Each ends this vCPU's loop except RESET. */
enum vcpu_event {
    VCPU_EV_RESET,              /* the guest asked for a reset */
    VCPU_EV_POWEROFF,           /* the guest shut itself down */
    VCPU_EV_CRASH,              /* triple fault, failed entry...: state dumped */
    VCPU_EV_MCE_SHUTDOWN,       /* shutdown from a #MC while MCIP was set */
    VCPU_EV_ERROR,              /* a host-side failure on this vCPU */
};

struct vcpu_ops {
    /* Top of the loop, before KVM_RUN: parks while the VM wants it, runs
     * the boot register set-up again after a reboot.  false: leave. */
    bool (*checkpoint)(void *ctx, struct vcpu *v);
    /* After each KVM_RUN and at each checkpoint: machine checks waiting. */
    void (*poll)(void *ctx, struct vcpu *v);
    void (*event)(void *ctx, struct vcpu *v, enum vcpu_event ev);
};

/* A vCPU's view of its VM, shared by all of them; read-only once the
 * first vCPU exists. */
struct vcpu_env {
    int vm_fd;
    size_t run_size;                    /* KVM_GET_VCPU_MMAP_SIZE */
    const struct kvm_cpuid2 *cpuid;     /* KVM_GET_SUPPORTED_CPUID */
    unsigned nvcpus;                    /* for the topology in CPUID */
    struct bus *pio, *mmio;
    const struct guest_mem *gm;         /* vcpu_dump reads code at RIP */
    const struct x86_boot *boot;        /* the BSP's entry state */
    const struct vcpu_ops *ops;
    void *ctx;
};

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
    const struct vcpu_env *env;
    unsigned idx;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    pid_t tid;                  /* for SIGBUS injection by thread id */
    bool thread_started;
    bool reset_on_wake;         /* re-run the boot register setup after a park */
    bool cpuid_set;             /* KVM_SET_CPUID2 done: never again after KVM_RUN */
    uint64_t exits;             /* KVM_RUN returns, for status */
    uint64_t first_run_ns;      /* first KVM_RUN entered (trace; atomic) */

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

int vcpu_create(struct vcpu *v, const struct vcpu_env *env, unsigned idx, char *err,
                size_t errlen);
void vcpu_destroy(struct vcpu *v);
/* KVM_SET_CPUID2, once per vCPU (vcpu_reset does it if not yet done). */
int vcpu_init_cpuid(struct vcpu *v);
/* Power-on state: CPUID, MSRs, FPU, LAPIC LINT0/LINT1 and, for the BSP, the
 * long-mode entry registers from env->boot; APs wait for INIT-SIPI-SIPI. */
int vcpu_reset(struct vcpu *v);
/* One ioctl on the vCPU fd from its own thread or while it is parked:
 * the ioctl's value (>= 0; KVM_GET_MSRS's count), or -errno, logged as
 * "vcpuN: NAME: why". */
int vcpu_ioctl(struct vcpu *v, unsigned long req, void *arg, const char *name);
/* One MSR by KVM_GET_MSRS: 0 or -errno (-EINVAL: KVM returned none). */
int vcpu_get_msr(struct vcpu *v, uint32_t index, uint64_t *val);
/* Tell the VM (env->ops->event). */
void vcpu_report(struct vcpu *v, enum vcpu_event ev);
int vcpu_start(struct vcpu *v);
/* Force the vCPU out of KVM_RUN (any thread may call it). */
void vcpu_kick(struct vcpu *v);
/* Registers, segments and the 16 instruction bytes at RIP, to stderr. */
void vcpu_dump(struct vcpu *v, const char *why);
/* The no-op handler that makes a kick interrupt KVM_RUN: main installs it. */
int vcpu_install_kick_handler(void);

#endif
