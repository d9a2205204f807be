#include "vmm/log.h"

#include <stdarg.h>
#include <stdio.h>

/* The only process-wide knob: written once by main before any thread starts,
 * read-only afterwards. */
static enum log_level log_level = LOG_INFO;

void log_set_level(enum log_level lvl) { log_level = lvl; }
enum log_level log_get_level(void) { return log_level; }

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    static const char *const names[] = { "error", "warning", "info", "debug" };
    char line[1024];
    va_list ap;

    if (lvl > log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One fprintf per line so concurrent vCPU threads do not interleave. */
    fprintf(stderr, "dvmm: %s: %s\n", names[lvl], line);
}

int log_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}
