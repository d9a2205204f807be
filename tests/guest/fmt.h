/* A small printf subset: %s %c %d %i %u %x %X %p %%, with the l/ll/z length
 * modifiers, '0' padding, a field width and a string precision (%.8s).  Enough for TAP lines. */
#ifndef GUEST_FMT_H
#define GUEST_FMT_H

#include <stdarg.h>
#include <stddef.h>

int fmt_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int fmt_snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
