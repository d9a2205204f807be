/* hostcheck's reads of the host tree: every path is taken under the root of
 * the run (hc_ctx.host.sysroot, "" for the real host), through guest-mem's
 * readers, so one fake tree serves hostcheck and the backend checks alike.
 * None of these changes anything on the host. */
#ifndef DVMM_HOSTCHECK_ROOT_H
#define DVMM_HOSTCHECK_ROOT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/vfs.h>

#include "kernel-support/hostcheck_ctx.h"

/* `abs` under the root; "" when the result would not fit. */
void hc_root_path(const struct hc_ctx *x, const char *abs, char *buf, size_t len);
/* The whole file, malloc'd; NULL with errno set. */
char *hc_root_slurp(const struct hc_ctx *x, const char *abs);
/* First line of a small file, trailing whitespace trimmed.  0 or -errno. */
int hc_root_read_line(const struct hc_ctx *x, const char *abs, char *out, size_t len);
/* A number in C syntax (0x hex too).  0, -errno or -EINVAL. */
int hc_root_read_u64(const struct hc_ctx *x, const char *abs, uint64_t *v);
bool hc_root_exists(const struct hc_ctx *x, const char *abs);
/* `Key:  N kB` of <root>/proc/meminfo in bytes; 0 when absent. */
uint64_t hc_root_meminfo(const struct gm_host *h, const char *key);

/* Kernel memparse syntax (dmem=, memmap=, pagesize=): a number (0x hex, 0
 * octal) with an optional K/M/G/T suffix; *end after it.  0 or -errno. */
int hc_root_memparse(const char *s, uint64_t *out, const char **end);
/* Is `word` one of the words of /proc/cpuinfo's "flags" line? */
bool hc_root_cpu_flag(const char *cpuinfo, const char *word);

/* The kernel log: klogctl on the real host, <root>/.dmesg in a fake one;
 * malloc'd, NULL when unreadable. */
char *hc_root_kernel_log(const struct hc_ctx *x);
/* Last kernel-log line containing one of the strings of `any` (NULL-ended)
 * and, unless NULL, b; copied without the "<6>" level and the timestamp.
 * false when none or no log. */
bool hc_root_dmesg_find(const struct hc_ctx *x, const char *const *any, const char *b,
                        char *out, size_t len);

/* One /proc/mounts entry; the mount point has its octal escapes undone. */
struct hc_root_mount { char dir[PATH_MAX]; char type[64]; char opts[512]; };
/* The entry after *pos (NULL: the first) of the mount table text; false at
 * the end. */
bool hc_root_next_mount(const char *mounts, const char **pos, struct hc_root_mount *m);
/* The mount holding `path` (longest mount point), of `type` unless NULL. */
bool hc_root_find_mount(const char *mounts, const char *path, const char *type,
                        struct hc_root_mount *out);
/* Page size of a hugetlbfs or dmemfs mount from its options; 0 unknown. */
uint64_t hc_root_mount_pagesize(const struct hc_root_mount *m);
/* gm_host.statfs for a fake root: answered from <root>/proc/mounts. */
int hc_root_fake_statfs(const struct gm_host *h, const char *path, struct statfs *st);

#endif
