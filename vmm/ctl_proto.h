/* The control protocol without its socket: one request line in, one reply
 * object out.  Pure (no I/O, no state), so it is fuzzed on its own
 * (tests/fuzz/fuzz_control.c); vmm/control.c carries its lines.
 *
 * Request:  {"cmd": "status"}
 *           {"cmd": "mce-inject", "gpa": "0x1000", "kind": "ar", "vcpu": 1}
 * Reply:    {"ok": true, ...}  or  {"ok": false, "error": "..."}
 *
 * Commands: status, memstat, mce-inject gpa kind=ar|ao [vcpu=N]
 * [mode=user [wait_ms=N]], hwpoison gpa, poisoned, pause, resume, quit,
 * link dev=net.N state=up|down, vcpu-state vcpu=N.
 * gpa is a JSON integer or a string ("0x1000" or "4096"), below 2^52.
 * Every request is validated against its command's argument schema
 * (unknown command or key, missing key, wrong type, bad value, keys that
 * do not go together) and errors are answered here; a handler only ever
 * sees a well-formed request.
 *
 * A command is one row of ctl_proto.c's table (name, argument schema, the
 * call into its handler) plus its member of struct ctl_handlers. */
#ifndef DVMM_CTL_PROTO_H
#define DVMM_CTL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "vmm/mce.h"

#define CTL_LINE_MAX    (64 * 1024)  /* request bytes before the '\n' */
#define CTL_MAX_DEPTH   8            /* requests are flat; deeper is junk */
#define CTL_GPA_LIMIT   (1ULL << 52) /* architectural MAXPHYADDR bound */
/* mce-inject mode=user: how long to wait for guest user mode.  The maximum
 * stays below dvmm ctl's reply timeout (CTL_CLIENT_TIMEOUT_S). */
#define CTL_USER_WAIT_DEFAULT_MS 5000
#define CTL_USER_WAIT_MAX_MS     20000

/* A handler's return for "the reply comes with ctl_server_resolve". */
#define CTL_LATER 1

struct ctl_mce_req {
    uint64_t gpa;
    enum mce_kind kind;
    int vcpu;           /* < 0 when the request named none: the router picks */
    bool user_mode;     /* mode=user (kind=ar only): land in guest user mode */
    unsigned wait_ms;   /* mode=user: give up after this long */
    /* Non-zero when the handler may return CTL_LATER: the request's id for
     * ctl_server_resolve.  0 (ctl_handle_line, no server) means it may not. */
    uint64_t token;
};

/* Each handler adds its result fields to `reply` (a JSON object that
 * already holds "ok": true) and returns 0, or returns -errno on failure.
 * A failing handler may add an "error" string to reply to explain; without
 * one the reply's error is strerror(-ret).  On failure every other field
 * it added is discarded.  A NULL handler answers "not supported".  Only
 * mce_inject may return CTL_LATER, and only when req->token is non-zero. */
struct ctl_handlers {
    void *opaque;
    int (*status)(void *opaque, json_object *reply);
    int (*memstat)(void *opaque, json_object *reply);
    int (*mce_inject)(void *opaque, const struct ctl_mce_req *req, json_object *reply);
    int (*hwpoison)(void *opaque, uint64_t gpa, json_object *reply);
    int (*poisoned)(void *opaque, json_object *reply);
    int (*pause)(void *opaque, json_object *reply);
    int (*resume)(void *opaque, json_object *reply);
    /* The reply is queued and flushed as far as the socket takes it before
     * ctl_server_dispatch returns, so main may stop right after. */
    int (*quit)(void *opaque, json_object *reply);
    /* `link`: NIC net.N's link up or down (N is 0..7, not checked against
     * the VM: the handler says when it has no such NIC). */
    int (*link)(void *opaque, unsigned net, bool up, json_object *reply);
    /* `vcpu-state`: one vCPU's registers, pending events and machine-check
     * MSRs, read with the VM paused (vcpu not checked against the VM: the
     * handler says when it has no such vCPU). */
    int (*vcpu_state)(void *opaque, unsigned vcpu, json_object *reply);
};

/* One row of the command table; opaque outside ctl_proto.c. */
struct ctl_cmd;

/* Parse and run one request line (without its '\n'; may hold any bytes)
 * and return the reply object, never NULL except when out of memory.
 * The socket server uses ctl_handle_request; the fuzzer and tests call
 * this directly. */
json_object *ctl_handle_line(const struct ctl_handlers *h, const char *line,
                             size_t len);

/* ctl_handle_line for the socket server: token (non-zero) is the request's
 * id, so a handler may answer later.  When it does, *later is set, the
 * returned object is the reply so far and *cmdp its command, for
 * ctl_reply_finish once the answer comes. */
json_object *ctl_handle_request(const struct ctl_handlers *h, const char *line, size_t len,
                                uint64_t token, bool *later, const struct ctl_cmd **cmdp);

/* The reply for a handler's outcome: reply itself (taken over) when ret
 * >= 0, otherwise (reply dropped) an error naming why. */
json_object *ctl_reply_finish(const struct ctl_cmd *cmd, int ret, json_object *reply);

/* {"ok": false, "error": <formatted>}; NULL when out of memory. */
json_object *ctl_reply_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "0x1a2b" / "6699" -> value; the same rule applied to a gpa string.
 * -EINVAL for junk, -ERANGE at or above CTL_GPA_LIMIT. */
int ctl_parse_gpa(const char *s, uint64_t *out);

#endif
