/* hostcheck against fake /proc and /sys trees (tests/fixtures/hostcheck):
 * pvm (a PVM host where kvm_pvm refused to bind), vtx, dmemfs-1g (Tencent's
 * series, dmem=), dmemfs-module (the project's module on Debian 6.1,
 * memmap=), dmemfs-mmio, no-mf; and small trees built in /tmp for single
 * cases.  Run from the repository root, as `make test` does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "kernel-support/hostcheck.h"

#define FIX "tests/fixtures/hostcheck/"

struct tmpdir { char path[PATH_MAX]; };

static struct hc_report *run(const char *root, const char *config)
{
    struct hc_report *rep = malloc(sizeof(*rep));
    assert_non_null(rep);
    assert_int_equal(hostcheck_run(root, config, rep), 0);
    return rep;
}

static const struct hc_check *need(const struct hc_report *rep, const char *name,
                                   enum hc_status st)
{
    const struct hc_check *c = hc_report_find(rep, name);
    if (!c)
        fail_msg("no check %s in the report", name);
    if (c->status != st)
        fail_msg("%s: status %s, expected %s (value: %s)", name, hc_status_name(c->status),
                 hc_status_name(st), c->value);
    return c;
}

static void contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* Run hostcheck_main with stdout sent to a file; return the exit code and
 * the output (malloc'd) so TAP on stdout stays clean. */
static int run_main(char **argv, int argc, char **out)
{
    char tmpl[] = "/tmp/hc-out-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);
    assert_true(saved >= 0 && saved_err >= 0);
    assert_true(dup2(fd, STDOUT_FILENO) >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    int rc = hostcheck_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved);
    close(saved_err);
    off_t len = lseek(fd, 0, SEEK_END);
    assert_true(len >= 0);
    *out = calloc(1, (size_t)len + 1);
    assert_non_null(*out);
    assert_int_equal(pread(fd, *out, (size_t)len, 0), len);
    close(fd);
    unlink(tmpl);
    return rc;
}

/* A fake root under /tmp: put() writes ROOT/REL (parent directories made),
 * link() symlinks ROOT/REL to a fixture path, rmtree() removes it all
 * without following the links. */
static void mkparents(const char *path)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s", path);
    for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(p, 0755) && errno != EEXIST)
            fail_msg("mkdir %s: %s", p, strerror(errno));
        *s = '/';
    }
}

static void put(const char *root, const char *rel, const char *text)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    mkparents(p);
    FILE *f = fopen(p, "w");
    if (!f)
        fail_msg("%s: %s", p, strerror(errno));
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void link_fixture(const char *root, const char *rel, const char *fixture)
{
    char p[PATH_MAX], target[PATH_MAX];
    if (!realpath(fixture, target))
        fail_msg("%s: %s", fixture, strerror(errno));
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    mkparents(p);
    assert_int_equal(symlink(target, p), 0);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static void rmtree(const char *root)
{
    assert_int_equal(nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

static int fixtures_present(void **state)
{
    (void)state;
    if (access(FIX "pvm/proc/filesystems", R_OK)) {
        fprintf(stderr, "# test_hostcheck must run from the repository root\n");
        return -1;
    }
    return 0;
}

static void test_pvm_host(void **state)
{
    (void)state;
    struct hc_report *rep = run(FIX "pvm", NULL);
    const struct hc_check *c = need(rep, "kvm-device", HC_FAIL);
    contains(c->value, "/dev/kvm missing");
    contains(c->value, "kvm_pvm is loaded but refused to bind");
    contains(c->value, "PTI=0 (has PTI=1)");
    contains(c->value, "not binding");
    contains(c->advice, "pti=off");
    c = need(rep, "kvm-flavour", HC_WARN);
    contains(c->value, "PVM");
    contains(c->advice, "only PVM-enabled guest kernels run at full speed");
    need(rep, "kvm-caps", HC_WARN);
    assert_null(hc_report_find(rep, "kvm-irqfd"));
    c = need(rep, "memory-failure", HC_WARN);
    contains(c->value, "CONFIG_MEMORY_FAILURE");
    need(rep, "dmemfs", HC_WARN);
    /* no dmemfs and no dmem=: the dependent lines stay out */
    assert_null(hc_report_find(rep, "dmem-pages"));
    assert_null(hc_report_find(rep, "dmemfs-mounts"));
    need(rep, "thp", HC_OK);
    c = need(rep, "hugetlb-2M", HC_OK);
    contains(c->value, "total 0, free 0");
    need(rep, "hugetlb-1G", HC_OK);
    need(rep, "hugetlb-vmemmap", HC_WARN);
    need(rep, "io-uring", HC_OK);
    need(rep, "tun", HC_OK);
    assert_int_equal(hc_report_count(rep, HC_FAIL), 1);
    free(rep);
}

static void test_vtx_host(void **state)
{
    (void)state;
    struct hc_report *rep = run(FIX "vtx", NULL);
    const struct hc_check *c = need(rep, "kvm-device", HC_OK);
    contains(c->value, "API version 12");
    c = need(rep, "kvm-flavour", HC_OK);
    contains(c->value, "VT-x");
    need(rep, "kvm-irqchip", HC_OK);
    need(rep, "kvm-irqfd", HC_OK);
    need(rep, "kvm-ioeventfd", HC_OK);
    need(rep, "kvm-irq-routing", HC_OK);
    need(rep, "kvm-signal-msi", HC_OK);
    need(rep, "kvm-pit2", HC_OK);
    need(rep, "kvm-immediate-exit", HC_OK);
    need(rep, "kvm-user-memory", HC_OK);
    c = need(rep, "kvm-mce", HC_OK);
    contains(c->value, "32 MCE banks, MCG_SER_P yes");
    c = need(rep, "kvm-max-vcpus", HC_OK);
    contains(c->value, "max 4096");
    c = need(rep, "memory-failure", HC_OK);
    contains(c->value, "recovery=1 early_kill=0");
    contains(c->value, "PR_MCE_KILL_EARLY");
    c = need(rep, "thp", HC_WARN);
    contains(c->value, "never");
    contains(c->advice, "echo madvise");
    c = need(rep, "hugetlb-1G", HC_OK);
    contains(c->value, "total 8, free 6, reserved 1 (5G available)");
    need(rep, "hugetlb-vmemmap", HC_OK);
    assert_int_equal(hc_report_count(rep, HC_FAIL), 0);
    free(rep);
}

static void test_dmemfs_host(void **state)
{
    (void)state;
    struct hc_report *rep = run(FIX "dmemfs-1g", NULL);
    need(rep, "dmemfs", HC_OK);
    const struct hc_check *c = need(rep, "dmem-cmdline", HC_OK);
    contains(c->value, "/proc/cmdline: dmem=16G:1G (dmem= reservation, as Tencent's dmemfs series uses)");
    c = need(rep, "dmemfs-mounts", HC_OK);
    contains(c->value, "/mnt/dmem (1G)");   /* pagesize=40000000 is hex */
    c = need(rep, "dmem-pages", HC_OK);
    contains(c->value, "1G dpages: total 16, free 12 (12G free)");
    /* the series prints the region's end exclusive: 0x240000000 + 16 GiB */
    c = need(rep, "dmem-memmap", HC_OK);
    contains(c->value, "1 dmem range from the kernel log's \"dmem: register region\" lines: "
                       "[0x240000000-0x640000000) 16G; System RAM in /sys/firmware/memmap");
    c = need(rep, "memory-failure", HC_OK);
    contains(c->advice, "MF_MUST_KILL");
    assert_int_equal(hc_report_count(rep, HC_FAIL), 0);
    free(rep);
}

static void test_dmemfs_unready(void **state)
{
    (void)state;
    struct hc_report *rep = run(FIX "dmemfs-mmio", NULL);
    need(rep, "dmemfs", HC_OK);
    need(rep, "dmem-cmdline", HC_OK);
    const struct hc_check *c = need(rep, "dmemfs-mounts", HC_WARN);
    contains(c->advice, "dmemfs-setup");
    c = need(rep, "dmem-pages", HC_WARN);
    contains(c->advice, "debugfs");
    /* dmem=4G@0x700000000 lies past the last System RAM entry */
    c = need(rep, "dmem-memmap", HC_WARN);
    contains(c->value, "1 of 1 dmem ranges from /proc/cmdline's dmem=SIZE@ADDR");
    contains(c->value, "not System RAM in /sys/firmware/memmap: [0x700000000-0x800000000) 4G");
    contains(c->advice, "MMIO");
    free(rep);
}

/* The project's module on Debian 6.1: memory reserved with memmap=, the
 * module's "register region" line printing the end inclusive. */
static void test_dmemfs_module_host(void **state)
{
    (void)state;
    struct hc_report *rep = run(FIX "dmemfs-module", NULL);
    need(rep, "dmemfs", HC_OK);
    const struct hc_check *c = need(rep, "dmem-cmdline", HC_OK);
    contains(c->value, "/proc/cmdline: memmap=4G$0x100000000 (memmap= reservation, as the project's dmemfs module uses)");
    c = need(rep, "dmemfs-mounts", HC_OK);
    contains(c->value, "/mnt/dmem (1G)");
    c = need(rep, "dmem-pages", HC_OK);
    contains(c->value, "1G dpages: total 4, free 3 (3G free)");
    /* [0x100000000 - 0x1ffffffff] is the same 4 GiB as [... - 0x200000000] */
    c = need(rep, "dmem-memmap", HC_OK);
    contains(c->value, "1 dmem range from the kernel log's \"dmem: register region\" lines: "
                       "[0x100000000-0x200000000) 4G; System RAM in /sys/firmware/memmap "
                       "(KVM maps it write-back)");
    c = need(rep, "kvm-flavour", HC_OK);
    contains(c->value, "AMD-V");
    /* dmem/inject marks the project's module: its signalling, not the
     * original's MF_MUST_KILL rule. */
    c = need(rep, "memory-failure", HC_OK);
    contains(c->advice, "signals a dpage failure from dmem/inject");
    assert_int_equal(hc_report_count(rep, HC_FAIL), 0);
    free(rep);
}

/* A tree with the dmemfs-module fixture's /sys (its firmware memmap: System
 * RAM 0x100000-0x7ffdffff and 0x100000000-0x27fffffff) and mounts, and the
 * given command line and kernel log (NULL: none). */
static void module_root(char *dir, const char *cmdline, const char *dmesg, bool dmemfs)
{
    strcpy(dir, "/tmp/hc-mod-XXXXXX");
    assert_non_null(mkdtemp(dir));
    link_fixture(dir, "sys", FIX "dmemfs-module/sys");
    link_fixture(dir, "proc/mounts", FIX "dmemfs-module/proc/mounts");
    if (dmemfs)
        link_fixture(dir, "proc/filesystems", FIX "dmemfs-module/proc/filesystems");
    else
        put(dir, "proc/filesystems", "nodev\tsysfs\nnodev\tproc\n\text4\n");
    put(dir, "proc/cmdline", cmdline);
    if (dmesg)
        put(dir, ".dmesg", dmesg);
}

static void test_dmemfs_module_cmdline(void **state)
{
    (void)state;
    char dir[32];
    struct hc_report *rep;
    const struct hc_check *c;

    /* module not loaded yet: the ranges come from memmap=SIZE$ADDR words */
    module_root(dir, "ro memmap=4G$4G\n", "[    0.000000] Linux version 6.1.0-57-amd64\n", true);
    rep = run(dir, NULL);
    c = need(rep, "dmem-cmdline", HC_OK);
    contains(c->value, "memmap=4G$4G (memmap= reservation");
    c = need(rep, "dmem-memmap", HC_OK);
    contains(c->value, "1 dmem range from /proc/cmdline's memmap=SIZE$ADDR (no \"dmem: register region\" "
                       "line in the kernel log): [0x100000000-0x200000000) 4G; System RAM");
    free(rep);
    rmtree(dir);

    /* same without a readable kernel log */
    module_root(dir, "ro memmap=4G$4G\n", NULL, true);
    rep = run(dir, NULL);
    c = need(rep, "dmem-memmap", HC_OK);
    contains(c->value, "memmap=SIZE$ADDR (kernel log unreadable): [0x100000000-0x200000000)");
    free(rep);
    rmtree(dir);

    /* several entries in one memmap=, K/M/G and hex; memmap=SIZE@ADDR
     * (RAM, not a reservation) is not dmem's */
    module_root(dir, "ro memmap=1G$4G,0x40000000$5G memmap=512M@0x300000000 memmap=1048576K$0x180000000\n",
                "", true);
    rep = run(dir, NULL);
    c = need(rep, "dmem-cmdline", HC_OK);
    contains(c->value, "/proc/cmdline: memmap=1G$4G,0x40000000$5G memmap=1048576K$0x180000000 (memmap=");
    assert_null(strstr(c->value, "512M@"));
    c = need(rep, "dmem-memmap", HC_OK);
    contains(c->value, "3 dmem ranges from /proc/cmdline's memmap=SIZE$ADDR");
    contains(c->value, "[0x100000000-0x140000000) 1G, [0x140000000-0x180000000) 1G, "
                       "[0x180000000-0x1c0000000) 1G; all System RAM");
    free(rep);
    rmtree(dir);

    /* a memmap= range running past the end of System RAM (0x27fffffff) */
    module_root(dir, "ro memmap=4G$0x200000000\n", "", true);
    rep = run(dir, NULL);
    need(rep, "dmem-cmdline", HC_OK);
    c = need(rep, "dmem-memmap", HC_WARN);
    contains(c->value, "1 of 1 dmem ranges from /proc/cmdline's memmap=SIZE$ADDR");
    contains(c->value, "not System RAM in /sys/firmware/memmap: [0x200000000-0x300000000) 4G");
    contains(c->advice, "inside one System RAM entry");
    free(rep);
    rmtree(dir);

    /* the module registered a region outside System RAM; the end printed
     * inclusive or exclusive names the same range */
    static const char *const ends[] = { "0x2ffffffff", "0x300000000" };
    for (unsigned i = 0; i < 2; i++) {
        char log[160];
        snprintf(log, sizeof(log), "[    4.8] dmem: register region [0x100000000 - 0x1ffffffff] on node 0.\n"
                                   "[    4.9] dmem: register region [0x280000000 - %s] on node 0.\n", ends[i]);
        module_root(dir, "ro memmap=4G$4G memmap=2G$0x280000000\n", log, true);
        rep = run(dir, NULL);
        c = need(rep, "dmem-memmap", HC_WARN);
        contains(c->value, "1 of 2 dmem ranges from the kernel log's \"dmem: register region\" lines "
                           "not System RAM in /sys/firmware/memmap: [0x280000000-0x300000000) 2G; "
                           "System RAM: [0x100000000-0x200000000) 4G");
        free(rep);
        rmtree(dir);
    }

    /* a backslash that reached the kernel: a RAM limit, not a reservation */
    module_root(dir, "ro memmap=4G\\$0x100000000\n", "", true);
    rep = run(dir, NULL);
    c = need(rep, "dmem-cmdline", HC_WARN);
    contains(c->value, "memmap=4G\\$0x100000000: the backslash reached the kernel");
    contains(c->advice, "quoting");
    c = need(rep, "dmem-memmap", HC_WARN);
    contains(c->value, "dmem ranges unknown");
    free(rep);
    rmtree(dir);

    /* memmap= reserves, but no dmemfs is registered */
    module_root(dir, "ro memmap=4G$4G\n", "", false);
    rep = run(dir, NULL);
    need(rep, "dmemfs", HC_WARN);
    c = need(rep, "dmem-cmdline", HC_WARN);
    contains(c->value, "memmap=4G$4G");
    contains(c->advice, "load the project's dmemfs module");
    need(rep, "dmem-memmap", HC_OK);
    free(rep);
    rmtree(dir);

    /* dmemfs with nothing reserved */
    module_root(dir, "ro console=ttyS0 memmap=exactmap mem=4G\n", "", true);
    rep = run(dir, NULL);
    c = need(rep, "dmem-cmdline", HC_WARN);
    contains(c->value, "no dmem= and no memmap=SIZE$ADDR on /proc/cmdline");
    contains(c->advice, "memmap=4G$0x100000000");
    free(rep);
    rmtree(dir);
}

/* kvm_pvm's reason is quoted whatever its wording and prefix spelling. */
static void test_pvm_other_reason(void **state)
{
    (void)state;
    char dir[] = "/tmp/hc-pvm-XXXXXX";
    assert_non_null(mkdtemp(dir));
    put(dir, "sys/module/kvm_pvm/initstate", "live\n");
    put(dir, ".dmesg",
        "[    0.24] kvm-pvm: cannot run guests natively on this host (needs PTI=0; has PTI=1); not binding\n"
        "[    0.31] kvm_pvm: this kernel is itself a kvm-pvm guest; not binding\n");
    struct hc_report *rep = run(dir, NULL);
    const struct hc_check *c = need(rep, "kvm-device", HC_FAIL);
    contains(c->value, "kvm_pvm is loaded but refused to bind; kernel log: "
                       "\"kvm_pvm: this kernel is itself a kvm-pvm guest; not binding\"");
    assert_null(strstr(c->value, "PTI"));
    contains(c->advice, "kvm-pvm's reason");
    assert_null(strstr(c->advice, "pti=off"));
    free(rep);
    rmtree(dir);
}

static void test_no_memory_failure_host(void **state)
{
    (void)state;
    struct hc_report *rep = run(FIX "no-mf", NULL);
    const struct hc_check *c = need(rep, "memory-failure", HC_WARN);
    contains(c->value, "absent");
    contains(c->advice, "synthetic SIGBUS");
    c = need(rep, "kvm-mce", HC_FAIL);
    contains(c->value, "6 MCE banks, MCG_SER_P no");
    c = need(rep, "hugetlb-vmemmap", HC_WARN);
    contains(c->value, "absent");
    c = need(rep, "io-uring", HC_WARN);
    contains(c->value, "io_uring_disabled=2");
    contains(c->advice, "engine=threads");
    need(rep, "tun", HC_WARN);
    free(rep);
}

/* A root with nothing in it: every check degrades to a line, none crashes. */
static void test_empty_root(void **state)
{
    (void)state;
    char dir[] = "/tmp/hc-empty-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct hc_report *rep = run(dir, NULL);
    const struct hc_check *c = need(rep, "kvm-device", HC_FAIL);
    contains(c->value, "no KVM vendor module");
    need(rep, "kvm-flavour", HC_FAIL);
    need(rep, "thp", HC_WARN);
    need(rep, "hugetlb-2M", HC_WARN);
    assert_true(rep->n >= 8);
    free(rep);

    /* kvm_pvm present but no kernel log: still names the module */
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/sys", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/sys/module", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/sys/module/kvm_pvm", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    rep = run(dir, NULL);
    c = need(rep, "kvm-device", HC_FAIL);
    contains(c->value, "although kvm_pvm is loaded");
    contains(c->value, "kernel log unreadable");
    free(rep);
    rmdir(p);
    snprintf(p, sizeof(p), "%s/sys/module", dir);
    rmdir(p);
    snprintf(p, sizeof(p), "%s/sys", dir);
    rmdir(p);
    rmdir(dir);
}

static void test_json(void **state)
{
    (void)state;
    struct hc_report *rep = run(FIX "pvm", NULL);
    char *s = hc_report_json(rep);
    assert_non_null(s);
    json_object *o = json_tokener_parse(s);
    assert_non_null(o);
    json_object *arr, *v;
    assert_true(json_object_object_get_ex(o, "checks", &arr));
    assert_int_equal(json_object_array_length(arr), rep->n);
    for (size_t i = 0; i < rep->n; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        assert_true(json_object_object_get_ex(e, "name", &v));
        assert_string_equal(json_object_get_string(v), rep->c[i].name);
        assert_true(json_object_object_get_ex(e, "status", &v));
        assert_string_equal(json_object_get_string(v), hc_status_name(rep->c[i].status));
        assert_true(json_object_object_get_ex(e, "value", &v));
        assert_string_equal(json_object_get_string(v), rep->c[i].value);
        assert_true(json_object_object_get_ex(e, "advice", &v));
    }
    assert_true(json_object_object_get_ex(o, "fail", &v));
    assert_int_equal(json_object_get_int(v), 1);
    json_object_put(o);
    free(s);
    free(rep);
}

static void test_cli(void **state)
{
    (void)state;
    char *out;
    char *a1[] = { "hostcheck", "--root", FIX "pvm", NULL };
    assert_int_equal(run_main(a1, 3, &out), 1);
    contains(out, "FAIL  kvm-device");
    contains(out, "=> ");
    free(out);
    char *a2[] = { "hostcheck", "--root", FIX "vtx", "--json", NULL };
    assert_int_equal(run_main(a2, 4, &out), 0);
    json_object *o = json_tokener_parse(out);
    assert_non_null(o);
    json_object_put(o);
    free(out);
    char *a3[] = { "hostcheck", "--bogus", NULL };
    assert_int_equal(run_main(a3, 2, &out), 2);
    contains(out, "usage:");
    free(out);
    char *a4[] = { "hostcheck", "extra", NULL };
    assert_int_equal(run_main(a4, 2, &out), 2);
    free(out);
    char *a5[] = { "hostcheck", "--root", "/nonexistent/hc", NULL };
    assert_int_equal(run_main(a5, 3, &out), 2);
    free(out);
    char *a6[] = { "hostcheck", "--help", NULL };
    assert_int_equal(run_main(a6, 2, &out), 0);
    contains(out, "--config FILE");
    free(out);
    char *a7[] = { "hostcheck", "--config", NULL };
    assert_int_equal(run_main(a7, 2, &out), 2);
    free(out);
}

/* --config: a temporary INI with a real kernel and disk file. */
struct cfgfix { char dir[64]; char ini[PATH_MAX]; char disk[PATH_MAX]; char kernel[PATH_MAX]; };

static void touch(const char *p)
{
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    close(fd);
}

static void cfg_vwrite(struct cfgfix *f, const char *fmt, va_list ap)
{
    if (!f->dir[0]) {
        snprintf(f->dir, sizeof(f->dir), "/tmp/hc-cfg-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->ini, sizeof(f->ini), "%s/vm.ini", f->dir);
        snprintf(f->disk, sizeof(f->disk), "%s/disk.img", f->dir);
        snprintf(f->kernel, sizeof(f->kernel), "%s/vmlinux", f->dir);
        touch(f->disk);
        touch(f->kernel);
    }
    FILE *fp = fopen(f->ini, "w");
    assert_non_null(fp);
    fprintf(fp, "[vm]\nkernel = %s\n", f->kernel);
    vfprintf(fp, fmt, ap);
    assert_int_equal(fclose(fp), 0);
}

static void cfg_write(struct cfgfix *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_vwrite(f, fmt, ap);
    va_end(ap);
}

/* One --config case: write the config (fmt...), run hostcheck on root, and
 * expect the line `name` with status st, `want` in its value and, unless
 * NULL, `advice` in its advice. */
static void cfg_case(struct cfgfix *f, const char *root, const char *name, enum hc_status st,
                     const char *want, const char *advice, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_vwrite(f, fmt, ap);
    va_end(ap);
    struct hc_report *rep = run(root, f->ini);
    const struct hc_check *c = need(rep, name, st);
    contains(c->value, want);
    if (advice)
        contains(c->advice, advice);
    free(rep);
}

static void cfg_cleanup(struct cfgfix *f)
{
    unlink(f->ini);
    unlink(f->disk);
    unlink(f->kernel);
    rmdir(f->dir);
}

/* --config [memory] cases: the tree, the line, its status, what its value
 * (and, unless NULL, its advice) must contain, and the config after
 * "[vm]\nkernel = ...\n". */
static const struct cfg_row {
    const char *root, *name;
    enum hc_status st;
    const char *want, *advice, *ini;
} cfg_rows[] = {
    /* the project's module: 3 of 4 dpages free */
    { FIX "dmemfs-module", "config-memory", HC_OK,
      "needs 3 x 1G pages, 3 free", NULL,
      "memory = 3G\n[memory]\nbackend = dmemfs\npath = /mnt/dmem/vm0\n" },
    /* dvmm run's own message: not a multiple of the dpage size */
    { FIX "dmemfs-1g", "config-memory", HC_FAIL,
      "vm.memory=12800M is not a multiple of the dmemfs page size 1G", NULL,
      "memory = 12800M\n[memory]\nbackend = dmemfs\npath = /mnt/dmem\n" },
    { FIX "dmemfs-1g", "config-memory", HC_FAIL,
      "needs 13 dpages of 1G but only 12 are free", "reserve more",
      "memory = 13G\n[memory]\nbackend = dmemfs\npath = /mnt/dmem\n" },
    { FIX "dmemfs-1g", "config-memory", HC_FAIL,
      "memory.path=/srv/nodmem is not on dmemfs", "dmemfs-setup",
      "memory = 1G\n[memory]\nbackend = dmemfs\npath = /srv/nodmem\n" },
    /* 1 GiB pool: 6 free, 1 reserved -> 5 usable */
    { FIX "vtx", "config-memory", HC_OK,
      "at /dev/hugepages1G needs 4 x 1G pages, 5 free", NULL,
      "memory = 4G\n[memory]\nbackend = hugetlbfs\npath = /dev/hugepages1G\n" },
    /* 3.5G on 1 GiB pages: hostcheck once called it OK (4 pages rounded
     * up), but dvmm run refuses RAM that is not a multiple of the page */
    { FIX "vtx", "config-memory", HC_FAIL,
      "not a multiple of the hugetlbfs page size 1G", NULL,
      "memory = 3584M\n[memory]\nbackend = hugetlbfs\npath = /dev/hugepages1G\n" },
    { FIX "vtx", "config-memory", HC_FAIL,
      "needs 6 pages of 1G but only 5 are free", "nr_hugepages",
      "memory = 6G\n[memory]\nbackend = hugetlbfs\npath = /dev/hugepages1G\n" },
    /* the 2 MiB mount has an empty pool */
    { FIX "vtx", "config-memory", HC_FAIL,
      "needs 32 pages of 2M but only 0 are free", NULL,
      "memory = 64M\n[memory]\nbackend = hugetlbfs\npath = /dev/hugepages\n" },
};

static void test_config_memory(void **state)
{
    (void)state;
    struct cfgfix f = { 0 };
    for (size_t i = 0; i < sizeof(cfg_rows) / sizeof(cfg_rows[0]); i++) {
        const struct cfg_row *r = &cfg_rows[i];
        cfg_case(&f, r->root, r->name, r->st, r->want, r->advice, r->ini);
    }
    cfg_cleanup(&f);
}

static void test_config_dmemfs_all_ok(void **state)
{
    (void)state;
    struct cfgfix f = { 0 };
    /* 12 free 1 GiB dpages, a disk, 2 vCPUs: every config line OK */
    cfg_write(&f, "memory = 12G\nvcpus = 2\n[memory]\nbackend = dmemfs\npath = /mnt/dmem/vm0\n"
                  "[disk.0]\npath = %s\n", f.disk);
    struct hc_report *rep = run(FIX "dmemfs-1g", f.ini);
    need(rep, "config", HC_OK);
    const struct hc_check *c = need(rep, "config-memory", HC_OK);
    contains(c->value, "needs 12 x 1G pages, 12 free");
    c = need(rep, "config-disk.0", HC_OK);
    contains(c->value, "read-write");
    need(rep, "config-vcpus", HC_OK);
    free(rep);
    cfg_cleanup(&f);
}

static void test_config_vcpus_and_errors(void **state)
{
    (void)state;
    struct cfgfix f = { 0 };
    /* no-mf's KVM allows 288 vCPUs */
    cfg_write(&f, "vcpus = 300\nmemory = 64M\n");
    struct hc_report *rep = run(FIX "no-mf", f.ini);
    const struct hc_check *c = need(rep, "config-vcpus", HC_FAIL);
    contains(c->value, "300 vCPUs, dvmm allows 255 (KVM 288)");
    need(rep, "config-memory", HC_OK);
    free(rep);

    /* a config the config module refuses is one FAIL line naming the key */
    cfg_write(&f, "memory = 64M\n[disk.0]\npath = %s/missing.img\n", f.dir);
    rep = run(FIX "vtx", f.ini);
    c = need(rep, "config", HC_FAIL);
    contains(c->value, "disk.0");
    assert_null(hc_report_find(rep, "config-memory"));
    free(rep);
    cfg_cleanup(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pvm_host),
        cmocka_unit_test(test_vtx_host),
        cmocka_unit_test(test_dmemfs_host),
        cmocka_unit_test(test_dmemfs_unready),
        cmocka_unit_test(test_dmemfs_module_host),
        cmocka_unit_test(test_dmemfs_module_cmdline),
        cmocka_unit_test(test_pvm_other_reason),
        cmocka_unit_test(test_no_memory_failure_host),
        cmocka_unit_test(test_empty_root),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_config_dmemfs_all_ok),
        cmocka_unit_test(test_config_vcpus_and_errors),
        cmocka_unit_test(test_config_memory),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, fixtures_present, NULL);
}
