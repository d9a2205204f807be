/* The sandbox's allow-lists as data, for the sandbox_*.c files only: the
 * run-time side (sandbox_list_allows, sandbox.c) and the libseccomp builder
 * (sandbox_build.c), which only the build-time generator
 * (tools/sandbox_gen.c) and the unit tests link; dvmm itself loads the
 * programs compiled from these lists at build time (sandbox_bpf.c). */
#ifndef DVMM_SANDBOX_LIST_H
#define DVMM_SANDBOX_LIST_H

#include "vmm/sandbox.h"

/* How a rule constrains its arguments. */
enum sbx_arg {
    A_ANY,
    A_NOEXEC,           /* mmap/mprotect: arg 2 (prot) without PROT_EXEC */
    A_IOCTL,            /* ioctl: arg 1 (request) in the kind's ioctl list */
    A_MADV_FREE,        /* madvise: MADV_DONTNEED only (free(), thread exit) */
    A_MADV_POPULATE,    /* madvise: MADV_POPULATE_WRITE (prefault) */
    A_OPEN_RDONLY,      /* openat: O_RDONLY, no O_CREAT (reboot re-reads the kernel) */
};

struct sbx_rule {
    int nr;
    enum sbx_arg arg;
};

/* One list: its rules, and the ioctl requests its A_IOCTL rule allows. */
struct sbx_list {
    const struct sbx_rule *rules;
    unsigned nrules;
    const unsigned long *ioctls;
    unsigned nioctls;
};

/* The lists kind's filter is made of, in the order their rules are added:
 * its own, then for the spawner those of the kinds it creates.  Returns
 * how many were stored in parts (0 for a kind out of range). */
#define SBX_MAX_PARTS 4
unsigned sandbox_list_parts(enum sandbox_kind kind,
                            const struct sbx_list *parts[SBX_MAX_PARTS]);

#endif
