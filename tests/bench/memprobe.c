/* memprobe.so: LD_PRELOAD probe for the VMM-memory benchmark.
 *
 * "VMM memory" is peak RSS minus the guest RAM the guest really touched.
 * Both must be read inside the process at the last moment the guest RAM is
 * still mapped: dvmm unmaps it in gm_close before exit, QEMU leaves it mapped
 * until the process dies.  So the probe snapshots in two places:
 *   - munmap() of a range of at least DVMM_MEMPROBE_MIN bytes (dvmm's
 *     teardown): the Rss of the mappings inside that range;
 *   - a destructor at exit (QEMU's isa-debug-exit calls exit()): the Rss of
 *     every mapping of at least DVMM_MEMPROBE_MIN bytes.
 * The larger snapshot is the guest RAM touched; RssAnon and RssFile are
 * read with it, so that anonymous memory minus guest RAM is the VMM's own.
 * VmHWM is read at exit, before the probe parses smaps, so the probe's own
 * reads are not in it.
 *
 * Output: key=value lines appended to $DVMM_MEMPROBE_OUT.  Without that
 * variable the probe does nothing.
 *
 * An LD_PRELOAD library has no caller to hand state to, so its state is the
 * file-scope struct below; it is only written from the thread that unmaps
 * guest RAM and from the exit path, which never overlap in a VMM. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct memprobe {
    uint64_t min_bytes;
    long long guest_rss_kb;     /* -1: never seen */
    long long anon_kb, file_kb; /* RssAnon, RssFile at that snapshot */
    const char *where;
};

static struct memprobe probe = { .guest_rss_kb = -1, .anon_kb = -1, .file_kb = -1,
                                 .where = "none" };

static uint64_t memprobe_min(void)
{
    const char *s = getenv("DVMM_MEMPROBE_MIN");

    return s && *s ? strtoull(s, NULL, 0) : 1ULL << 30;
}

/* Feed each complete line of a /proc file to fn; no malloc, so the probe
 * does not grow the heap it measures. */
static int memprobe_lines(const char *path, void (*fn)(const char *line, void *arg), void *arg)
{
    char buf[8192];
    size_t have = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
        char *line, *nl;

        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        line = buf;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            fn(line, arg);
            line = nl + 1;
        }
        have = (size_t)(buf + have - line);
        memmove(buf, line, have);
        if (have == sizeof(buf) - 1)    /* an absurd line: drop it */
            have = 0;
    }
    close(fd);
    return 0;
}

struct status_kb {
    long long hwm, anon, file;
};

static void status_line(const char *line, void *arg)
{
    struct status_kb *s = arg;

    if (sscanf(line, "VmHWM: %lld kB", &s->hwm) == 1 ||
        sscanf(line, "RssAnon: %lld kB", &s->anon) == 1)
        return;
    sscanf(line, "RssFile: %lld kB", &s->file);
}

struct rss_scan {
    uintptr_t lo, hi;           /* count mappings inside [lo, hi) ... */
    uint64_t min_size;          /* ... or, when hi == 0, of at least this size */
    int counting;
    long long rss_kb;
};

static void rss_line(const char *line, void *arg)
{
    struct rss_scan *s = arg;
    unsigned long start, end;
    long long kb;

    if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
        if (s->hi)
            s->counting = start >= s->lo && end <= s->hi;
        else
            s->counting = end - start >= s->min_size;
    } else if (s->counting && sscanf(line, "Rss: %lld kB", &kb) == 1) {
        s->rss_kb += kb;
    }
}

static void memprobe_snapshot(uintptr_t lo, uintptr_t hi, const char *where)
{
    struct rss_scan s = { .lo = lo, .hi = hi, .min_size = probe.min_bytes };

    if (memprobe_lines("/proc/self/smaps", rss_line, &s))
        return;
    if (s.rss_kb > probe.guest_rss_kb) {
        struct status_kb st = { -1, -1, -1 };

        memprobe_lines("/proc/self/status", status_line, &st);
        probe.guest_rss_kb = s.rss_kb;
        probe.anon_kb = st.anon;
        probe.file_kb = st.file;
        probe.where = where;
    }
}

int munmap(void *addr, size_t len)
{
    static int (*real_munmap)(void *, size_t);

    if (!real_munmap)
        real_munmap = (int (*)(void *, size_t))dlsym(RTLD_NEXT, "munmap");
    if (getenv("DVMM_MEMPROBE_OUT") && len >= memprobe_min()) {
        probe.min_bytes = memprobe_min();
        memprobe_snapshot((uintptr_t)addr, (uintptr_t)addr + len, "munmap");
    }
    return real_munmap(addr, len);
}

__attribute__((destructor)) static void memprobe_exit(void)
{
    const char *out = getenv("DVMM_MEMPROBE_OUT");
    struct status_kb st = { -1, -1, -1 };
    int fd;

    if (!out)
        return;
    memprobe_lines("/proc/self/status", status_line, &st);
    probe.min_bytes = memprobe_min();
    memprobe_snapshot(0, 0, "exit");
    fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    dprintf(fd, "vmhwm_kb=%lld\nguest_rss_kb=%lld\nguest_rss_at=%s\nrss_anon_kb=%lld\n"
            "rss_file_kb=%lld\n", st.hwm, probe.guest_rss_kb, probe.where, probe.anon_kb,
            probe.file_kb);
    close(fd);
}
