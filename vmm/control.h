/* The control socket: a Unix stream socket speaking JSON lines, one
 * object per line each way, replies in request order.  What a line means
 * (requests, commands, replies, validation) is vmm/ctl_proto.h; this is
 * the server that carries the lines.
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

#include "vmm/ctl_proto.h"

#define CTL_MAX_CLIENTS 64

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

#endif
