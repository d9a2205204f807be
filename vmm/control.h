/* The control socket: a Unix stream socket speaking JSON lines.
 *
 * Request:  {"cmd": "status"}
 *           {"cmd": "mce-inject", "gpa": "0x1000", "kind": "ar", "vcpu": 1}
 * Reply:    {"ok": true, ...}  or  {"ok": false, "error": "..."}
 * one object per line each way, replies in request order.
 *
 * Commands: status, memstat, mce-inject gpa kind=ar|ao [vcpu=N]
 * [mode=user [wait_ms=N]], hwpoison gpa, poisoned, pause, resume, quit,
 * link dev=net.N state=up|down.
 * gpa is a JSON integer or a string ("0x1000" or "4096"), below 2^52.  The
 * server validates every request (unknown command or key, missing key,
 * wrong type, bad value, keys that do not go together) and answers errors
 * itself; a handler only ever sees a well-formed request.
 *
 * A handler may answer later (mce-inject mode=user waits for the guest):
 * it returns CTL_LATER and the main loop calls ctl_server_resolve with the
 * request's token.  Until then that client's further requests wait, so
 * replies stay in request order; other clients are served.
 *
 * The server is single-threaded and driven by the main loop: it owns an
 * internal epoll fd (ctl_server_fd) holding the listener and every client.
 * The loop polls that one fd for EPOLLIN and calls ctl_server_dispatch,
 * which never blocks.  Handlers therefore run on the main thread. */
#ifndef DVMM_CONTROL_H
#define DVMM_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "vmm/mce.h"

#define CTL_LINE_MAX    (64 * 1024)  /* request bytes before the '\n' */
#define CTL_MAX_CLIENTS 64
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
};

struct ctl_client;

struct ctl_server {
    int epfd;
    int lfd;
    char path[108];                   /* sizeof(sun_path) */
    dev_t dev;                        /* the socket inode we created, so */
    ino_t ino;                        /* close never unlinks a successor's */
    const struct ctl_handlers *h;
    struct ctl_client *clients[CTL_MAX_CLIENTS];
    unsigned nclients;
    uint64_t next_token;              /* last request id handed out */
};

/* Create, bind (mode 0600) and listen on path.  Creates a missing parent
 * directory with mode 0700.  A leftover socket is replaced only when
 * connecting to it is refused; a live one (another dvmm) is -EADDRINUSE.
 * h is kept by pointer and must outlive the server.
 * Errors: -errno with a one-line message naming the path in err. */
int ctl_server_open(struct ctl_server *srv, const char *path,
                    const struct ctl_handlers *h, char *err, size_t errlen);
/* Hand the socket file to uid:gid (before dvmm becomes that user).  Only
 * peers with dvmm's uid or root are served, so this is who may connect.
 * 0 or -errno (logged). */
int ctl_server_chown(struct ctl_server *srv, unsigned uid, unsigned gid);
/* The epoll fd to watch for EPOLLIN. */
int ctl_server_fd(const struct ctl_server *srv);
/* Accept, read, answer and write whatever is ready; never blocks.
 * Returns 0, or -errno if the epoll fd itself failed. */
int ctl_server_dispatch(struct ctl_server *srv);
unsigned ctl_server_nclients(const struct ctl_server *srv);
/* Finish the request whose handler returned CTL_LATER: ret and fields
 * (taken over; NULL for none; on failure its "error" string, if any, is
 * the message) as the handler's own return and additions would have been.
 * The reply is queued and sent, and the client's waiting requests run.
 * -ENOENT when that client has gone (its reply is dropped). */
int ctl_server_resolve(struct ctl_server *srv, uint64_t token, int ret,
                       json_object *fields);
/* Drop every client, close the socket and unlink its path. */
void ctl_server_close(struct ctl_server *srv);

/* Parse and run one request line (without its '\n'; may hold any bytes)
 * and return the reply object, never NULL except when out of memory.
 * The socket server uses it per line; the fuzzer and tests call it
 * directly. */
json_object *ctl_handle_line(const struct ctl_handlers *h, const char *line,
                             size_t len);

/* "0x1a2b" / "6699" -> value; the same rule the server applies to a gpa
 * string.  -EINVAL for junk, -ERANGE at or above CTL_GPA_LIMIT. */
int ctl_parse_gpa(const char *s, uint64_t *out);

#endif
