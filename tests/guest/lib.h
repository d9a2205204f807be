/* The few C library string routines the test guest needs.  GCC may also
 * emit calls to memcpy/memset/memmove/memcmp on its own, so they must exist
 * under these exact names. */
#ifndef GUEST_LIB_H
#define GUEST_LIB_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
/* Copies at most size-1 bytes and always terminates (size > 0). */
size_t strlcpy(char *dst, const char *src, size_t size);

/* Parses an unsigned number: decimal, 0x-hex, optional K/M/G/T suffix
 * (binary multiples) when allow_suffix.  Consumes the whole of [s, s+len);
 * returns false on empty input, junk, or overflow. */
bool parse_u64(const char *s, size_t len, bool allow_suffix, uint64_t *out);

#endif
