/* The VM side of memory-failure routing: set-up of each vCPU's MCE banks,
 * HVA->GPA translation, the poisoned-page list, KVM_X86_SET_MCE, and one
 * JSON log line per event.  Signals are caught by vmm/mce_route.c.
 *
 * It sees only struct vm_mce: guest memory, the vCPUs, the log and the
 * main thread's wake-ups, which the VM fills in; it reaches the VM only
 * through a vCPU's report (vcpu_report) and the main thread's event fd. */
#ifndef DVMM_VM_MCE_H
#define DVMM_VM_MCE_H

#include <json-c/json.h>
#include <stdint.h>

#include "vmm/control.h"
#include "vmm/mce.h"
#include "vmm/mce_route.h"

struct guest_mem;
struct vcpu;

struct vm_mce {
    struct guest_mem *gm;
    struct vcpu *vcpus;         /* AOs and device reports go to vcpus[0] */
    unsigned nvcpus;
    enum mce_encoding enc;      /* by the guest's CPUID vendor */
    uint64_t kvm_mce_cap;       /* KVM_X86_GET_MCE_CAP_SUPPORTED */
    int log_fd;                 /* JSON lines, one per memory-failure event */
    struct mce_slot main;       /* SIGBUS events taken by the main thread */
    int main_event_fd;          /* wakes main: a mode=user outcome is ready */
    /* The last #MC injected (CLOCK_MONOTONIC ns, 0: none; atomic), so that a
     * guest reset right after one can be reported as its likely outcome. */
    uint64_t last_ns;
    int last_vcpu;
    uint64_t last_gpa;
};

/* KVM_X86_SETUP_MCE with MCG_SER_P and enough banks for bank 9, then
 * MCG_CAP read back (v->mcg_cap): what the guest really has; and the
 * vCPU's SIGBUS slot gets the log and encoding. */
int vm_mce_setup_vcpu(struct vm_mce *m, struct vcpu *v);
/* On a vCPU thread after KVM_RUN returns: act on recorded AR signals and
 * queued AO events.  Cheap when there are none. */
void vm_mce_vcpu_poll(struct vm_mce *m, struct vcpu *v);
/* On the main thread after its wake fd fired: route AO events to vCPU 0. */
void vm_mce_main_poll(struct vm_mce *m);
/* Control-socket actions.  mce-inject with mode=user returns CTL_LATER:
 * the vCPU waits for guest user mode and vm_mce_user_poll answers. */
int vm_mce_inject(struct vm_mce *m, const struct ctl_mce_req *req, json_object *reply);
/* On the main thread after a vCPU woke it: answer finished mode=user
 * requests through ctl (NULL: no control socket; outcomes are dropped). */
void vm_mce_user_poll(struct vm_mce *m, struct ctl_server *ctl);
/* A vCPU about to park (pause, reboot) gives up its mode=user wait. */
void vm_mce_user_cancel(struct vm_mce *m, struct vcpu *v, const char *why);
/* vmif's memory_failure: queue the failure to vCPU 0 like an AO, logged
 * with origin.  Any thread. */
int vm_mce_device_failure(struct vm_mce *m, uint64_t hva, unsigned lsb, const char *origin);
int vm_mce_hwpoison(struct vm_mce *m, uint64_t gpa, json_object *reply);

#endif
