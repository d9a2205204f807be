/* The control socket through real Unix sockets with mock handlers: a
 * malformed-request corpus (never reaches a handler, never kills the
 * connection), valid requests, handler errors, line-length limits, the
 * client cap, pipelining with backpressure, disconnects, replies that come
 * later (mce-inject mode=user), socket-path rules, and the `dvmm ctl`
 * client. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "vmm/control.h"
#include "vmm/ctl_client.h"
#include "vmm/log.h"

/* ---- mock VM ------------------------------------------------------------ */

struct mock {
    unsigned calls;                 /* every handler call */
    unsigned mce_calls, poison_calls, quit_calls, state_calls;
    uint64_t gpa;
    enum mce_kind kind;
    int vcpu;
    bool user_mode;
    unsigned wait_ms;
    uint64_t token;                 /* of the last mode=user request */
};

static int m_status(void *o, json_object *r)
{
    struct mock *m = o;

    m->calls++;
    json_object_object_add(r, "state", json_object_new_string("running"));
    json_object_object_add(r, "vcpus", json_object_new_int(2));
    return 0;
}

static int m_memstat(void *o, json_object *r)
{
    struct mock *m = o;

    m->calls++;
    json_object_object_add(r, "partial", json_object_new_int(1));
    return -EIO;    /* no message: the server falls back to strerror */
}

/* mode=user answers later, as dvmm's does: with the token. */
static int m_mce(void *o, const struct ctl_mce_req *q, json_object *r)
{
    struct mock *m = o;

    m->calls++;
    m->mce_calls++;
    m->gpa = q->gpa;
    m->kind = q->kind;
    m->vcpu = q->vcpu;
    m->user_mode = q->user_mode;
    m->wait_ms = q->wait_ms;
    if (q->user_mode && q->token) {
        m->token = q->token;
        json_object_object_add(r, "mode", json_object_new_string("user"));
        return CTL_LATER;
    }
    json_object_object_add(r, "injected", json_object_new_boolean(true));
    return 0;
}

static int m_hwpoison(void *o, uint64_t gpa, json_object *r)
{
    struct mock *m = o;

    m->calls++;
    m->poison_calls++;
    m->gpa = gpa;
    if (gpa == 0xdead000) {
        json_object_object_add(r, "error",
                               json_object_new_string("hwpoison: gpa 0xdead000 is not guest RAM"));
        return -EFAULT;
    }
    return 0;
}

static int m_poisoned(void *o, json_object *r)
{
    struct mock *m = o;
    json_object *a = json_object_new_array();

    m->calls++;
    json_object_array_add(a, json_object_new_string("0x1000"));
    json_object_object_add(r, "pages", a);
    return 0;
}

static int m_quit(void *o, json_object *r)
{
    struct mock *m = o;

    (void)r;
    m->calls++;
    m->quit_calls++;
    return 0;
}

/* vcpu-state: the mock VM has vCPUs 0..3; vCPU 7 is refused with a message,
 * as dvmm's handler does for a vCPU the VM lacks. */
static int m_vcpu_state(void *o, unsigned vcpu, json_object *r)
{
    struct mock *m = o;

    m->calls++;
    m->state_calls++;
    m->vcpu = (int)vcpu;
    if (vcpu > 3) {
        json_object_object_add(r, "error",
                               json_object_new_string("vcpu-state: this VM has no vCPU 7"));
        return -ENODEV;
    }
    json_object_object_add(r, "rip", json_object_new_string("0x1000"));
    json_object_object_add(r, "events", json_object_new_object());
    return 0;
}

struct fixture {
    char dir[64];
    char path[128];
    struct mock mock;
    struct ctl_handlers h;
    struct ctl_server srv;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256];

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/dvmm-ctl-test.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/ctl.sock", f->dir);
    f->h = (struct ctl_handlers){
        .opaque = &f->mock, .status = m_status, .memstat = m_memstat,
        .mce_inject = m_mce, .hwpoison = m_hwpoison, .poisoned = m_poisoned,
        .pause = NULL, .resume = NULL, .quit = m_quit, .vcpu_state = m_vcpu_state,
    };
    assert_int_equal(ctl_server_open(&f->srv, f->path, &f->h, err, sizeof(err)), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    ctl_server_close(&f->srv);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- a test client that pumps the server while it waits ------------------ */

struct tc {
    int fd;
    size_t len;
    char buf[1 << 20];
};

static void pump(struct fixture *f, int fd)
{
    struct pollfd p[2] = {
        { .fd = ctl_server_fd(&f->srv), .events = POLLIN },
        { .fd = fd, .events = POLLIN },
    };

    poll(p, fd >= 0 ? 2 : 1, 5);
    assert_int_equal(ctl_server_dispatch(&f->srv), 0);
}

static struct tc *tc_connect(struct fixture *f)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct tc *c = malloc(sizeof(*c));

    assert_non_null(c);
    c->len = 0;
    assert_true(strlen(f->path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(c->fd >= 0);
    /* A full backlog answers EAGAIN until the server accepts. */
    while (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        assert_int_equal(errno, EAGAIN);
        pump(f, -1);
    }
    return c;
}

static void tc_close(struct tc *c)
{
    close(c->fd);
    free(c);
}

static void tc_send(struct fixture *f, struct tc *c, const char *s, size_t n)
{
    unsigned spins = 0;

    while (n) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);

        if (w > 0) {
            s += w;
            n -= (size_t)w;
            continue;
        }
        assert_true(errno == EAGAIN);
        pump(f, -1);
        assert_true(++spins < 100000);
    }
}

static void tc_sendline(struct fixture *f, struct tc *c, const char *s)
{
    tc_send(f, c, s, strlen(s));
    tc_send(f, c, "\n", 1);
}

/* Receive until a complete line; returns it (in a static buffer) or NULL
 * when the server closed the connection first. */
static char *tc_line(struct fixture *f, struct tc *c)
{
    static char line[1 << 20];
    unsigned spins = 0;

    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        ssize_t n;

        if (nl) {
            size_t l = (size_t)(nl - c->buf);

            memcpy(line, c->buf, l);
            line[l] = '\0';
            memmove(c->buf, nl + 1, c->len - l - 1);
            c->len -= l + 1;
            return line;
        }
        n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return NULL;
        assert_true(errno == EAGAIN);
        pump(f, c->fd);
        assert_true(++spins < 20000);
    }
}

static json_object *tc_call(struct fixture *f, struct tc *c, const char *req)
{
    char *line;
    json_object *o;

    tc_sendline(f, c, req);
    line = tc_line(f, c);
    assert_non_null(line);
    o = json_tokener_parse(line);
    assert_non_null(o);
    return o;
}

static bool reply_ok(json_object *o)
{
    json_object *v;

    assert_true(json_object_object_get_ex(o, "ok", &v));
    assert_true(json_object_is_type(v, json_type_boolean));
    return json_object_get_boolean(v);
}

static const char *reply_error(json_object *o)
{
    json_object *v;

    assert_false(reply_ok(o));
    assert_true(json_object_object_get_ex(o, "error", &v));
    assert_true(json_object_is_type(v, json_type_string));
    assert_true(json_object_get_string_len(v) > 0);
    return json_object_get_string(v);
}

/* ---- malformed requests ---------------------------------------------------- */

struct bad {
    const char *s;
    size_t len;            /* 0: strlen */
};

static const struct bad corpus[] = {
    { "not json", 0 },
    { "[1,2,3]", 0 },
    { "null", 0 },
    { "\"status\"", 0 },
    { "42", 0 },
    { "{}", 0 },
    { "{\"cmd\":5}", 0 },
    { "{\"cmd\":null}", 0 },
    { "{\"cmd\":[\"status\"]}", 0 },
    { "{\"cmd\":\"reboot\"}", 0 },
    { "{\"cmd\":\"STATUS\"}", 0 },
    { "{\"cmd\":\"status\",\"x\":1}", 0 },
    { "{\"cmd\":\"status\",\"vcpu\":0}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":\"0xZZ\"}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":-1}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":\"-1\"}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":\"\"}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":\"0x\"}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":\" 0x10\"}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":\"0x10 \"}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":1.5}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":true}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":{}}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":\"0x10000000000000\"}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":99999999999999999999}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":\"99999999999999999999999\"}", 0 },
    { "{\"cmd\":\"hwpoison\"}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":4096,\"kind\":\"ar\"}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096}", 0 },
    { "{\"cmd\":\"mce-inject\",\"kind\":\"ar\"}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"xx\"}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":1}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\\u0000x\"}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"vcpu\":-1}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"vcpu\":\"a\"}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"vcpu\":\"1\"}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"vcpu\":1.0}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"vcpu\":2147483648}", 0 },
    { "{\"cmd\":\"status\\u0000\"}", 0 },
    { "{\"cmd\":\"status\"}\0", 17 },
    { "{\"cmd\":\0\"status\"}", 18 },
    { "{\"cmd\":\"st\xff\"}", 0 },
    { "{\"cmd\":\"status\",\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", 0 },
    { "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 0 },
    { "", 0 },
    { "   \t ", 0 },
    { "\r", 0 },
    { "{\"cmd\":\"status\"} {\"cmd\":\"quit\"}", 0 },
    { "{\"cmd\":\"status\"}{\"cmd\":\"quit\"}", 0 },
    { "{\"cmd\":\"status\"} x", 0 },
    { "{\"cmd\":\"status\",}", 0 },
    { "{\"cmd\":\"status\"", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"mode\":\"kernel\"}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"mode\":3}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ao\",\"mode\":\"user\"}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"wait_ms\":100}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"mode\":\"user\",\"wait_ms\":0}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"mode\":\"user\",\"wait_ms\":20001}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"mode\":\"user\",\"wait_ms\":\"5\"}", 0 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":4096,\"mode\":\"user\"}", 0 },
    { "}", 0 },
};
#define NCORPUS (sizeof(corpus) / sizeof(corpus[0]))

static size_t bad_len(const struct bad *b)
{
    return b->len ? b->len : strlen(b->s);
}

static void test_corpus_direct(void **state)
{
    struct fixture *f = *state;
    unsigned i;

    assert_true(NCORPUS >= 20);
    for (i = 0; i < NCORPUS; i++) {
        json_object *r = ctl_handle_line(&f->h, corpus[i].s, bad_len(&corpus[i]));

        assert_non_null(r);
        if (reply_ok(r))
            fail_msg("corpus[%u] \"%s\" was accepted", i, corpus[i].s);
        reply_error(r);
        json_object_put(r);
    }
    assert_int_equal(f->mock.calls, 0);
}

static void test_corpus_socket(void **state)
{
    struct fixture *f = *state;
    struct tc *c = tc_connect(f);
    json_object *r;
    unsigned i;

    for (i = 0; i < NCORPUS; i++) {
        char *line;

        tc_send(f, c, corpus[i].s, bad_len(&corpus[i]));
        tc_send(f, c, "\n", 1);
        line = tc_line(f, c);
        if (!line)
            fail_msg("corpus[%u] \"%s\" closed the connection", i, corpus[i].s);
        r = json_tokener_parse(line);
        assert_non_null(r);
        reply_error(r);
        json_object_put(r);
    }
    assert_int_equal(f->mock.calls, 0);
    /* The same connection still serves good requests. */
    r = tc_call(f, c, "{\"cmd\":\"status\"}");
    assert_true(reply_ok(r));
    json_object_put(r);
    assert_int_equal(f->mock.calls, 1);
    tc_close(c);
}

/* ---- good requests and handler outcomes ------------------------------------ */

static void test_status(void **state)
{
    struct fixture *f = *state;
    struct tc *c = tc_connect(f);
    json_object *r, *v;

    r = tc_call(f, c, "{\"cmd\": \"status\"}");
    assert_true(reply_ok(r));
    assert_true(json_object_object_get_ex(r, "state", &v));
    assert_string_equal(json_object_get_string(v), "running");
    json_object_put(r);
    /* CRLF and surrounding blanks are fine. */
    r = tc_call(f, c, "  {\"cmd\":\"status\"}  \r");
    assert_true(reply_ok(r));
    json_object_put(r);
    r = tc_call(f, c, "{\"cmd\":\"poisoned\"}");
    assert_true(reply_ok(r));
    assert_true(json_object_object_get_ex(r, "pages", &v));
    assert_int_equal(json_object_array_length(v), 1);
    json_object_put(r);
    tc_close(c);
}

static void test_mce_inject_args(void **state)
{
    struct fixture *f = *state;
    struct tc *c = tc_connect(f);
    json_object *r;

    r = tc_call(f, c, "{\"cmd\":\"mce-inject\",\"gpa\":\"0x1000\",\"kind\":\"ar\",\"vcpu\":1}");
    assert_true(reply_ok(r));
    json_object_put(r);
    assert_true(f->mock.gpa == 0x1000);
    assert_int_equal(f->mock.kind, MCE_AR);
    assert_int_equal(f->mock.vcpu, 1);

    r = tc_call(f, c, "{\"cmd\":\"mce-inject\",\"kind\":\"ao\",\"gpa\":8192}");
    assert_true(reply_ok(r));
    json_object_put(r);
    assert_true(f->mock.gpa == 8192);
    assert_int_equal(f->mock.kind, MCE_AO);
    assert_int_equal(f->mock.vcpu, -1);

    r = tc_call(f, c, "{\"cmd\":\"mce-inject\",\"kind\":\"AR\",\"gpa\":\"12288\",\"vcpu\":0}");
    assert_true(reply_ok(r));
    json_object_put(r);
    assert_true(f->mock.gpa == 12288);
    assert_int_equal(f->mock.vcpu, 0);

    r = tc_call(f, c, "{\"cmd\":\"hwpoison\",\"gpa\":\"0xFFFFFFFFFFFFF\"}");
    assert_true(reply_ok(r));
    json_object_put(r);
    assert_true(f->mock.gpa == 0xFFFFFFFFFFFFFULL);
    assert_int_equal(f->mock.mce_calls, 3);
    assert_int_equal(f->mock.poison_calls, 1);
    tc_close(c);
}

/* vcpu-state: vcpu is required, a non-negative integer, and reaches the
 * handler as given; bad requests never call it. */
static void test_vcpu_state_args(void **state)
{
    static const char *const bad[] = {
        "{\"cmd\":\"vcpu-state\"}",
        "{\"cmd\":\"vcpu-state\",\"vcpu\":-1}",
        "{\"cmd\":\"vcpu-state\",\"vcpu\":\"0\"}",
        "{\"cmd\":\"vcpu-state\",\"vcpu\":1.5}",
        "{\"cmd\":\"vcpu-state\",\"vcpu\":4294967296}",
        "{\"cmd\":\"vcpu-state\",\"vcpu\":0,\"gpa\":0}",
    };
    struct fixture *f = *state;
    struct tc *c = tc_connect(f);
    json_object *r, *v;

    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = tc_call(f, c, bad[i]);
        assert_non_null(strstr(reply_error(r), "vcpu-state"));
        json_object_put(r);
    }
    assert_int_equal(f->mock.calls, 0);

    r = tc_call(f, c, "{\"cmd\":\"vcpu-state\",\"vcpu\":2}");
    assert_true(reply_ok(r));
    assert_true(json_object_object_get_ex(r, "rip", &v));
    assert_true(json_object_object_get_ex(r, "events", &v));
    json_object_put(r);
    assert_int_equal(f->mock.vcpu, 2);

    r = tc_call(f, c, "{\"cmd\":\"vcpu-state\",\"vcpu\":7}");
    assert_string_equal(reply_error(r), "vcpu-state: this VM has no vCPU 7");
    assert_false(json_object_object_get_ex(r, "rip", &v));
    json_object_put(r);
    assert_int_equal(f->mock.state_calls, 2);

    /* Without the handler: not supported, as for any command. */
    f->h.vcpu_state = NULL;
    r = ctl_handle_line(&f->h, "{\"cmd\":\"vcpu-state\",\"vcpu\":0}",
                        strlen("{\"cmd\":\"vcpu-state\",\"vcpu\":0}"));
    assert_non_null(strstr(reply_error(r), "not supported"));
    json_object_put(r);
    tc_close(c);
}

/* mode=user: the reply comes when the handler's owner resolves the token;
 * the client's next request waits behind it (replies in request order),
 * other clients do not; a client gone meanwhile is dropped. */
static void test_reply_later(void **state)
{
    struct fixture *f = *state;
    struct tc *c = tc_connect(f), *d = tc_connect(f);
    json_object *r, *v, *fields;
    uint64_t tok;
    char *line;

    tc_sendline(f, c, "{\"cmd\":\"mce-inject\",\"gpa\":\"0x2000\",\"kind\":\"ar\","
                      "\"vcpu\":1,\"mode\":\"user\",\"wait_ms\":250}");
    tc_sendline(f, c, "{\"cmd\":\"status\"}");
    for (unsigned i = 0; i < 50 && !f->mock.token; i++)
        pump(f, -1);
    assert_true(f->mock.token != 0);
    assert_true(f->mock.user_mode);
    assert_int_equal(f->mock.wait_ms, 250);
    assert_int_equal(f->mock.vcpu, 1);
    tok = f->mock.token;
    /* Another client is served meanwhile; c's status is not. */
    r = tc_call(f, d, "{\"cmd\":\"status\"}");
    assert_true(reply_ok(r));
    json_object_put(r);
    for (unsigned i = 0; i < 20; i++)
        pump(f, c->fd);
    assert_int_equal(recv(c->fd, c->buf, sizeof(c->buf), MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(f->mock.calls, 2);     /* mce-inject and d's status */

    assert_int_equal(ctl_server_resolve(&f->srv, tok + 1000, 0, NULL), -ENOENT);
    fields = json_object_new_object();
    json_object_object_add(fields, "landed", json_object_new_boolean(true));
    assert_int_equal(ctl_server_resolve(&f->srv, tok, 0, fields), 0);
    line = tc_line(f, c);
    assert_non_null(line);
    r = json_tokener_parse(line);
    assert_true(reply_ok(r));
    assert_true(json_object_object_get_ex(r, "mode", &v));     /* the handler's */
    assert_string_equal(json_object_get_string(v), "user");
    assert_true(json_object_object_get_ex(r, "landed", &v));   /* the resolver's */
    assert_true(json_object_get_boolean(v));
    json_object_put(r);
    line = tc_line(f, c);                                       /* then status */
    assert_non_null(strstr(line, "\"state\":\"running\""));
    assert_int_equal(f->mock.calls, 3);

    /* Failure: the resolver's "error" is the message, nothing else leaks. */
    f->mock.token = 0;
    tc_sendline(f, c, "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"mode\":\"user\"}");
    for (unsigned i = 0; i < 50 && !f->mock.token; i++)
        pump(f, -1);
    assert_int_equal(f->mock.wait_ms, CTL_USER_WAIT_DEFAULT_MS);
    fields = json_object_new_object();
    json_object_object_add(fields, "error", json_object_new_string("mode=user: gave up"));
    assert_int_equal(ctl_server_resolve(&f->srv, f->mock.token, -ETIMEDOUT, fields), 0);
    r = json_tokener_parse(tc_line(f, c));
    assert_string_equal(reply_error(r), "mode=user: gave up");
    assert_false(json_object_object_get_ex(r, "mode", &v));
    json_object_put(r);

    /* Gone before the reply: dropped, and its token no longer resolves. */
    f->mock.token = 0;
    tc_sendline(f, c, "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"mode\":\"user\"}");
    for (unsigned i = 0; i < 50 && !f->mock.token; i++)
        pump(f, -1);
    tok = f->mock.token;
    tc_close(c);
    for (unsigned i = 0; i < 1000 && ctl_server_nclients(&f->srv) > 1; i++)
        pump(f, -1);
    assert_int_equal(ctl_server_nclients(&f->srv), 1);
    assert_int_equal(ctl_server_resolve(&f->srv, tok, 0, NULL), -ENOENT);
    tc_close(d);

    /* Outside a server (no token) a handler may not defer. */
    {
        static const char req[] = "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\","
                                  "\"mode\":\"user\"}";

        r = ctl_handle_line(&f->h, req, sizeof(req) - 1);
    }
    assert_true(reply_ok(r));    /* the mock answers at once without a token */
    json_object_put(r);
}

static void test_handler_errors(void **state)
{
    struct fixture *f = *state;
    struct tc *c = tc_connect(f);
    json_object *r, *v;

    r = tc_call(f, c, "{\"cmd\":\"hwpoison\",\"gpa\":\"0xdead000\"}");
    assert_string_equal(reply_error(r), "hwpoison: gpa 0xdead000 is not guest RAM");
    json_object_put(r);

    r = tc_call(f, c, "{\"cmd\":\"memstat\"}");
    assert_string_equal(reply_error(r), "memstat: Input/output error");
    /* Fields the failing handler added are not leaked. */
    assert_false(json_object_object_get_ex(r, "partial", &v));
    json_object_put(r);

    r = tc_call(f, c, "{\"cmd\":\"pause\"}");
    assert_non_null(strstr(reply_error(r), "not supported"));
    json_object_put(r);

    r = tc_call(f, c, "{\"cmd\":\"quit\"}");
    assert_true(reply_ok(r));
    json_object_put(r);
    assert_int_equal(f->mock.quit_calls, 1);
    tc_close(c);
}

/* ---- line limits ----------------------------------------------------------- */

static void test_line_max_ok(void **state)
{
    struct fixture *f = *state;
    struct tc *c = tc_connect(f);
    char *line = malloc(CTL_LINE_MAX + 1);
    static const char req[] = "{\"cmd\":\"status\"}";
    json_object *r;

    /* Exactly CTL_LINE_MAX bytes before the newline is still a request. */
    memset(line, ' ', CTL_LINE_MAX);
    memcpy(line, req, sizeof(req) - 1);
    line[CTL_LINE_MAX] = '\n';
    tc_send(f, c, line, CTL_LINE_MAX + 1);
    r = json_tokener_parse(tc_line(f, c));
    assert_non_null(r);
    assert_true(reply_ok(r));
    json_object_put(r);
    free(line);
    tc_close(c);
}

static void test_line_too_long(void **state)
{
    struct fixture *f = *state;
    struct tc *c = tc_connect(f);
    size_t n = CTL_LINE_MAX + 1;
    char *line = malloc(n + 1);
    json_object *r;

    memset(line, 'x', n);
    line[n] = '\n';
    tc_send(f, c, line, n + 1);
    r = json_tokener_parse(tc_line(f, c));
    assert_non_null(r);
    assert_non_null(strstr(reply_error(r), "longer than"));
    json_object_put(r);
    /* ...and then the server hangs up. */
    assert_null(tc_line(f, c));
    assert_int_equal(ctl_server_nclients(&f->srv), 0);
    assert_int_equal(f->mock.calls, 0);
    free(line);
    tc_close(c);
}

/* ---- many clients, disconnects, pipelining ------------------------------------ */

static void test_many_clients(void **state)
{
    struct fixture *f = *state;
    struct tc *c[CTL_MAX_CLIENTS + 1];
    json_object *r;
    unsigned i;

    for (i = 0; i < CTL_MAX_CLIENTS; i++) {
        c[i] = tc_connect(f);
        tc_sendline(f, c[i], "{\"cmd\":\"status\"}");
    }
    for (i = 0; i < CTL_MAX_CLIENTS; i++) {
        r = json_tokener_parse(tc_line(f, c[i]));
        assert_non_null(r);
        assert_true(reply_ok(r));
        json_object_put(r);
    }
    assert_int_equal(ctl_server_nclients(&f->srv), CTL_MAX_CLIENTS);

    /* One over the cap is told why and closed. */
    c[CTL_MAX_CLIENTS] = tc_connect(f);
    r = json_tokener_parse(tc_line(f, c[CTL_MAX_CLIENTS]));
    assert_non_null(r);
    assert_non_null(strstr(reply_error(r), "too many"));
    json_object_put(r);
    assert_null(tc_line(f, c[CTL_MAX_CLIENTS]));
    tc_close(c[CTL_MAX_CLIENTS]);

    /* A freed slot is reusable. */
    tc_close(c[7]);
    while (ctl_server_nclients(&f->srv) == CTL_MAX_CLIENTS)
        pump(f, -1);
    c[7] = tc_connect(f);
    r = tc_call(f, c[7], "{\"cmd\":\"status\"}");
    assert_true(reply_ok(r));
    json_object_put(r);
    for (i = 0; i < CTL_MAX_CLIENTS; i++)
        tc_close(c[i]);
    while (ctl_server_nclients(&f->srv))
        pump(f, -1);
}

static void test_disconnect_mid_line(void **state)
{
    struct fixture *f = *state;
    struct tc *c = tc_connect(f), *d;
    json_object *r;
    unsigned spins = 0;

    tc_send(f, c, "{\"cmd\":\"sta", 11);
    pump(f, -1);
    assert_int_equal(ctl_server_nclients(&f->srv), 1);
    tc_close(c);
    while (ctl_server_nclients(&f->srv)) {
        pump(f, -1);
        assert_true(++spins < 10000);
    }
    assert_int_equal(f->mock.calls, 0);

    /* Half-close after a whole request: the answer still arrives. */
    d = tc_connect(f);
    tc_sendline(f, d, "{\"cmd\":\"status\"}");
    assert_int_equal(shutdown(d->fd, SHUT_WR), 0);
    r = json_tokener_parse(tc_line(f, d));
    assert_non_null(r);
    assert_true(reply_ok(r));
    json_object_put(r);
    assert_null(tc_line(f, d));
    tc_close(d);

    /* Gone without reading its reply: no SIGPIPE, no leak. */
    d = tc_connect(f);
    tc_sendline(f, d, "{\"cmd\":\"status\"}");
    tc_close(d);
    spins = 0;
    while (ctl_server_nclients(&f->srv)) {
        pump(f, -1);
        assert_true(++spins < 10000);
    }
}

static void test_pipelined_backpressure(void **state)
{
    struct fixture *f = *state;
    struct tc *c = tc_connect(f);
    static const char req[] = "{\"cmd\":\"status\"}\n";
    enum { N = 100000 };
    const size_t total = N * (sizeof(req) - 1);
    char *all = malloc(total);
    size_t off = 0;
    unsigned i, got = 0, spins = 0;

    for (i = 0; i < N; i++)
        memcpy(all + i * (sizeof(req) - 1), req, sizeof(req) - 1);
    /* Phase 1: push requests without reading a single reply.  Far more
     * replies than the socket buffers hold, so the server has to stop
     * answering (and reading) rather than buffer without bound. */
    for (i = 0; i < 3 && off < total;) {
        ssize_t w = send(c->fd, all + off, total - off, MSG_NOSIGNAL);
        unsigned before = f->mock.calls;

        if (w > 0)
            off += (size_t)w;
        pump(f, -1);
        i = w <= 0 && f->mock.calls == before ? i + 1 : 0;   /* stalled? */
    }
    assert_true(off < total);   /* the client really was held back */
    assert_true(f->mock.calls < N);

    /* Phase 2: read while sending the rest; every reply arrives, in order. */
    while (got < N) {
        char *nl;
        ssize_t n;

        if (off < total) {
            n = send(c->fd, all + off, total - off, MSG_NOSIGNAL);
            if (n > 0)
                off += (size_t)n;
        }
        n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (n > 0)
            c->len += (size_t)n;
        else
            assert_true(n < 0 && errno == EAGAIN);
        while ((nl = memchr(c->buf, '\n', c->len))) {
            size_t l = (size_t)(nl - c->buf) + 1;

            *nl = '\0';
            assert_string_equal(c->buf, "{\"ok\":true,\"state\":\"running\",\"vcpus\":2}");
            memmove(c->buf, nl + 1, c->len - l);
            c->len -= l;
            got++;
        }
        pump(f, -1);
        assert_true(++spins < 1000000);
    }
    assert_int_equal(f->mock.calls, N);
    free(all);
    tc_close(c);
}

/* ---- socket path rules ------------------------------------------------------- */

static void test_socket_mode_and_busy(void **state)
{
    struct fixture *f = *state;
    struct ctl_server other;
    struct stat st;
    char err[256] = "";

    assert_int_equal(stat(f->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(ctl_server_open(&other, f->path, &f->h, err, sizeof(err)),
                     -EADDRINUSE);
    assert_non_null(strstr(err, f->path));
    /* The refused server left the live socket alone. */
    assert_int_equal(stat(f->path, &st), 0);
    ctl_server_close(&f->srv);
    assert_int_equal(stat(f->path, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(ctl_server_open(&f->srv, f->path, &f->h, err, sizeof(err)), 0);
}

static void test_socket_stale_and_parent(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct ctl_server s2;
    char path[192], dir[160], err[256];
    struct stat st;
    int fd;

    /* A stale socket: bound, never listening, owner gone. */
    snprintf(dir, sizeof(dir), "%s/run", f->dir);
    snprintf(path, sizeof(path), "%s/dvmm.sock", dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    assert_int_equal(ctl_server_open(&s2, path, &f->h, err, sizeof(err)), 0);
    ctl_server_close(&s2);

    /* A regular file is never replaced. */
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ctl_server_open(&s2, path, &f->h, err, sizeof(err)), -EEXIST);
    assert_non_null(strstr(err, "not a socket"));
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    unlink(path);
    rmdir(dir);

    /* A missing parent is created 0700. */
    assert_int_equal(ctl_server_open(&s2, path, &f->h, err, sizeof(err)), 0);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    ctl_server_close(&s2);
    rmdir(dir);

    /* Too long for sun_path. */
    memset(path, 'a', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    assert_int_equal(ctl_server_open(&s2, path, &f->h, err, sizeof(err)), -ENAMETOOLONG);
}

static void test_parse_gpa(void **state)
{
    uint64_t v;

    (void)state;
    assert_int_equal(ctl_parse_gpa("0x1000", &v), 0);
    assert_true(v == 0x1000);
    assert_int_equal(ctl_parse_gpa("0XaBc", &v), 0);
    assert_true(v == 0xabc);
    assert_int_equal(ctl_parse_gpa("4096", &v), 0);
    assert_true(v == 4096);
    assert_int_equal(ctl_parse_gpa("0", &v), 0);
    assert_true(v == 0);
    assert_int_equal(ctl_parse_gpa("0xFFFFFFFFFFFFF", &v), 0);
    assert_int_equal(ctl_parse_gpa("0x10000000000000", &v), -ERANGE);
    assert_int_equal(ctl_parse_gpa("0xffffffffffffffffff", &v), -ERANGE);
    assert_int_equal(ctl_parse_gpa("", &v), -EINVAL);
    assert_int_equal(ctl_parse_gpa("0x", &v), -EINVAL);
    assert_int_equal(ctl_parse_gpa("-1", &v), -EINVAL);
    assert_int_equal(ctl_parse_gpa("+1", &v), -EINVAL);
    assert_int_equal(ctl_parse_gpa(" 1", &v), -EINVAL);
    assert_int_equal(ctl_parse_gpa("0x-1", &v), -EINVAL);
    assert_int_equal(ctl_parse_gpa("12k", &v), -EINVAL);
}

/* ---- the dvmm ctl client ------------------------------------------------------ */

static void test_client_request(void **state)
{
    char *args[] = { "gpa=4096", "kind=ar", "vcpu=1", "note=-7x" };
    char *dup[] = { "vcpu=1", "vcpu=2" };
    char *noeq[] = { "vcpu" };
    char *cmdkey[] = { "cmd=quit" };
    char *empty[] = { "=1" };
    char err[256];
    json_object *r, *v;

    (void)state;
    r = ctl_client_request("mce-inject", 4, args, err, sizeof(err));
    assert_non_null(r);
    assert_true(json_object_object_get_ex(r, "gpa", &v));
    assert_true(json_object_is_type(v, json_type_string));
    assert_string_equal(json_object_get_string(v), "4096");
    assert_true(json_object_object_get_ex(r, "vcpu", &v));
    assert_true(json_object_is_type(v, json_type_int));
    assert_int_equal(json_object_get_int(v), 1);
    assert_true(json_object_object_get_ex(r, "kind", &v));
    assert_true(json_object_is_type(v, json_type_string));
    assert_true(json_object_object_get_ex(r, "note", &v));
    assert_true(json_object_is_type(v, json_type_string));
    assert_true(json_object_object_get_ex(r, "cmd", &v));
    assert_string_equal(json_object_get_string(v), "mce-inject");
    json_object_put(r);

    assert_null(ctl_client_request("status", 2, dup, err, sizeof(err)));
    assert_null(ctl_client_request("status", 1, noeq, err, sizeof(err)));
    assert_null(ctl_client_request("status", 1, cmdkey, err, sizeof(err)));
    assert_null(ctl_client_request("status", 1, empty, err, sizeof(err)));
}

struct server_thread {
    struct fixture *f;
    atomic_bool stop;
};

static void *serve(void *arg)
{
    struct server_thread *t = arg;

    while (!atomic_load(&t->stop)) {
        struct pollfd p = { .fd = ctl_server_fd(&t->f->srv), .events = POLLIN };

        poll(&p, 1, 10);
        ctl_server_dispatch(&t->f->srv);
    }
    return NULL;
}

/* Run ctl_client_main with stdout/stderr out of the TAP stream. */
static int run_client(int argc, char **argv)
{
    int save_out = dup(1), save_err = dup(2), null = open("/dev/null", O_WRONLY), ret;

    fflush(stdout);
    fflush(stderr);
    dup2(null, 1);
    dup2(null, 2);
    ret = ctl_client_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(save_out, 1);
    dup2(save_err, 2);
    close(save_out);
    close(save_err);
    close(null);
    return ret;
}

static void test_client_main(void **state)
{
    struct fixture *f = *state;
    struct server_thread t = { .f = f };
    char missing[160];
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, serve, &t), 0);
    {
        char *ok[] = { "ctl", f->path, "status" };
        char *inj[] = { "ctl", f->path, "mce-inject", "gpa=0x2000", "kind=ao", "vcpu=3" };
        char *bad[] = { "ctl", f->path, "hwpoison", "gpa=0xdead000" };
        char *unknown[] = { "ctl", f->path, "frobnicate" };
        char *help[] = { "ctl", "--help" };
        char *usage[] = { "ctl", f->path };
        char *badarg[] = { "ctl", f->path, "status", "oops" };
        char *gone[] = { "ctl", missing, "status" };

        snprintf(missing, sizeof(missing), "%s/nobody.sock", f->dir);
        assert_int_equal(run_client(3, ok), 0);
        assert_int_equal(run_client(6, inj), 0);
        assert_int_equal(run_client(4, bad), 1);
        assert_int_equal(run_client(3, unknown), 1);
        assert_int_equal(run_client(2, help), 0);
        assert_int_equal(run_client(2, usage), 2);
        assert_int_equal(run_client(4, badarg), 2);
        assert_int_equal(run_client(3, gone), 2);
    }
    atomic_store(&t.stop, true);
    pthread_join(th, NULL);
    assert_true(f->mock.gpa == 0xdead000);
    assert_int_equal(f->mock.mce_calls, 1);
    assert_int_equal(f->mock.kind, MCE_AO);
    assert_int_equal(f->mock.vcpu, 3);
}

static void test_client_call_error_names_socket(void **state)
{
    struct fixture *f = *state;
    char missing[160], err[512];
    json_object *req = json_object_new_object();
    int e = 0;

    snprintf(missing, sizeof(missing), "%s/nobody.sock", f->dir);
    assert_null(ctl_client_call(missing, req, &e, err, sizeof(err)));
    assert_int_equal(e, -ENOENT);
    assert_non_null(strstr(err, missing));
    assert_non_null(strstr(err, strerror(ENOENT)));
    json_object_put(req);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_corpus_direct),
        T(test_corpus_socket),
        T(test_status),
        T(test_mce_inject_args),
        T(test_vcpu_state_args),
        T(test_reply_later),
        T(test_handler_errors),
        T(test_line_max_ok),
        T(test_line_too_long),
        T(test_many_clients),
        T(test_disconnect_mid_line),
        T(test_pipelined_backpressure),
        T(test_socket_mode_and_busy),
        T(test_socket_stale_and_parent),
        cmocka_unit_test(test_parse_gpa),
        cmocka_unit_test(test_client_request),
        T(test_client_main),
        T(test_client_call_error_names_socket),
    };

    log_set_level(LOG_ERR);    /* the expected warnings would clutter TAP */
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
