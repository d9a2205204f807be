/* Parking: how the main thread holds every vCPU at the top of its run loop
 * and lets them go again.  The one place for pause, resume, the reboot
 * hand-over and the start gate (vCPUs filter themselves, then wait until
 * main is in its sandbox too), and for the stop that ends the loops.
 *
 * A vCPU runs guest code only while no reason to park is set; reasons
 * are independent bits, so a `resume` during a reboot leaves the vCPUs
 * parked until the reboot is done, and a reboot while paused leaves them
 * paused.  The VM's threads: vCPUs call park_checkpoint; everything else
 * runs on main (the requests from vCPUs only set a reason and wake main). */
#ifndef DVMM_PARK_H
#define DVMM_PARK_H

#include <pthread.h>
#include <stdbool.h>

enum park_reason {
    PARK_START = 1u << 0,       /* main not yet in its sandbox */
    PARK_USER = 1u << 1,        /* the control socket's pause */
    PARK_REBOOT = 1u << 2,      /* guest reset: main re-runs the boot path */
};

struct park {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned reasons;           /* enum park_reason bits; 0: run */
    bool stopping;              /* vCPUs leave their loops for good */
    unsigned parked;            /* vCPUs waiting in park_checkpoint */
    unsigned nvcpus;            /* how many park_all waits for */
    /* Make every vCPU leave KVM_RUN (vcpu_kick on each). */
    void (*kick_all)(void *ctx);
    void *ctx;
};

/* 0 or -errno.  nvcpus may be set later with park_set_nvcpus, before any
 * vCPU thread runs. */
int park_init(struct park *p, void (*kick_all)(void *ctx), void *ctx);
void park_destroy(struct park *p);
void park_set_nvcpus(struct park *p, unsigned nvcpus);

/* vCPU side, at the top of its loop: wait while any reason is set.
 * before_park (may be NULL) runs once, under the lock, when this call is
 * about to park, with the reasons; it must not call back into park.
 * Returns false when the vCPU must leave its loop. */
bool park_checkpoint(struct park *p, void (*before_park)(void *arg, unsigned reasons),
                     void *arg);

/* Set a reason without waiting (a vCPU asking main for a reboot). */
void park_request(struct park *p, unsigned reason);
/* Set a reason, kick the vCPUs and wait until all of them are parked.
 * false when the VM is stopping instead (no vCPU may be parked then). */
bool park_all(struct park *p, unsigned reason);
/* Clear a reason; the vCPUs run again once none is left. */
void park_release(struct park *p, unsigned reason);
/* Whether reason is set now. */
bool park_is(struct park *p, unsigned reason);

/* Every vCPU leaves its loop at its next checkpoint; park_all waiters
 * return false.  Does not kick: the caller does when it must. */
void park_stop(struct park *p);
bool park_stopping(struct park *p);

#endif
