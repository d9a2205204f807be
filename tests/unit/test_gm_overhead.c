/* Overhead report: the struct page rules (4 KiB, hugetlb with and without
 * HVO, dmemfs), per-GiB arithmetic, counter parsing, snapshots read from a
 * fixture /proc, and the labels of the text and JSON outputs. */
#include <errno.h>
#include <limits.h>
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
#include <json-c/json.h>

#include "guest-mem/gm.h"
#include "guest-mem/host.h"
#include "guest-mem/overhead.h"

#define G GM_GiB
#define M GM_MiB

static void test_struct_page_rules(void **state)
{
    enum gm_spage_rule rule;

    (void)state;
    /* 1 GiB of 4 KiB pages: 262144 * 64 B = 16 MiB */
    assert_true(gm_overhead_struct_page_bytes(GM_ANON, G, 4096, 1, &rule) == 16 * M);
    assert_int_equal(rule, GM_SPAGE_BASE_4K);
    assert_true(gm_overhead_struct_page_bytes(GM_MEMFD, 3 * G, 4096, 0, &rule) == 48 * M);
    assert_int_equal(rule, GM_SPAGE_BASE_4K);
    /* hugetlb without HVO: same as base pages */
    assert_true(gm_overhead_struct_page_bytes(GM_HUGETLBFS, G, 2 * M, 0, &rule) == 16 * M);
    assert_int_equal(rule, GM_SPAGE_HUGETLB);
    assert_true(gm_overhead_struct_page_bytes(GM_HUGETLBFS, G, G, -1, &rule) == 16 * M);
    assert_int_equal(rule, GM_SPAGE_HUGETLB);
    /* HVO 2 MiB: 4 KiB kept of 32 KiB per page -> 512 * 4 KiB = 2 MiB per GiB */
    assert_true(gm_overhead_struct_page_bytes(GM_HUGETLBFS, G, 2 * M, 1, &rule) == 2 * M);
    assert_int_equal(rule, GM_SPAGE_HUGETLB_HVO);
    /* HVO 1 GiB: 16 MiB -> 4 KiB per page */
    assert_true(gm_overhead_struct_page_bytes(GM_HUGETLBFS, 4 * G, G, 1, &rule) == 4 * 4096);
    assert_int_equal(rule, GM_SPAGE_HUGETLB_HVO);
    /* dmemfs: none, whatever the page size */
    assert_true(gm_overhead_struct_page_bytes(GM_DMEMFS, 64 * G, G, 1, &rule) == 0);
    assert_int_equal(rule, GM_SPAGE_NONE);
    assert_true(gm_overhead_struct_page_bytes(GM_DMEMFS, G, 4096, 0, NULL) == 0);
    assert_non_null(strstr(gm_overhead_rule_text(GM_SPAGE_HUGETLB_HVO), "HVO"));
    assert_non_null(strstr(gm_overhead_rule_text(GM_SPAGE_NONE), "dmemfs"));
}

static void test_per_gib(void **state)
{
    (void)state;
    assert_true(gm_overhead_per_gib(16 * M, G) == 16.0 * M);
    assert_true(gm_overhead_per_gib(16 * M, 4 * G) == 4.0 * M);
    assert_true(gm_overhead_per_gib(-4096, 2 * G) == -2048.0);
    assert_true(gm_overhead_per_gib(123, 0) == 0.0);
}

static void test_parse_kb(void **state)
{
    const char *status = "Name:\ttest\nVmRSS:\t  1000 kB\nVmPTE:\t      44 kB\nVmSwap:\t0 kB\n";
    const char *meminfo = "MemTotal: 1 kB\nPageTables:   2264 kB\nSecPageTables:   128 kB\n";
    int64_t kb = -5;

    (void)state;
    assert_int_equal(gm_parse_kb(status, "VmPTE", &kb), 0);
    assert_true(kb == 44);
    assert_int_equal(gm_parse_kb(meminfo, "SecPageTables", &kb), 0);
    assert_true(kb == 128);
    /* "PageTables" must not match inside "SecPageTables" or vice versa */
    assert_int_equal(gm_parse_kb(meminfo, "PageTables", &kb), 0);
    assert_true(kb == 2264);
    assert_int_equal(gm_parse_kb(status, "Missing", &kb), -ENOENT);
    assert_int_equal(gm_parse_kb("VmPTE: junk\n", "VmPTE", &kb), -EINVAL);
    assert_int_equal(gm_parse_kb("", "VmPTE", &kb), -ENOENT);
}

static void test_compute(void **state)
{
    struct gm_overhead_snapshot base = { .vmpte_kb = 100, .secpt_kb = 1000 };
    struct gm_overhead_snapshot now = { .vmpte_kb = 100 + 8, .secpt_kb = 1000 + 16 };
    struct gm_layout l;
    struct gm_overhead o;

    (void)state;
    assert_int_equal(gm_layout_compute(4 * G, &l), 0);
    gm_overhead_compute(&l, GM_HUGETLBFS, 2 * M, 1, &base, &now, &o);
    assert_int_equal(o.nr, 2);
    assert_true(o.r[0].size == 3 * G && o.r[0].struct_page_bytes == 6 * M);
    assert_true(o.r[1].gpa == 4 * G && o.r[1].struct_page_bytes == 2 * M);
    assert_true(o.struct_page_bytes == 8 * M);
    assert_int_equal(o.rule, GM_SPAGE_HUGETLB_HVO);
    assert_true(o.vmpte_valid && o.vmpte_bytes == 8 * 1024);
    assert_true(o.secpt_valid && o.secpt_bytes == 16 * 1024);

    /* a missing counter on either side is "not measured", never 0 */
    base.secpt_kb = -1;
    gm_overhead_compute(&l, GM_DMEMFS, G, 0, &base, &now, &o);
    assert_false(o.secpt_valid);
    assert_true(o.vmpte_valid);
    assert_true(o.struct_page_bytes == 0);
    assert_int_equal(o.rule, GM_SPAGE_NONE);
}

struct fixture { char root[PATH_MAX]; struct gm_host host; };

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    snprintf(f->root, sizeof(f->root), "/tmp/test_gm_overhead.XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    f->host.sysroot = f->root;
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

static void test_snapshot_and_measure(void **state)
{
    struct fixture *f = *state;
    struct guest_mem gm;
    struct gm_overhead o;

    memset(&gm, 0, sizeof(gm));
    put(f->root, "/proc/self/status", "Name:\tdvmm\nVmPTE:\t      40 kB\n");
    put(f->root, "/proc/meminfo", "MemTotal: 1 kB\nSecPageTables:       0 kB\n");
    put(f->root, "/proc/sys/vm/hugetlb_optimize_vmemmap", "1\n");
    gm.host = &f->host;
    gm.backend = GM_HUGETLBFS;
    gm.page_size = G;
    assert_int_equal(gm_layout_compute(2 * G, &gm.layout), 0);
    assert_int_equal(gm_overhead_baseline(&gm), 0);
    assert_true(gm.ovh_base.vmpte_kb == 40 && gm.ovh_base.secpt_kb == 0);

    /* the guest touched its RAM: 1 GiB pages need few page-table pages */
    put(f->root, "/proc/self/status", "Name:\tdvmm\nVmPTE:\t      52 kB\n");
    put(f->root, "/proc/meminfo", "MemTotal: 1 kB\nSecPageTables:      20 kB\n");
    assert_int_equal(gm_overhead_measure(&gm, &o), 0);
    assert_true(o.vmpte_bytes == 12 * 1024);
    assert_true(o.secpt_bytes == 20 * 1024);
    assert_int_equal(o.hvo, 1);
    assert_true(o.struct_page_bytes == 2 * 4096);

    /* no SecPageTables line (older kernel), no HVO knob */
    put(f->root, "/proc/meminfo", "MemTotal: 1 kB\n");
    unlink(strcat(strcpy((char[PATH_MAX + 64]){0}, f->root), "/proc/sys/vm/hugetlb_optimize_vmemmap"));
    assert_int_equal(gm_overhead_measure(&gm, &o), 0);
    assert_false(o.secpt_valid);
    assert_int_equal(o.hvo, -1);
    assert_int_equal(o.rule, GM_SPAGE_HUGETLB);
    assert_true(o.struct_page_bytes == 2 * G / 4096 * 64);
}

static void test_text(void **state)
{
    struct gm_overhead_snapshot base = { 10, 0 }, now = { 14, 8 };
    struct gm_layout l;
    struct gm_overhead o;
    char *buf = NULL;
    size_t len = 0;
    FILE *f;

    (void)state;
    assert_int_equal(gm_layout_compute(4 * G, &l), 0);
    gm_overhead_compute(&l, GM_ANON, 4096, 0, &base, &now, &o);
    f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(gm_overhead_format_text(&o, f), 0);
    fclose(f);
    assert_non_null(strstr(buf, "backend anon, guest RAM 4G, host page size 4K"));
    assert_non_null(strstr(buf, "region 0: GPA 0x0, guest RAM 3G"));
    assert_non_null(strstr(buf, "region 1: GPA 0x100000000, guest RAM 1G"));
    assert_non_null(strstr(buf, "VMM page tables (measured: VmPTE delta)"));
    assert_non_null(strstr(buf, "KVM secondary page tables (measured: SecPageTables delta)"));
    assert_non_null(strstr(buf, "host-wide: other VMs may disturb"));
    assert_non_null(strstr(buf, "struct page (computed)"));
    assert_non_null(strstr(buf, "64 B of struct page per 4 KiB"));
    assert_non_null(strstr(buf, "total (measured + computed)"));
    /* 4 KiB + 8 KiB measured + 64 MiB computed */
    assert_non_null(strstr(buf, "67121152 B"));
    assert_non_null(strstr(buf, "16777216 B/GiB"));
    free(buf);
}

static void test_json(void **state)
{
    struct gm_overhead_snapshot base = { 10, -1 }, now = { 14, 8 };
    struct json_object *j, *v, *m;
    struct gm_layout l;
    struct gm_overhead o;

    (void)state;
    assert_int_equal(gm_layout_compute(2 * G, &l), 0);
    gm_overhead_compute(&l, GM_DMEMFS, G, 0, &base, &now, &o);
    j = gm_overhead_to_json(&o);
    assert_non_null(j);
    assert_true(json_object_object_get_ex(j, "backend", &v));
    assert_string_equal(json_object_get_string(v), "dmemfs");
    assert_true(json_object_object_get_ex(j, "guest_ram_bytes", &v));
    assert_true(json_object_get_int64(v) == (int64_t)(2 * G));
    assert_true(json_object_object_get_ex(j, "regions", &v));
    assert_int_equal(json_object_array_length(v), 1);
    assert_true(json_object_object_get_ex(j, "struct_page", &m));
    assert_true(json_object_object_get_ex(m, "kind", &v));
    assert_string_equal(json_object_get_string(v), "computed");
    assert_true(json_object_object_get_ex(m, "bytes", &v));
    assert_true(json_object_get_int64(v) == 0);
    assert_true(json_object_object_get_ex(j, "vmm_page_tables", &m));
    assert_true(json_object_object_get_ex(m, "kind", &v));
    assert_string_equal(json_object_get_string(v), "measured");
    assert_true(json_object_object_get_ex(m, "bytes", &v));
    assert_true(json_object_get_int64(v) == 4096);
    assert_true(json_object_object_get_ex(j, "kvm_secondary_page_tables", &m));
    assert_true(json_object_object_get_ex(m, "note", &v));
    assert_string_equal(json_object_get_string(v), "host-wide: other VMs may disturb");
    assert_true(json_object_object_get_ex(m, "bytes", &v));
    assert_null(v);                 /* not measured: null, not 0 */
    assert_true(json_object_object_get_ex(j, "total_measured_plus_computed_bytes", &v));
    assert_true(json_object_get_int64(v) == 4096);
    json_object_put(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_struct_page_rules),
        cmocka_unit_test(test_per_gib),
        cmocka_unit_test(test_parse_kb),
        cmocka_unit_test(test_compute),
        cmocka_unit_test(test_snapshot_and_measure),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_json),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, setup, teardown);
}
