/* Real gm_open with the backends every host has (anon, memfd), plus the
 * dmemfs code path (MAP_SHARED file, zeroing, no O_DIRECT) driven on a tmpfs
 * file behind a mocked statfs.  Sizes stay small or untouched so RSS stays
 * low: the 3 GiB + 4 KiB cases only reserve and touch a few pages. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <linux/magic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest-mem/gm.h"

#define G GM_GiB
#define M GM_MiB

static struct gm_config cfg_of(enum gm_backend b, bool prealloc, bool thp)
{
    return (struct gm_config){ .backend = b, .prealloc = prealloc, .thp = thp,
                               .host_node = -1 };
}

static bool all_zero(const uint8_t *p, uint64_t len)
{
    for (uint64_t i = 0; i < len; i += 8)
        if (*(const uint64_t *)(p + i))
            return false;
    return true;
}

static void check_congruent(const struct guest_mem *gm)
{
    for (unsigned i = 0; i < gm->layout.nr; i++) {
        const struct gm_region *r = &gm->layout.r[i];

        assert_non_null(r->hva);
        assert_true((uintptr_t)r->hva % G == r->gpa % G);
        assert_true((uintptr_t)r->hva % gm->page_size == 0);
        assert_true((uint8_t *)r->hva >= (uint8_t *)gm->reserve);
        assert_true((uint8_t *)r->hva + r->size <= (uint8_t *)gm->reserve + gm->reserve_len);
    }
}

/* Pages of [p, p+len) resident in this process. */
static uint64_t resident_pages(void *p, uint64_t len)
{
    uint64_t n = len / 4096, count = 0;
    unsigned char *vec = malloc(n);

    assert_non_null(vec);
    assert_int_equal(mincore(p, len, vec), 0);
    for (uint64_t i = 0; i < n; i++)
        count += vec[i] & 1;
    free(vec);
    return count;
}

/* The VmFlags line of the smaps entry that starts at p. */
static void vmflags_of(void *p, char *out, size_t len)
{
    char line[512], want[32];
    bool in = false;
    FILE *f = fopen("/proc/self/smaps", "r");

    assert_non_null(f);
    out[0] = '\0';
    snprintf(want, sizeof(want), "%lx-", (unsigned long)(uintptr_t)p);
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, want, strlen(want)))
            in = true;
        else if (in && !strncmp(line, "VmFlags:", 8)) {
            snprintf(out, len, "%s", line);
            break;
        }
    }
    fclose(f);
}

static void test_anon_small(void **state)
{
    struct gm_config c = cfg_of(GM_ANON, false, false);
    struct guest_mem gm;
    char err[256], flags[512];
    uint8_t *p;

    (void)state;
    assert_int_equal(gm_open(&gm, &c, 64 * M, err, sizeof(err)), 0);
    assert_int_equal(gm.layout.nr, 1);
    assert_int_equal(gm.fd, -1);
    assert_true(gm.page_size == 4096);
    check_congruent(&gm);
    assert_true(gm_backend_allows_odirect(&gm));
    p = gm_gpa_to_hva(&gm, 0, 64 * M);
    assert_non_null(p);
    assert_true(all_zero(p, 64 * M));
    p[0x1234] = 0x5a;
    assert_int_equal(*(uint8_t *)gm_gpa_to_hva(&gm, 0x1234, 1), 0x5a);
    vmflags_of(gm.layout.r[0].hva, flags, sizeof(flags));
    assert_non_null(strstr(flags, " nh"));        /* thp=no -> MADV_NOHUGEPAGE */
    gm_close(&gm);
    gm_close(&gm);                                /* second close is harmless */
    assert_null(gm.reserve);
}

static void test_anon_prealloc_thp(void **state)
{
    struct gm_config c = cfg_of(GM_ANON, true, true);
    struct guest_mem gm;
    char err[256], flags[512];

    (void)state;
    assert_int_equal(gm_open(&gm, &c, 64 * M, err, sizeof(err)), 0);
    check_congruent(&gm);
    assert_true(resident_pages(gm.layout.r[0].hva, 64 * M) == 64 * M / 4096);
    assert_true(all_zero(gm.layout.r[0].hva, 64 * M));
    vmflags_of(gm.layout.r[0].hva, flags, sizeof(flags));
    assert_non_null(strstr(flags, " hg"));        /* thp=yes -> MADV_HUGEPAGE */
    gm_close(&gm);
}

static void test_memfd_prealloc(void **state)
{
    struct gm_config c = cfg_of(GM_MEMFD, true, false);
    struct guest_mem gm;
    struct stat st;
    char err[256];

    (void)state;
    assert_int_equal(gm_open(&gm, &c, 64 * M, err, sizeof(err)), 0);
    assert_true(gm.fd >= 0);
    assert_int_equal(fstat(gm.fd, &st), 0);
    assert_true((uint64_t)st.st_size == 64 * M);
    check_congruent(&gm);
    assert_true(resident_pages(gm.layout.r[0].hva, 64 * M) == 64 * M / 4096);
    assert_true(all_zero(gm.layout.r[0].hva, 64 * M));
    gm_close(&gm);
    assert_int_equal(gm.fd, -1);
}

/* 3 GiB + 4 KiB: two regions, the high one at 4 GiB, only touched sparsely. */
static void split_layout(enum gm_backend b)
{
    struct gm_config c = cfg_of(b, false, false);
    struct guest_mem gm;
    uint64_t gpa = 0;
    char err[256];
    uint8_t *lo_last, *hi;

    assert_int_equal(gm_open(&gm, &c, 3 * G + 4096, err, sizeof(err)), 0);
    assert_int_equal(gm.layout.nr, 2);
    check_congruent(&gm);
    lo_last = gm_gpa_to_hva(&gm, 3 * G - 1, 1);
    hi = gm_gpa_to_hva(&gm, 4 * G, 4096);
    assert_non_null(lo_last);
    assert_non_null(hi);
    assert_null(gm_gpa_to_hva(&gm, 3 * G, 1));
    assert_null(gm_gpa_to_hva(&gm, 4 * G, 4097));
    assert_int_equal(*lo_last, 0);
    assert_true(all_zero(hi, 4096));
    *lo_last = 0x11;
    hi[4095] = 0x22;
    assert_int_equal(gm_hva_to_gpa(&gm, hi + 4095, &gpa), 0);
    assert_true(gpa == 4 * G + 4095);
    if (b == GM_MEMFD) {
        uint8_t byte = 0;

        /* The high region maps file offset 3 GiB: one contiguous file. */
        assert_int_equal(pread(gm.fd, &byte, 1, (off_t)(3 * G + 4095)), 1);
        assert_int_equal(byte, 0x22);
        assert_int_equal(pread(gm.fd, &byte, 1, (off_t)(3 * G - 1)), 1);
        assert_int_equal(byte, 0x11);
    }
    gm_close(&gm);
}

static void test_anon_split(void **state) { (void)state; split_layout(GM_ANON); }
static void test_memfd_split(void **state) { (void)state; split_layout(GM_MEMFD); }

static void test_prefault_zero_threads(void **state)
{
    struct gm_config c = cfg_of(GM_ANON, false, false);
    struct guest_mem gm;
    char err[256];

    (void)state;
    assert_int_equal(gm_open(&gm, &c, 160 * M, err, sizeof(err)), 0);
    memset(gm.layout.r[0].hva, 0xee, 160 * M);
    assert_int_equal(gm_prefault(&gm, true, 2), 0);
    assert_true(all_zero(gm.layout.r[0].hva, 160 * M));
    /* a touch-only prefault keeps contents */
    memset(gm.layout.r[0].hva + 100 * M, 0x77, 4096);
    assert_int_equal(gm_prefault(&gm, false, 3), 0);
    assert_int_equal(gm.layout.r[0].hva[100 * M + 4095], 0x77);
    gm_close(&gm);
}

static void test_host_node(void **state)
{
    struct gm_config c = cfg_of(GM_ANON, true, false);
    struct guest_mem gm;
    char err[256];

    (void)state;
    c.host_node = 0;
    assert_int_equal(gm_open(&gm, &c, 16 * M, err, sizeof(err)), 0);
    gm_close(&gm);
}

/* A hugetlbfs mount this host already has, with 2 free pages; the test
 * does not reserve pages or mount one itself (that changes the host). */
static bool find_hugetlbfs(char *dir, size_t len, uint64_t *page)
{
    char line[512], mnt[256], type[64];
    bool found = false;
    FILE *f = fopen("/proc/mounts", "r");

    if (!f)
        return false;
    while (!found && fgets(line, sizeof(line), f)) {
        struct statfs st;
        char path[160];
        FILE *fp;
        unsigned long long free_pages = 0;

        if (sscanf(line, "%*s %255s %63s", mnt, type) != 2 || strcmp(type, "hugetlbfs") ||
            statfs(mnt, &st))
            continue;
        snprintf(path, sizeof(path),
                 "/sys/kernel/mm/hugepages/hugepages-%lukB/free_hugepages",
                 (unsigned long)st.f_bsize / 1024);
        fp = fopen(path, "r");
        if (fp && fscanf(fp, "%llu", &free_pages) == 1 && free_pages >= 2) {
            snprintf(dir, len, "%s", mnt);
            *page = (uint64_t)st.f_bsize;
            found = true;
        }
        if (fp)
            fclose(fp);
    }
    fclose(f);
    return found;
}

/* Registered only when find_hugetlbfs succeeds (see main). */
static void test_hugetlbfs_mounted(void **state)
{
    struct gm_config c = cfg_of(GM_HUGETLBFS, true, false);
    struct guest_mem gm;
    uint64_t page;
    char err[256];

    (void)state;
    assert_true(find_hugetlbfs(c.path, sizeof(c.path), &page));
    assert_int_equal(gm_open(&gm, &c, 2 * page, err, sizeof(err)), 0);
    assert_true(gm.page_size == page);
    check_congruent(&gm);
    assert_true(all_zero(gm.layout.r[0].hva, 2 * page));
    gm_close(&gm);
}

/* The dmemfs path on tmpfs: statfs is faked, everything else is real. */
static int fake_dmemfs_statfs(const struct gm_host *h, const char *path, struct statfs *st)
{
    (void)h, (void)path;
    memset(st, 0, sizeof(*st));
    st->f_type = GM_DMEMFS_MAGIC;
    st->f_bsize = 2 * M;
    return 0;
}

static bool shm_is_tmpfs(void)
{
    struct statfs st;

    return statfs("/dev/shm", &st) == 0 && st.f_type == TMPFS_MAGIC;
}

static unsigned dir_entries(const char *dir)
{
    unsigned n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;

    assert_non_null(d);
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_dmemfs_path_on_tmpfs(void **state)
{
    const struct gm_host host = { .statfs = fake_dmemfs_statfs, .sysroot = "/nonexistent" };
    struct gm_config c = cfg_of(GM_DMEMFS, false, false);
    char dir[] = "/dev/shm/test_gm_open.XXXXXX", file[64], err[256];
    struct guest_mem gm;
    uint8_t junk[4096];
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));

    /* A mount-point directory: an unnamed file, nothing left behind. */
    snprintf(c.path, sizeof(c.path), "%s", dir);
    assert_int_equal(gm_open_host(&gm, &c, 8 * M, &host, err, sizeof(err)), 0);
    assert_true(gm.page_size == 2 * M);
    assert_false(gm_backend_allows_odirect(&gm));
    check_congruent(&gm);
    assert_true(resident_pages(gm.layout.r[0].hva, 8 * M) == 8 * M / 4096);
    assert_true(all_zero(gm.layout.r[0].hva, 8 * M));
    assert_int_equal(dir_entries(dir), 0);
    gm_close(&gm);

    /* A named file with stale contents: guest RAM still starts zeroed. */
    snprintf(file, sizeof(file), "%s/vm.ram", dir);
    fd = open(file, O_CREAT | O_RDWR, 0600);
    assert_true(fd >= 0);
    memset(junk, 0xa5, sizeof(junk));
    for (int i = 0; i < 1024; i++)
        assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    snprintf(c.path, sizeof(c.path), "%s", file);
    assert_int_equal(gm_open_host(&gm, &c, 4 * M, &host, err, sizeof(err)), 0);
    assert_true(all_zero(gm.layout.r[0].hva, 4 * M));
    gm_close(&gm);
    assert_int_equal(unlink(file), 0);
    assert_int_equal(rmdir(dir), 0);
}

static bool have_node0(void)
{
    return access("/sys/devices/system/node/node0", F_OK) == 0;
}

static bool have_hugetlbfs(void)
{
    char dir[PATH_MAX];
    uint64_t page;

    return find_hugetlbfs(dir, sizeof(dir), &page);
}

/* Tests that need something of the host, and why they cannot run without it. */
static const struct {
    const char *name;
    bool (*available)(void);
    const char *why;
} needs[] = {
    { "test_host_node", have_node0, "no /sys/devices/system/node/node0 to mbind to" },
    { "test_dmemfs_path_on_tmpfs", shm_is_tmpfs,
      "/dev/shm is not tmpfs (need a RAM-backed MAP_SHARED file to stand in for dmemfs)" },
    { "test_hugetlbfs_mounted", have_hugetlbfs,
      "no hugetlbfs mount with 2 free huge pages on this host "
      "(tests/bench/prefault-bench mounts one as root)" },
};

int main(void)
{
    const struct CMUnitTest all[] = {
        cmocka_unit_test(test_anon_small),
        cmocka_unit_test(test_anon_prealloc_thp),
        cmocka_unit_test(test_memfd_prealloc),
        cmocka_unit_test(test_anon_split),
        cmocka_unit_test(test_memfd_split),
        cmocka_unit_test(test_prefault_zero_threads),
        cmocka_unit_test(test_host_node),
        cmocka_unit_test(test_dmemfs_path_on_tmpfs),
        cmocka_unit_test(test_hugetlbfs_mounted),
    };
    struct CMUnitTest tests[sizeof(all) / sizeof(all[0])];
    size_t n = 0;

    /* cmocka 1.1.5 prints skip() as "not ok N # SKIP", which prove counts
     * as a failure.  So a test this host cannot run is left out of the plan
     * with a "# SKIP" line giving the reason: never reported as a pass. */
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        bool run = true;

        for (size_t k = 0; k < sizeof(needs) / sizeof(needs[0]); k++) {
            if (!strcmp(all[i].name, needs[k].name) && !needs[k].available()) {
                printf("# SKIP %s: %s\n", needs[k].name, needs[k].why);
                run = false;
            }
        }
        if (run)
            tests[n++] = all[i];
    }
    cmocka_set_message_output(CM_OUTPUT_TAP);
    /* cmocka_run_group_tests with a run-time count */
    return _cmocka_run_group_tests("tests", tests, n, NULL, NULL);
}
