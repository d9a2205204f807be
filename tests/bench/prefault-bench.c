/* Prefault bandwidth: gm_open with prealloc (threaded gm_prefault) against
 * a single-threaded memset of a fresh mapping of the same backend and size,
 * measured in the same run, for every backend this host has.  Also shows
 * gm_prefault limited to one thread, to separate the threading gain from
 * the MADV_POPULATE_WRITE gain.  Prints numbers; never fails on them.
 *
 * usage: prefault-bench [GiB]   (default 2; the size must fit in free RAM,
 * and for 1 GiB hugetlbfs pages the host must be able to reserve it) */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "guest-mem/gm.h"
#include "vmm/log.h"

#define REPEAT 3

struct bench_case {
    const char *name;
    struct gm_config cfg;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seconds for one variant; negative on failure (message printed). */
static double run_once(const struct bench_case *c, uint64_t size, int variant)
{
    struct gm_config cfg = c->cfg;
    struct guest_mem gm;
    char err[512];
    double t0, t;
    int ret;

    cfg.prealloc = variant == 0;
    t0 = now_s();
    ret = gm_open(&gm, &cfg, size, err, sizeof(err));
    if (ret) {
        printf("# %s: gm_open: %s\n", c->name, err);
        return -1;
    }
    if (variant == 1) {
        /* reference: one thread, plain memset through fresh mappings */
        t0 = now_s();
        for (unsigned i = 0; i < gm.layout.nr; i++)
            memset(gm.layout.r[i].hva, 0, gm.layout.r[i].size);
    } else if (variant == 2) {
        t0 = now_s();
        ret = gm_prefault(&gm, false, 1);
    }
    t = now_s() - t0;
    gm_close(&gm);
    if (ret) {
        printf("# %s: gm_prefault: %s\n", c->name, strerror(-ret));
        return -1;
    }
    return t;
}

static void run_case(const struct bench_case *c, uint64_t size)
{
    double best[3] = { 1e30, 1e30, 1e30 };
    double gib = (double)size / (double)GM_GiB;

    /* Interleaved repeats so drift in host state hits all variants alike. */
    for (int r = 0; r < REPEAT; r++) {
        for (int v = 0; v < 3; v++) {
            double t = run_once(c, size, v);

            if (t < 0)
                return;
            if (t < best[v])
                best[v] = t;
        }
    }
    printf("%-16s %6.2f GiB/s gm_open+prefault  %6.2f GiB/s memset(1 thread)  "
           "%6.2f GiB/s prefault(1 thread)  ratio vs memset %.2fx  vs 1 thread %.2fx\n",
           c->name, gib / best[0], gib / best[1], gib / best[2],
           best[1] / best[0], best[2] / best[0]);
    fflush(stdout);
}

static int write_u64(const char *path, uint64_t v)
{
    FILE *f = fopen(path, "w");
    int ret = 0;

    if (!f)
        return -errno;
    if (fprintf(f, "%" PRIu64 "\n", v) < 0)
        ret = -EIO;
    if (fclose(f))
        ret = -errno;
    return ret;
}

static int read_u64(const char *path, uint64_t *v)
{
    FILE *f = fopen(path, "r");
    int ok;

    if (!f)
        return -errno;
    ok = fscanf(f, "%" SCNu64, v) == 1;
    fclose(f);
    return ok ? 0 : -EINVAL;
}

/* hugetlbfs with `page` pages: reserve enough pages and mount a private
 * instance, both undone afterwards. */
static void run_hugetlb(uint64_t page, uint64_t size)
{
    char sys[160], fp[200], dir[] = "/tmp/dvmm-prefault-bench.XXXXXX", opt[32], name[32];
    uint64_t nr = 0, free_pages = 0, need = size / page, want;
    struct bench_case c = { .cfg = { .backend = GM_HUGETLBFS, .host_node = -1 } };
    bool raised = false;

    snprintf(name, sizeof(name), "hugetlbfs-%" PRIu64 "%s",
             (uint64_t)(page >= GM_GiB ? page / GM_GiB : page / GM_MiB),
             page >= GM_GiB ? "G" : "M");
    c.name = name;
    snprintf(sys, sizeof(sys), "/sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB",
             (uint64_t)(page / GM_KiB));
    if (access(sys, F_OK)) {
        printf("# SKIP %s: kernel has no %s\n", name, sys);
        return;
    }
    if (geteuid() != 0) {
        printf("# SKIP %s: needs root to reserve pages and mount hugetlbfs\n", name);
        return;
    }
    snprintf(fp, sizeof(fp), "%s/free_hugepages", sys);
    strcat(sys, "/nr_hugepages");
    if (read_u64(sys, &nr)) {
        printf("# SKIP %s: cannot read %s\n", name, sys);
        return;
    }
    if (read_u64(fp, &free_pages))
        free_pages = 0;
    if (free_pages < need) {
        want = nr + (need - free_pages);
        if (write_u64(sys, want) == 0)
            raised = true;
        if (read_u64(sys, &want) || want < nr + (need - free_pages)) {
            printf("# SKIP %s: could only reserve %" PRIu64 " of %" PRIu64
                   " pages (memory fragmented?)\n", name, want - nr, need - free_pages);
            goto restore;
        }
    }
    if (!mkdtemp(dir)) {
        printf("# SKIP %s: mkdtemp: %s\n", name, strerror(errno));
        goto restore;
    }
    snprintf(opt, sizeof(opt), "pagesize=%" PRIu64 "K", (uint64_t)(page / GM_KiB));
    if (mount("none", dir, "hugetlbfs", 0, opt)) {
        printf("# SKIP %s: mount -t hugetlbfs -o %s: %s\n", name, opt, strerror(errno));
        rmdir(dir);
        goto restore;
    }
    snprintf(c.cfg.path, sizeof(c.cfg.path), "%s", dir);
    run_case(&c, size);
    if (umount(dir))
        printf("# warning: umount %s: %s\n", dir, strerror(errno));
    rmdir(dir);
restore:
    if (raised && write_u64(sys, nr))
        printf("# warning: could not restore %s to %" PRIu64 "\n", sys, nr);
}

static bool have_fs(const char *fs)
{
    char line[256];
    bool found = false;
    FILE *f = fopen("/proc/filesystems", "r");

    if (!f)
        return false;
    while (!found && fgets(line, sizeof(line), f)) {
        char *tab = strrchr(line, '\t');

        line[strcspn(line, "\n")] = '\0';
        found = !strcmp(tab ? tab + 1 : line, fs);
    }
    fclose(f);
    return found;
}

int main(int argc, char **argv)
{
    uint64_t gib = argc > 1 ? strtoull(argv[1], NULL, 0) : 2;
    uint64_t size = gib * GM_GiB;
    cpu_set_t set;
    const struct bench_case cases[] = {
        { "anon", { .backend = GM_ANON, .thp = false, .host_node = -1 } },
        { "anon+THP", { .backend = GM_ANON, .thp = true, .host_node = -1 } },
        { "memfd", { .backend = GM_MEMFD, .thp = false, .host_node = -1 } },
    };

    if (!gib || gib > 1024) {
        fprintf(stderr, "usage: %s [GiB 1..1024]\n", argv[0]);
        return 2;
    }
    log_set_level(LOG_WARN);
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof(set), &set);
    printf("# prefault bench: %" PRIu64 " GiB, %d host CPUs (threads capped at %d), "
           "best of %d\n", gib, CPU_COUNT(&set), GM_PREFAULT_MAX_THREADS, REPEAT);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_case(&cases[i], size);
    run_hugetlb(2 * GM_MiB, size);
    run_hugetlb(GM_GiB, size);
    if (!have_fs("dmemfs"))
        printf("# SKIP dmemfs: not in /proc/filesystems (host kernel lacks dmemfs)\n");
    else
        printf("# SKIP dmemfs: needs a mounted dmemfs with free dpages; "
               "run gm_open on it via dvmm\n");
    return 0;
}
