/* virtio-blk end to end with no KVM: the test plays the guest (rings in a
 * fake guest RAM, kicks through the notify register, waits on the queue's
 * MSI-X irqfd eventfd), the device does real I/O on an image file. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <liburing.h>

#include <cmocka.h>

#include "tests/unit/test_blk_driver.h"
#include "vmm/log.h"

#define IMG_SIZE (1ULL << 20)
#define WAIT_MS 10000          /* hang guard only, never a timing check */
#define DATA_GPA (FAKE_REGION / 2)
#define FEAT (1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_RING_F_EVENT_IDX | \
              1ULL << VIRTIO_BLK_F_FLUSH | 1ULL << VIRTIO_BLK_F_MQ)

struct fix {
    struct mock_vm vm;
    struct fake_ram ram;
    struct blk blk;
    bool blk_ok;
    struct drv d;
    char dir[64];
    char img[128];
    struct blk_config disk;
    bool mounted;
};

static void make_image(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(size);
    for (uint64_t i = 0; i < size; i++)
        buf[i] = (uint8_t)(i / 512 + i);
    assert_int_equal(pwrite(fd, buf, size, 0), (ssize_t)size);
    free(buf);
    close(fd);
}

static struct fix *fix_new(void)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_int_equal(mock_vm_init(&f->vm), 0);
    fake_ram_init(&f->ram, 0);
    strcpy(f->dir, "/tmp/dvmm-blk-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->img, sizeof(f->img), "%s/disk.img", f->dir);
    f->disk.index = 0;
    strcpy(f->disk.path, f->img);
    f->disk.queues = 2;
    f->disk.queue_size = 64;
    strcpy(f->disk.serial, "dvmm-serial-0001");
    return f;
}

static void fix_open(struct fix *f, enum blk_engine engine, bool ro)
{
    char err[256] = "";
    f->disk.engine = engine;
    f->disk.readonly = ro;
    int r = blk_init(&f->blk, &f->disk, &f->vm.pci, &f->vm.vmif, &f->ram.gm,
                     err, sizeof(err));
    if (r != 0)
        fail_msg("blk_init returned %d: %s", r, err);
    f->blk_ok = true;
    f->d = (struct drv){ .vm = &f->vm, .ram = &f->ram, .blk = &f->blk,
                         .qsize = 64 };
    uint8_t st = drv_start(&f->d, FEAT | (ro ? 1ULL << VIRTIO_BLK_F_RO : 0));
    assert_true(st & VIRTIO_CONFIG_S_DRIVER_OK);
    assert_false(st & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static void test_rw(void **state);

/* io_uring where the host has it.  Some refuse it (a container's seccomp
 * profile, kernel.io_uring_disabled): there the cases that are about
 * something else run on the threads engine, and the round trips that are
 * about io_uring itself skip, saying why. */
static enum blk_engine uring_engine = BLK_ENGINE_IO_URING;

static void need_uring(void)
{
    if (uring_engine != BLK_ENGINE_IO_URING) {
        print_message("# io_uring is not available on this host (io_uring_queue_init failed)\n");
        skip();
    }
}

static int setup_uring(void **state)
{
    struct fix *f = fix_new();
    make_image(f->img, IMG_SIZE);
    fix_open(f, uring_engine, false);
    *state = f;
    return 0;
}

static int setup_threads(void **state)
{
    struct fix *f = fix_new();
    make_image(f->img, IMG_SIZE);
    fix_open(f, BLK_ENGINE_THREADS, false);
    *state = f;
    return 0;
}

static int setup_ro(void **state)
{
    struct fix *f = fix_new();
    make_image(f->img, IMG_SIZE);
    fix_open(f, BLK_ENGINE_DEFAULT, true);
    *state = f;
    return 0;
}

static int setup_direct(void **state)
{
    struct fix *f = fix_new();
    make_image(f->img, IMG_SIZE);
    f->disk.cache = BLK_CACHE_NONE;
    fix_open(f, uring_engine, false);
    *state = f;
    return 0;
}

static int setup_bare(void **state)
{
    *state = fix_new();
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    if (f->blk_ok)
        blk_destroy(&f->blk);
    unlink(f->img);
    if (f->mounted)
        umount2(f->dir, MNT_DETACH);
    rmdir(f->dir);
    mock_vm_destroy(&f->vm);
    fake_ram_free(&f->ram);
    free(f);
    return 0;
}

static uint8_t do_req(struct fix *f, unsigned q, uint32_t type, uint64_t sector,
                      uint32_t len, bool wr, uint32_t *used_len)
{
    uint32_t lens[64] = { 0 };
    drv_post(&f->d, q, 0, type, sector, DATA_GPA + q * 0x10000, len, wr);
    drv_kick(&f->d, q);
    assert_int_equal(drv_reap(&f->d, q, 1, lens, WAIT_MS), 1);
    if (used_len)
        *used_len = lens[0];
    return drv_req_status(&f->d, q, 0);
}

static void test_config_space(void **state)
{
    struct fix *f = *state;
    struct virtio_blk_config c;
    for (unsigned i = 0; i < sizeof(c); i++)
        ((uint8_t *)&c)[i] = drv_rd(&f->d, VP_DEVCFG_OFF + i, 1);
    assert_int_equal(c.capacity, IMG_SIZE / 512);
    assert_int_equal(c.blk_size, 512);
    assert_int_equal(c.num_queues, 2);
    assert_int_equal(c.seg_max, 62);
    drv_wr(&f->d, DRV_CMN(device_feature_select), 4, 0);
    uint32_t feat = drv_rd(&f->d, DRV_CMN(device_feature), 4);
    assert_true(feat & 1u << VIRTIO_BLK_F_FLUSH);
    assert_true(feat & 1u << VIRTIO_BLK_F_MQ);
    assert_true(feat & 1u << VIRTIO_BLK_F_SEG_MAX);
    assert_true(feat & 1u << VIRTIO_BLK_F_BLK_SIZE);
    assert_true(feat & 1u << VIRTIO_RING_F_EVENT_IDX);
    assert_false(feat & 1u << VIRTIO_BLK_F_RO);
}

static void test_rw_roundtrip(void **state)
{
    need_uring();
    test_rw(state);
}

static void test_rw(void **state)
{
    struct fix *f = *state;
    uint8_t *w = fake_hva(&f->ram, DATA_GPA);
    uint8_t *r = fake_hva(&f->ram, DATA_GPA + 0x10000);
    uint32_t ul;

    for (unsigned i = 0; i < 8192; i++)
        w[i] = i * 13 + 1;
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_OUT, 16, 8192, false, &ul),
                     VIRTIO_BLK_S_OK);
    assert_int_equal(ul, 1);
    assert_int_equal(do_req(f, 1, VIRTIO_BLK_T_IN, 16, 8192, true, &ul),
                     VIRTIO_BLK_S_OK);
    assert_int_equal(ul, 8193);
    assert_memory_equal(w, r, 8192);
    /* Really in the file. */
    uint8_t buf[8192];
    int fd = open(f->img, O_RDONLY);
    assert_int_equal(pread(fd, buf, sizeof(buf), 16 * 512), 8192);
    close(fd);
    assert_memory_equal(buf, w, 8192);
    /* Last sector is fine. */
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_IN, IMG_SIZE / 512 - 1, 512,
                            true, NULL), VIRTIO_BLK_S_OK);
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_FLUSH, 0, 0, false, NULL),
                     VIRTIO_BLK_S_OK);
}

static void test_rw_threads(void **state) { test_rw(state); }
static void test_rw_cache_none(void **state) { need_uring(); test_rw(state); }

static void test_own_vector(void **state)
{
    struct fix *f = *state;
    /* Drain anything earlier. */
    drv_wait_irq(&f->d, 1, 0);
    drv_wait_irq(&f->d, 2, 0);
    drv_post(&f->d, 1, 0, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true);
    drv_kick(&f->d, 1);
    assert_true(drv_wait_irq(&f->d, 2, WAIT_MS));
    assert_false(drv_wait_irq(&f->d, 1, 0));
    assert_int_equal(drv_req_status(&f->d, 1, 0), VIRTIO_BLK_S_OK);
}

static void test_out_of_range(void **state)
{
    struct fix *f = *state;
    uint64_t cap = IMG_SIZE / 512;
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_IN, cap - 1, 1024, true, NULL),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_IN, cap, 512, true, NULL),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_OUT, UINT64_MAX / 256, 512,
                            false, NULL), VIRTIO_BLK_S_IOERR);
    /* Not a whole sector. */
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_IN, 0, 100, true, NULL),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(do_req(f, 0, 77, 0, 512, true, NULL), VIRTIO_BLK_S_UNSUPP);
    /* The queue goes on. */
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_IN, 0, 512, true, NULL),
                     VIRTIO_BLK_S_OK);
}

static void test_get_id(void **state)
{
    struct fix *f = *state;
    uint32_t ul;
    char *id = fake_hva(&f->ram, DATA_GPA);
    memset(id, 'x', 64);
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_GET_ID, 0, 20, true, &ul),
                     VIRTIO_BLK_S_OK);
    assert_int_equal(ul, 21);
    assert_string_equal(id, "dvmm-serial-0001");
}

static void test_ro(void **state)
{
    struct fix *f = *state;
    drv_wr(&f->d, DRV_CMN(device_feature_select), 4, 0);
    assert_true(drv_rd(&f->d, DRV_CMN(device_feature), 4) &
                1u << VIRTIO_BLK_F_RO);
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_OUT, 0, 512, false, NULL),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_IN, 0, 512, true, NULL),
                     VIRTIO_BLK_S_OK);
    assert_int_equal(memcmp(fake_hva(&f->ram, DATA_GPA), "\0\1\2\3", 4), 0);
}

static void test_malformed_needs_reset(void **state)
{
    struct fix *f = *state;
    struct fake_drv *q = &f->d.q[1];
    drv_wait_irq(&f->d, 0, 0);
    fake_desc(q->desc, 0, DATA_GPA, 16, VRING_DESC_F_NEXT, 1);
    fake_desc(q->desc, 1, DATA_GPA, 16, VRING_DESC_F_NEXT, 0);
    fake_avail(q, 0);
    drv_kick(&f->d, 1);
    /* Config interrupt on vector 0, NEEDS_RESET in status. */
    assert_true(drv_wait_irq(&f->d, 0, WAIT_MS));
    assert_true(drv_status(&f->d) & VIRTIO_CONFIG_S_NEEDS_RESET);
    /* Queue 0 keeps working until the driver resets. */
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_IN, 0, 512, true, NULL),
                     VIRTIO_BLK_S_OK);
    /* Reset + restart brings the device back. */
    uint8_t st = drv_start(&f->d, FEAT);
    assert_false(st & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_int_equal(do_req(f, 1, VIRTIO_BLK_T_IN, 0, 512, true, NULL),
                     VIRTIO_BLK_S_OK);
}

static void test_no_status_byte(void **state)
{
    struct fix *f = *state;
    struct fake_drv *q = &f->d.q[0];
    fake_desc(q->desc, 0, DATA_GPA, 16, 0, 0);
    fake_avail(q, 0);
    drv_kick(&f->d, 0);
    assert_true(drv_wait_irq(&f->d, 0, WAIT_MS));
    assert_true(drv_status(&f->d) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static void test_indirect(void **state)
{
    struct fix *f = *state;
    struct fake_drv *q = &f->d.q[0];
    uint64_t tgpa = DATA_GPA + 0x30000;
    struct vring_desc *t = fake_hva(&f->ram, tgpa);
    struct virtio_blk_outhdr *h = fake_hva(&f->ram, tgpa + 0x100);
    h->type = VIRTIO_BLK_T_IN;
    h->sector = 1;
    uint8_t *st = fake_hva(&f->ram, tgpa + 0x200);
    *st = 0xee;
    /* Data in two 256-byte pieces. */
    fake_desc(t, 0, tgpa + 0x100, 16, VRING_DESC_F_NEXT, 1);
    fake_desc(t, 1, DATA_GPA, 256, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
    fake_desc(t, 2, DATA_GPA + 4096, 256, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 3);
    fake_desc(t, 3, tgpa + 0x200, 1, VRING_DESC_F_WRITE, 0);
    fake_desc(q->desc, 0, tgpa, 4 * 16, VRING_DESC_F_INDIRECT, 0);
    fake_avail(q, 0);
    drv_kick(&f->d, 0);
    uint32_t lens[64];
    assert_int_equal(drv_reap(&f->d, 0, 1, lens, WAIT_MS), 1);
    assert_int_equal(*st, VIRTIO_BLK_S_OK);
    assert_int_equal(lens[0], 513);
    uint8_t *a = fake_hva(&f->ram, DATA_GPA), *b = fake_hva(&f->ram, DATA_GPA + 4096);
    assert_int_equal(a[0], (uint8_t)(1 + 512));
    assert_int_equal(b[0], (uint8_t)(1 + 512 + 256));
}

struct guest_arg {
    struct fix *f;
    unsigned q;
    int failures;
};

/* A guest vCPU: 20 rounds of (write 8 requests, read them back) on its own
 * queue and disk area, checking status, data and the interrupt vector. */
static void *guest_thread(void *p)
{
    struct guest_arg *a = p;
    struct drv *d = &a->f->d;
    unsigned q = a->q;
    uint64_t data = DATA_GPA + q * 0x40000;

    for (unsigned round = 0; round < 20; round++) {
        for (unsigned s = 0; s < 8; s++) {
            uint8_t *buf = fake_hva(d->ram, data + s * 4096);
            memset(buf, (int)(q * 64 + round + s), 4096);
            drv_post(d, q, s, VIRTIO_BLK_T_OUT, 512 + q * 512 + s * 8,
                     data + s * 4096, 4096, false);
        }
        drv_kick(d, q);
        if (drv_reap(d, q, 8, NULL, WAIT_MS) != 8)
            a->failures++;
        for (unsigned s = 0; s < 8; s++) {
            if (drv_req_status(d, q, s) != VIRTIO_BLK_S_OK)
                a->failures++;
            memset(fake_hva(d->ram, data + 0x20000 + s * 4096), 0, 4096);
            drv_post(d, q, s, VIRTIO_BLK_T_IN, 512 + q * 512 + s * 8,
                     data + 0x20000 + s * 4096, 4096, true);
        }
        drv_kick(d, q);
        if (drv_reap(d, q, 8, NULL, WAIT_MS) != 8)
            a->failures++;
        for (unsigned s = 0; s < 8; s++) {
            uint8_t *buf = fake_hva(d->ram, data + 0x20000 + s * 4096);
            if (drv_req_status(d, q, s) != VIRTIO_BLK_S_OK ||
                buf[0] != (uint8_t)(q * 64 + round + s) ||
                buf[4095] != (uint8_t)(q * 64 + round + s))
                a->failures++;
        }
    }
    return NULL;
}

static void test_guest_threads(void **state)
{
    struct fix *f = *state;
    pthread_t t[2];
    struct guest_arg a[2];
    for (unsigned q = 0; q < 2; q++) {
        a[q] = (struct guest_arg){ .f = f, .q = q };
        assert_int_equal(pthread_create(&t[q], NULL, guest_thread, &a[q]), 0);
    }
    for (unsigned q = 0; q < 2; q++) {
        pthread_join(t[q], NULL);
        assert_int_equal(a[q].failures, 0);
    }
    assert_int_equal(f->blk.q[0].ncompleted, 320);
    assert_int_equal(f->blk.q[1].ncompleted, 320);
}

static void test_guest_threads_sync(void **state) { test_guest_threads(state); }

static void test_reset_in_flight(void **state)
{
    struct fix *f = *state;
    struct fake_drv *q = &f->d.q[0];

    for (unsigned iter = 0; iter < 20; iter++) {
        for (unsigned s = 0; s < 20; s++)
            drv_post(&f->d, 0, s, s & 1 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
                     (s * 64) % (IMG_SIZE / 512 - 64),
                     DATA_GPA + s * 0x4000, 0x4000, !(s & 1));
        drv_kick(&f->d, 0);
        /* Reset while the worker is (probably) mid-flight. */
        drv_wr(&f->d, DRV_CMN(device_status), 1, 0);
        assert_int_equal(drv_status(&f->d), 0);
        assert_false(f->blk.q[0].running);
        /* After the acknowledged reset: the old ring stays as it is and no
         * interrupt comes. */
        uint16_t idx = __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
        uint8_t used_copy[6 + 8 * 64];
        memcpy(used_copy, q->used, sizeof(used_copy));
        drv_wait_irq(&f->d, 1, 0);
        assert_false(drv_wait_irq(&f->d, 1, 20));
        assert_int_equal(q->used->idx, idx);
        assert_memory_equal(used_copy, q->used, sizeof(used_copy));
        /* And the device comes back. */
        uint8_t st = drv_start(&f->d, FEAT);
        assert_true(st & VIRTIO_CONFIG_S_DRIVER_OK);
    }
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_IN, 0, 512, true, NULL),
                     VIRTIO_BLK_S_OK);
}

static void test_reset_in_flight_sync(void **state) { test_reset_in_flight(state); }

static void test_bad_size(void **state)
{
    struct fix *f = *state;
    char err[256] = "";
    make_image(f->img, 1000);
    f->disk.index = 3;
    assert_int_equal(blk_init(&f->blk, &f->disk, &f->vm.pci, &f->vm.vmif,
                              &f->ram.gm, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "disk.3.path"));
    assert_non_null(strstr(err, "1000"));
    strcpy(f->disk.path, "/nonexistent/x.img");
    assert_true(blk_init(&f->blk, &f->disk, &f->vm.pci, &f->vm.vmif,
                         &f->ram.gm, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "disk.3.path"));
}

static void test_enospc(void **state)
{
    struct fix *f = *state;
    if (mount("tmpfs", f->dir, "tmpfs", 0, "size=64k") < 0) {
        print_message("# ENOSPC test needs a tiny tmpfs; mount failed: %s (not root?)\n",
                      strerror(errno));
        skip();
    }
    f->mounted = true;
    /* A sparse 1 MiB image on a 64 KiB filesystem. */
    int fd = open(f->img, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, IMG_SIZE), 0);
    close(fd);
    fix_open(f, uring_engine, false);
    int ioerr = 0;
    for (unsigned i = 0; i < 8; i++) {
        uint8_t st = do_req(f, 0, VIRTIO_BLK_T_OUT, i * 64, 32768, false, NULL);
        assert_true(st == VIRTIO_BLK_S_OK || st == VIRTIO_BLK_S_IOERR);
        ioerr += st == VIRTIO_BLK_S_IOERR;
    }
    assert_true(ioerr > 0);
    /* Other requests and the other queue go on. */
    assert_int_equal(do_req(f, 1, VIRTIO_BLK_T_IN, 0, 512, true, NULL),
                     VIRTIO_BLK_S_OK);
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_IN, 0, 512, true, NULL),
                     VIRTIO_BLK_S_OK);
}

static void test_discard_zeroes(void **state)
{
    struct fix *f = *state;
    if (!f->blk.lim.write_zeroes || !f->blk.lim.discard) {
        print_message("# the filesystem of %s lacks punch-hole/zero-range\n",
                      f->img);
        skip();
    }
    struct virtio_blk_discard_write_zeroes *s = fake_hva(&f->ram, DATA_GPA);
    s->sector = 8;
    s->num_sectors = 8;
    s->flags = 0;
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, sizeof(*s),
                            false, NULL), VIRTIO_BLK_S_OK);
    uint8_t buf[4096], zero[4096] = { 0 };
    int fd = open(f->img, O_RDONLY);
    assert_int_equal(pread(fd, buf, 4096, 8 * 512), 4096);
    assert_memory_equal(buf, zero, 4096);
    s->sector = 32;
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_DISCARD, 0, sizeof(*s),
                            false, NULL), VIRTIO_BLK_S_OK);
    s->sector = IMG_SIZE / 512 - 4;
    assert_int_equal(do_req(f, 0, VIRTIO_BLK_T_DISCARD, 0, sizeof(*s),
                            false, NULL), VIRTIO_BLK_S_IOERR);
    close(fd);
}

int main(void)
{
#define T(fn, s) cmocka_unit_test_setup_teardown(fn, s, teardown)
    const struct CMUnitTest tests[] = {
        T(test_config_space, setup_uring),
        T(test_rw_roundtrip, setup_uring),
        T(test_rw_threads, setup_threads),
        T(test_rw_cache_none, setup_direct),
        T(test_own_vector, setup_uring),
        T(test_out_of_range, setup_uring),
        T(test_get_id, setup_uring),
        T(test_ro, setup_ro),
        T(test_malformed_needs_reset, setup_uring),
        T(test_no_status_byte, setup_threads),
        T(test_indirect, setup_uring),
        T(test_guest_threads, setup_uring),
        T(test_guest_threads_sync, setup_threads),
        T(test_reset_in_flight, setup_uring),
        T(test_reset_in_flight_sync, setup_threads),
        T(test_bad_size, setup_bare),
        T(test_enospc, setup_bare),
        T(test_discard_zeroes, setup_uring),
    };
    struct io_uring probe;
    if (io_uring_queue_init(4, &probe, 0) == 0)
        io_uring_queue_exit(&probe);
    else
        uring_engine = BLK_ENGINE_THREADS;
    log_set_level(LOG_WARN);
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
