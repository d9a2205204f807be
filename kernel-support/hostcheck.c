/* dvmm hostcheck: see hostcheck.h.  This file is the report, the driver
 * and the CLI; each area's lines come from its own module
 * (hostcheck_ctx.h lists them).  No check changes anything on the host. */
#include "kernel-support/hostcheck.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "guest-mem/gm.h"
#include "guest-mem/host.h"
#include "kernel-support/hostcheck_ctx.h"
#include "kernel-support/hostcheck_dmem.h"
#include "kernel-support/hostcheck_io.h"
#include "kernel-support/hostcheck_kvm.h"
#include "kernel-support/hostcheck_mem.h"
#include "kernel-support/hostcheck_root.h"
#include "vmm/config.h"
#include "vmm/log.h"

struct hc_check *hc_add(struct hc_ctx *x, const char *name, enum hc_status st,
                        const char *vfmt, ...)
{
    struct hc_check *c = &x->overflow;
    if (x->rep->n < HC_MAX_CHECKS)
        c = &x->rep->c[x->rep->n++];
    else
        log_warn("hostcheck: report full, dropping check %s", name);
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->status = st;
    va_list ap;
    va_start(ap, vfmt);
    vsnprintf(c->value, sizeof(c->value), vfmt, ap);
    va_end(ap);
    return c;
}

void hc_advise(struct hc_check *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->advice, sizeof(c->advice), fmt, ap);
    va_end(ap);
}

static void hc_check_config(struct hc_ctx *x, const char *file)
{
    struct hc_check *c;
    struct dvmm_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        hc_add(x, "config", HC_FAIL, "%s: out of memory", file);
        return;
    }
    struct cfg_limits lim = {
        /* no limit here: the vCPU limit gets its own line (config-vcpus) */
        .max_vcpus = UINT_MAX,
        .host_memory = hc_root_meminfo(&x->host, "MemTotal"),
    };
    char err[512] = "";
    int r = cfg_load(file, NULL, 0, &lim, cfg, err, sizeof(err));
    if (r) {
        c = hc_add(x, "config", HC_FAIL, "%s", err[0] ? err : strerror(-r));
        hc_advise(c, "fix the config file; `dvmm run` would refuse it too");
        free(cfg);
        return;
    }
    char ms[32];
    gm_fmt_size(cfg->vm.memory, ms, sizeof(ms));
    hc_add(x, "config", HC_OK, "%s: vm %s, %u vCPUs, %s, backend=%s, %u disk%s", file,
           cfg->vm.name[0] ? cfg->vm.name : "(unnamed)", cfg->vm.vcpus, ms,
           gm_backend_name(cfg->memory.backend), cfg->ndisks, cfg->ndisks == 1 ? "" : "s");

    hc_mem_check_config(x, cfg);

    hc_io_check_config(x, cfg);
    hc_kvm_check_config(x, cfg);
    free(cfg);
}

int hostcheck_run(const char *root, const char *config, struct hc_report *rep)
{
    struct hc_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    memset(rep, 0, sizeof(*rep));
    char real[PATH_MAX];
    if (!realpath(root ? root : "/", real)) {
        int e = errno;
        log_err("hostcheck: root %s: %s", root, strerror(e));
        free(x);
        return -e;
    }
    snprintf(rep->root, sizeof(rep->root), "%s", real);
    x->root = rep->root;
    x->real = !strcmp(real, "/");
    x->host = x->real ? *gm_host_default()
                      : (struct gm_host){ .statfs = hc_root_fake_statfs, .sysroot = x->root };
    x->rep = rep;
    x->dmesg = hc_root_kernel_log(x);
    x->mounts = hc_root_slurp(x, "/proc/mounts");
    char *cpuinfo = hc_root_slurp(x, "/proc/cpuinfo");
    char *cmdline = hc_root_slurp(x, "/proc/cmdline");

    hc_kvm_check(x, cpuinfo);
    hc_dmem_check(x, cmdline);
    hc_mem_check(x, cpuinfo);
    hc_io_check(x);
    if (config)
        hc_check_config(x, config);

    free(cpuinfo);
    free(cmdline);
    free(x->mounts);
    free(x->dmesg);
    free(x);
    return 0;
}

const char *hc_status_name(enum hc_status st)
{
    switch (st) {
    case HC_OK: return "OK";
    case HC_WARN: return "WARN";
    case HC_FAIL: return "FAIL";
    }
    return "?";
}

const struct hc_check *hc_report_find(const struct hc_report *rep, const char *name)
{
    for (unsigned i = 0; i < rep->n; i++)
        if (!strcmp(rep->c[i].name, name))
            return &rep->c[i];
    return NULL;
}

unsigned hc_report_count(const struct hc_report *rep, enum hc_status st)
{
    unsigned n = 0;
    for (unsigned i = 0; i < rep->n; i++)
        n += rep->c[i].status == st;
    return n;
}

int hc_report_print(const struct hc_report *rep, FILE *out)
{
    for (unsigned i = 0; i < rep->n; i++) {
        const struct hc_check *c = &rep->c[i];
        if (fprintf(out, "%-4s  %-18s %s%s%s\n", hc_status_name(c->status), c->name, c->value,
                    c->advice[0] ? "  => " : "", c->advice) < 0)
            return -EIO;
    }
    if (fprintf(out, "%u OK, %u WARN, %u FAIL\n", hc_report_count(rep, HC_OK),
                hc_report_count(rep, HC_WARN), hc_report_count(rep, HC_FAIL)) < 0)
        return -EIO;
    return fflush(out) ? -errno : 0;
}

char *hc_report_json(const struct hc_report *rep)
{
    json_object *o = json_object_new_object(), *arr = json_object_new_array();
    if (!o || !arr) {
        json_object_put(o);
        json_object_put(arr);
        return NULL;
    }
    for (unsigned i = 0; i < rep->n; i++) {
        const struct hc_check *c = &rep->c[i];
        json_object *e = json_object_new_object();
        if (!e)
            break;
        json_object_object_add(e, "name", json_object_new_string(c->name));
        json_object_object_add(e, "status", json_object_new_string(hc_status_name(c->status)));
        json_object_object_add(e, "value", json_object_new_string(c->value));
        json_object_object_add(e, "advice", json_object_new_string(c->advice));
        json_object_array_add(arr, e);
    }
    json_object_object_add(o, "root", json_object_new_string(rep->root));
    json_object_object_add(o, "checks", arr);
    json_object_object_add(o, "ok", json_object_new_int((int)hc_report_count(rep, HC_OK)));
    json_object_object_add(o, "warn", json_object_new_int((int)hc_report_count(rep, HC_WARN)));
    json_object_object_add(o, "fail", json_object_new_int((int)hc_report_count(rep, HC_FAIL)));
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *dup = s ? strdup(s) : NULL;
    json_object_put(o);
    return dup;
}

static void hc_usage(FILE *f)
{
    fprintf(f,
            "usage: dvmm hostcheck [--config FILE] [--json] [--root DIR] [--help]\n"
            "  Check that this host can run dvmm: one line per check, OK/WARN/FAIL,\n"
            "  the value found and advice.  Reads /proc, /sys, debugfs and /dev/kvm only.\n"
            "  --config FILE  also check that the VM in FILE can start now\n"
            "  --json         print one JSON object instead of text\n"
            "  --root DIR     read a fake /proc and /sys tree under DIR (tests); KVM\n"
            "                 facts then come from DIR/.kvm-caps, the kernel log from\n"
            "                 DIR/.dmesg, the io_uring probe from DIR/.io_uring\n"
            "Exit status: 0 no FAIL, 1 some FAIL, 2 usage error.\n");
}

int hostcheck_main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "json", no_argument, NULL, 'j' },
        { "root", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *config = NULL, *root = "/";
    bool json = false;
    int o;
    optind = 1;    /* main may have run getopt on the global options already */
    opterr = 0;
    while ((o = getopt_long(argc, argv, "+c:jr:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': config = optarg; break;
        case 'j': json = true; break;
        case 'r': root = optarg; break;
        case 'h': hc_usage(stdout); return 0;
        default:
            fprintf(stderr, "dvmm hostcheck: bad option '%s'\n", argv[optind - 1]);
            hc_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dvmm hostcheck: unexpected argument '%s'\n", argv[optind]);
        hc_usage(stderr);
        return 2;
    }
    struct hc_report *rep = malloc(sizeof(*rep));
    if (!rep) {
        fprintf(stderr, "dvmm hostcheck: out of memory\n");
        return 1;
    }
    int r = hostcheck_run(root, config, rep);
    if (r) {
        fprintf(stderr, "dvmm hostcheck: --root %s: %s\n", root, strerror(-r));
        free(rep);
        return 2;
    }
    if (json) {
        char *s = hc_report_json(rep);
        if (!s || printf("%s\n", s) < 0) {
            free(s);
            free(rep);
            return 1;
        }
        free(s);
        fflush(stdout);
    } else {
        hc_report_print(rep, stdout);
    }
    int fail = hc_report_count(rep, HC_FAIL) ? 1 : 0;
    free(rep);
    return fail;
}
