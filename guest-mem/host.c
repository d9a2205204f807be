/* Host access for guest-mem: statfs and the /sys, /proc reads, all behind
 * struct gm_host so unit tests can substitute a fake tree. */
#include "guest-mem/host.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int host_statfs(const struct gm_host *h, const char *path, struct statfs *st)
{
    (void)h;
    return statfs(path, st) ? -errno : 0;
}

const struct gm_host *gm_host_default(void)
{
    static const struct gm_host real = { .statfs = host_statfs, .sysroot = "" };

    return &real;
}

int gm_host_path(const struct gm_host *h, const char *abs, char *out, size_t len)
{
    int n = snprintf(out, len, "%s%s", h->sysroot ? h->sysroot : "", abs);

    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Read fd from offset `got` until EOF or buf[len-1]; the new total or
 * -errno.  /proc files come in several reads, so loop. */
static long host_read_fd(int fd, char *buf, size_t got, size_t len)
{
    while (got + 1 < len) {
        ssize_t n = read(fd, buf + got, len - 1 - got);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (long)got;
}

static int host_open(const struct gm_host *h, const char *abs)
{
    char path[PATH_MAX];
    int fd, ret;

    ret = gm_host_path(h, abs, path, sizeof(path));
    if (ret)
        return ret;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

long gm_host_read(const struct gm_host *h, const char *abs, char *buf, size_t len)
{
    int fd = host_open(h, abs);
    long got;

    if (fd < 0)
        return fd;
    got = host_read_fd(fd, buf, 0, len);
    close(fd);
    if (got < 0)
        return got;
    buf[got] = '\0';
    return got;
}

char *gm_host_slurp(const struct gm_host *h, const char *abs)
{
    int fd = host_open(h, abs);
    size_t cap = 4096;
    char *buf = NULL;
    long got = 0;

    if (fd < 0) {
        errno = -fd;
        return NULL;
    }
    /* /proc files report size 0: grow until a read stops short of full. */
    for (;;) {
        char *nb = realloc(buf, cap);

        if (!nb) {
            got = -ENOMEM;
            break;
        }
        buf = nb;
        got = host_read_fd(fd, buf, (size_t)got, cap);
        if (got < 0 || (size_t)got + 1 < cap)
            break;
        cap *= 2;
    }
    close(fd);
    if (got < 0) {
        free(buf);
        errno = (int)-got;
        return NULL;
    }
    buf[got] = '\0';
    return buf;
}

int gm_host_read_u64(const struct gm_host *h, const char *abs, uint64_t *out)
{
    char buf[64], *end;
    long n = gm_host_read(h, abs, buf, sizeof(buf));
    unsigned long long v;

    if (n < 0)
        return (int)n;
    errno = 0;
    v = strtoull(buf, &end, 10);
    if (end == buf || errno || buf[0] == '-')
        return -EINVAL;
    while (*end == '\n' || *end == ' ')
        end++;
    if (*end)
        return -EINVAL;
    *out = v;
    return 0;
}

int gm_parse_kb(const char *text, const char *key, int64_t *kb)
{
    size_t klen = strlen(key);

    for (const char *line = text; line && *line; ) {
        if (!strncmp(line, key, klen) && line[klen] == ':') {
            char *end;
            long long v;

            errno = 0;
            v = strtoll(line + klen + 1, &end, 10);
            if (end == line + klen + 1 || errno || v < 0)
                return -EINVAL;
            *kb = v;
            return 0;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -ENOENT;
}

const char *gm_fmt_size(uint64_t v, char *buf, size_t len)
{
    static const char units[] = "TGMK";

    for (int i = 0; i < 4; i++) {
        uint64_t u = 1ULL << (10 * (4 - i));

        if (v && v % u == 0) {
            snprintf(buf, len, "%" PRIu64 "%c", v / u, units[i]);
            return buf;
        }
    }
    snprintf(buf, len, "%" PRIu64, v);
    return buf;
}
