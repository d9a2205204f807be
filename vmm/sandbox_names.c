/* x86-64 system call numbers -> names, for the sandbox's SIGSYS report: the
 * handler may not allocate, so the names must exist before any filter is
 * installed; a const table is the simplest way.  The rows are generated at
 * build time from the kernel UAPI header <asm/unistd_64.h> (see
 * SYSNAMES_H in the Makefile) and checked against libseccomp's own table by
 * tests/unit/test_sandbox.c. */
#include "vmm/sandbox.h"

#include <stddef.h>

static const char *const sandbox_sysnames[] = {
#include "sandbox_sysnames.h"
};

const char *sandbox_syscall_name(long nr)
{
    if (nr < 0 || (size_t)nr >= sizeof(sandbox_sysnames) / sizeof(sandbox_sysnames[0]))
        return NULL;
    return sandbox_sysnames[nr];
}
