/* A host that `dvmm hostcheck --config` calls OK is one that `dvmm run`
 * accepts: both are run over the same fake host trees
 * (tests/fixtures/hostcheck) and the same configs, and wherever hostcheck
 * reports no FAIL, run's own checks before it creates a VM must pass.
 *
 * run's checks are the calls vmm/main.c and kvm_vm_create make, fed with
 * the tree's facts instead of the real host's: kvm_caps_check on the KVM
 * capabilities (<root>/.kvm-caps, kvm_caps_parse), cfg_load with run's
 * limits (kvm_caps_vcpu_limit, the tree's MemTotal), and gm_backend_check
 * over the tree (statfs answered from its /proc/mounts).  The trees are
 * also varied: each required capability taken away in turn, so every row
 * of the table is exercised from both sides.  Run from the repository
 * root, as `make test` does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest-mem/gm.h"
#include "guest-mem/host.h"
#include "kernel-support/hostcheck.h"
#include "kernel-support/hostcheck_root.h"
#include "vmm/config.h"
#include "vmm/kvm_caps.h"

#define FIX "tests/fixtures/hostcheck/"

/* The trees with KVM facts (pvm has none: run would not get past /dev/kvm,
 * and hostcheck FAILs it, which the implication allows). */
static const char *const roots[] = {
    FIX "vtx", FIX "dmemfs-1g", FIX "dmemfs-module", FIX "dmemfs-mmio", FIX "no-mf",
};

/* [vm] and [memory] lines after "[vm]\nkernel = ...\n"; %s is the disk. */
static const char *const configs[] = {
    "memory = 64M\n",
    "memory = 64M\nvcpus = 4\n[disk.0]\npath = %s\n",
    "memory = 64M\nvcpus = 255\n",
    "memory = 64M\nvcpus = 256\n",
    "memory = 64M\nvcpus = 300\n",
    "memory = 64M\n[memory]\nhost_node = 0\n",
    "memory = 64M\n[memory]\nhost_node = 7\n",
    "memory = 4G\n[memory]\nbackend = hugetlbfs\npath = /dev/hugepages1G\n",
    "memory = 3584M\n[memory]\nbackend = hugetlbfs\npath = /dev/hugepages1G\n",
    "memory = 6G\n[memory]\nbackend = hugetlbfs\npath = /dev/hugepages1G\n",
    "memory = 64M\n[memory]\nbackend = hugetlbfs\npath = /dev/hugepages\n",
    "memory = 12G\n[memory]\nbackend = dmemfs\npath = /mnt/dmem/vm0\n",
    "memory = 3G\n[memory]\nbackend = dmemfs\npath = /mnt/dmem\n",
    "memory = 13G\n[memory]\nbackend = dmemfs\npath = /mnt/dmem\n",
    "memory = 12800M\n[memory]\nbackend = dmemfs\npath = /mnt/dmem\n",
    "memory = 1G\n[memory]\nbackend = dmemfs\npath = /srv/nodmem\n",
};

struct world {
    char dir[64];          /* mkdtemp: the ini, its kernel and disk, the varied trees */
    char ini[PATH_MAX];
    char kernel[PATH_MAX];
    char disk[PATH_MAX];
    unsigned both_ok;      /* cases hostcheck and run both accept */
    unsigned both_refuse;  /* cases run refuses and hostcheck FAILs */
};

static void touch(const char *p)
{
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);

    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    assert_int_equal(close(fd), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (!f)
        fail_msg("%s: %s", path, strerror(errno));
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void write_ini(struct world *w, const char *body)
{
    FILE *f = fopen(w->ini, "w");

    assert_non_null(f);
    fprintf(f, "[vm]\nkernel = %s\n", w->kernel);
    fprintf(f, body, w->disk);
    assert_int_equal(fclose(f), 0);
}

/* What `dvmm run` decides before it creates a VM, on the host `root`
 * stands for.  0 when it would go on; else -errno with its message. */
static int run_accepts(const char *root, const char *ini, char *err, size_t errlen)
{
    struct gm_host host = { .statfs = hc_root_fake_statfs, .sysroot = root };
    struct kvm_cap_set caps;
    struct dvmm_config *cfg;
    uint64_t page;
    char *text;
    int ret;

    text = gm_host_slurp(&host, "/.kvm-caps");
    if (!text) {
        snprintf(err, errlen, "no KVM facts");
        return -ENOENT;
    }
    kvm_caps_parse(text, &caps);
    free(text);
    ret = kvm_caps_check(&caps, err, errlen);          /* kvm_vm_create */
    if (ret)
        return ret;
    cfg = calloc(1, sizeof(*cfg));
    assert_non_null(cfg);
    struct cfg_limits lim = {                           /* main.c's load_config */
        .max_vcpus = kvm_caps_vcpu_limit(&caps),
        .host_memory = hc_root_meminfo(&host, "MemTotal"),
    };
    ret = cfg_load(ini, NULL, 0, &lim, cfg, err, errlen);
    if (!ret)                                           /* gm_open, and dvmm check */
        ret = gm_backend_check(&host, &cfg->memory, cfg->vm.memory, &page, err, errlen);
    free(cfg);
    return ret;
}

/* One tree, one config: no FAIL in hostcheck implies run accepts. */
static void one_case(struct world *w, const char *root, const char *what)
{
    struct hc_report *rep = malloc(sizeof(*rep));
    char err[1024] = "";
    int run;

    assert_non_null(rep);
    assert_int_equal(hostcheck_run(root, w->ini, rep), 0);
    run = run_accepts(root, w->ini, err, sizeof(err));
    if (!hc_report_count(rep, HC_FAIL) && run)
        fail_msg("%s, %s: hostcheck has no FAIL but dvmm run refuses: %s", root, what, err);
    if (!run && !hc_report_count(rep, HC_FAIL))
        w->both_ok++;
    if (run && hc_report_count(rep, HC_FAIL))
        w->both_refuse++;
    free(rep);
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));

    if (!w || access(FIX "vtx/.kvm-caps", R_OK))
        return -1;     /* not run from the repository root */
    snprintf(w->dir, sizeof(w->dir), "/tmp/hc-run-XXXXXX");
    if (!mkdtemp(w->dir))
        return -1;
    snprintf(w->ini, sizeof(w->ini), "%s/vm.ini", w->dir);
    snprintf(w->kernel, sizeof(w->kernel), "%s/vmlinux", w->dir);
    snprintf(w->disk, sizeof(w->disk), "%s/disk.img", w->dir);
    touch(w->kernel);
    touch(w->disk);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;

    unlink(w->ini);
    unlink(w->kernel);
    unlink(w->disk);
    if (rmdir(w->dir))
        return -1;
    free(w);
    return 0;
}

/* Every fixture tree against every config. */
static void test_fixtures(void **state)
{
    struct world *w = *state;

    for (size_t r = 0; r < sizeof(roots) / sizeof(roots[0]); r++) {
        for (size_t c = 0; c < sizeof(configs) / sizeof(configs[0]); c++) {
            char what[64];

            write_ini(w, configs[c]);
            snprintf(what, sizeof(what), "config %zu", c);
            one_case(w, roots[r], what);
        }
    }
    /* The implication must not hold only vacuously. */
    if (w->both_ok < 10 || w->both_refuse < 10)
        fail_msg("only %u cases both accept and %u both refuse", w->both_ok, w->both_refuse);
}

/* vtx with one required capability taken away, in turn: hostcheck must
 * FAIL that row, and run refuses the host. */
static void test_each_required_cap(void **state)
{
    struct world *w = *state;
    char root[PATH_MAX], path[PATH_MAX * 2], target[PATH_MAX];
    struct dirent *de;
    DIR *d;

    snprintf(root, sizeof(root), "%s/root", w->dir);
    assert_int_equal(mkdir(root, 0755), 0);
    /* the vtx tree, each top-level entry a link, but .kvm-caps our own */
    d = opendir(FIX "vtx");
    assert_non_null(d);
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            !strcmp(de->d_name, ".kvm-caps"))
            continue;
        snprintf(path, sizeof(path), FIX "vtx/%s", de->d_name);
        assert_non_null(realpath(path, target));
        snprintf(path, sizeof(path), "%s/%s", root, de->d_name);
        assert_int_equal(symlink(target, path), 0);
    }
    closedir(d);
    write_ini(w, configs[0]);
    for (unsigned i = 0; i <= KC_COUNT; i++) {
        /* i == KC_COUNT: all of them, the tree both must accept */
        char caps[1024] = "api_version=12\nmce_cap=0x1000020\nmax_vcpus=4096\n", line[64], err[256];
        struct hc_report *rep = malloc(sizeof(*rep));

        for (unsigned j = 0; j < KC_COUNT; j++) {
            if (j != i && kvm_caps[j].required) {
                snprintf(line, sizeof(line), "%s=1\n", kvm_caps[j].key);
                strcat(caps, line);
            }
        }
        snprintf(path, sizeof(path), "%s/.kvm-caps", root);
        write_file(path, caps);
        assert_non_null(rep);
        assert_int_equal(hostcheck_run(root, w->ini, rep), 0);
        int run = run_accepts(root, w->ini, err, sizeof(err));

        if (i == KC_COUNT || !kvm_caps[i].required) {
            assert_int_equal(run, 0);
            assert_int_equal(hc_report_count(rep, HC_FAIL), 0);
        } else {
            char name[HC_NAME_MAX];

            snprintf(name, sizeof(name), "kvm-%s", kvm_caps[i].key);
            for (char *p = name; *p; p++)
                if (*p == '_')
                    *p = '-';
            const struct hc_check *c = hc_report_find(rep, name);
            if (!c || c->status != HC_FAIL)
                fail_msg("without %s: no FAIL line %s", kvm_caps[i].name, name);
            assert_int_equal(run, -ENOTSUP);
            assert_non_null(strstr(err, kvm_caps[i].name));
        }
        free(rep);
    }
    /* remove the links and the tree, not what they point to */
    d = opendir(root);
    assert_non_null(d);
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", root, de->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(root), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_each_required_cap),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, setup, teardown);
}
