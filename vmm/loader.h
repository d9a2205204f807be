/* Kernel and initrd loaders: bzImage (Linux x86 boot protocol, 64-bit
 * entry) and ELF64 (vmlinux, the test guest).  The image is untrusted: every
 * offset and size is checked against the file and every destination against
 * guest RAM, and a bad image is a one-line error naming the config key and
 * file, never an out-of-bounds access. */
#ifndef DVMM_LOADER_H
#define DVMM_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include <asm/bootparam.h>

#include "guest-mem/gm.h"

enum loader_kind { LOADER_BZIMAGE = 1, LOADER_ELF64 = 2 };

#define LOADER_BZ_DEFAULT_ADDR 0x100000ULL   /* non-relocatable bzImage */
#define LOADER_BZ_MIN_VERSION  0x0206        /* cmdline_size exists */
#define LOADER_BZ_ENTRY64_OFF  0x200         /* 64-bit entry from load address */
#define LOADER_INITRD_ADDR_MAX 0x37ffffffULL /* boot.rst default before 2.03 */

/* Where the loaders may write: guest RAM at or above floor (below it are
 * dvmm's boot structures), never a poisoned page. */
struct loader_target {
    struct guest_mem *gm;
    uint64_t floor;
    const uint64_t *poison;    /* sorted 4 KiB page GPAs */
    unsigned npoison;
};

struct loader_kernel {
    enum loader_kind kind;
    uint64_t entry;            /* 64-bit entry point, a GPA */
    uint64_t start, end;       /* guest memory the kernel claims, bss and
                                * bzImage init_size included */
    /* bzImage: the setup header as in the file (hdr_len bytes of it were
     * present, the rest zero); ELF: all zero. */
    struct setup_header hdr;
    size_t hdr_len;
};

/* Load the image in img[0..len) (detected by "HdrS" at 0x202, else the ELF
 * magic).  `what` names it in errors, e.g. "vm.kernel=/boot/vmlinuz".
 * Returns 0 or -EINVAL (malformed), -ENOEXEC (neither format), -ENOSPC
 * (does not fit in RAM), -EFAULT (hits a poisoned page). */
int loader_kernel_buf(const struct loader_target *t, const void *img, size_t len,
                      const char *what, struct loader_kernel *out,
                      char *err, size_t errlen);

/* Read `path` and loader_kernel_buf it; errors name "vm.kernel=<path>". */
int loader_kernel_file(const struct loader_target *t, const char *path,
                       struct loader_kernel *out, char *err, size_t errlen);
/* The same for a kernel already open read-only as fd (the config check's),
 * which stays open; path is for the messages. */
int loader_kernel_fd(const struct loader_target *t, int fd, const char *path,
                     struct loader_kernel *out, char *err, size_t errlen);

/* Load the initrd at `path` page-aligned at the highest address it fits in
 * [lo, hi) avoiding poisoned pages; *gpa and *size describe it.  -ENOSPC
 * (error names "vm.initrd=<path>" and the sizes) when it does not fit. */
int loader_initrd_file(const struct loader_target *t, const char *path,
                       uint64_t lo, uint64_t hi, uint64_t *gpa, uint64_t *size,
                       char *err, size_t errlen);

/* True if [gpa, gpa+len) is guest RAM and touches no poisoned page. */
int loader_range_ok(const struct loader_target *t, uint64_t gpa, uint64_t len);

#endif
