/* The VM's side of the sandbox: what main does between "everything is
 * open" and its own filter (vmm/sandbox.h has the filters themselves). */
#ifndef DVMM_VM_SANDBOX_H
#define DVMM_VM_SANDBOX_H

struct vm;

/* [sandbox] user: hand the control socket to that user, become it for
 * good, and check that what a guest reboot re-reads (vm.kernel,
 * vm.initrd) is still readable.  Nothing without the key.  On main, before
 * any other thread exists.  0, or -errno after one logged line. */
int vm_sandbox_user(struct vm *vm);

#endif
