/* Reads of host files under gm_host.sysroot: guest-mem's own, and dvmm
 * hostcheck's, which reads the same trees (real or fake) the backend checks
 * read. */
#ifndef DVMM_GM_HOST_H
#define DVMM_GM_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "guest-mem/gm.h"

/* Full path of `abs` (e.g. "/proc/meminfo") under the host's sysroot. */
int gm_host_path(const struct gm_host *h, const char *abs, char *out, size_t len);
/* Read the whole file into buf (NUL-terminated, truncated at len-1).
 * Returns bytes read or -errno. */
long gm_host_read(const struct gm_host *h, const char *abs, char *buf, size_t len);
/* The whole file, NUL-terminated, malloc'd (the caller frees); NULL with
 * errno set on failure. */
char *gm_host_slurp(const struct gm_host *h, const char *abs);
/* A file holding one unsigned decimal number.  0 or -errno (-EINVAL for junk). */
int gm_host_read_u64(const struct gm_host *h, const char *abs, uint64_t *out);
/* "Key:   123 kB" in /proc-style text -> 123.  0 or -ENOENT/-EINVAL. */
int gm_parse_kb(const char *text, const char *key, int64_t *kb);
/* "1G", "2M", "4K" or plain bytes for messages; buf of 32 is enough. */
const char *gm_fmt_size(uint64_t v, char *buf, size_t len);

#endif
