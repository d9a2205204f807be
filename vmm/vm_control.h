/* The VM's answers to control-socket commands (vmm/ctl_proto.c parses and
 * validates; these act).  All run on the main thread. */
#ifndef DVMM_VM_CONTROL_H
#define DVMM_VM_CONTROL_H

#include "vmm/control.h"

struct vm;

/* Handlers bound to `vm`, for ctl_server_open. */
void vm_control_handlers(struct vm *vm, struct ctl_handlers *h);

#endif
