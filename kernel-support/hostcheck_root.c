/* hostcheck's reads of the host tree: see hostcheck_root.h. */
#include "kernel-support/hostcheck_root.h"

#include <ctype.h>
#include <errno.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/stat.h>

#include "guest-mem/host.h"
#include "vmm/log.h"

void hc_root_path(const struct hc_ctx *x, const char *abs, char *buf, size_t len)
{
    if (gm_host_path(&x->host, abs, buf, len))
        buf[0] = '\0';            /* too long: no such file */
}

char *hc_root_slurp(const struct hc_ctx *x, const char *abs)
{
    return gm_host_slurp(&x->host, abs);
}

/* First line of a small file, trailing whitespace trimmed.  -errno. */
int hc_root_read_line(const struct hc_ctx *x, const char *abs, char *out, size_t len)
{
    char buf[512];
    long r = gm_host_read(&x->host, abs, buf, sizeof(buf));
    if (r < 0)
        return (int)r;
    size_t n = strcspn(buf, "\n");
    while (n && isspace((unsigned char)buf[n - 1]))
        n--;
    snprintf(out, len, "%.*s", (int)n, buf);
    return 0;
}

/* A number in C syntax (sysfs prints firmware-map addresses in hex). */
int hc_root_read_u64(const struct hc_ctx *x, const char *abs, uint64_t *v)
{
    char line[128], *end;
    int r = hc_root_read_line(x, abs, line, sizeof(line));
    if (r)
        return r;
    errno = 0;
    unsigned long long u = strtoull(line, &end, 0);
    if (errno || end == line)
        return -EINVAL;
    *v = u;
    return 0;
}

bool hc_root_exists(const struct hc_ctx *x, const char *abs)
{
    char p[PATH_MAX + 64];
    struct stat st;
    hc_root_path(x, abs, p, sizeof(p));
    return stat(p, &st) == 0;
}

/* Kernel memparse syntax (dmem=, memmap=, pagesize=): a number (0x hex, 0
 * octal, as strtoull base 0) with an optional K/M/G/T suffix. */
int hc_root_memparse(const char *s, uint64_t *out, const char **end)
{
    char *e;
    errno = 0;
    unsigned long long v = strtoull(s, &e, 0);
    if (errno || e == s)
        return -EINVAL;
    unsigned shift = 0;
    switch (*e) {
    case 'T': case 't': shift = 40; e++; break;
    case 'G': case 'g': shift = 30; e++; break;
    case 'M': case 'm': shift = 20; e++; break;
    case 'K': case 'k': shift = 10; e++; break;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    if (end)
        *end = e;
    return 0;
}

/* Is `word` one of the whitespace-separated words of the "flags" line? */
bool hc_root_cpu_flag(const char *cpuinfo, const char *word)
{
    if (!cpuinfo)
        return false;
    const char *f = strstr(cpuinfo, "\nflags");
    if (!f)
        return false;
    f = strchr(f, ':');
    if (!f)
        return false;
    size_t wl = strlen(word);
    for (const char *p = f + 1; *p && *p != '\n';) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, " \t\n");
        if (n == wl && !strncmp(p, word, wl))
            return true;
        p += n;
    }
    return false;
}

/* Last kernel-log line containing one of the strings of `any` (NULL-ended)
 * and, unless NULL, b; copied without the "<6>" level and the
 * "[   0.241188] " timestamp.  false when none or no log. */
bool hc_root_dmesg_find(const struct hc_ctx *x, const char *const *any, const char *b,
                        char *out, size_t len)
{
    bool found = false;
    if (!x->dmesg)
        return false;
    for (const char *l = x->dmesg; *l;) {
        size_t n = strcspn(l, "\n");
        bool hit = false;
        char line[1024];
        size_t m = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
        memcpy(line, l, m);
        line[m] = '\0';
        for (const char *const *a = any; *a && !hit; a++)
            hit = strstr(line, *a) != NULL;
        if (hit && (!b || strstr(line, b))) {
            const char *s = line;
            if (*s == '<')                       /* klogctl keeps "<6>" */
                s = strchr(s, '>') ? strchr(s, '>') + 1 : s;
            if (*s == '[' && strchr(s, ']'))
                s = strchr(s, ']') + 1;
            while (*s == ' ')
                s++;
            snprintf(out, len, "%s", s);
            found = true;
        }
        l += n;
        if (*l)
            l++;
    }
    return found;
}

static void hc_root_unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

/* Iterate mounts: returns the next entry after *pos, false at the end. */
bool hc_root_next_mount(const char *mounts, const char **pos, struct hc_root_mount *m)
{
    const char *l = *pos ? *pos : mounts;
    while (l && *l) {
        size_t n = strcspn(l, "\n");
        char line[PATH_MAX + 1024], dev[256];
        size_t k = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
        memcpy(line, l, k);
        line[k] = '\0';
        l += n;
        if (*l)
            l++;
        if (sscanf(line, "%255s %4095s %63s %511s", dev, m->dir, m->type, m->opts) == 4) {
            hc_root_unescape(m->dir);
            *pos = l;
            return true;
        }
    }
    *pos = l;
    return false;
}

/* Value of "key=" in a comma-separated mount option string. */
static bool hc_root_mount_opt(const char *opts, const char *key, char *out, size_t len)
{
    size_t kl = strlen(key);
    for (const char *p = opts; *p;) {
        size_t n = strcspn(p, ",");
        if (n > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            snprintf(out, len, "%.*s", (int)(n - kl - 1), p + kl + 1);
            return true;
        }
        p += n;
        if (*p)
            p++;
    }
    return false;
}

/* Page size of a hugetlbfs or dmemfs mount.  hugetlbfs prints pagesize=2M;
 * dmemfs prints its dpage size in bare hex (seq_printf "%lx"). */
uint64_t hc_root_mount_pagesize(const struct hc_root_mount *m)
{
    char v[64];
    uint64_t sz = 0;
    if (!hc_root_mount_opt(m->opts, "pagesize", v, sizeof(v)))
        return 0;
    if (!strcmp(m->type, "dmemfs")) {
        char *e;
        sz = strtoull(v, &e, 16);
        return *e ? 0 : sz;
    }
    const char *e;
    return hc_root_memparse(v, &sz, &e) || *e ? 0 : sz;
}

/* The mount holding `path` (longest matching mount point) in the mount
 * table `mounts`, of `type` unless type is NULL. */
bool hc_root_find_mount(const char *mounts, const char *path, const char *type,
                        struct hc_root_mount *out)
{
    const char *pos = NULL;
    struct hc_root_mount m;
    size_t best = 0;
    bool found = false;
    if (!mounts)
        return false;
    while (hc_root_next_mount(mounts, &pos, &m)) {
        if (type && strcmp(m.type, type))
            continue;
        size_t dl = strlen(m.dir);
        if (strncmp(path, m.dir, dl) || (path[dl] && path[dl] != '/' && strcmp(m.dir, "/")))
            continue;
        if (dl >= best) {
            best = dl;
            *out = m;
            found = true;
        }
    }
    return found;
}

/* `Key:  N kB` of <root>/proc/meminfo in bytes; 0 when absent. */
uint64_t hc_root_meminfo(const struct gm_host *h, const char *key)
{
    char *t = gm_host_slurp(h, "/proc/meminfo");
    int64_t kb = 0;
    if (!t || gm_parse_kb(t, key, &kb))
        kb = 0;
    free(t);
    return (uint64_t)kb << 10;
}

/* gm_host.statfs of a fake root, so that gm_backend_check judges its
 * [memory] paths as `dvmm run` would on that host: the mount of
 * <root>/proc/mounts holding the path, with the magic of its type and its
 * page size as f_bsize (hugetlbfs without pagesize=: the default huge page
 * size of meminfo).  Every path on a mount is taken to exist. */
int hc_root_fake_statfs(const struct gm_host *h, const char *path, struct statfs *st)
{
    static const struct { const char *type; uint64_t magic; } magic[] = {
        { "hugetlbfs", HUGETLBFS_MAGIC }, { "dmemfs", GM_DMEMFS_MAGIC },
        { "tmpfs", TMPFS_MAGIC }, { "ext4", EXT4_SUPER_MAGIC },
    };
    char *mounts = gm_host_slurp(h, "/proc/mounts");
    struct hc_root_mount m;
    bool found = hc_root_find_mount(mounts, path, NULL, &m);
    free(mounts);
    if (!found)
        return -ENOENT;
    memset(st, 0, sizeof(*st));
    st->f_bsize = GM_PAGE_SIZE;
    for (size_t i = 0; i < sizeof(magic) / sizeof(magic[0]); i++)
        if (!strcmp(m.type, magic[i].type))
            st->f_type = (__fsword_t)magic[i].magic;
    uint64_t ps = hc_root_mount_pagesize(&m);
    if (!ps && !strcmp(m.type, "hugetlbfs"))
        ps = hc_root_meminfo(h, "Hugepagesize");
    if (ps)
        st->f_bsize = (__fsword_t)ps;
    return 0;
}

char *hc_root_kernel_log(const struct hc_ctx *x)
{
    if (!x->real)
        return hc_root_slurp(x, "/.dmesg");
    int size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
    if (size <= 0)
        return NULL;
    char *buf = malloc((size_t)size + 1);
    if (!buf)
        return NULL;
    int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, size);
    if (n < 0) {
        log_debug("hostcheck: klogctl: %s", strerror(errno));
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}
