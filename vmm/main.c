/* dvmm command line: run, check, ctl, hostcheck.  Exit codes (README):
 * 0 guest poweroff / reset (on_reset = exit) / debug-exit 0; 2v+1 for a
 * debug-exit write of v; 1 guest crash or host failure; 2 user error;
 * 128+N when stopped by signal N. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernel-support/hostcheck.h"
#include "vmm/config.h"
#include "vmm/config_schema.h"
#include "vmm/ctl_client.h"
#include "vmm/e820.h"
#include "vmm/kvm.h"
#include "vmm/kvm_caps.h"
#include "vmm/log.h"
#include "vmm/mono.h"
#include "vmm/vm.h"
#include "vmm/vm_control.h"

#define EXIT_USER 2
#define MAX_SETS 64

static void usage_main(FILE *f)
{
    fprintf(f,
            "usage: dvmm COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  run FILE.ini [--set section.key=value ...]   boot a VM\n"
            "  check FILE.ini [--set section.key=value ...] validate a config, print its layout\n"
            "  ctl SOCKET COMMAND [key=value ...]           talk to a running dvmm\n"
            "  hostcheck [--config FILE] [--json]           can this host run dvmm VMs?\n"
            "\n"
            "`dvmm COMMAND --help` describes each command.\n");
}

static void usage_run(FILE *f, const char *cmd)
{
    fprintf(f,
            "usage: dvmm %s FILE.ini [--set section.key=value ...]%s\n"
            "\n"
            "  --set section.key=value  override or add a config key (repeatable)\n"
            "%s"
            "  -v, --verbose            more log output (repeat for debug)\n"
            "  -q, --quiet              errors only\n"
            "  -h, --help               this help\n",
            cmd, strcmp(cmd, "run") ? "" : " [--memstat] [--trace-startup]",
            strcmp(cmd, "run") ? ""
                : "  --memstat                print the host-overhead report at exit\n"
                  "  --trace-startup          time each start-up stage\n");
}

struct cli {
    const char *file;
    char *sets[MAX_SETS];
    unsigned nsets;
    struct vm_options opt;
    int verbosity;
};

/* Returns 0, or an exit status to return at once (help, usage error). */
static int parse_run_args(int argc, char **argv, struct cli *c)
{
    static const struct option opts[] = {
        { "set", required_argument, NULL, 's' },
        { "memstat", no_argument, NULL, 'm' },
        { "trace-startup", no_argument, NULL, 't' },
        { "verbose", no_argument, NULL, 'v' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool is_run = !strcmp(argv[0], "run");
    int o;

    memset(c, 0, sizeof(*c));
    optind = 1;
    /* No '+': GNU getopt permutes, so options go anywhere on the line
     * (`dvmm run vm.ini --memstat` as well as before the file). */
    while ((o = getopt_long(argc, argv, "s:vqh", opts, NULL)) != -1) {
        switch (o) {
        case 's':
            if (c->nsets == MAX_SETS) {
                fprintf(stderr, "dvmm %s: more than %d --set options\n", argv[0], MAX_SETS);
                return EXIT_USER;
            }
            c->sets[c->nsets++] = optarg;
            break;
        case 'm':
        case 't':
            if (!is_run) {
                fprintf(stderr, "dvmm %s: --%s is only for `dvmm run`\n", argv[0],
                        o == 'm' ? "memstat" : "trace-startup");
                return EXIT_USER;
            }
            if (o == 'm')
                c->opt.memstat = true;
            else
                c->opt.trace_startup = true;
            break;
        case 'v':
            c->verbosity++;
            break;
        case 'q':
            c->verbosity = -1;
            break;
        case 'h':
            usage_run(stdout, argv[0]);
            return 0x100;   /* "help shown": exit 0 */
        default:
            usage_run(stderr, argv[0]);
            return EXIT_USER;
        }
    }
    /* One positional: the file, wherever it stood. */
    for (; optind < argc; optind++) {
        if (!c->file) {
            c->file = argv[optind];
        } else {
            fprintf(stderr, "dvmm %s: unexpected argument '%s'\n", argv[0], argv[optind]);
            return EXIT_USER;
        }
    }
    if (!c->file) {
        usage_run(stderr, argv[0]);
        return EXIT_USER;
    }
    if (c->verbosity < 0)
        log_set_level(LOG_ERR);
    else if (c->verbosity == 1)
        log_set_level(LOG_INFO);
    else if (c->verbosity >= 2)
        log_set_level(LOG_DEBUG);
    else
        log_set_level(LOG_WARN);
    return 0;
}

/* t: where `run` keeps its start-up trace (NULL for `check`).  kd: /dev/kvm,
 * opened here once for the vCPU limit.  vm (`run` only): vm_prepare takes
 * kd over and makes the KVM VM while the config is read; vm_create reports
 * a failure to open or probe /dev/kvm where it always has. */
static int load_config(const struct cli *c, struct dvmm_config *cfg, uint64_t *t,
                       struct kvm_dev *kd, struct vm *vm)
{
    struct cfg_limits lim = { 0 };
    char err[1024];
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

    lim.host_memory = (pages > 0 && psz > 0) ? (uint64_t)pages * (uint64_t)psz : 0;
    /* `run` loads the kernel the check opened: one open of it per run. */
    lim.open_kernel = t != NULL;
    /* kvm_caps_vcpu_limit's rule, which hostcheck applies too. */
    lim.max_vcpus = KVM_CAPS_VCPU_LIMIT;
    kvm_dev_open(kd);
    if (!kd->err && kvm_caps_max_vcpus(&kd->caps) < lim.max_vcpus)
        lim.max_vcpus = kvm_caps_max_vcpus(&kd->caps);
    if (t)
        t[VM_T_KVM_QUERY] = mono_ns();
    if (vm)
        vm_prepare(vm, kd);
    if (cfg_load(c->file, c->sets, c->nsets, &lim, cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "dvmm: %s\n", err);
        return -1;
    }
    if (t) {
        t[VM_T_CFG_PARSE] = cfg->t_parsed;
        t[VM_T_CFG_CHECK] = mono_ns();
    }
    return 0;
}

static const char *e820_type_name(uint32_t t)
{
    switch (t) {
    case 1: return "RAM";
    case 2: return "reserved";
    case 3: return "ACPI";
    default: return "other";
    }
}

static int cmd_check(int argc, char **argv)
{
    struct dvmm_config *cfg = calloc(1, sizeof(*cfg));
    struct boot_e820_entry e820[E820_MAX_ENTRIES_ZEROPAGE];
    struct guest_mem gm;
    struct kvm_dev kd = { .fd = -1 };
    struct cli c;
    int ret, n;

    if (!cfg)
        return 1;
    ret = parse_run_args(argc, argv, &c);
    if (!ret) {
        ret = load_config(&c, cfg, NULL, &kd, NULL) < 0 ? EXIT_USER : 0;
        kvm_dev_close(&kd);
    }
    if (ret) {
        free(cfg);
        return ret == 0x100 ? 0 : EXIT_USER;
    }
    /* Everything `run` checks before creating the VM: the memory backend
     * against this host, with the same message and exit status. */
    {
        char err[1024];
        uint64_t page;

        if (gm_backend_check(gm_host_default(), &cfg->memory, cfg->vm.memory, &page,
                             err, sizeof(err)) < 0) {
            fprintf(stderr, "dvmm: %s\n", err);
            free(cfg);
            return EXIT_USER;
        }
    }
    memset(&gm, 0, sizeof(gm));
    gm.fd = -1;
    pthread_mutex_init(&gm.poison_lock, NULL);
    gm_layout_compute(cfg->vm.memory, &gm.layout);
    printf("config %s: OK\n", cfg->file);
    printf("vm: name %s, %u vCPU%s, %llu MiB RAM, on_reset %s\n", cfg->vm.name,
           cfg->vm.vcpus, cfg->vm.vcpus == 1 ? "" : "s",
           (unsigned long long)(cfg->vm.memory >> 20),
           cfg_enum_word(CFG_SEC_VM, "on_reset", (int)cfg->vm.on_reset));
    printf("kernel: %s\n", cfg->vm.kernel);
    if (cfg->vm.initrd[0])
        printf("initrd: %s\n", cfg->vm.initrd);
    printf("cmdline: %s\n", cfg->vm.cmdline);
    printf("memory: backend %s%s%s\n", gm_backend_name(cfg->memory.backend),
           cfg->memory.path[0] ? ", path " : "", cfg->memory.path);
    for (unsigned i = 0; i < gm.layout.nr; i++)
        printf("region %u: GPA [0x%016llx-0x%016llx) %llu MiB\n", i,
               (unsigned long long)gm.layout.r[i].gpa,
               (unsigned long long)(gm.layout.r[i].gpa + gm.layout.r[i].size),
               (unsigned long long)(gm.layout.r[i].size >> 20));
    n = e820_build(&gm, e820, E820_MAX_ENTRIES_ZEROPAGE);
    for (int i = 0; i < n; i++)
        printf("e820: [0x%016llx-0x%016llx] %s\n", (unsigned long long)e820[i].addr,
               (unsigned long long)(e820[i].addr + e820[i].size - 1),
               e820_type_name(e820[i].type));
    printf("devices: serial 0x3f8 irq 4%s, i8042 0x60/0x64, rtc 0x70, pci conf1 0xcf8",
           cfg->console.enabled ? "" : " (console disabled)");
    if (cfg->debug_exit.enabled)
        printf(", debug-exit 0x%x/%u", cfg->debug_exit.port, cfg->debug_exit.size);
    printf("\n");
    for (unsigned i = 0; i < cfg->ndisks; i++)
        printf("disk.%u: %s%s, %u queue%s of %u\n", cfg->disk[i].index,
               cfg->disk[i].path, cfg->disk[i].readonly ? " (read-only)" : "",
               cfg->disk[i].queues, cfg->disk[i].queues == 1 ? "" : "s",
               cfg->disk[i].queue_size);
    for (unsigned i = 0; i < cfg->nnets; i++) {
        const struct cfg_net *nc = &cfg->net[i];
        printf("net.%u: tap %s, mac %02x:%02x:%02x:%02x:%02x:%02x%s, %u queue pair%s of %u, "
               "mtu %u, vhost %s\n", nc->index, nc->tap, nc->mac[0], nc->mac[1], nc->mac[2],
               nc->mac[3], nc->mac[4], nc->mac[5], nc->mac_given ? "" : " (derived)",
               nc->queues, nc->queues == 1 ? "" : "s", nc->queue_size, nc->mtu,
               cfg_enum_word(CFG_SEC_NET, "vhost", (int)nc->vhost));
    }
    if (cfg->control.enabled)
        printf("control: %s\n", cfg->control.socket);
    pthread_mutex_destroy(&gm.poison_lock);
    free(cfg);
    return 0;
}

static int cmd_run(int argc, char **argv, uint64_t t_start)
{
    struct dvmm_config *cfg = calloc(1, sizeof(*cfg));
    struct vm *vm = calloc(1, sizeof(*vm));
    struct kvm_dev kd = { .fd = -1 };
    struct ctl_handlers ctl;
    struct fail fail;
    struct cli c;
    int ret;

    if (!cfg || !vm) {
        fprintf(stderr, "dvmm: out of memory\n");
        return 1;
    }
    ret = parse_run_args(argc, argv, &c);
    c.opt.t[VM_T_START] = t_start;
    if (ret || load_config(&c, cfg, c.opt.t, &kd, vm) < 0) {
        ret = ret == 0x100 ? 0 : EXIT_USER;
        /* A VM that vm_prepare began and no vm_create will finish. */
        if (vm->prepared)
            vm_destroy(vm);
        goto out;
    }
    if (vm_create(vm, cfg, &c.opt, &fail) < 0) {
        fprintf(stderr, "dvmm: %s\n", fail.msg);
        ret = fail.kind == FAIL_USER ? EXIT_USER : 1;
        goto out;
    }
    /* The loader has read the kernel; a reboot opens it by name. */
    if (cfg->vm.kernel_open)
        close(cfg->vm.kernel_fd);
    cfg->vm.kernel_open = false;
    cfg->vm.kernel_fd = -1;
    vm_control_handlers(vm, &ctl);
    ret = vm_run(vm, &ctl);
    /* dvmm exits next: the kernel frees the rest (vm_finish). */
    vm_finish(vm);
    vm->t[VM_T_DONE] = mono_ns();
    if (c.opt.trace_startup)
        vm_print_trace(vm->t);
out:
    /* vm_prepare took it, unless the command line was wrong. */
    kvm_dev_close(&kd);
    if (cfg && cfg->vm.kernel_open)
        close(cfg->vm.kernel_fd);
    free(vm);
    free(cfg);
    return ret;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;
    uint64_t t_start = mono_ns();

    if (!cmd) {
        usage_main(stderr);
        return EXIT_USER;
    }
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage_main(stdout);
        return 0;
    }
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 1, argv + 1, t_start);
    if (!strcmp(cmd, "check"))
        return cmd_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "ctl"))
        return ctl_client_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "hostcheck"))
        return hostcheck_main(argc - 1, argv + 1);
    fprintf(stderr, "dvmm: unknown command '%s' (try `dvmm --help`)\n", cmd);
    return EXIT_USER;
}
