/* virtio-blk FLUSH ordering, proven against the system calls and io_uring
 * operations dvmm really makes: a FLUSH is acknowledged only after the
 * image was synced, the sync started only after the writes the driver had
 * seen complete, and it really ran on the image.  With both engines and
 * both cache modes: cache=none (O_DIRECT) must sync too, because O_DIRECT
 * bypasses the page cache but not the disk's volatile write cache nor the
 * filesystem's block allocation of a sparse image.
 *
 * How it is observed: this binary defines fdatasync, fsync and pwritev
 * (the threads engine's calls) and io_uring_submit / io_uring_submit_and_wait
 * (the io_uring engine's), so libdvmm.a's calls land here.  Each hook logs
 * an event with a global sequence number and calls the real function.
 *   - A sync (fdatasync/fsync on the image, or an IORING_OP_FSYNC SQE on it)
 *     records whether the FLUSH's status byte was still untouched when the
 *     sync started and when it ended (the threads hook sleeps after the real
 *     call, so a completion racing it would show; the io_uring hook waits
 *     until the fsync's CQE is posted before it returns to dvmm, so it sees
 *     that CQE before dvmm can act on it).
 *   - Writes log their completion (pwritev return, or their CQE).
 * The checks cannot pass vacuously: each demands exactly one sync per FLUSH,
 * on the image's inode, and the writes' completions in the log.
 *
 * Also: a sync that fails (injected: fdatasync returns EIO, or the fsync
 * CQE's result is rewritten to -EIO) fails that FLUSH with IOERR and every
 * later one, because after a failed fsync Linux has marked the lost pages
 * clean and a later fsync would succeed without them. */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>

#include <cmocka.h>

#include "tests/unit/test_blk_driver.h"
#include "vmm/log.h"

#define IMG_SIZE (4ULL << 20)
#define WAIT_MS 10000          /* hang guard only */
#define DATA_GPA (FAKE_REGION / 2)
#define NWRITES 8
#define FLUSH_SLOT NWRITES
#define FEAT (1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_RING_F_EVENT_IDX | \
              1ULL << VIRTIO_BLK_F_FLUSH | 1ULL << VIRTIO_BLK_F_MQ)

/* ---- the event log the hooks write -------------------------------------- */

enum ev_kind { EV_WRITE_DONE, EV_SYNC_START, EV_SYNC_END };

struct ev {
    enum ev_kind kind;
    uint64_t seq;
    uint64_t off;              /* writes: image offset */
    int64_t res;               /* writes: bytes; sync end: 0 or -errno */
    bool direct;               /* the fd was O_DIRECT */
    bool on_image;             /* the fd is the image's inode */
    bool status_untouched;     /* sync: the FLUSH status byte still 0xee */
    bool uring;
};

static struct {
    pthread_mutex_t lock;
    bool armed;
    dev_t dev;                 /* the image */
    ino_t ino;
    volatile uint8_t *flush_status;  /* the pending FLUSH's status byte */
    int inject;                /* syncs still to fail with EIO */
    struct ev ev[256];
    unsigned n;
    uint64_t seq;
    /* io_uring: SQEs seen submitted, CQEs seen posted */
    uint64_t fsync_ud[16];     /* user_data of FSYNC SQEs on the image, */
    unsigned nfsync;           /* submitted and not yet completed */
    uint64_t write_ud[64];
    bool write_direct[64];
    unsigned nwrite_ud;
    struct { struct io_uring *ring; unsigned seen; } cq[8];  /* our cursors */
} hk = { .lock = PTHREAD_MUTEX_INITIALIZER };

static bool hk_on_image(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_dev == hk.dev && st.st_ino == hk.ino;
}

static struct ev *hk_log(enum ev_kind kind)
{
    struct ev *e = &hk.ev[hk.n < 256 ? hk.n++ : 255];
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->seq = ++hk.seq;
    return e;
}

static bool hk_untouched(void)
{
    return hk.flush_status && *hk.flush_status == 0xee;
}

static void *hk_real(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f)
        abort();
    return f;
}

/* ---- threads engine: the system calls ------------------------------------ */

static int hk_sync(int fd, const char *name)
{
    int (*real)(int) = hk_real(name);
    pthread_mutex_lock(&hk.lock);
    bool armed = hk.armed && hk_on_image(fd);
    if (armed) {
        struct ev *e = hk_log(EV_SYNC_START);
        e->on_image = true;
        e->status_untouched = hk_untouched();
    }
    pthread_mutex_unlock(&hk.lock);
    int r = real(fd);
    int err = r < 0 ? errno : 0;
    if (armed) {
        /* A completion racing the sync would have 20 ms to show. */
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&hk.lock);
        if (hk.inject > 0 && !err) {
            hk.inject--;
            r = -1;
            err = EIO;
        }
        struct ev *e = hk_log(EV_SYNC_END);
        e->on_image = true;
        e->res = r < 0 ? -err : 0;
        e->status_untouched = hk_untouched();
        pthread_mutex_unlock(&hk.lock);
    }
    errno = err;
    return r;
}

int fdatasync(int fd) { return hk_sync(fd, "fdatasync"); }
int fsync(int fd) { return hk_sync(fd, "fsync"); }

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    ssize_t (*real)(int, const struct iovec *, int, off_t) = hk_real("pwritev");
    ssize_t r = real(fd, iov, cnt, off);
    int err = errno;
    pthread_mutex_lock(&hk.lock);
    if (hk.armed && hk_on_image(fd)) {
        struct ev *e = hk_log(EV_WRITE_DONE);
        e->off = off;
        e->res = r;
        e->on_image = true;
        e->direct = fcntl(fd, F_GETFL) & O_DIRECT;
    }
    pthread_mutex_unlock(&hk.lock);
    errno = err;
    return r;
}

/* ---- io_uring engine: SQEs on submission, CQEs before dvmm sees them ------ */

/* Removes ud from tbl[0..*n) if there; true if it was. */
static bool hk_take(uint64_t *tbl, bool *flag, unsigned *n, uint64_t ud, bool *flag_out)
{
    for (unsigned i = 0; i < *n; i++) {
        if (tbl[i] != ud)
            continue;
        if (flag) {
            *flag_out = flag[i];
            flag[i] = flag[*n - 1];
        }
        tbl[i] = tbl[--*n];
        return true;
    }
    return false;
}

/* CQEs from our cursor to the tail: log the writes' and fsyncs' completions
 * (rewriting an fsync's result when an error is to be injected). */
static unsigned *hk_cursor(struct io_uring *ring)
{
    unsigned i;
    for (i = 0; i < 8 && hk.cq[i].ring; i++)
        if (hk.cq[i].ring == ring)
            return &hk.cq[i].seen;
    if (i == 8)
        abort();
    /* First seen armed: what came before was consumed and is not ours. */
    hk.cq[i].ring = ring;
    hk.cq[i].seen = __atomic_load_n(ring->cq.khead, __ATOMIC_ACQUIRE);
    return &hk.cq[i].seen;
}

static void hk_scan_cq(struct io_uring *ring)
{
    unsigned tail = __atomic_load_n(ring->cq.ktail, __ATOMIC_ACQUIRE);
    unsigned *seen = hk_cursor(ring);
    for (; *seen != tail; (*seen)++) {
        struct io_uring_cqe *c = &ring->cq.cqes[*seen & ring->cq.ring_mask];
        bool direct = false;
        if (hk_take(hk.fsync_ud, NULL, &hk.nfsync, c->user_data, NULL)) {
            if (hk.inject > 0 && c->res >= 0) {
                hk.inject--;
                c->res = -EIO;
            }
            struct ev *e = hk_log(EV_SYNC_END);
            e->on_image = true;
            e->uring = true;
            e->res = c->res;
            e->status_untouched = hk_untouched();
        } else if (hk_take(hk.write_ud, hk.write_direct, &hk.nwrite_ud, c->user_data,
                           &direct)) {
            /* user_data is the struct blk_req, reused by later requests:
             * hk_take forgot it. */
            struct blk_req *r = (struct blk_req *)(uintptr_t)c->user_data;
            struct ev *e = hk_log(EV_WRITE_DONE);
            e->off = r->offset;
            e->res = c->res;
            e->on_image = true;
            e->uring = true;
            e->direct = direct;
        }
    }
}

static void hk_scan_sq(struct io_uring *ring)
{
    for (unsigned i = ring->sq.sqe_head; i != ring->sq.sqe_tail; i++) {
        struct io_uring_sqe *s = &ring->sq.sqes[i & ring->sq.ring_mask];
        if (s->opcode == IORING_OP_FSYNC && hk_on_image(s->fd)) {
            struct ev *e = hk_log(EV_SYNC_START);
            e->on_image = true;
            e->uring = true;
            e->direct = fcntl(s->fd, F_GETFL) & O_DIRECT;
            e->status_untouched = hk_untouched();
            if (hk.nfsync < 16)
                hk.fsync_ud[hk.nfsync++] = s->user_data;
        } else if (s->opcode == IORING_OP_WRITEV && hk_on_image(s->fd) &&
                   hk.nwrite_ud < 64) {
            hk.write_direct[hk.nwrite_ud] = fcntl(s->fd, F_GETFL) & O_DIRECT;
            hk.write_ud[hk.nwrite_ud++] = s->user_data;
        }
    }
}

static int hk_submit(struct io_uring *ring, unsigned wait_nr, bool wait)
{
    pthread_mutex_lock(&hk.lock);
    bool armed = hk.armed;
    if (armed) {
        hk_scan_cq(ring);
        hk_scan_sq(ring);
    }
    pthread_mutex_unlock(&hk.lock);
    int r;
    if (wait) {
        int (*real)(struct io_uring *, unsigned) = hk_real("io_uring_submit_and_wait");
        r = real(ring, wait_nr);
    } else {
        int (*real)(struct io_uring *) = hk_real("io_uring_submit");
        r = real(ring);
    }
    if (armed) {
        /* Until the fsync's CQE is posted, dvmm stays in here: its status
         * byte is then checked before dvmm can have acted on the CQE. */
        for (int i = 0; i < 10000; i++) {
            pthread_mutex_lock(&hk.lock);
            hk_scan_cq(ring);
            bool pending = hk.nfsync > 0;
            pthread_mutex_unlock(&hk.lock);
            if (!pending)
                break;
            struct timespec ts = { 0, 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
    return r;
}

int io_uring_submit(struct io_uring *ring) { return hk_submit(ring, 0, false); }
int io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr)
{
    return hk_submit(ring, wait_nr, true);
}

/* ---- fixture -------------------------------------------------------------- */

struct fix {
    struct mock_vm vm;
    struct fake_ram ram;
    struct blk blk;
    bool blk_ok;
    struct drv d;
    char dir[64];
    char img[128];
    struct blk_config disk;
};

static int fix_setup(void **state, enum blk_engine engine, enum blk_cache cache)
{
    struct fix *f = calloc(1, sizeof(*f));
    char err[256] = "";
    struct stat st;

    assert_int_equal(mock_vm_init(&f->vm), 0);
    fake_ram_init(&f->ram, 0);
    strcpy(f->dir, "/tmp/dvmm-flush-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->img, sizeof(f->img), "%s/disk.img", f->dir);
    /* Sparse: O_DIRECT writes into holes allocate blocks, metadata that
     * only a sync makes durable. */
    int fd = open(f->img, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, IMG_SIZE), 0);
    assert_int_equal(fstat(fd, &st), 0);
    close(fd);
    f->disk.index = 0;
    strcpy(f->disk.path, f->img);
    f->disk.queues = 2;
    f->disk.queue_size = 64;
    f->disk.engine = engine;
    f->disk.cache = cache;
    *state = f;
    int r = blk_init(&f->blk, &f->disk, &f->vm.pci, &f->vm.vmif, &f->ram.gm,
                     err, sizeof(err));
    if (r != 0)
        fail_msg("blk_init returned %d: %s", r, err);
    f->blk_ok = true;
    f->d = (struct drv){ .vm = &f->vm, .ram = &f->ram, .blk = &f->blk,
                         .qsize = 64 };
    assert_true(drv_start(&f->d, FEAT) & VIRTIO_CONFIG_S_DRIVER_OK);

    pthread_mutex_lock(&hk.lock);
    memset(hk.ev, 0, sizeof(hk.ev));
    hk.n = hk.nfsync = hk.nwrite_ud = 0;
    hk.inject = 0;
    hk.flush_status = NULL;
    hk.dev = st.st_dev;
    hk.ino = st.st_ino;
    memset(hk.cq, 0, sizeof(hk.cq));
    hk.armed = false;
    pthread_mutex_unlock(&hk.lock);
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    pthread_mutex_lock(&hk.lock);
    hk.armed = false;
    pthread_mutex_unlock(&hk.lock);
    if (f->blk_ok)
        blk_destroy(&f->blk);
    unlink(f->img);
    rmdir(f->dir);
    mock_vm_destroy(&f->vm);
    fake_ram_free(&f->ram);
    free(f);
    return 0;
}

static int setup_uring_wb(void **s) { return fix_setup(s, BLK_ENGINE_IO_URING, BLK_CACHE_WRITEBACK); }
static int setup_uring_none(void **s) { return fix_setup(s, BLK_ENGINE_IO_URING, BLK_CACHE_NONE); }
static int setup_threads_wb(void **s) { return fix_setup(s, BLK_ENGINE_THREADS, BLK_CACHE_WRITEBACK); }
static int setup_threads_none(void **s) { return fix_setup(s, BLK_ENGINE_THREADS, BLK_CACHE_NONE); }

/* ---- the driver's side ------------------------------------------------------ */

/* NWRITES 4 KiB writes on queue 0, all in flight together; waits for them. */
static void write_batch(struct fix *f, unsigned round)
{
    for (unsigned s = 0; s < NWRITES; s++) {
        memset(fake_hva(&f->ram, DATA_GPA + s * 4096), (int)(round * 16 + s + 1), 4096);
        drv_post(&f->d, 0, s, VIRTIO_BLK_T_OUT, (round * NWRITES + s) * 8,
                 DATA_GPA + s * 4096, 4096, false);
    }
    drv_kick(&f->d, 0);
    assert_int_equal(drv_reap(&f->d, 0, NWRITES, NULL, WAIT_MS), NWRITES);
    for (unsigned s = 0; s < NWRITES; s++)
        assert_int_equal(drv_req_status(&f->d, 0, s), VIRTIO_BLK_S_OK);
}

/* One FLUSH on queue 0, with the hooks told where its status byte is. */
static uint8_t flush(struct fix *f)
{
    volatile uint8_t *st = fake_hva(&f->ram, DRV_ST + FLUSH_SLOT);
    *st = 0xee;
    pthread_mutex_lock(&hk.lock);
    hk.flush_status = st;
    pthread_mutex_unlock(&hk.lock);
    drv_post(&f->d, 0, FLUSH_SLOT, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false);
    drv_kick(&f->d, 0);
    assert_int_equal(drv_reap(&f->d, 0, 1, NULL, WAIT_MS), 1);
    return *st;
}

static void arm(void)
{
    pthread_mutex_lock(&hk.lock);
    hk.armed = true;
    pthread_mutex_unlock(&hk.lock);
}

/* The log of one round: NWRITES write completions, then exactly one sync
 * on the image that started and ended with the FLUSH status untouched.
 * (The log is copied out first: a failure must not leave the lock held.) */
static void check_round(bool direct)
{
    unsigned writes = 0, starts = 0, ends = 0, n;
    uint64_t last_write = 0, start = 0, end = 0;
    static struct ev log[256];
    const char *bad = NULL;

    pthread_mutex_lock(&hk.lock);
    n = hk.n;
    memcpy(log, hk.ev, sizeof(log));
    hk.n = 0;
    pthread_mutex_unlock(&hk.lock);
    for (unsigned i = 0; i < n; i++) {
        struct ev *e = &log[i];
        switch (e->kind) {
        case EV_WRITE_DONE:
            writes++;
            last_write = e->seq;
            if (!bad && e->res != 4096)
                bad = "a write did not write its 4096 bytes";
            if (!bad && e->direct != direct)
                bad = direct ? "a write did not go through the O_DIRECT fd" :
                               "a write went through an O_DIRECT fd";
            break;
        case EV_SYNC_START:
            starts++;
            start = e->seq;
            if (!bad && !e->status_untouched)
                bad = "the FLUSH status byte was written before the sync started";
            break;
        case EV_SYNC_END:
            ends++;
            end = e->seq;
            if (!bad && !e->status_untouched)
                bad = "the FLUSH status byte was written before the sync ended";
            break;
        }
    }
    if (!bad && (writes != NWRITES || starts != 1 || ends != 1 ||
                 !(last_write < start && start < end)))
        bad = "want the writes' completions, then one sync of the image, started and ended";
    if (bad) {
        static const char *names[] = { "write-done", "sync-start", "sync-end" };
        for (unsigned i = 0; i < n; i++)
            print_message("#   %llu %s off %llu res %lld%s%s\n",
                          (unsigned long long)log[i].seq, names[log[i].kind],
                          (unsigned long long)log[i].off, (long long)log[i].res,
                          log[i].direct ? " O_DIRECT" : "",
                          log[i].status_untouched ? " status-untouched" : "");
        fail_msg("%s (%u writes, %u sync starts, %u sync ends)", bad, writes, starts, ends);
    }
}

static void test_flush_after_sync(void **state)
{
    struct fix *f = *state;
    bool direct = f->disk.cache == BLK_CACHE_NONE;

    if (direct && !f->blk.direct) {
        print_message("# %s refuses O_DIRECT here: cache=none is not exercised\n", f->img);
        skip();
    }
    arm();
    for (unsigned round = 0; round < 3; round++) {
        write_batch(f, round);
        assert_int_equal(flush(f), VIRTIO_BLK_S_OK);
        check_round(direct);
    }
    /* The data is in the file. */
    uint8_t buf[4096];
    int fd = open(f->img, O_RDONLY);
    assert_int_equal(pread(fd, buf, sizeof(buf), (2 * NWRITES + 3) * 4096), 4096);
    close(fd);
    assert_int_equal(buf[0], 2 * 16 + 3 + 1);
    assert_int_equal(buf[4095], 2 * 16 + 3 + 1);
}

/* A failed sync fails its FLUSH, and every later FLUSH: the pages it lost
 * are clean in the page cache now, so a later fsync would "succeed". */
static void test_sync_error_sticks(void **state)
{
    struct fix *f = *state;

    arm();
    write_batch(f, 0);
    assert_int_equal(flush(f), VIRTIO_BLK_S_OK);
    check_round(f->blk.direct);
    write_batch(f, 1);
    pthread_mutex_lock(&hk.lock);
    hk.inject = 1;
    pthread_mutex_unlock(&hk.lock);
    assert_int_equal(flush(f), VIRTIO_BLK_S_IOERR);
    pthread_mutex_lock(&hk.lock);
    int left = hk.inject;
    pthread_mutex_unlock(&hk.lock);
    assert_int_equal(left, 0);          /* the error really came from the sync */
    check_round(f->blk.direct);
    /* The next sync works, but the FLUSH must still fail. */
    write_batch(f, 2);
    assert_int_equal(flush(f), VIRTIO_BLK_S_IOERR);
    assert_int_equal(flush(f), VIRTIO_BLK_S_IOERR);
    /* Reads and writes go on. */
    write_batch(f, 3);
}

/* One name per engine and cache mode, for the TAP lines. */
static void test_flush_io_uring_writeback(void **s) { test_flush_after_sync(s); }
static void test_flush_io_uring_none(void **s) { test_flush_after_sync(s); }
static void test_flush_threads_writeback(void **s) { test_flush_after_sync(s); }
static void test_flush_threads_none(void **s) { test_flush_after_sync(s); }
static void test_sync_error_sticks_io_uring(void **s) { test_sync_error_sticks(s); }
static void test_sync_error_sticks_threads(void **s) { test_sync_error_sticks(s); }

int main(void)
{
#define T(fn, s) cmocka_unit_test_setup_teardown(fn, s, teardown)
    const struct CMUnitTest tests[] = {
        T(test_flush_io_uring_writeback, setup_uring_wb),
        T(test_flush_io_uring_none, setup_uring_none),
        T(test_flush_threads_writeback, setup_threads_wb),
        T(test_flush_threads_none, setup_threads_none),
        T(test_sync_error_sticks_io_uring, setup_uring_wb),
        T(test_sync_error_sticks_threads, setup_threads_none),
    };
    log_set_level(LOG_ERR);
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
