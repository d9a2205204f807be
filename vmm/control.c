/* The control socket server; the protocol it carries is vmm/ctl_proto.c. */
#include "vmm/control.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/log.h"

/* Stop turning requests into replies once this much output is waiting:
 * a client that pipelines requests but never reads must not make us
 * buffer without bound. */
#define CTL_OUT_HIGH (64 * 1024)
#define CTL_BACKLOG  16

struct ctl_client {
    int fd;
    unsigned slot;
    uint32_t events;        /* current epoll interest */
    bool eof;               /* peer finished sending */
    bool closing;           /* read nothing more; close once out is sent */
    char *out;
    size_t out_len, out_off, out_cap;
    size_t in_len;
    /* A request whose handler answers later (CTL_LATER): its token, the
     * reply so far and its command.  No further line is read as a request
     * until ctl_server_resolve, so replies keep request order. */
    uint64_t wait_token;
    json_object *wait_reply;
    const struct ctl_cmd *wait_cmd;
    char in[CTL_LINE_MAX + 1];   /* a maximal line plus its '\n' */
};

/* ---- clients ------------------------------------------------------------ */

static size_t ctl_out_pending(const struct ctl_client *c)
{
    return c->out_len - c->out_off;
}

static int ctl_queue(struct ctl_client *c, const char *s, size_t n)
{
    size_t need;

    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    need = c->out_len + n;
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        char *p;

        while (cap < need)
            cap *= 2;
        p = realloc(c->out, cap);
        if (!p)
            return -ENOMEM;
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
    return 0;
}

static int ctl_queue_reply(struct ctl_client *c, json_object *reply)
{
    const char *s;
    int ret;

    if (!reply)   /* out of memory: say so in a fixed line */
        return ctl_queue(c, "{\"ok\":false,\"error\":\"out of memory\"}\n", 38);
    s = json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN);
    ret = s ? ctl_queue(c, s, strlen(s)) : -ENOMEM;
    if (!ret)
        ret = ctl_queue(c, "\n", 1);
    json_object_put(reply);
    return ret;
}

static int ctl_flush(struct ctl_client *c)
{
    while (ctl_out_pending(c)) {
        ssize_t n = send(c->fd, c->out + c->out_off, ctl_out_pending(c),
                         MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        c->out_off += (size_t)n;
    }
    return 0;
}

static void ctl_client_free(struct ctl_server *srv, struct ctl_client *c)
{
    epoll_ctl(srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    srv->clients[c->slot] = NULL;
    srv->nclients--;
    json_object_put(c->wait_reply);
    free(c->out);
    free(c);
}

/* Turn complete lines into replies until output backs up.  The consumed
 * prefix is dropped once at the end, not per line: a buffer full of short
 * pipelined requests would otherwise cost a 64 KiB memmove each. */
static int ctl_process(struct ctl_server *srv, struct ctl_client *c)
{
    size_t off = 0;
    int ret = 0;

    while (!c->closing && !c->wait_token && ctl_out_pending(c) < CTL_OUT_HIGH) {
        char *line = c->in + off;
        char *nl = memchr(line, '\n', c->in_len - off);
        const struct ctl_cmd *cmd = NULL;
        bool later = false;
        json_object *reply;

        if (!nl) {
            if (c->in_len - off == sizeof(c->in)) {
                log_debug("control %s: client fd %d sent a line over %d bytes; dropping it",
                          srv->path, c->fd, CTL_LINE_MAX);
                ret = ctl_queue_reply(c, ctl_reply_error("request line longer than %d bytes",
                                                         CTL_LINE_MAX));
                c->closing = true;
            } else if (c->eof) {
                /* A partial line at EOF: the client went away mid-request. */
                c->closing = true;
            }
            break;
        }
        off += (size_t)(nl - line) + 1;
        reply = ctl_handle_request(srv->h, line, (size_t)(nl - line), ++srv->next_token,
                                   &later, &cmd);
        if (later) {
            c->wait_token = srv->next_token;
            c->wait_reply = reply;
            c->wait_cmd = cmd;
            break;
        }
        ret = ctl_queue_reply(c, reply);
        if (ret)
            break;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return ret;
}

static int ctl_read(struct ctl_client *c)
{
    while (!c->eof && c->in_len < sizeof(c->in)) {
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len,
                         MSG_DONTWAIT);

        if (n > 0) {
            c->in_len += (size_t)n;
        } else if (n == 0) {
            c->eof = true;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        } else {
            return -errno;
        }
    }
    return 0;
}

/* Service one client; false when it was closed. */
static bool ctl_client_event(struct ctl_server *srv, struct ctl_client *c, uint32_t ev)
{
    uint32_t want;
    int ret = 0, round;

    /* Gone while its reply was still coming: nobody to answer, and a hung
     * up socket would report EPOLLHUP for as long as the wait lasts. */
    if (c->wait_token && (ev & (EPOLLHUP | EPOLLERR))) {
        log_debug("control %s: client fd %d hung up before its reply", srv->path, c->fd);
        ctl_client_free(srv, c);
        return false;
    }

    /* Alternate reading, answering and sending until nothing moves: the
     * input buffer may hold more lines than one round may answer.  Bounded
     * so one busy client cannot starve the rest of the main loop. */
    for (round = 0; round < 16; round++) {
        size_t before_in = c->in_len, before_out = ctl_out_pending(c);
        bool before_eof = c->eof;

        if (!c->closing && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            ret = ctl_read(c);
        if (!ret)
            ret = ctl_process(srv, c);
        if (!ret)
            ret = ctl_flush(c);
        if (ret)
            break;
        if (c->in_len == before_in && ctl_out_pending(c) == before_out &&
            c->eof == before_eof)
            break;
    }
    if (ret) {
        if (ret != -EPIPE && ret != -ECONNRESET)
            log_warn("control %s: client fd %d: %s; dropping it",
                     srv->path, c->fd, strerror(-ret));
        ctl_client_free(srv, c);
        return false;
    }
    if (c->closing && !ctl_out_pending(c)) {
        ctl_client_free(srv, c);
        return false;
    }
    want = 0;
    if (!c->closing && !c->eof && c->in_len < sizeof(c->in) &&
        ctl_out_pending(c) < CTL_OUT_HIGH)
        want |= EPOLLIN;
    if (ctl_out_pending(c))
        want |= EPOLLOUT;
    if (want != c->events) {
        struct epoll_event e = { .events = want, .data.ptr = c };

        if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, c->fd, &e) < 0) {
            log_warn("control %s: epoll_ctl(MOD) fd %d: %s; dropping the client",
                     srv->path, c->fd, strerror(errno));
            ctl_client_free(srv, c);
            return false;
        }
        c->events = want;
    }
    return true;
}

static void ctl_reject(struct ctl_server *srv, int fd)
{
    static const char msg[] =
        "{\"ok\":false,\"error\":\"too many control clients\"}\n";

    log_warn("control %s: %u clients already connected; refusing another",
             srv->path, srv->nclients);
    /* Best effort: a fresh socket's buffer takes one short line. */
    if (send(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_debug("control %s: reject reply: %s", srv->path, strerror(errno));
    close(fd);
}

int ctl_server_chown(struct ctl_server *srv, unsigned uid, unsigned gid)
{
    if (chown(srv->path, (uid_t)uid, (gid_t)gid) < 0) {
        int e = errno;

        log_err("control %s: chown to %u:%u: %s", srv->path, uid, gid, strerror(e));
        return -e;
    }
    return 0;
}

/* Only dvmm's own uid and root may drive the VM.  The socket's mode (0600)
 * already keeps others out of its path; this holds even where the file's
 * mode or directory was opened up, or the descriptor was passed on.
 * True when the peer may stay; otherwise it is told why and closed. */
static bool ctl_peer_ok(struct ctl_server *srv, int fd)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    uid_t me = geteuid();
    char msg[160];
    int n;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
        log_warn("control %s: refusing a client: SO_PEERCRED: %s", srv->path,
                 strerror(errno));
        close(fd);
        return false;
    }
    if (cr.uid == me || cr.uid == 0)
        return true;
    log_warn("control %s: refusing a client with uid %u (pid %d): only uid %u "
             "(dvmm's) and root may connect", srv->path, (unsigned)cr.uid, (int)cr.pid,
             (unsigned)me);
    n = snprintf(msg, sizeof(msg), "{\"ok\":false,\"error\":\"permission denied: uid %u "
                 "is neither dvmm's uid %u nor root\"}\n", (unsigned)cr.uid, (unsigned)me);
    if (send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_debug("control %s: refusal reply: %s", srv->path, strerror(errno));
    close(fd);
    return false;
}

static void ctl_accept(struct ctl_server *srv)
{
    for (;;) {
        struct epoll_event e;
        struct ctl_client *c;
        unsigned slot;
        int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("control %s: accept: %s", srv->path, strerror(errno));
            return;
        }
        if (!ctl_peer_ok(srv, fd))
            continue;
        if (srv->nclients >= CTL_MAX_CLIENTS) {
            ctl_reject(srv, fd);
            continue;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
            log_warn("control %s: out of memory for a client", srv->path);
            close(fd);
            continue;
        }
        for (slot = 0; srv->clients[slot]; slot++)
            ;
        c->fd = fd;
        c->slot = slot;
        c->events = EPOLLIN;
        e.events = EPOLLIN;
        e.data.ptr = c;
        if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
            log_warn("control %s: epoll_ctl(ADD) client: %s", srv->path,
                     strerror(errno));
            close(fd);
            free(c);
            continue;
        }
        srv->clients[slot] = c;
        srv->nclients++;
        log_debug("control %s: client fd %d connected (%u open)", srv->path,
                  fd, srv->nclients);
    }
}

int ctl_server_dispatch(struct ctl_server *srv)
{
    struct epoll_event ev[16];
    int n, i;

    do {
        n = epoll_wait(srv->epfd, ev, 16, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        int ret = -errno;

        log_err("control %s: epoll_wait: %s", srv->path, strerror(errno));
        return ret;
    }
    for (i = 0; i < n; i++) {
        if (ev[i].data.ptr == srv)
            ctl_accept(srv);
        else
            ctl_client_event(srv, ev[i].data.ptr, ev[i].events);
    }
    return 0;
}

/* ---- the listening socket ---------------------------------------------- */

static int ctl_make_parent(const char *path, char *err, size_t errlen)
{
    char copy[sizeof(((struct sockaddr_un *)0)->sun_path)];
    const char *dir;

    snprintf(copy, sizeof(copy), "%s", path);
    dir = dirname(copy);
    if (!strcmp(dir, ".") || !strcmp(dir, "/"))
        return 0;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return log_fail(err, errlen, -errno,
                        "control.socket=%s: cannot create directory %s: %s",
                        path, dir, strerror(errno));
    return 0;
}

/* After EADDRINUSE: replace the path only if it is a dead socket. */
static int ctl_claim_stale(const char *path, const struct sockaddr_un *sa,
                           char *err, size_t errlen)
{
    struct stat st;
    int fd, ret;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : log_fail(err, errlen, -errno,
                                              "control.socket=%s: %s", path, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return log_fail(err, errlen, -EEXIST,
                        "control.socket=%s: exists and is not a socket; not replacing it",
                        path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return log_fail(err, errlen, -errno, "control.socket=%s: socket: %s",
                        path, strerror(errno));
    ret = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 ? -errno : 0;
    close(fd);
    if (ret == -ECONNREFUSED || ret == -ENOENT) {
        log_info("control: removing stale socket %s", path);
        if (unlink(path) < 0 && errno != ENOENT)
            return log_fail(err, errlen, -errno,
                            "control.socket=%s: cannot remove stale socket: %s",
                            path, strerror(errno));
        return 0;
    }
    if (ret == 0 || ret == -EAGAIN)
        return log_fail(err, errlen, -EADDRINUSE,
                        "control.socket=%s: another dvmm is listening there", path);
    return log_fail(err, errlen, ret, "control.socket=%s: probing the existing socket: %s",
                    path, strerror(-ret));
}

int ctl_server_open(struct ctl_server *srv, const char *path,
                    const struct ctl_handlers *h, char *err, size_t errlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct epoll_event e;
    struct stat st;
    bool bound = false;
    int ret, tries;

    memset(srv, 0, sizeof(*srv));
    srv->epfd = srv->lfd = -1;
    srv->h = h;
    if (!path[0] || strlen(path) >= sizeof(sa.sun_path))
        return log_fail(err, errlen, -ENAMETOOLONG,
                        "control.socket=%s: path must be 1..%zu bytes", path,
                        sizeof(sa.sun_path) - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    memcpy(srv->path, path, strlen(path) + 1);

    ret = ctl_make_parent(path, err, errlen);
    if (ret)
        return ret;
    srv->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (srv->lfd < 0) {
        ret = log_fail(err, errlen, -errno, "control.socket=%s: socket: %s",
                       path, strerror(errno));
        goto fail;
    }
    for (tries = 0; !bound; tries++) {
        if (bind(srv->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            bound = true;
        } else if (errno == EADDRINUSE && tries < 2) {
            ret = ctl_claim_stale(path, &sa, err, errlen);
            if (ret)
                goto fail;
        } else {
            ret = log_fail(err, errlen, -errno, "control.socket=%s: bind: %s",
                           path, strerror(errno));
            goto fail;
        }
    }
    /* Nobody can connect before listen(), so 0600 is in place before the
     * socket is usable; umask would be process-wide. */
    if (chmod(path, 0600) < 0 || stat(path, &st) < 0) {
        ret = log_fail(err, errlen, -errno, "control.socket=%s: chmod 0600: %s",
                       path, strerror(errno));
        goto fail;
    }
    srv->dev = st.st_dev;
    srv->ino = st.st_ino;
    if (listen(srv->lfd, CTL_BACKLOG) < 0) {
        ret = log_fail(err, errlen, -errno, "control.socket=%s: listen: %s",
                       path, strerror(errno));
        goto fail;
    }
    srv->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (srv->epfd < 0) {
        ret = log_fail(err, errlen, -errno, "control.socket=%s: epoll_create1: %s",
                       path, strerror(errno));
        goto fail;
    }
    e.events = EPOLLIN;
    e.data.ptr = srv;
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->lfd, &e) < 0) {
        ret = log_fail(err, errlen, -errno, "control.socket=%s: epoll_ctl: %s",
                       path, strerror(errno));
        goto fail;
    }
    log_debug("control: listening on %s", path);
    return 0;

fail:
    if (srv->epfd >= 0)
        close(srv->epfd);
    if (srv->lfd >= 0)
        close(srv->lfd);
    if (bound)
        unlink(path);
    srv->epfd = srv->lfd = -1;
    return ret;
}

int ctl_server_fd(const struct ctl_server *srv)
{
    return srv->epfd;
}

unsigned ctl_server_nclients(const struct ctl_server *srv)
{
    return srv->nclients;
}

int ctl_server_resolve(struct ctl_server *srv, uint64_t token, int ret,
                       json_object *fields)
{
    struct ctl_client *c = NULL;
    json_object *reply;
    int qret;

    for (unsigned i = 0; token && i < CTL_MAX_CLIENTS && !c; i++)
        if (srv->clients[i] && srv->clients[i]->wait_token == token)
            c = srv->clients[i];
    if (!c) {
        json_object_put(fields);
        return -ENOENT;
    }
    reply = c->wait_reply;
    if (fields) {
        json_object_object_foreach(fields, key, val)
            json_object_object_add(reply, key, json_object_get(val));
        json_object_put(fields);
    }
    c->wait_token = 0;
    c->wait_reply = NULL;
    qret = ctl_queue_reply(c, ctl_reply_finish(c->wait_cmd, ret, reply));
    if (qret) {
        log_warn("control %s: client fd %d: %s; dropping it", srv->path, c->fd,
                 strerror(-qret));
        ctl_client_free(srv, c);
        return 0;
    }
    /* Send it, then answer what the client sent meanwhile (or close it
     * if it has finished). */
    ctl_client_event(srv, c, 0);
    return 0;
}

void ctl_server_close(struct ctl_server *srv)
{
    struct stat st;
    unsigned i;

    for (i = 0; i < CTL_MAX_CLIENTS; i++)
        if (srv->clients[i])
            ctl_client_free(srv, srv->clients[i]);
    if (srv->lfd >= 0) {
        /* Only our own inode: a successor may already own the path. */
        if (stat(srv->path, &st) == 0 && st.st_dev == srv->dev &&
            st.st_ino == srv->ino)
            unlink(srv->path);
        close(srv->lfd);
    }
    if (srv->epfd >= 0)
        close(srv->epfd);
    srv->lfd = srv->epfd = -1;
}
