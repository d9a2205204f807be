/* virtio-blk throughput without KVM, against fio on the same file in the
 * same run.  One guest thread per queue keeps QD requests in flight on a
 * plain memory region, kicking through the notify register and sleeping on
 * the queue's irqfd eventfd; the device does real I/O.  The reference is
 * `fio --ioengine=io_uring` with the same block size, depth and job count,
 * buffered like the device (cache=writeback) and with --invalidate=0, so
 * both sides read a page cache warmed by the image fill.
 *
 * Not a test: it prints numbers and ratios (goal >= 0.9 of fio) and always
 * exits 0 unless it cannot run at all.
 *
 * The host is shared, so each side runs `rounds` times, alternating, and
 * the best of each is compared.
 *
 *   blk-bench [-t seconds] [-s image-MiB] [-r rounds] [dir...]
 *   (defaults: 3 s, 256 MiB, 2 rounds, /dev/shm and .) */
#include <json-c/json.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

#include "tests/unit/test_blk_driver.h"
#include "vmm/log.h"

#define MAX_Q 4
#define DATA_BASE (1ULL << 20)

struct workload {
    const char *name;       /* fio --rw */
    uint32_t bs;
    unsigned qd;
    bool write, random;
};

static const struct workload workloads[] = {
    { "randread", 4096, 32, false, true },
    { "read", 1 << 20, 8, false, false },
    { "write", 1 << 20, 8, true, false },
};

struct run {
    struct drv *d;
    const struct workload *w;
    unsigned q;
    uint64_t img_sectors;
    volatile bool *stop;
    uint64_t done, errors;
    uint64_t next_seq;
    uint64_t rng;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static uint64_t next_sector(struct run *r)
{
    uint64_t blocks = r->img_sectors * 512 / r->w->bs;
    uint64_t b;
    if (r->w->random) {
        r->rng ^= r->rng << 13;
        r->rng ^= r->rng >> 7;
        r->rng ^= r->rng << 17;
        b = r->rng % blocks;
    } else {
        b = r->next_seq++ % blocks;
    }
    return b * r->w->bs / 512;
}

static void post(struct run *r, unsigned s)
{
    uint64_t data = DATA_BASE + ((uint64_t)r->q * r->w->qd + s) * r->w->bs;
    drv_post(r->d, r->q, s, r->w->write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
             next_sector(r), data, r->w->bs, !r->w->write);
}

static void *guest(void *p)
{
    struct run *r = p;
    struct fake_drv *f = &r->d->q[r->q];
    unsigned outstanding = r->w->qd;
    uint32_t id, len;

    for (unsigned s = 0; s < r->w->qd; s++)
        post(r, s);
    drv_kick(r->d, r->q);
    while (outstanding) {
        unsigned n = 0;
        while (fake_used(f, &id, &len)) {
            unsigned s = id / 3;
            if (drv_req_status(r->d, r->q, s) != VIRTIO_BLK_S_OK)
                r->errors++;
            r->done++;
            n++;
            if (*r->stop)
                outstanding--;
            else
                post(r, s);
        }
        if (n) {
            if (!*r->stop)
                drv_kick(r->d, r->q);
            continue;
        }
        /* Ask for an interrupt at the next completion, re-check, sleep. */
        __atomic_store_n(&f->avail->ring[f->size], f->last_used, __ATOMIC_SEQ_CST);
        uint16_t idx = __atomic_load_n(&f->used->idx, __ATOMIC_ACQUIRE);
        if (idx != f->last_used)
            continue;
        drv_wait_irq(r->d, r->q + 1, 1000);
    }
    return NULL;
}

/* dvmm: ops/s over `secs` with nq queues. */
static double run_dvmm(const char *img, uint64_t img_size, const struct workload *w,
                       unsigned nq, double secs, uint64_t *errors)
{
    struct mock_vm vm;
    struct fake_ram ram;
    struct blk *b = calloc(1, sizeof(*b));
    struct blk_config disk = { .queues = nq, .queue_size = 256,
                             .engine = BLK_ENGINE_IO_URING };
    char err[256];
    double rate = -1;

    snprintf(disk.path, sizeof(disk.path), "%s", img);
    mock_vm_init(&vm);
    uint64_t need = DATA_BASE + (uint64_t)MAX_Q * w->qd * w->bs;
    fake_ram_init_size(&ram, 0, need);
    if (blk_init(b, &disk, &vm.pci, &vm.vmif, &ram.gm, err, sizeof(err)) < 0) {
        fprintf(stderr, "blk-bench: %s\n", err);
        goto out;
    }
    struct drv d = { .vm = &vm, .ram = &ram, .blk = b, .qsize = 256 };
    drv_start(&d, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_RING_F_EVENT_IDX |
                  1ULL << VIRTIO_BLK_F_MQ | 1ULL << VIRTIO_BLK_F_FLUSH);
    volatile bool stop = false;
    struct run runs[MAX_Q];
    pthread_t t[MAX_Q];
    uint64_t t0 = now_ns();
    for (unsigned q = 0; q < nq; q++) {
        runs[q] = (struct run){ .d = &d, .w = w, .q = q, .stop = &stop,
                                .img_sectors = img_size / 512,
                                .rng = 0x9e3779b97f4a7c15ULL * (q + 1),
                                .next_seq = q * 7 };
        pthread_create(&t[q], NULL, guest, &runs[q]);
    }
    struct timespec ts = { (time_t)secs, (long)((secs - (time_t)secs) * 1e9) };
    nanosleep(&ts, NULL);
    stop = true;
    uint64_t total = 0;
    *errors = 0;
    for (unsigned q = 0; q < nq; q++) {
        pthread_join(t[q], NULL);
        total += runs[q].done;
        *errors += runs[q].errors;
    }
    rate = total / ((now_ns() - t0) / 1e9);
    blk_destroy(b);
out:
    free(b);
    mock_vm_destroy(&vm);
    fake_ram_free(&ram);
    return rate;
}

/* fio: ops/s, or -1 when fio is missing or fails. */
static double run_fio(const char *img, const struct workload *w, unsigned nq,
                      double secs)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd),
             "fio --name=ref --filename=%s --ioengine=io_uring --rw=%s --bs=%u "
             "--iodepth=%u --numjobs=%u --direct=0 --invalidate=0 --time_based --runtime=%.1f "
             "--group_reporting --output-format=json 2>/dev/null",
             img, w->name, w->bs, w->qd, nq, secs);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t k;
    while ((k = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += k;
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = 0;
    pclose(p);
    double iops = -1;
    struct json_object *root = json_tokener_parse(buf), *jobs, *job, *dir, *v;
    if (root && json_object_object_get_ex(root, "jobs", &jobs) &&
        (job = json_object_array_get_idx(jobs, 0)) &&
        json_object_object_get_ex(job, w->write ? "write" : "read", &dir) &&
        json_object_object_get_ex(dir, "iops", &v))
        iops = json_object_get_double(v);
    json_object_put(root);
    free(buf);
    return iops;
}

static const char *fs_name(const char *dir)
{
    struct statfs s;
    if (statfs(dir, &s) < 0)
        return "?";
    return s.f_type == 0x01021994 ? "tmpfs" : "disk";
}

int main(int argc, char **argv)
{
    double secs = 3;
    uint64_t mib = 256;
    unsigned rounds = 2;
    int c;

    while ((c = getopt(argc, argv, "t:s:r:")) != -1) {
        if (c == 't')
            secs = atof(optarg);
        else if (c == 's')
            mib = strtoull(optarg, NULL, 0);
        else if (c == 'r')
            rounds = atoi(optarg) > 0 ? atoi(optarg) : 1;
        else {
            fprintf(stderr, "usage: %s [-t seconds] [-s image-MiB] [-r rounds] [dir...]\n",
                    argv[0]);
            return 2;
        }
    }
    const char *defdirs[] = { "/dev/shm", "." };
    const char **dirs = optind < argc ? (const char **)argv + optind : defdirs;
    int ndirs = optind < argc ? argc - optind : 2;
    log_set_level(LOG_WARN);
    bool have_fio = system("fio --version >/dev/null 2>&1") == 0;
    if (!have_fio)
        printf("# fio not found: printing dvmm numbers without a reference\n");

    printf("# virtio-blk (no KVM, guest = threads on plain memory) vs fio io_uring, best of %u x %.1f s, %llu MiB image, cache=writeback\n",
           rounds, secs, (unsigned long long)mib);
    printf("%-8s %-10s %-4s %2s %14s %14s %7s\n", "where", "workload", "qd",
           "q", "dvmm", "fio", "ratio");
    for (int di = 0; di < ndirs; di++) {
        char img[4096];
        snprintf(img, sizeof(img), "%s/dvmm-blk-bench.img", dirs[di]);
        int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || ftruncate(fd, mib << 20) < 0) {
            printf("# %s: cannot create the image: %m\n", dirs[di]);
            if (fd >= 0)
                close(fd);
            continue;
        }
        /* Fill it so reads hit real blocks, not holes. */
        char *chunk = malloc(1 << 20);
        memset(chunk, 0x5a, 1 << 20);
        for (uint64_t i = 0; i < mib; i++)
            if (pwrite(fd, chunk, 1 << 20, i << 20) != 1 << 20)
                break;
        free(chunk);
        fsync(fd);
        close(fd);
        for (unsigned wi = 0; wi < sizeof(workloads) / sizeof(workloads[0]); wi++) {
            const struct workload *w = &workloads[wi];
            for (unsigned nq = 1; nq <= MAX_Q; nq *= 2) {
                uint64_t errors = 0, e = 0;
                double mine = -1, ref = -1;
                for (unsigned k = 0; k < rounds; k++) {
                    double m = run_dvmm(img, mib << 20, w, nq, secs, &e);
                    double f = have_fio ? run_fio(img, w, nq, secs) : -1;
                    errors += e;
                    mine = m > mine ? m : mine;
                    ref = f > ref ? f : ref;
                }
                bool mbs = w->bs >= (1 << 20);
                double scale = mbs ? w->bs / 1e6 : 1;
                char wl[32];
                snprintf(wl, sizeof(wl), "%s-%s", w->name, mbs ? "1M" : "4k");
                printf("%-8s %-10s %-4u %2u %9.0f %-4s %9.0f %-4s %7.2f%s\n",
                       fs_name(dirs[di]), wl, w->qd, nq, mine * scale,
                       mbs ? "MB/s" : "IOPS", ref * scale, mbs ? "MB/s" : "IOPS",
                       ref > 0 ? mine / ref : 0,
                       errors ? "  (I/O errors!)" : "");
                fflush(stdout);
            }
        }
        unlink(img);
    }
    return 0;
}
