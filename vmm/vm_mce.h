/* The VM side of memory-failure routing: set-up of each vCPU's MCE banks,
 * HVA->GPA translation, the poisoned-page list, KVM_X86_SET_MCE, and one
 * JSON log line per event.  Signals are caught by vmm/mce_route.c. */
#ifndef DVMM_VM_MCE_H
#define DVMM_VM_MCE_H

#include <json-c/json.h>
#include <stdint.h>

#include "vmm/control.h"
#include "vmm/mce.h"

struct vm;
struct vcpu;

/* KVM_X86_SETUP_MCE with MCG_SER_P and enough banks for bank 9, then
 * MCG_CAP read back (v->mcg_cap): what the guest really has. */
int vm_mce_setup_vcpu(struct vcpu *v);
/* On a vCPU thread after KVM_RUN returns: act on recorded AR signals and
 * queued AO events.  Cheap when there are none. */
void vm_mce_vcpu_poll(struct vcpu *v);
/* On the main thread after its wake fd fired: route AO events to vCPU 0. */
void vm_mce_main_poll(struct vm *vm);
/* Control-socket actions.  mce-inject with mode=user returns CTL_LATER:
 * the vCPU waits for guest user mode and vm_mce_user_poll answers. */
int vm_mce_inject(struct vm *vm, const struct ctl_mce_req *req, json_object *reply);
/* On the main thread after a vCPU woke it: answer finished mode=user
 * requests through the control socket. */
void vm_mce_user_poll(struct vm *vm);
/* A vCPU about to park (pause, reboot) gives up its mode=user wait. */
void vm_mce_user_cancel(struct vcpu *v, const char *why);
/* vmif's memory_failure for the KVM VM (opaque: its struct kvm_vm, inside
 * struct vm): queue the failure to vCPU 0 like an AO, logged with origin. */
int vm_mce_device_failure(void *opaque, uint64_t hva, unsigned lsb, const char *origin);
int vm_mce_hwpoison(struct vm *vm, uint64_t gpa, json_object *reply);

#endif
