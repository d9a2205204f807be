/* Backend host checks against a mocked statfs and a fake /sys tree:
 * filesystem magic, page size from f_bsize, RAM multiple of it, free huge
 * pages and dpages, NUMA node; and the one-line messages they produce. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/test_fake_root.h"

#include "guest-mem/gm.h"

#define G GM_GiB
#define M GM_MiB

struct fixture {
    char root[PATH_MAX];
    struct gm_host host;
    char err[512];
};

static void unput(const char *root, const char *rel)
{
    char path[PATH_MAX * 2];

    snprintf(path, sizeof(path), "%s%s", root, rel);
    unlink(path);
}

/* Each call pops: return value, f_type, f_bsize. */
static int fake_statfs(const struct gm_host *h, const char *path, struct statfs *st)
{
    int ret;

    (void)h;
    check_expected_ptr(path);
    ret = mock_type(int);
    memset(st, 0, sizeof(*st));
    st->f_type = mock_type(long);
    st->f_bsize = mock_type(long);
    return ret;
}

static void will_statfs(const char *path, int ret, long type, long bsize)
{
    expect_string(fake_statfs, path, path);
    will_return(fake_statfs, ret);
    will_return(fake_statfs, type);
    will_return(fake_statfs, bsize);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    snprintf(f->root, sizeof(f->root), "/tmp/test_gm_backend.XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    f->host.statfs = fake_statfs;
    f->host.sysroot = f->root;
    put(f->root, "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "1024\n");
    put(f->root, "/sys/kernel/mm/hugepages/hugepages-2048kB/resv_hugepages", "24\n");
    put(f->root, "/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages", "2\n");
    put(f->root, "/sys/kernel/mm/hugepages/hugepages-1048576kB/resv_hugepages", "0\n");
    put(f->root, "/sys/kernel/debug/dmem/free_dpages", "4\n");
    put(f->root, "/sys/kernel/debug/dmem/dpage_shift", "30\n");
    put(f->root, "/sys/devices/system/node/node0/online", "1\n");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[PATH_MAX + 16];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static struct gm_config cfg_for(enum gm_backend b, const char *path)
{
    struct gm_config c = { .backend = b, .host_node = -1 };

    snprintf(c.path, sizeof(c.path), "%s", path);
    return c;
}

static void assert_one_line(const char *err)
{
    assert_true(err[0] != '\0');
    assert_null(strchr(err, '\n'));
}

static void test_anon_memfd(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_ANON, "");
    uint64_t page = 0;

    assert_int_equal(gm_backend_check(&f->host, &c, 64 * M, &page, f->err, sizeof(f->err)), 0);
    assert_true(page == 4096);
    c.backend = GM_MEMFD;
    page = 0;
    assert_int_equal(gm_backend_check(&f->host, &c, 3 * G + 4096, &page, f->err, sizeof(f->err)), 0);
    assert_true(page == 4096);
}

static void test_hugetlb_ok(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_HUGETLBFS, "/mnt/huge2m");
    uint64_t page = 0;

    will_statfs("/mnt/huge2m", 0, HUGETLBFS_MAGIC, 2 * M);
    /* 1000 pages: exactly free (1024) - resv (24) */
    assert_int_equal(gm_backend_check(&f->host, &c, 2000 * M, &page, f->err, sizeof(f->err)), 0);
    assert_true(page == 2 * M);
}

static void test_hugetlb_file_not_yet_created(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_HUGETLBFS, "/mnt/huge1g/vm0.ram");
    uint64_t page = 0;

    will_statfs("/mnt/huge1g/vm0.ram", -ENOENT, 0, 0);
    will_statfs("/mnt/huge1g", 0, HUGETLBFS_MAGIC, G);
    assert_int_equal(gm_backend_check(&f->host, &c, 2 * G, &page, f->err, sizeof(f->err)), 0);
    assert_true(page == G);
}

static void test_hugetlb_too_few(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_HUGETLBFS, "/mnt/huge2m");
    uint64_t page = 0;

    will_statfs("/mnt/huge2m", 0, HUGETLBFS_MAGIC, 2 * M);
    assert_int_equal(gm_backend_check(&f->host, &c, 2002 * M, &page, f->err, sizeof(f->err)),
                     -ENOMEM);
    assert_one_line(f->err);
    assert_non_null(strstr(f->err, "memory.backend=hugetlbfs"));
    assert_non_null(strstr(f->err, "vm.memory=2002M"));
    assert_non_null(strstr(f->err, "needs 1001 pages of 2M"));
    assert_non_null(strstr(f->err, "only 1000 are free"));

    will_statfs("/mnt/huge1g", 0, HUGETLBFS_MAGIC, G);
    c = cfg_for(GM_HUGETLBFS, "/mnt/huge1g");
    assert_int_equal(gm_backend_check(&f->host, &c, 3 * G, &page, f->err, sizeof(f->err)),
                     -ENOMEM);
    assert_non_null(strstr(f->err, "needs 3 pages of 1G"));
}

static void test_hugetlb_wrong_magic(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_HUGETLBFS, "/tmp");
    uint64_t page = 0;

    will_statfs("/tmp", 0, TMPFS_MAGIC, 4096);
    assert_int_equal(gm_backend_check(&f->host, &c, 64 * M, &page, f->err, sizeof(f->err)),
                     -EINVAL);
    assert_one_line(f->err);
    assert_non_null(strstr(f->err, "memory.path=/tmp"));
    assert_non_null(strstr(f->err, "0x958458f6"));
    assert_non_null(strstr(f->err, "0x1021994"));
}

static void test_hugetlb_not_multiple(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_HUGETLBFS, "/mnt/huge2m");
    uint64_t page = 0;

    will_statfs("/mnt/huge2m", 0, HUGETLBFS_MAGIC, 2 * M);
    assert_int_equal(gm_backend_check(&f->host, &c, 3 * G - 1, &page, f->err, sizeof(f->err)),
                     -EINVAL);
    assert_one_line(f->err);
    assert_non_null(strstr(f->err, "vm.memory=3221225471"));
    assert_non_null(strstr(f->err, "page size 2M"));
    assert_non_null(strstr(f->err, "memory.path=/mnt/huge2m"));
}

static void test_path_missing(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_DMEMFS, "");
    uint64_t page = 0;

    assert_int_equal(gm_backend_check(&f->host, &c, G, &page, f->err, sizeof(f->err)), -EINVAL);
    assert_non_null(strstr(f->err, "memory.path is required for memory.backend=dmemfs"));

    c = cfg_for(GM_HUGETLBFS, "/nonexistent/dir/file");
    will_statfs("/nonexistent/dir/file", -ENOENT, 0, 0);
    will_statfs("/nonexistent/dir", -ENOENT, 0, 0);
    assert_int_equal(gm_backend_check(&f->host, &c, G, &page, f->err, sizeof(f->err)), -ENOENT);
    assert_one_line(f->err);
    assert_non_null(strstr(f->err, "memory.path=/nonexistent/dir/file"));
}

static void test_dmemfs_1g(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_DMEMFS, "/mnt/dmem");
    uint64_t page = 0;

    will_statfs("/mnt/dmem", 0, 0x2ace90c6, G);
    assert_int_equal(gm_backend_check(&f->host, &c, 4 * G, &page, f->err, sizeof(f->err)), 0);
    assert_true(page == G);

    /* THP never only earns a warning: the mapping still works, with PTEs. */
    put(f->root, "/sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]\n");
    will_statfs("/mnt/dmem", 0, 0x2ace90c6, G);
    assert_int_equal(gm_backend_check(&f->host, &c, 4 * G, &page, f->err, sizeof(f->err)), 0);
    unput(f->root, "/sys/kernel/mm/transparent_hugepage/enabled");
}

static void test_dmemfs_wrong_magic(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_DMEMFS, "/mnt/huge1g");
    uint64_t page = 0;

    /* a hugetlbfs mount is not a dmemfs mount */
    will_statfs("/mnt/huge1g", 0, HUGETLBFS_MAGIC, G);
    assert_int_equal(gm_backend_check(&f->host, &c, G, &page, f->err, sizeof(f->err)), -EINVAL);
    assert_one_line(f->err);
    assert_non_null(strstr(f->err, "is not on dmemfs"));
    assert_non_null(strstr(f->err, "0x2ace90c6"));
    assert_non_null(strstr(f->err, "memory.backend=dmemfs"));
}

static void test_dmemfs_not_multiple(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_DMEMFS, "/mnt/dmem");
    uint64_t page = 0;

    will_statfs("/mnt/dmem", 0, 0x2ace90c6, G);
    assert_int_equal(gm_backend_check(&f->host, &c, 3 * G + 4096, &page, f->err,
                                      sizeof(f->err)), -EINVAL);
    assert_one_line(f->err);
    assert_non_null(strstr(f->err, "vm.memory=3145732K"));
    assert_non_null(strstr(f->err, "dmemfs page size 1G"));
}

static void test_dmemfs_too_few(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_DMEMFS, "/mnt/dmem");
    uint64_t page = 0;

    will_statfs("/mnt/dmem", 0, 0x2ace90c6, G);
    assert_int_equal(gm_backend_check(&f->host, &c, 5 * G, &page, f->err, sizeof(f->err)),
                     -ENOMEM);
    assert_one_line(f->err);
    assert_non_null(strstr(f->err, "memory.backend=dmemfs"));
    assert_non_null(strstr(f->err, "vm.memory=5G needs 5 dpages of 1G but only 4 are free"));
}

static void test_dmemfs_debugfs_unreadable(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_DMEMFS, "/mnt/dmem");
    uint64_t page = 0;

    /* Without debugfs the capacity is unknown: not an error. */
    unput(f->root, "/sys/kernel/debug/dmem/free_dpages");
    will_statfs("/mnt/dmem", 0, 0x2ace90c6, G);
    assert_int_equal(gm_backend_check(&f->host, &c, 64 * G, &page, f->err, sizeof(f->err)), 0);
    put(f->root, "/sys/kernel/debug/dmem/free_dpages", "4\n");
}

static void test_hugetlb_sysfs_unreadable(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_HUGETLBFS, "/mnt/huge16k");
    uint64_t page = 0;

    /* No hugepages-16kB directory in the fixture: warn, let mmap decide. */
    will_statfs("/mnt/huge16k", 0, HUGETLBFS_MAGIC, 16384);
    assert_int_equal(gm_backend_check(&f->host, &c, 64 * M, &page, f->err, sizeof(f->err)), 0);
    assert_true(page == 16384);
}

static void test_bad_bsize(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_HUGETLBFS, "/mnt/odd");
    uint64_t page = 0;

    will_statfs("/mnt/odd", 0, HUGETLBFS_MAGIC, 3 * M);
    assert_int_equal(gm_backend_check(&f->host, &c, 6 * M, &page, f->err, sizeof(f->err)), -EINVAL);
    assert_non_null(strstr(f->err, "unsupported page size"));
}

static void test_host_node(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_ANON, "");
    uint64_t page = 0;

    c.host_node = 0;
    assert_int_equal(gm_backend_check(&f->host, &c, 64 * M, &page, f->err, sizeof(f->err)), 0);
    c.host_node = 3;
    assert_int_equal(gm_backend_check(&f->host, &c, 64 * M, &page, f->err, sizeof(f->err)), -EINVAL);
    assert_one_line(f->err);
    assert_non_null(strstr(f->err, "memory.host_node=3"));
}

/* gm_open_host fails before mapping anything, with the check's message. */
static void test_open_fails_cleanly(void **state)
{
    struct fixture *f = *state;
    struct gm_config c = cfg_for(GM_DMEMFS, "/mnt/dmem");
    struct guest_mem gm;

    will_statfs("/mnt/dmem", 0, 0x2ace90c6, G);
    assert_int_equal(gm_open_host(&gm, &c, 8 * G, &f->host, f->err, sizeof(f->err)), -ENOMEM);
    assert_null(gm.reserve);
    assert_int_equal(gm.fd, -1);
    assert_non_null(strstr(f->err, "free"));
    gm_close(&gm);
    assert_int_equal(gm_open_host(&gm, &c, 0, &f->host, f->err, sizeof(f->err)), -EINVAL);
    assert_non_null(strstr(f->err, "vm.memory=0"));
}

static void test_names(void **state)
{
    struct guest_mem gm = { .backend = GM_DMEMFS };

    (void)state;
    assert_string_equal(gm_backend_name(GM_ANON), "anon");
    assert_string_equal(gm_backend_name(GM_MEMFD), "memfd");
    assert_string_equal(gm_backend_name(GM_HUGETLBFS), "hugetlbfs");
    assert_string_equal(gm_backend_name(GM_DMEMFS), "dmemfs");
    assert_false(gm_backend_allows_odirect(&gm));
    gm.backend = GM_HUGETLBFS;
    assert_true(gm_backend_allows_odirect(&gm));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anon_memfd),
        cmocka_unit_test(test_hugetlb_ok),
        cmocka_unit_test(test_hugetlb_file_not_yet_created),
        cmocka_unit_test(test_hugetlb_too_few),
        cmocka_unit_test(test_hugetlb_wrong_magic),
        cmocka_unit_test(test_hugetlb_not_multiple),
        cmocka_unit_test(test_path_missing),
        cmocka_unit_test(test_dmemfs_1g),
        cmocka_unit_test(test_dmemfs_wrong_magic),
        cmocka_unit_test(test_dmemfs_not_multiple),
        cmocka_unit_test(test_dmemfs_too_few),
        cmocka_unit_test(test_dmemfs_debugfs_unreadable),
        cmocka_unit_test(test_hugetlb_sysfs_unreadable),
        cmocka_unit_test(test_bad_bsize),
        cmocka_unit_test(test_host_node),
        cmocka_unit_test(test_open_fails_cleanly),
        cmocka_unit_test(test_names),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, setup, teardown);
}
