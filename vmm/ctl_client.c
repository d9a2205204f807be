#include "vmm/ctl_client.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/log.h"

/* Replies are small; this only stops a broken peer from eating memory. */
#define CTL_CLIENT_REPLY_MAX (16u << 20)

static void ctl_client_usage(FILE *f)
{
    fputs("usage: dvmm ctl SOCKET COMMAND [key=value ...]\n"
          "\n"
          "Send one command to a running dvmm and print its JSON reply.\n"
          "\n"
          "commands:\n"
          "  status                          VM state, vCPUs, uptime\n"
          "  memstat                         guest memory and host overhead\n"
          "  mce-inject gpa=ADDR kind=ar|ao [vcpu=N] [mode=user [wait_ms=MS]]\n"
          "                                  inject a machine check; with mode=user\n"
          "                                  (AR only) wait until that vCPU runs guest\n"
          "                                  user code (at most MS, default 5000) and\n"
          "                                  reply when it landed or why it gave up\n"
          "  hwpoison gpa=ADDR               poison the host page behind ADDR\n"
          "  poisoned                        list poisoned guest pages\n"
          "  pause | resume | quit\n"
          "  link net.N up|down              the NIC's link (also dev=net.N state=up|down);\n"
          "                                  the guest gets a config interrupt\n"
          "  vcpu-state vcpu=N               pause, read vCPU N (rip, cs, rflags, cr4,\n"
          "                                  pending events, MCG_STATUS, bank 9), resume\n"
          "\n"
          "ADDR is 0x-prefixed hex or decimal.  Exit status: 0 ok, 1 the\n"
          "command failed, 2 usage error or no connection.\n", f);
}

static bool ctl_client_int(const char *s, long long *out)
{
    char *end;

    if (!*s)
        return false;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return !*end && errno != ERANGE && s[0] != ' ' && s[0] != '+' &&
           s[0] != '\t';
}

json_object *ctl_client_request(const char *cmd, int nargs, char *const *args,
                                char *err, size_t errlen)
{
    json_object *req = json_object_new_object(), *v;
    long long n;
    int i;

    if (!req) {
        log_fail(err, errlen, -ENOMEM, "out of memory");
        return NULL;
    }
    json_object_object_add(req, "cmd", json_object_new_string(cmd));
    /* `link net.0 up` reads better than dev=net.0 state=up; both work. */
    if (!strcmp(cmd, "link") && nargs == 2 && !strchr(args[0], '=') &&
        !strchr(args[1], '=')) {
        json_object_object_add(req, "dev", json_object_new_string(args[0]));
        json_object_object_add(req, "state", json_object_new_string(args[1]));
        return req;
    }
    for (i = 0; i < nargs; i++) {
        const char *eq = strchr(args[i], '=');
        char key[64];
        size_t klen;

        if (!eq || eq == args[i]) {
            log_fail(err, errlen, -EINVAL, "argument \"%s\" is not key=value", args[i]);
            goto fail;
        }
        klen = (size_t)(eq - args[i]);
        if (klen >= sizeof(key)) {
            log_fail(err, errlen, -EINVAL, "key in \"%.40s...\" is too long", args[i]);
            goto fail;
        }
        memcpy(key, args[i], klen);
        key[klen] = '\0';
        if (!strcmp(key, "cmd") || json_object_object_get_ex(req, key, NULL)) {
            log_fail(err, errlen, -EINVAL, "key \"%s\" given twice", key);
            goto fail;
        }
        if (strcmp(key, "gpa") && ctl_client_int(eq + 1, &n))
            v = json_object_new_int64(n);
        else
            v = json_object_new_string(eq + 1);
        json_object_object_add(req, key, v);
    }
    return req;
fail:
    json_object_put(req);
    return NULL;
}

static int ctl_client_send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read up to the first '\n'; the NUL-terminated line in *linep. */
static int ctl_client_read_line(int fd, char **linep)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap), *p;

    if (!buf)
        return -ENOMEM;
    for (;;) {
        ssize_t n;

        if (len + 1 == cap) {
            if (cap >= CTL_CLIENT_REPLY_MAX) {
                free(buf);
                return -EMSGSIZE;
            }
            p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                return -ENOMEM;
            }
            buf = p;
            cap *= 2;
        }
        n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int ret = errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;

            free(buf);
            return ret;
        }
        if (n == 0) {
            free(buf);
            return -ECONNRESET;   /* closed before a whole reply */
        }
        p = memchr(buf + len, '\n', (size_t)n);
        len += (size_t)n;
        if (p) {
            *p = '\0';
            *linep = buf;
            return 0;
        }
    }
}

json_object *ctl_client_call(const char *path, json_object *req, int *errp,
                             char *err, size_t errlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = CTL_CLIENT_TIMEOUT_S };
    json_object *reply = NULL;
    const char *s;
    char *line = NULL;
    int fd, ret;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        *errp = log_fail(err, errlen, -ENAMETOOLONG, "cannot connect to %s: %s", path,
                         strerror(ENAMETOOLONG));
        return NULL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *errp = -errno;
        log_fail(err, errlen, *errp, "socket: %s", strerror(-*errp));
        return NULL;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
        *errp = -errno;
        log_fail(err, errlen, *errp, "%s: setsockopt: %s", path, strerror(-*errp));
        goto out;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        *errp = -errno;
        log_fail(err, errlen, *errp, "cannot connect to %s: %s", path, strerror(-*errp));
        goto out;
    }
    s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    ret = s ? ctl_client_send_all(fd, s, strlen(s)) : -ENOMEM;
    if (!ret)
        ret = ctl_client_send_all(fd, "\n", 1);
    /* A server that refuses us (a peer it does not accept, too many
     * clients) writes its reason and closes, maybe before our request went
     * out: its line is still there to read. */
    if (!ret || ret == -EPIPE || ret == -ECONNRESET)
        ret = ctl_client_read_line(fd, &line);
    if (ret) {
        *errp = log_fail(err, errlen, ret, "%s: no reply: %s", path, strerror(-ret));
        goto out;
    }
    reply = json_tokener_parse(line);
    if (!reply || !json_object_is_type(reply, json_type_object)) {
        json_object_put(reply);
        reply = NULL;
        *errp = log_fail(err, errlen, -EPROTO, "%s: reply is not a JSON object: %.80s", path,
                         line);
    }
out:
    free(line);
    close(fd);
    return reply;
}

int ctl_client_main(int argc, char **argv)
{
    json_object *req, *reply, *ok;
    char err[512];
    int i, e, status;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            ctl_client_usage(stdout);
            return 0;
        }
    }
    if (argc < 3) {
        ctl_client_usage(stderr);
        return 2;
    }
    req = ctl_client_request(argv[2], argc - 3, argv + 3, err, sizeof(err));
    if (!req) {
        fprintf(stderr, "dvmm ctl: %s\n", err);
        return 2;
    }
    reply = ctl_client_call(argv[1], req, &e, err, sizeof(err));
    json_object_put(req);
    if (!reply) {
        fprintf(stderr, "dvmm ctl: %s\n", err);
        return 2;
    }
    printf("%s\n", json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PRETTY |
                                                  JSON_C_TO_STRING_SPACED));
    status = json_object_object_get_ex(reply, "ok", &ok) &&
             json_object_is_type(ok, json_type_boolean) &&
             json_object_get_boolean(ok) ? 0 : 1;
    json_object_put(reply);
    if (fflush(stdout) == EOF)
        return 2;
    return status;
}
