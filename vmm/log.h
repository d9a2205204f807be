/* Logging: one line per event on stderr, prefixed with "dvmm:" and the
 * level.  Callers add their own context (device, vCPU, GPA) in the message;
 * the log module only owns the verbosity, which main sets once at start. */
#ifndef DVMM_LOG_H
#define DVMM_LOG_H

#include <stddef.h>

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
void log_msg(enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Format a one-line error into the caller's err buffer (when there is one)
 * and return rc: the shape every "return -errno with a message" path takes. */
int log_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
