#include "vmm/control.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
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

/* ---- request parsing --------------------------------------------------- */

enum ctl_cmd_id {
    CTL_STATUS, CTL_MEMSTAT, CTL_MCE_INJECT, CTL_HWPOISON, CTL_POISONED,
    CTL_PAUSE, CTL_RESUME, CTL_QUIT, CTL_LINK,
};

enum ctl_arg_type { CTL_ARG_GPA, CTL_ARG_KIND, CTL_ARG_VCPU, CTL_ARG_MODE, CTL_ARG_WAIT,
                    CTL_ARG_DEV, CTL_ARG_STATE };

struct ctl_key {
    const char *name;
    enum ctl_arg_type type;
    bool required;
};

struct ctl_cmd {
    const char *name;
    enum ctl_cmd_id id;
    const struct ctl_key *keys;
    unsigned nkeys;
};

struct ctl_args {
    uint64_t gpa;
    enum mce_kind kind;
    int vcpu;
    bool user_mode;
    bool has_wait;
    unsigned wait_ms;
    unsigned net;
    bool up;
};

static const struct ctl_key ctl_mce_keys[] = {
    { "gpa", CTL_ARG_GPA, true },
    { "kind", CTL_ARG_KIND, true },
    { "vcpu", CTL_ARG_VCPU, false },
    { "mode", CTL_ARG_MODE, false },
    { "wait_ms", CTL_ARG_WAIT, false },
};
static const struct ctl_key ctl_gpa_keys[] = {
    { "gpa", CTL_ARG_GPA, true },
};
static const struct ctl_key ctl_link_keys[] = {
    { "dev", CTL_ARG_DEV, true },
    { "state", CTL_ARG_STATE, true },
};

#define CTL_KEYS(k) k, sizeof(k) / sizeof((k)[0])
static const struct ctl_cmd ctl_cmds[] = {
    { "status", CTL_STATUS, NULL, 0 },
    { "memstat", CTL_MEMSTAT, NULL, 0 },
    { "mce-inject", CTL_MCE_INJECT, CTL_KEYS(ctl_mce_keys) },
    { "hwpoison", CTL_HWPOISON, CTL_KEYS(ctl_gpa_keys) },
    { "poisoned", CTL_POISONED, NULL, 0 },
    { "pause", CTL_PAUSE, NULL, 0 },
    { "resume", CTL_RESUME, NULL, 0 },
    { "quit", CTL_QUIT, NULL, 0 },
    { "link", CTL_LINK, CTL_KEYS(ctl_link_keys) },
};

static json_object *ctl_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static json_object *ctl_error(const char *fmt, ...)
{
    char msg[256];
    json_object *o;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    o = json_object_new_object();
    if (!o)
        return NULL;
    json_object_object_add(o, "ok", json_object_new_boolean(false));
    json_object_object_add(o, "error", json_object_new_string(msg));
    return o;
}

int ctl_parse_gpa(const char *s, uint64_t *out)
{
    unsigned long long v;
    char *end;
    int base = 10;

    /* strtoull would accept leading blanks and a sign; a gpa has neither. */
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        if (!isxdigit((unsigned char)s[2]))
            return -EINVAL;
    } else if (!isdigit((unsigned char)s[0])) {
        return -EINVAL;
    }
    errno = 0;
    v = strtoull(s, &end, base);
    if (*end)
        return -EINVAL;
    if (errno == ERANGE || v >= CTL_GPA_LIMIT)
        return -ERANGE;
    *out = v;
    return 0;
}

/* A JSON string that is a C string: "\u0000" inside would let "ar\u0000x"
 * pass as "ar". */
static const char *ctl_clean_string(json_object *v)
{
    const char *s;

    if (!json_object_is_type(v, json_type_string))
        return NULL;
    s = json_object_get_string(v);
    if (strlen(s) != (size_t)json_object_get_string_len(v))
        return NULL;
    return s;
}

/* Validation writes its complaint here; the reply object is built once. */
struct ctl_msg {
    char text[256];
};

static int ctl_bad(struct ctl_msg *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int ctl_bad(struct ctl_msg *m, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(m->text, sizeof(m->text), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int ctl_parse_arg(const struct ctl_cmd *cmd, const struct ctl_key *k,
                         json_object *v, struct ctl_args *a, struct ctl_msg *m)
{
    const char *s;
    int64_t i;
    int ret;

    switch (k->type) {
    case CTL_ARG_GPA:
        if (json_object_is_type(v, json_type_int)) {
            /* json-c saturates out-of-range numbers at INT64_MIN/UINT64_MAX;
             * both land outside [0, 2^52) and are refused. */
            i = json_object_get_int64(v);
            if (i < 0)
                return ctl_bad(m, "%s: gpa must not be negative", cmd->name);
            if (json_object_get_uint64(v) >= CTL_GPA_LIMIT)
                return ctl_bad(m, "%s: gpa is beyond the 52-bit physical address space",
                               cmd->name);
            a->gpa = json_object_get_uint64(v);
            return 0;
        }
        s = ctl_clean_string(v);
        if (!s)
            return ctl_bad(m, "%s: gpa must be an integer or a string like \"0x1000\"",
                           cmd->name);
        ret = ctl_parse_gpa(s, &a->gpa);
        if (ret == -ERANGE)
            return ctl_bad(m, "%s: gpa \"%.40s\" is beyond the 52-bit physical address space",
                           cmd->name, s);
        if (ret)
            return ctl_bad(m, "%s: gpa \"%.40s\" is not a number (use 0x hex or decimal)",
                           cmd->name, s);
        return 0;
    case CTL_ARG_KIND:
        s = ctl_clean_string(v);
        if (s && !strcasecmp(s, "ar"))
            a->kind = MCE_AR;
        else if (s && !strcasecmp(s, "ao"))
            a->kind = MCE_AO;
        else
            return ctl_bad(m, "%s: kind must be \"ar\" or \"ao\"", cmd->name);
        return 0;
    case CTL_ARG_VCPU:
        if (!json_object_is_type(v, json_type_int))
            return ctl_bad(m, "%s: vcpu must be a non-negative integer", cmd->name);
        i = json_object_get_int64(v);
        if (i < 0 || i > INT_MAX)
            return ctl_bad(m, "%s: vcpu must be a non-negative integer", cmd->name);
        a->vcpu = (int)i;
        return 0;
    case CTL_ARG_MODE:
        /* The unconditional injection has no name: it is what no mode means. */
        s = ctl_clean_string(v);
        if (!s || strcmp(s, "user"))
            return ctl_bad(m, "%s: mode must be \"user\" (or left out: inject at once, "
                           "wherever the vCPU is)", cmd->name);
        a->user_mode = true;
        return 0;
    case CTL_ARG_WAIT:
        if (!json_object_is_type(v, json_type_int))
            return ctl_bad(m, "%s: wait_ms must be an integer", cmd->name);
        i = json_object_get_int64(v);
        if (i < 1 || i > CTL_USER_WAIT_MAX_MS)
            return ctl_bad(m, "%s: wait_ms must be 1..%d", cmd->name, CTL_USER_WAIT_MAX_MS);
        a->wait_ms = (unsigned)i;
        a->has_wait = true;
        return 0;
    case CTL_ARG_DEV:
        s = ctl_clean_string(v);
        if (!s || strncmp(s, "net.", 4) || s[4] < '0' || s[4] > '7' || s[5])
            return ctl_bad(m, "%s: dev must be \"net.0\" .. \"net.7\"", cmd->name);
        a->net = (unsigned)(s[4] - '0');
        return 0;
    case CTL_ARG_STATE:
        s = ctl_clean_string(v);
        if (s && !strcmp(s, "up"))
            a->up = true;
        else if (s && !strcmp(s, "down"))
            a->up = false;
        else
            return ctl_bad(m, "%s: state must be \"up\" or \"down\"", cmd->name);
        return 0;
    }
    return ctl_bad(m, "%s: internal error: bad argument type", cmd->name);
}

/* Checks keys, types and values before any handler runs. */
static int ctl_validate(json_object *req, const struct ctl_cmd **cmdp,
                        struct ctl_args *a, struct ctl_msg *m)
{
    const struct ctl_cmd *cmd = NULL;
    const char *name;
    json_object *v;
    unsigned i;
    int ret;

    if (!json_object_is_type(req, json_type_object))
        return ctl_bad(m, "request must be a JSON object");
    if (!json_object_object_get_ex(req, "cmd", &v))
        return ctl_bad(m, "missing key \"cmd\"");
    name = ctl_clean_string(v);
    if (!name)
        return ctl_bad(m, "\"cmd\" must be a string");
    for (i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
        if (!strcmp(ctl_cmds[i].name, name))
            cmd = &ctl_cmds[i];
    if (!cmd)
        return ctl_bad(m, "unknown command \"%.64s\"", name);

    json_object_object_foreach(req, key, val) {
        bool known = !strcmp(key, "cmd");

        (void)val;
        for (i = 0; !known && i < cmd->nkeys; i++)
            known = !strcmp(key, cmd->keys[i].name);
        if (!known)
            return ctl_bad(m, "%s: unknown key \"%.64s\"", cmd->name, key);
    }

    a->vcpu = -1;
    for (i = 0; i < cmd->nkeys; i++) {
        const struct ctl_key *k = &cmd->keys[i];

        if (!json_object_object_get_ex(req, k->name, &v)) {
            if (k->required)
                return ctl_bad(m, "%s: missing key \"%s\"", cmd->name, k->name);
            continue;
        }
        ret = ctl_parse_arg(cmd, k, v, a, m);
        if (ret)
            return ret;
    }
    if (cmd->id == CTL_MCE_INJECT) {
        if (a->user_mode && a->kind != MCE_AR)
            return ctl_bad(m, "%s: mode=user applies to kind=ar (an AO is not raised "
                           "where the guest runs)", cmd->name);
        if (a->has_wait && !a->user_mode)
            return ctl_bad(m, "%s: wait_ms applies to mode=user only", cmd->name);
        if (a->user_mode && !a->has_wait)
            a->wait_ms = CTL_USER_WAIT_DEFAULT_MS;
    }
    *cmdp = cmd;
    return 0;
}

static int ctl_call(const struct ctl_handlers *h, const struct ctl_cmd *cmd,
                    const struct ctl_args *a, uint64_t token, json_object *reply)
{
    int (*simple)(void *, json_object *) = NULL;
    struct ctl_mce_req req;

    switch (cmd->id) {
    case CTL_MCE_INJECT:
        if (!h->mce_inject)
            return -EOPNOTSUPP;
        req = (struct ctl_mce_req){
            .gpa = a->gpa, .kind = a->kind, .vcpu = a->vcpu,
            .user_mode = a->user_mode, .wait_ms = a->wait_ms, .token = token,
        };
        return h->mce_inject(h->opaque, &req, reply);
    case CTL_HWPOISON:
        if (!h->hwpoison)
            return -EOPNOTSUPP;
        return h->hwpoison(h->opaque, a->gpa, reply);
    case CTL_LINK:
        if (!h->link)
            return -EOPNOTSUPP;
        return h->link(h->opaque, a->net, a->up, reply);
    case CTL_STATUS:   simple = h->status; break;
    case CTL_MEMSTAT:  simple = h->memstat; break;
    case CTL_POISONED: simple = h->poisoned; break;
    case CTL_PAUSE:    simple = h->pause; break;
    case CTL_RESUME:   simple = h->resume; break;
    case CTL_QUIT:     simple = h->quit; break;
    }
    if (!simple)
        return -EOPNOTSUPP;
    return simple(h->opaque, reply);
}

/* The reply for a handler's outcome: reply itself on success, otherwise
 * (reply dropped) an error naming why. */
static json_object *ctl_finish(const struct ctl_cmd *cmd, int ret, json_object *reply)
{
    struct ctl_msg m;
    json_object *e;

    if (ret >= 0)
        return reply;
    if (ret == -EOPNOTSUPP)
        snprintf(m.text, sizeof(m.text), "%s: not supported by this VM", cmd->name);
    else if (json_object_object_get_ex(reply, "error", &e) &&
             json_object_is_type(e, json_type_string))
        snprintf(m.text, sizeof(m.text), "%s", json_object_get_string(e));
    else
        snprintf(m.text, sizeof(m.text), "%s: %s", cmd->name, strerror(-ret));
    json_object_put(reply);
    return ctl_error("%s", m.text);
}

/* *later is set when the handler answers with ctl_server_resolve: the
 * returned object is then the reply so far, and *cmdp its command. */
static json_object *ctl_run(const struct ctl_handlers *h, json_object *req, uint64_t token,
                            bool *later, const struct ctl_cmd **cmdp)
{
    const struct ctl_cmd *cmd = NULL;
    struct ctl_args a = { 0 };
    struct ctl_msg m;
    json_object *reply;
    int ret;

    if (ctl_validate(req, &cmd, &a, &m))
        return ctl_error("%s", m.text);
    reply = json_object_new_object();
    if (!reply)
        return NULL;
    json_object_object_add(reply, "ok", json_object_new_boolean(true));
    ret = ctl_call(h, cmd, &a, token, reply);
    if (ret == CTL_LATER) {
        if (token) {
            *later = true;
            *cmdp = cmd;
            return reply;
        }
        json_object_put(reply);
        return ctl_error("%s: cannot wait for the guest outside the control socket",
                         cmd->name);
    }
    return ctl_finish(cmd, ret, reply);
}

static json_object *ctl_handle_line_tok(const struct ctl_handlers *h, const char *line,
                                        size_t len, uint64_t token, bool *later,
                                        const struct ctl_cmd **cmdp)
{
    enum json_tokener_error jerr;
    json_object *req, *reply;
    json_tokener *tok;
    size_t end;

    if (memchr(line, '\0', len))
        return ctl_error("request contains a NUL byte");
    if (len && line[len - 1] == '\r')    /* telnet and friends */
        len--;
    if (len > CTL_LINE_MAX)
        return ctl_error("request longer than %d bytes", CTL_LINE_MAX);
    for (end = 0; end < len && isspace((unsigned char)line[end]); end++)
        ;
    if (end == len)
        return ctl_error("empty request");

    tok = json_tokener_new_ex(CTL_MAX_DEPTH);
    if (!tok)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    req = json_tokener_parse_ex(tok, line, (int)len);
    jerr = json_tokener_get_error(tok);
    end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);

    if (jerr == json_tokener_continue)
        return ctl_error("incomplete JSON");
    if (jerr != json_tokener_success) {
        json_object_put(req);
        return ctl_error("invalid JSON at byte %zu: %s", end,
                         json_tokener_error_desc(jerr));
    }
    for (; end < len; end++) {
        if (!isspace((unsigned char)line[end])) {
            json_object_put(req);
            return ctl_error("trailing data after the JSON object at byte %zu", end);
        }
    }
    reply = ctl_run(h, req, token, later, cmdp);
    json_object_put(req);
    return reply;
}

json_object *ctl_handle_line(const struct ctl_handlers *h, const char *line,
                             size_t len)
{
    const struct ctl_cmd *cmd;
    bool later = false;

    return ctl_handle_line_tok(h, line, len, 0, &later, &cmd);
}

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
                ret = ctl_queue_reply(c, ctl_error("request line longer than %d bytes",
                                                   CTL_LINE_MAX));
                c->closing = true;
            } else if (c->eof) {
                /* A partial line at EOF: the client went away mid-request. */
                c->closing = true;
            }
            break;
        }
        off += (size_t)(nl - line) + 1;
        reply = ctl_handle_line_tok(srv->h, line, (size_t)(nl - line), ++srv->next_token,
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
    qret = ctl_queue_reply(c, ctl_finish(c->wait_cmd, ret, reply));
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
