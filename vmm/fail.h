/* An error on its way to the user: one line, and whose it is.  The kind
 * decides dvmm's exit status: the user's (the config, or a file, disk or
 * TAP it names: 2) or the host's (KVM, memory, a system call: 1).  The
 * line is formatted by log_fail, the one error formatter; a callee that
 * takes (err, errlen) writes straight into msg and the caller, which
 * knows whose input the callee was given, sets the kind. */
#ifndef DVMM_FAIL_H
#define DVMM_FAIL_H

#include "vmm/log.h"

enum fail_kind { FAIL_HOST = 1, FAIL_USER = 2 };

struct fail {
    enum fail_kind kind;
    char msg[1024];
};

#define fail_host(f, rc, ...) \
    ((f)->kind = FAIL_HOST, log_fail((f)->msg, sizeof((f)->msg), (rc), __VA_ARGS__))
#define fail_user(f, rc, ...) \
    ((f)->kind = FAIL_USER, log_fail((f)->msg, sizeof((f)->msg), (rc), __VA_ARGS__))

/* For a callee's failure already in f->msg: set its kind, pass rc on. */
static inline int fail_as(struct fail *f, enum fail_kind kind, int rc)
{
    f->kind = kind;
    return rc;
}

#endif
