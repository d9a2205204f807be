/* The VM's side of the sandbox: what main does between "everything is
 * open" and its own filter (vmm/sandbox.h has the filters themselves). */
#ifndef DVMM_VM_SANDBOX_H
#define DVMM_VM_SANDBOX_H

#include "vmm/config.h"
#include "vmm/control.h"

/* [sandbox] chroot and user, once everything is open: hand the control
 * socket to the user, enter the chroot, become the user for good, and
 * check that what a guest reboot re-reads (vm.kernel, vm.initrd) is still
 * readable.  Nothing without the keys.  On main, before any other thread
 * exists.  ctl: the open control socket, or NULL.  0, or -errno after
 * one logged line. */
int vm_sandbox_confine(const struct dvmm_config *cfg, struct ctl_server *ctl);

#endif
