#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "guest-mem/overhead.h"
#include "vmm/cpuid.h"
#include "vmm/log.h"
#include "vmm/mono.h"
#include "vmm/sandbox.h"
#include "vmm/term.h"
#include "vmm/vm_sandbox.h"

void vm_print_trace(const uint64_t *t)
{
#define VM_STAGE_ROW(id, name, thread, what) { name, thread },
    static const struct { const char *name; enum vm_thread thread; } st[VM_T_NR] = {
        VM_STAGES(VM_STAGE_ROW)
    };
#undef VM_STAGE_ROW
    /* Each thread's stages follow on from its own previous mark. */
    uint64_t prev[VM_TH_NR] = {
        [VM_TH_MAIN] = t[VM_T_START],
        [VM_TH_LOADER] = t[VM_T_MEMORY],
        [VM_TH_KVM] = t[VM_T_KVM_QUERY],
    };

    for (unsigned i = VM_T_START + 1; i < VM_T_NR; i++) {
        if (!t[i])
            continue;
        fprintf(stderr, "dvmm: startup: %-16s %9.3f ms  (at %9.3f ms)\n", st[i].name,
                (double)(t[i] - prev[st[i].thread]) / 1e6,
                (double)(t[i] - t[VM_T_START]) / 1e6);
        prev[st[i].thread] = t[i];
    }
}

/* Wake the main loop (its event fd). */
static void vm_wake_main(struct vm *vm)
{
    /* A full counter already wakes the main loop; nothing else can fail. */
    if (eventfd_write(vm->event_fd, 1) < 0 && errno != EAGAIN)
        log_err("vm: event_fd write: %s", strerror(errno));
}

void vm_request_exit(struct vm *vm, enum vm_outcome out, int status)
{
    pthread_mutex_lock(&vm->lock);
    if (vm->outcome == VM_OUT_NONE) {
        vm->outcome = out;
        vm->status = status;
    }
    pthread_mutex_unlock(&vm->lock);
    park_stop(&vm->park);
    vm_wake_main(vm);
}

/* A guest that resets soon after a #MC most likely did not survive it (a
 * Linux guest that cannot recover panics, and with panic=-1 resets): say
 * so, since the console is the guest's and the exit status is a reset's. */
static void vm_report_mce_reset(struct vm *vm)
{
    uint64_t at = __atomic_load_n(&vm->mce.last_ns, __ATOMIC_ACQUIRE);
    uint64_t now = mono_ns();

    if (!at || now - at > 60ULL * 1000000000ULL)
        return;
    log_warn("vm %s: guest reset %.1f s after the machine check dvmm injected into "
             "vcpu%d (GPA 0x%llx), likely because of it: a guest kernel that cannot "
             "recover panics (Linux then resets with panic=-1)", vm->cfg->vm.name,
             (double)(now - at) / 1e9,
             __atomic_load_n(&vm->mce.last_vcpu, __ATOMIC_RELAXED),
             (unsigned long long)__atomic_load_n(&vm->mce.last_gpa, __ATOMIC_RELAXED));
    __atomic_store_n(&vm->mce.last_ns, 0, __ATOMIC_RELAXED);
}

void vm_request_reset(struct vm *vm)
{
    vm_report_mce_reset(vm);
    if (vm->cfg->vm.on_reset == CFG_RESET_EXIT) {
        log_info("vm %s: guest reset; on_reset = exit", vm->cfg->vm.name);
        vm_request_exit(vm, VM_OUT_RESET, 0);
        return;
    }
    /* Main parks everyone, reloads and lets them go (vm_reboot). */
    park_request(&vm->park, PARK_REBOOT);
    vm_wake_main(vm);
}

/* ---- what the vCPUs see (struct vcpu_ops) --------------------------------- */

struct vm_park_arg {
    struct vm *vm;
    struct vcpu *v;
};

/* A vCPU about to park: a mode=user machine check it waits to deliver
 * cannot land while the VM is paused or rebooting. */
static void vm_vcpu_before_park(void *arg, unsigned reasons)
{
    struct vm_park_arg *a = arg;

    vm_mce_user_cancel(&a->vm->mce, a->v, (reasons & PARK_REBOOT) ? "the guest is rebooting"
                                                                 : "the VM is pausing");
}

static bool vm_vcpu_checkpoint(void *ctx, struct vcpu *v)
{
    struct vm_park_arg a = { .vm = ctx, .v = v };

    if (!park_checkpoint(&a.vm->park, vm_vcpu_before_park, &a))
        return false;
    /* Set by vm_reboot while this vCPU was parked. */
    if (__atomic_exchange_n(&v->reset_on_wake, false, __ATOMIC_ACQ_REL) && vcpu_reset(v) < 0) {
        vm_request_exit(a.vm, VM_OUT_ERROR, 1);
        return false;
    }
    return true;
}

static void vm_vcpu_poll(void *ctx, struct vcpu *v)
{
    struct vm *vm = ctx;

    vm_mce_vcpu_poll(&vm->mce, v);
}

static void vm_vcpu_event(void *ctx, struct vcpu *v, enum vcpu_event ev)
{
    /* What each end of a vCPU's loop means for the VM and dvmm's exit. */
    static const struct { enum vm_outcome out; int status; } end[] = {
        [VCPU_EV_POWEROFF] = { VM_OUT_RESET, 0 },
        [VCPU_EV_CRASH] = { VM_OUT_CRASH, 1 },
        [VCPU_EV_MCE_SHUTDOWN] = { VM_OUT_MCE_SHUTDOWN, 1 },
        [VCPU_EV_ERROR] = { VM_OUT_ERROR, 1 },
    };
    struct vm *vm = ctx;

    (void)v;
    if (ev == VCPU_EV_RESET)
        vm_request_reset(vm);
    else
        vm_request_exit(vm, end[ev].out, end[ev].status);
}

static const struct vcpu_ops vm_vcpu_ops = {
    .checkpoint = vm_vcpu_checkpoint,
    .poll = vm_vcpu_poll,
    .event = vm_vcpu_event,
};

static void vm_kick_all(void *ctx)
{
    struct vm *vm = ctx;

    for (unsigned i = 0; i < vm->nvcpus; i++)
        vcpu_kick(&vm->vcpus[i]);
}

/* vmif's memory_failure: the device's VM is the one around its kvm_vm. */
static int vm_memory_failure(void *opaque, uint64_t hva, unsigned lsb, const char *origin)
{
    struct vm *vm = (struct vm *)((char *)opaque - offsetof(struct vm, kvm));

    return vm_mce_device_failure(&vm->mce, hva, lsb, origin);
}

static void vm_on_debug_exit(void *opaque, uint32_t value)
{
    struct vm *vm = opaque;

    log_info("vm %s: guest wrote 0x%x to debug-exit port 0x%x", vm->cfg->vm.name,
             value, vm->dbg.port);
    vm_request_exit(vm, VM_OUT_DEBUG_EXIT, debug_exit_status(value));
}

static void vm_on_i8042_reset(void *opaque)
{
    vm_request_reset(opaque);
}

/* Guest reboot: same memory, same devices, boot path run again.  Poisoned
 * pages stay out of the new e820 because x86_boot_load reads the list. */
static int vm_reboot(struct vm *vm)
{
    char err[512];
    int ret;

    /* Parked, the vCPUs touch neither guest RAM nor their registers. */
    if (!park_all(&vm->park, PARK_REBOOT))
        return 0;
    vm->reboots++;
    log_info("vm %s: guest reset: rebooting (reboot %u, %u poisoned pages kept out of RAM)",
             vm->cfg->vm.name, vm->reboots, gm_poison_list(&vm->gm, NULL, 0));
    ret = kvm_vm_reset_irqchip(&vm->kvm);
    if (!ret) {
        serial_reset(&vm->serial);
        for (unsigned i = 0; i < vm->ndisks; i++)
            blk_reset(&vm->disks[i]);
        for (unsigned i = 0; i < vm->nnets; i++)
            net_reset(&vm->nets[i]);
        ret = x86_boot_load(&vm->gm, vm->cfg, &vm->boot, err, sizeof(err));
        if (ret)
            log_err("vm %s: reboot: %s", vm->cfg->vm.name, err);
    }
    for (unsigned i = 0; i < vm->nvcpus; i++)
        __atomic_store_n(&vm->vcpus[i].reset_on_wake, true, __ATOMIC_RELEASE);
    /* A user's pause stays: they run again on resume. */
    park_release(&vm->park, PARK_REBOOT);
    if (ret)
        vm_request_exit(vm, VM_OUT_ERROR, 1);
    return ret;
}

static int vm_open_console(struct vm *vm, struct fail *f)
{
    const struct dvmm_config *cfg = vm->cfg;

    vm->console_fd = -1;
    if (!cfg->console.enabled)
        return 0;
    if (!strcmp(cfg->console.output, "stdout") || !cfg->console.output[0]) {
        vm->console_fd = STDOUT_FILENO;
        return 0;
    }
    vm->console_fd = open(cfg->console.output,
                          O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (vm->console_fd < 0)
        return fail_user(f, -errno, "%s: console.output = '%s': %s", cfg->file,
                         cfg->console.output, strerror(errno));
    return 0;
}

/* The kernel loader, on its own thread while main sets up KVM: loading
 * needs guest RAM only, and its file reads and page faults overlap
 * KVM_CREATE_VM (nearly all of KVM's set-up time in a nested host). */
struct vm_loader {
    struct vm *vm;
    struct vm_side side;
    int ret;
    char err[1024];
};

static void *vm_loader_main(void *arg)
{
    struct vm_loader *l = arg;

    const struct dvmm_config *cfg = l->vm->cfg;

    /* The first load reads the kernel the config check opened (a reboot
     * opens the path again, as it always has). */
    l->ret = x86_boot_load_fd(&l->vm->gm, cfg, cfg->vm.kernel_open ? cfg->vm.kernel_fd : -1,
                              &l->vm->boot, l->err, sizeof(l->err));
    return NULL;
}

/* Run fn on a thread of its own, or, where no thread can be had, here. */
static void vm_side_start(struct vm_side *s, void *(*fn)(void *), void *arg, const char *what)
{
    int e = pthread_create(&s->thread, NULL, fn, arg);

    s->started = e == 0;
    if (e) {
        log_debug("vm: %s thread: %s; on the main thread", what, strerror(e));
        fn(arg);
    }
}

static void vm_side_join(struct vm_side *s)
{
    if (s->started)
        pthread_join(s->thread, NULL);
    s->started = false;
}


static void *vm_kvm_main(void *arg)
{
    struct vm *vm = arg;

    vm->kvm_ret = kvm_vm_create(&vm->kvm, &vm->kvm_dev, vm->kvm_err, sizeof(vm->kvm_err));
    vm->t_kvm_vm = mono_ns();
    return NULL;
}

void vm_prepare(struct vm *vm, struct kvm_dev *kd)
{
    memset(vm, 0, sizeof(*vm));
    vm->console_fd = -1;
    vm->event_fd = -1;
    vm->mce.log_fd = -1;
    vm->mce.main_event_fd = -1;
    vm->mce.gm = &vm->gm;
    vm->kvm.kvm_fd = vm->kvm.vm_fd = -1;
    mce_slot_init(&vm->mce.main, -1);
    pthread_mutex_init(&vm->lock, NULL);
    vm->prepared = true;
    vm->kvm_dev = *kd;
    kd->fd = -1;
    /* Nothing is filtered yet, and it is joined before anything is:
     * no sandbox kind for this thread. */
    vm_side_start(&vm->kvm_side, vm_kvm_main, vm, "KVM set-up");
}

/* Main has the KVM VM, or the reason it has none (in vm->kvm_err). */
static int vm_kvm_join(struct vm *vm)
{
    vm_side_join(&vm->kvm_side);
    return vm->kvm_ret;
}

int vm_create(struct vm *vm, const struct dvmm_config *cfg,
              const struct vm_options *opt, struct fail *f)
{
    struct vm_loader loader = { .ret = 0 };
    struct gm_config mem;
    int ret;

    if (!vm->prepared) {
        struct kvm_dev kd;

        kvm_dev_open(&kd);
        vm_prepare(vm, &kd);
    }
    vm->cfg = cfg;
    if (opt)
        vm->opt = *opt;
    memcpy(vm->t, vm->opt.t, sizeof(vm->t));
    if (!vm->t[VM_T_START])
        vm->t[VM_T_START] = mono_ns();
    /* Before any thread that filters itself (gm_open's prefault helpers)
     * exists; vm_prepare's KVM thread never does, and is joined below. */
    ret = sandbox_init(cfg->sandbox.seccomp == CFG_SECCOMP_YES ? SANDBOX_ENFORCE :
                       cfg->sandbox.seccomp == CFG_SECCOMP_LOG ? SANDBOX_LOG : SANDBOX_OFF,
                       f->msg, sizeof(f->msg));
    if (ret) {
        fail_as(f, FAIL_HOST, ret);
        goto fail;
    }
    vm->t[VM_T_SANDBOX] = mono_ns();
    if ((ret = bus_init(&vm->pio, "pio")) || (ret = bus_init(&vm->mmio, "mmio"))) {
        fail_host(f, ret, "vm: bus init: %s", strerror(-ret));
        goto fail;
    }
    ret = park_init(&vm->park, vm_kick_all, vm);
    if (ret) {
        fail_host(f, ret, "vm: park: %s", strerror(-ret));
        goto fail;
    }
    vm->park_ready = true;
    vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->event_fd < 0) {
        ret = fail_host(f, -errno, "vm: eventfd: %s", strerror(errno));
        goto fail;
    }
    vm->mce.main_event_fd = vm->event_fd;
    vm->mce.main.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->mce.main.wake_fd < 0) {
        ret = fail_host(f, -errno, "vm: eventfd: %s", strerror(errno));
        goto fail;
    }
    if (cfg->mce.log[0]) {
        vm->mce.log_fd = open(cfg->mce.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (vm->mce.log_fd < 0) {
            ret = fail_user(f, -errno, "%s: mce.log = '%s': %s", cfg->file, cfg->mce.log,
                            strerror(errno));
            goto fail;
        }
    } else {
        vm->mce.log_fd = STDERR_FILENO;
    }
    vm->mce.main.log_fd = vm->mce.log_fd;

    /* The overhead baseline is for --memstat and the control socket's
     * memstat only: without either, its /proc reads are skipped. */
    mem = cfg->memory;
    mem.no_overhead_base = !vm->opt.memstat && !cfg->control.enabled;
    ret = gm_open(&vm->gm, &mem, cfg->vm.memory, f->msg, sizeof(f->msg));
    if (ret) {
        fail_as(f, FAIL_USER, ret);
        goto fail;
    }
    vm->gm_open = true;
    vm->t[VM_T_MEMORY] = mono_ns();

    loader.vm = vm;
    vm_side_start(&loader.side, vm_loader_main, &loader, "loader");
    vm->t[VM_T_LOAD_BEGIN] = mono_ns();
    ret = vm_kvm_join(vm);
    vm->t[VM_T_KVM_VM] = vm->t_kvm_vm;
    if (ret) {
        fail_host(f, ret, "%s", vm->kvm_err);
        goto fail;
    }
    vm->t[VM_T_KVM_JOIN] = mono_ns();
    /* The guest sees the host's vendor (CPUID is passed through), and the
     * machine-check encoding follows it. */
    vm->mce.enc = cpuid_vendor_amd(vm->kvm.cpuid) ? MCE_ENC_AMD : MCE_ENC_INTEL;
    vm->mce.main.encoding = mce_encoding_name(vm->mce.enc);
    vm->mce.kvm_mce_cap = vm->kvm.mce_cap;
    /* Devices report failed pages they touch themselves (vm_mce.c). */
    vm->kvm.vmif.memory_failure = vm_memory_failure;
    ret = kvm_vm_map_memory(&vm->kvm, &vm->gm);
    if (ret) {
        fail_host(f, ret, "vm: registering guest RAM with KVM: %s", strerror(-ret));
        goto fail;
    }
    vm->t[VM_T_MEMSLOTS] = mono_ns();

    ret = vm_open_console(vm, f);
    if (ret)
        goto fail;
    if ((ret = serial_init(&vm->serial, &vm->pio, SERIAL_COM1_BASE, SERIAL_COM1_IRQ,
                           &vm->kvm.vmif, vm->console_fd)) ||
        (ret = i8042_init(&vm->i8042, &vm->pio, &vm->kvm.vmif, vm_on_i8042_reset, vm)) ||
        (ret = rtc_init(&vm->rtc, &vm->pio))) {
        fail_host(f, ret, "vm: legacy devices: %s", strerror(-ret));
        goto fail;
    }
    if (cfg->debug_exit.enabled) {
        ret = debug_exit_init(&vm->dbg, &vm->pio, cfg->debug_exit.port,
                              cfg->debug_exit.size, vm_on_debug_exit, vm);
        if (ret) {
            fail_user(f, ret, "%s: debug-exit.port = 0x%x: port already used by another device",
                      cfg->file, cfg->debug_exit.port);
            goto fail;
        }
    }
    ret = pci_init(&vm->pci, &vm->pio, &vm->mmio, &vm->kvm.vmif);
    if (ret) {
        fail_host(f, ret, "vm: PCI host bridge: %s", strerror(-ret));
        goto fail;
    }
    vm->pci_ready = true;
    pci_set_ram_top(&vm->pci, vm->gm.layout.r[vm->gm.layout.nr - 1].gpa +
                                  vm->gm.layout.r[vm->gm.layout.nr - 1].size);

    if (cfg->ndisks) {
        vm->disks = calloc(cfg->ndisks, sizeof(*vm->disks));
        if (!vm->disks) {
            ret = fail_host(f, -ENOMEM, "vm: out of memory for %u disks", cfg->ndisks);
            goto fail;
        }
    }
    for (unsigned i = 0; i < cfg->ndisks; i++) {
        ret = blk_init(&vm->disks[i], &cfg->disk[i], &vm->pci, &vm->kvm.vmif, &vm->gm,
                       f->msg, sizeof(f->msg));
        if (ret) {
            /* blk_init's messages name disk.N.<key>: the user's disk. */
            fail_as(f, ret == -ENOMEM ? FAIL_HOST : FAIL_USER, ret);
            goto fail;
        }
        vm->ndisks++;
    }
    if (cfg->nnets) {
        vm->nets = calloc(cfg->nnets, sizeof(*vm->nets));
        if (!vm->nets) {
            ret = fail_host(f, -ENOMEM, "vm: out of memory for %u NICs", cfg->nnets);
            goto fail;
        }
    }
    for (unsigned i = 0; i < cfg->nnets; i++) {
        ret = net_init(&vm->nets[i], &cfg->net[i], NULL, &vm->pci, &vm->kvm.vmif, &vm->gm,
                       f->msg, sizeof(f->msg));
        if (ret) {
            /* net_init's messages name net.N.<key>: the user's TAP or vhost. */
            fail_as(f, ret == -ENOMEM ? FAIL_HOST : FAIL_USER, ret);
            goto fail;
        }
        vm->nnets++;
    }

    vm->t[VM_T_DEVICES] = mono_ns();

    vm->nvcpus = cfg->vm.vcpus;
    vm->vcpus = calloc(vm->nvcpus, sizeof(*vm->vcpus));
    if (!vm->vcpus) {
        ret = fail_host(f, -ENOMEM, "vm: out of memory for %u vCPUs", vm->nvcpus);
        goto fail;
    }
    vm->vcpu_env = (struct vcpu_env){
        .vm_fd = vm->kvm.vm_fd, .run_size = (size_t)vm->kvm.run_mmap_size,
        .cpuid = vm->kvm.cpuid, .nvcpus = vm->nvcpus, .pio = &vm->pio, .mmio = &vm->mmio,
        .gm = &vm->gm, .boot = &vm->boot, .ops = &vm_vcpu_ops, .ctx = vm,
    };
    for (unsigned i = 0; i < vm->nvcpus; i++)
        vm->vcpus[i].fd = -1;
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        ret = vcpu_create(&vm->vcpus[i], &vm->vcpu_env, i, f->msg, sizeof(f->msg));
        if (ret) {
            fail_as(f, FAIL_HOST, ret);
            goto fail;
        }
        if (vm_mce_setup_vcpu(&vm->mce, &vm->vcpus[i]) < 0) {
            ret = fail_host(f, -EINVAL, "vcpu%u: KVM_X86_SETUP_MCE failed", i);
            goto fail;
        }
    }
    vm->mce.vcpus = vm->vcpus;
    vm->mce.nvcpus = vm->nvcpus;
    park_set_nvcpus(&vm->park, vm->nvcpus);
    vm->t[VM_T_VCPU_CREATE] = mono_ns();

    /* The vCPUs' registers come from vm->boot. */
    vm_side_join(&loader.side);
    vm->t[VM_T_LOAD_JOIN] = mono_ns();
    vm->t[VM_T_KERNEL] = vm->boot.t_kernel;
    vm->t[VM_T_INITRD] = cfg->vm.initrd[0] ? vm->boot.t_initrd : 0;
    vm->t[VM_T_BOOT_TABLES] = vm->boot.t_tables;
    if (loader.ret) {
        /* A kernel or initrd the user named. */
        ret = fail_user(f, loader.ret, "%s", loader.err);
        goto fail;
    }

    for (unsigned i = 0; i < vm->nvcpus; i++) {
        ret = vcpu_init_cpuid(&vm->vcpus[i]);
        if (ret) {
            fail_host(f, ret, "vcpu%u: CPUID: %s", i, strerror(-ret));
            goto fail;
        }
    }
    vm->t[VM_T_VCPU_CPUID] = mono_ns();
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        ret = vcpu_reset(&vm->vcpus[i]);
        if (ret) {
            fail_host(f, ret, "vcpu%u: initial state: %s", i, strerror(-ret));
            goto fail;
        }
    }
    vm->t[VM_T_VCPU_RESET] = mono_ns();
    return 0;
fail:
    /* The loader writes guest RAM, which vm_destroy unmaps. */
    vm_side_join(&loader.side);
    vm_destroy(vm);
    return ret;
}

static void vm_stop_vcpus(struct vm *vm)
{
    if (vm->park_ready)
        park_stop(&vm->park);
    vm_kick_all(vm);
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        if (vm->vcpus[i].thread_started) {
            pthread_join(vm->vcpus[i].thread, NULL);
            vm->vcpus[i].thread_started = false;
        }
    }
}

static void vm_report_outcome(const struct vm *vm)
{
    const char *name = vm->cfg->vm.name;

    switch (vm->outcome) {
    case VM_OUT_MCE_SHUTDOWN:
        log_err("vm %s: guest machine-check shutdown (a second uncorrected machine "
                "check while MCIP was set); exit status 1", name);
        break;
    case VM_OUT_CRASH:
        log_err("vm %s: guest crashed; exit status 1", name);
        break;
    case VM_OUT_ERROR:
        log_err("vm %s: stopped on a host-side error; exit status %d", name, vm->status);
        break;
    default:
        log_info("vm %s: exit status %d", name, vm->status);
        break;
    }
}

struct vm_loop {
    int epfd, sigfd;
    bool stdin_on;
    uint8_t pending[256];
    unsigned npending, off;
};

static int vm_loop_add(int epfd, int fd, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };

    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* Host keyboard to guest UART.  Input the FIFO cannot take yet stays in
 * l->pending and stdin is not read again until it drains, so no byte is
 * ever dropped. */
static void vm_console_input(struct vm *vm, struct vm_loop *l)
{
    if (!l->npending) {
        ssize_t n = read(STDIN_FILENO, l->pending, sizeof(l->pending));

        if (n <= 0) {
            if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                epoll_ctl(l->epfd, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
                l->stdin_on = false;
            }
            return;
        }
        l->npending = (unsigned)n;
        l->off = 0;
    }
    l->off += serial_feed(&vm->serial, l->pending + l->off, l->npending - l->off);
    if (l->off == l->npending)
        l->npending = 0;
}

static int vm_handle_signal(struct vm *vm, struct vm_loop *l)
{
    struct signalfd_siginfo si;

    if (read(l->sigfd, &si, sizeof(si)) != sizeof(si))
        return 0;
    log_info("vm %s: %s received, shutting down", vm->cfg->vm.name,
             strsignal((int)si.ssi_signo));
    vm_request_exit(vm, VM_OUT_SIGNAL, 128 + (int)si.ssi_signo);
    return 1;
}

int vm_run(struct vm *vm, const struct ctl_handlers *ctl)
{
    struct vm_loop l = { .epfd = -1, .sigfd = -1 };
    struct term term = { .fd = -1 };
    sigset_t stopset;
    int ret;

    sigemptyset(&stopset);
    sigaddset(&stopset, SIGINT);
    sigaddset(&stopset, SIGTERM);
    /* Blocked before any thread exists, so only the signalfd sees them. */
    pthread_sigmask(SIG_BLOCK, &stopset, NULL);
    l.sigfd = signalfd(-1, &stopset, SFD_CLOEXEC | SFD_NONBLOCK);
    l.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l.sigfd < 0 || l.epfd < 0 || vcpu_install_kick_handler() < 0) {
        log_err("vm: event loop set-up: %s", strerror(errno));
        ret = 1;
        goto out;
    }
    if (mce_route_install() < 0) {
        log_err("vm: SIGBUS handler: %s", strerror(errno));
        ret = 1;
        goto out;
    }
    mce_route_bind_thread(&vm->mce.main);
    if (vm->cfg->control.enabled && ctl) {
        char err[512];

        vm->ctl_h = *ctl;
        if (ctl_server_open(&vm->ctl, vm->cfg->control.socket, &vm->ctl_h, err,
                            sizeof(err)) < 0) {
            log_err("%s", err);
            ret = 1;
            goto out;
        }
        vm->ctl_open = true;
        if (vm_loop_add(l.epfd, ctl_server_fd(&vm->ctl), EPOLLIN)) {
            log_err("vm: epoll_ctl: %s", strerror(errno));
            ret = 1;
            goto out;
        }
    }
    if (vm_loop_add(l.epfd, l.sigfd, EPOLLIN) || vm_loop_add(l.epfd, vm->event_fd, EPOLLIN) ||
        vm_loop_add(l.epfd, vm->mce.main.wake_fd, EPOLLIN)) {
        log_err("vm: epoll_ctl: %s", strerror(errno));
        ret = 1;
        goto out;
    }
    if (vm->cfg->console.enabled && vm->cfg->console.input) {
        if (term_enter_raw(&term, STDIN_FILENO) < 0)
            log_warn("console: cannot put the tty in raw mode: %s", strerror(errno));
        l.stdin_on = vm_loop_add(l.epfd, STDIN_FILENO, EPOLLIN) == 0;
    }

    /* Everything is open: [sandbox] chroot and user, before any thread exists. */
    if (vm_sandbox_confine(vm->cfg, vm->ctl_open ? &vm->ctl : NULL) < 0) {
        ret = 1;
        goto out;
    }
    /* The vCPUs filter themselves and then wait at their first checkpoint
     * until main is in its sandbox too: no guest code runs before. */
    park_request(&vm->park, PARK_START);
    vm->t[VM_T_RUN_SETUP] = mono_ns();
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        if (vcpu_start(&vm->vcpus[i]) < 0) {
            vm_request_exit(vm, VM_OUT_ERROR, 1);
            break;
        }
    }
    if (sandbox_enter(SBX_MAIN, "main") < 0)
        vm_request_exit(vm, VM_OUT_ERROR, 1);
    park_release(&vm->park, PARK_START);

    for (;;) {
        struct epoll_event ev[8];
        int n, timeout = l.npending ? 10 : -1;
        bool stop, reboot;

        n = epoll_wait(l.epfd, ev, 8, timeout);
        if (n < 0 && errno != EINTR) {
            log_err("vm: epoll_wait: %s", strerror(errno));
            vm_request_exit(vm, VM_OUT_ERROR, 1);
        }
        for (int i = 0; i < n; i++) {
            if (ev[i].data.fd == l.sigfd) {
                vm_handle_signal(vm, &l);
            } else if (ev[i].data.fd == vm->event_fd) {
                uint64_t cnt;

                if (read(vm->event_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
                    log_err("vm: event_fd read: %s", strerror(errno));
                vm_mce_user_poll(&vm->mce, vm->ctl_open ? &vm->ctl : NULL);
            } else if (ev[i].data.fd == vm->mce.main.wake_fd) {
                vm_mce_main_poll(&vm->mce);
            } else if (vm->ctl_open && ev[i].data.fd == ctl_server_fd(&vm->ctl)) {
                ctl_server_dispatch(&vm->ctl);
            } else if (ev[i].data.fd == STDIN_FILENO && !l.npending) {
                vm_console_input(vm, &l);
            }
        }
        if (l.npending)
            vm_console_input(vm, &l);

        stop = park_stopping(&vm->park);
        reboot = park_is(&vm->park, PARK_REBOOT);
        if (stop)
            break;
        if (reboot)
            vm_reboot(vm);
    }
    vm->t[VM_T_EXIT] = mono_ns();
    vm_stop_vcpus(vm);
    /* The vCPU's own mark, read once its thread is joined. */
    if (vm->nvcpus)
        vm->t[VM_T_FIRST_RUN] = vm->vcpus[0].first_run_ns;
    ret = vm->status;
    vm_report_outcome(vm);
    if (vm->opt.memstat) {
        struct gm_overhead o;

        if (gm_overhead_measure(&vm->gm, &o) == 0)
            gm_overhead_format_text(&o, stderr);
    }
out:
    if (vm->ctl_open)
        ctl_server_close(&vm->ctl);
    vm->ctl_open = false;
    term_restore(&term);
    if (l.epfd >= 0)
        close(l.epfd);
    if (l.sigfd >= 0)
        close(l.sigfd);
    return ret;
}

/* What an exiting dvmm still owes: the disks' workers drain and the images
 * get what the guest wrote (blk_destroy syncs them, as QEMU's exit does),
 * the NICs give back their TAPs.  The vCPU and VM fds, guest RAM, the
 * device model's memory and thread stacks the kernel frees at exit_group
 * at least as fast as dvmm could one by one (closing the VM fd alone is
 * most of dvmm's old teardown: KVM tears the VM down then, and at exit). */
void vm_finish(struct vm *vm)
{
    vm_stop_vcpus(vm);
    for (unsigned i = 0; i < vm->ndisks; i++)
        blk_destroy(&vm->disks[i]);
    vm->ndisks = 0;
    for (unsigned i = 0; i < vm->nnets; i++)
        net_destroy(&vm->nets[i]);
    vm->nnets = 0;
}

void vm_destroy(struct vm *vm)
{
    /* kvm_vm_destroy below needs the VM the thread may still be making. */
    vm_kvm_join(vm);
    vm_stop_vcpus(vm);
    for (unsigned i = 0; vm->vcpus && i < vm->nvcpus; i++)
        vcpu_destroy(&vm->vcpus[i]);
    free(vm->vcpus);
    vm->vcpus = NULL;
    vm->nvcpus = 0;
    /* Disks first: their workers touch guest RAM and the PCI device. */
    for (unsigned i = 0; i < vm->ndisks; i++)
        blk_destroy(&vm->disks[i]);
    free(vm->disks);
    vm->disks = NULL;
    vm->ndisks = 0;
    for (unsigned i = 0; i < vm->nnets; i++)
        net_destroy(&vm->nets[i]);
    free(vm->nets);
    vm->nets = NULL;
    vm->nnets = 0;
    if (vm->pci_ready)
        pci_destroy(&vm->pci);
    vm->pci_ready = false;
    kvm_vm_destroy(&vm->kvm);
    if (vm->gm_open)
        gm_close(&vm->gm);
    vm->gm_open = false;
    if (vm->console_fd > STDERR_FILENO)
        close(vm->console_fd);
    vm->console_fd = -1;
    if (vm->event_fd >= 0)
        close(vm->event_fd);
    vm->event_fd = -1;
    if (vm->mce.main.wake_fd >= 0)
        close(vm->mce.main.wake_fd);
    vm->mce.main.wake_fd = -1;
    if (vm->mce.log_fd > STDERR_FILENO)
        close(vm->mce.log_fd);
    vm->mce.log_fd = -1;
    vm->mce.vcpus = NULL;
    vm->mce.nvcpus = 0;
    bus_destroy(&vm->pio);
    bus_destroy(&vm->mmio);
    if (vm->park_ready)
        park_destroy(&vm->park);
    vm->park_ready = false;
}
