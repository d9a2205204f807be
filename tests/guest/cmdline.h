/* Lookups in the kernel-style command line ("key=value key2 ..."). */
#ifndef GUEST_CMDLINE_H
#define GUEST_CMDLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Finds the last "key=value" word; returns the value and its length, or
 * NULL when absent. */
const char *cmdline_find(const char *cmdline, const char *key, size_t *len);

/* Numeric option (decimal or 0x-hex; K/M/G/T suffixes when allow_suffix).
 * Returns 1 when found and valid, 0 when absent, -1 when malformed. */
int cmdline_get_u64(const char *cmdline, const char *key, bool allow_suffix, uint64_t *out);

#endif
