#include "vmm/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "guest-mem/gm.h"
#include "vmm/bus.h"
#include "vmm/cpuid.h"
#include "vmm/log.h"
#include "vmm/mono.h"
#include "vmm/sandbox.h"
#include "vmm/x86_boot.h"

#define MSR_IA32_TSC            0x10
#define MSR_IA32_SYSENTER_CS    0x174
#define MSR_IA32_SYSENTER_ESP   0x175
#define MSR_IA32_SYSENTER_EIP   0x176
#define MSR_IA32_MISC_ENABLE    0x1a0
#define MSR_IA32_APICBASE       0x1b
#define APICBASE_BSP            (1ULL << 8)
#define APICBASE_ENABLE         (1ULL << 11)
#define APIC_DEFAULT_BASE       0xfee00000ULL
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102
#define MISC_ENABLE_FAST_STRING 1ULL

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_EXTINT 0x7
#define APIC_MODE_NMI    0x4

static void vcpu_kick_handler(int sig)
{
    (void)sig;   /* only there so KVM_RUN returns -EINTR */
}

int vcpu_install_kick_handler(void)
{
    struct sigaction sa = { .sa_handler = vcpu_kick_handler };

    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: the point is to make KVM_RUN return. */
    if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
        return -errno;
    return 0;
}

int vcpu_create(struct vcpu *v, const struct vcpu_env *env, unsigned idx, char *err,
                size_t errlen)
{
    memset(v, 0, sizeof(*v));
    v->env = env;
    v->idx = idx;
    mce_slot_init(&v->mce_slot, -1);
    pthread_mutex_init(&v->mce_lock, NULL);
    v->fd = ioctl(env->vm_fd, KVM_CREATE_VCPU, (unsigned long)idx);
    if (v->fd < 0)
        return log_fail(err, errlen, -errno, "vcpu%u: KVM_CREATE_VCPU: %s", idx,
                        strerror(errno));
    v->run = mmap(NULL, env->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        int e = errno;

        v->run = NULL;
        close(v->fd);
        v->fd = -1;
        return log_fail(err, errlen, -e, "vcpu%u: mmap kvm_run: %s", idx, strerror(e));
    }
    return 0;
}

void vcpu_destroy(struct vcpu *v)
{
    if (v->run)
        munmap(v->run, v->env->run_size);
    if (v->fd >= 0)
        close(v->fd);
    if (v->mce_timer_ok)
        timer_delete(v->mce_timer);
    v->mce_timer_ok = false;
    v->run = NULL;
    v->fd = -1;
    pthread_mutex_destroy(&v->mce_lock);
}

int vcpu_ioctl(struct vcpu *v, unsigned long req, void *arg, const char *name)
{
    int ret = ioctl(v->fd, req, arg);

    if (ret < 0) {
        int e = errno;

        log_err("vcpu%u: %s: %s", v->idx, name, strerror(e));
        return -e;
    }
    return ret;
}

int vcpu_get_msr(struct vcpu *v, uint32_t index, uint64_t *val)
{
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e;
    } m = { .hdr.nmsrs = 1, .e.index = index };
    int n = vcpu_ioctl(v, KVM_GET_MSRS, &m, "KVM_GET_MSRS");

    if (n < 0)
        return n;
    if (n != 1)
        return -EINVAL;
    *val = m.e.data;
    return 0;
}

void vcpu_report(struct vcpu *v, enum vcpu_event ev)
{
    v->env->ops->event(v->env->ctx, v, ev);
}

static int vcpu_set_cpuid(struct vcpu *v)
{
    const struct kvm_cpuid2 *sup = v->env->cpuid;
    unsigned cap = sup->nent + 16;
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + cap * sizeof(c->entries[0]));
    int ret;

    if (!c)
        return -ENOMEM;
    c->nent = cap;
    ret = cpuid_build(sup, v->idx, v->env->nvcpus, c);
    if (ret)
        log_err("vcpu%u: building CPUID: %s", v->idx, strerror(-ret));
    else
        ret = vcpu_ioctl(v, KVM_SET_CPUID2, c, "KVM_SET_CPUID2");
    free(c);
    return ret;
}

static int vcpu_set_msrs(struct vcpu *v)
{
    /* APIC base first: a guest reboot must leave x2APIC mode (a host write
     * may make that transition) before the LAPIC registers are reset. */
    const struct { uint32_t index; uint64_t data; } init[] = {
        { MSR_IA32_APICBASE, APIC_DEFAULT_BASE | APICBASE_ENABLE |
                             (v->idx == 0 ? APICBASE_BSP : 0) },
        { MSR_IA32_SYSENTER_CS, 0 }, { MSR_IA32_SYSENTER_ESP, 0 },
        { MSR_IA32_SYSENTER_EIP, 0 }, { MSR_STAR, 0 }, { MSR_CSTAR, 0 },
        { MSR_KERNEL_GS_BASE, 0 }, { MSR_SYSCALL_MASK, 0 }, { MSR_LSTAR, 0 },
        { MSR_IA32_TSC, 0 }, { MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING },
    };
    const unsigned n = sizeof(init) / sizeof(init[0]);
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[sizeof(init) / sizeof(init[0])];
    } m;
    int ret;

    memset(&m, 0, sizeof(m));
    m.hdr.nmsrs = n;
    for (unsigned i = 0; i < n; i++) {
        m.e[i].index = init[i].index;
        m.e[i].data = init[i].data;
    }
    ret = vcpu_ioctl(v, KVM_SET_MSRS, &m, "KVM_SET_MSRS");
    if (ret < 0)
        return ret;
    if ((unsigned)ret != n) {
        /* KVM stops at the first MSR it refuses; name it. */
        log_err("vcpu%u: KVM_SET_MSRS: MSR 0x%x refused", v->idx, init[ret].index);
        return -EINVAL;
    }
    return 0;
}

static int vcpu_set_fpu(struct vcpu *v)
{
    struct kvm_fpu fpu;

    memset(&fpu, 0, sizeof(fpu));
    fpu.fcw = 0x37f;        /* FNINIT state */
    fpu.mxcsr = 0x1f80;     /* all SSE exceptions masked */
    return vcpu_ioctl(v, KVM_SET_FPU, &fpu, "KVM_SET_FPU");
}

static void lapic_set_lvt_mode(struct kvm_lapic_state *l, unsigned reg, uint32_t mode)
{
    uint32_t val;

    memcpy(&val, &l->regs[reg], sizeof(val));
    val = (val & ~0x700u) | (mode << 8);
    val &= ~(1u << 16);     /* unmasked */
    memcpy(&l->regs[reg], &val, sizeof(val));
}

static void lapic_put(struct kvm_lapic_state *l, unsigned reg, uint32_t val)
{
    memcpy(&l->regs[reg], &val, sizeof(val));
}

/* Power-on LAPIC state (so a guest reboot starts clean), with LINT0 as
 * ExtINT so the PIC reaches the CPU (the MP table says so) and LINT1 as NMI,
 * where a PC wires the NMI line. */
static int vcpu_set_lapic(struct vcpu *v)
{
    struct kvm_lapic_state l;
    uint32_t version;
    int ret = vcpu_ioctl(v, KVM_GET_LAPIC, &l, "KVM_GET_LAPIC");

    if (ret)
        return ret;
    memcpy(&version, &l.regs[0x30], sizeof(version));
    memset(&l, 0, sizeof(l));
    lapic_put(&l, 0x20, v->idx << 24);          /* APIC ID */
    lapic_put(&l, 0x30, version);
    lapic_put(&l, 0xe0, 0xffffffff);            /* DFR: flat model */
    lapic_put(&l, 0xf0, 0xff);                  /* SVR: software-disabled */
    for (unsigned reg = 0x320; reg <= 0x370; reg += 0x10)
        lapic_put(&l, reg, 1u << 16);           /* every LVT masked */
    lapic_set_lvt_mode(&l, APIC_LVT_LINT0, APIC_MODE_EXTINT);
    lapic_set_lvt_mode(&l, APIC_LVT_LINT1, APIC_MODE_NMI);
    return vcpu_ioctl(v, KVM_SET_LAPIC, &l, "KVM_SET_LAPIC");
}

static int vcpu_set_boot_regs(struct vcpu *v)
{
    const struct x86_boot *b = v->env->boot;
    struct kvm_sregs sregs;
    struct kvm_regs regs;
    int ret = vcpu_ioctl(v, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");

    if (ret)
        return ret;
    x86_boot_segment(b->cs, &sregs.cs);
    x86_boot_segment(b->ds, &sregs.ds);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    sregs.gdt.base = b->gdt_gpa;
    sregs.gdt.limit = b->gdt_limit;
    sregs.cr0 = b->cr0;
    sregs.cr3 = b->cr3;
    sregs.cr4 = b->cr4;
    sregs.efer = b->efer;
    ret = vcpu_ioctl(v, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
    if (ret)
        return ret;
    memset(&regs, 0, sizeof(regs));
    regs.rflags = 0x2;
    regs.rip = b->entry;
    regs.rsi = b->boot_params_gpa;
    return vcpu_ioctl(v, KVM_SET_REGS, &regs, "KVM_SET_REGS");
}

int vcpu_init_cpuid(struct vcpu *v)
{
    int ret;

    /* The CPUID is the same on every boot, and KVM refuses to change it
     * once the vCPU has run: newer kernels (seen on 6.18) reject even an
     * identical table with EINVAL.  So a reboot keeps the first one. */
    if (v->cpuid_set)
        return 0;
    ret = vcpu_set_cpuid(v);
    v->cpuid_set = ret == 0;
    return ret;
}

int vcpu_reset(struct vcpu *v)
{
    struct kvm_mp_state mp = {
        .mp_state = v->idx == 0 ? KVM_MP_STATE_RUNNABLE : KVM_MP_STATE_UNINITIALIZED,
    };
    int ret;

    if ((ret = vcpu_init_cpuid(v)))
        return ret;
    if ((ret = vcpu_set_msrs(v)) ||
        (ret = vcpu_set_fpu(v)) || (ret = vcpu_set_lapic(v)))
        return ret;
    ret = vcpu_ioctl(v, KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE");
    if (ret)
        return ret;
    return v->idx == 0 ? vcpu_set_boot_regs(v) : 0;
}

void vcpu_kick(struct vcpu *v)
{
    if (!v->run || !v->thread_started)
        return;
    /* immediate_exit covers a kick that lands just before KVM_RUN; the signal
     * covers one that lands inside it. */
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

static void vcpu_read_guest_bytes(struct vcpu *v, uint64_t lin, uint8_t *out,
                                  unsigned len, unsigned *got)
{
    *got = 0;
    while (*got < len) {
        struct kvm_translation tr = { .linear_address = lin + *got };
        unsigned chunk;
        uint8_t *hva;

        /* Not vcpu_ioctl: an address that does not translate is an
         * answer here, not a failure to log. */
        if (ioctl(v->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
            return;
        chunk = 4096 - (unsigned)(tr.physical_address & 4095);
        if (chunk > len - *got)
            chunk = len - *got;
        hva = gm_gpa_to_hva(v->env->gm, tr.physical_address, chunk);
        if (!hva)
            return;
        memcpy(out + *got, hva, chunk);
        *got += chunk;
    }
}

void vcpu_dump(struct vcpu *v, const char *why)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    uint8_t insn[16];
    char hex[16 * 3 + 1] = "";
    unsigned got = 0;

    fprintf(stderr, "dvmm: vcpu%u: %s\n", v->idx, why);
    if (vcpu_ioctl(v, KVM_GET_REGS, &r, "KVM_GET_REGS") < 0 ||
        vcpu_ioctl(v, KVM_GET_SREGS, &s, "KVM_GET_SREGS") < 0)
        return;
    fprintf(stderr,
            "  rip %016llx  rsp %016llx  rflags %016llx\n"
            "  rax %016llx  rbx %016llx  rcx %016llx  rdx %016llx\n"
            "  rsi %016llx  rdi %016llx  rbp %016llx\n"
            "  r8  %016llx  r9  %016llx  r10 %016llx  r11 %016llx\n"
            "  r12 %016llx  r13 %016llx  r14 %016llx  r15 %016llx\n"
            "  cs %04x base %llx  ss %04x  ds %04x  cr0 %llx cr2 %llx cr3 %llx cr4 %llx efer %llx\n",
            r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi,
            r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
            s.cs.selector, s.cs.base, s.ss.selector, s.ds.selector, s.cr0,
            s.cr2, s.cr3, s.cr4, s.efer);
    if (r.rip == 0xfff0 && s.cs.base == 0xffff0000)
        fprintf(stderr, "  (this is the reset state: on AMD, KVM reinitialises the vCPU "
                        "on a shutdown, so the registers at the fault are lost)\n");
    vcpu_read_guest_bytes(v, s.cs.base + r.rip, insn, sizeof(insn), &got);
    for (unsigned i = 0; i < got; i++)
        snprintf(hex + i * 3, sizeof(hex) - i * 3, "%02x ", insn[i]);
    if (got)
        fprintf(stderr, "  code at rip: %s\n", hex);
    else
        fprintf(stderr, "  code at rip: (rip does not translate to guest RAM)\n");
}

static void vcpu_handle_io(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    bool wr = run->io.direction == KVM_EXIT_IO_OUT;

    /* Offsets come from KVM, but stay inside the shared page regardless. */
    if (run->io.data_offset + (uint64_t)run->io.size * run->io.count >
        (uint64_t)v->env->run_size)
        return;
    for (uint32_t i = 0; i < run->io.count; i++) {
        if (bus_dispatch(v->env->pio, run->io.port, data, run->io.size, wr) < 0)
            log_debug("vcpu%u: unclaimed %s port 0x%x size %u", v->idx,
                      wr ? "write to" : "read from", run->io.port, run->io.size);
        data += run->io.size;
    }
}

static void vcpu_handle_mmio(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    unsigned len = run->mmio.len > 8 ? 8 : run->mmio.len;

    if (bus_dispatch(v->env->mmio, run->mmio.phys_addr, run->mmio.data, len,
                     run->mmio.is_write) < 0)
        log_debug("vcpu%u: unclaimed MMIO %s GPA 0x%llx len %u", v->idx,
                  run->mmio.is_write ? "write" : "read", run->mmio.phys_addr, len);
}

static void vcpu_crash(struct vcpu *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void vcpu_crash(struct vcpu *v, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    vcpu_dump(v, why);
    vcpu_report(v, VCPU_EV_CRASH);
}

/* Returns false when the vCPU must stop running. */
static bool vcpu_handle_exit(struct vcpu *v)
{
    struct kvm_run *run = v->run;

    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        vcpu_handle_io(v);
        return true;
    case KVM_EXIT_MMIO:
        vcpu_handle_mmio(v);
        return true;
    case KVM_EXIT_INTR:
        return true;
    case KVM_EXIT_HLT:
        /* Only without an in-kernel LAPIC; treat as a stop of this vCPU. */
        vcpu_crash(v, "guest halted with interrupts off (KVM_EXIT_HLT)");
        return false;
    case KVM_EXIT_SHUTDOWN:
        if (v->mce_shutdown_armed) {
            vcpu_dump(v, "guest machine-check shutdown: an uncorrected machine "
                         "check arrived while the previous one was still in "
                         "progress (MCIP set), so the CPU shut down");
            vcpu_report(v, VCPU_EV_MCE_SHUTDOWN);
            return false;
        }
        vcpu_crash(v, "guest triple fault (KVM_EXIT_SHUTDOWN)");
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        vcpu_crash(v, "KVM internal error, suberror %u%s", run->internal.suberror,
                   run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                       ? " (instruction emulation failed)" : "");
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        vcpu_crash(v, "VM entry failed, hardware reason 0x%llx",
                   (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_RESET:
            vcpu_report(v, VCPU_EV_RESET);
            return true;
        case KVM_SYSTEM_EVENT_SHUTDOWN:
            vcpu_report(v, VCPU_EV_POWEROFF);
            return false;
        default:
            vcpu_crash(v, "guest system event %u", run->system_event.type);
            return false;
        }
    default:
        vcpu_crash(v, "unexpected KVM exit reason %u", run->exit_reason);
        return false;
    }
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    const struct vcpu_ops *ops = v->env->ops;
    void *ctx = v->env->ctx;
    char name[16];
    int ret, err;

    v->tid = (pid_t)syscall(SYS_gettid);
    snprintf(name, sizeof(name), "vcpu%u", v->idx);
    pthread_setname_np(pthread_self(), name);
    mce_route_bind_thread(&v->mce_slot);
    if (sandbox_enter(SBX_VCPU, name) < 0) {
        vcpu_report(v, VCPU_EV_ERROR);
        return NULL;
    }

    for (;;) {
        /* Clear the kick flag before looking at the requests: a kick that
         * comes after this point sets it again and KVM_RUN returns at once. */
        __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
        if (!ops->checkpoint(ctx, v))
            break;
        /* MCE requests are requests too: one queued (and kicked) between
         * the last poll and the clear above would otherwise wait for the
         * guest's next exit, forever in a guest that never exits. */
        ops->poll(ctx, v);
        if (!__atomic_load_n(&v->first_run_ns, __ATOMIC_RELAXED))
            __atomic_store_n(&v->first_run_ns, mono_ns(), __ATOMIC_RELAXED);
        mce_slot_expect_ar(&v->mce_slot, true);
        /* Not vcpu_ioctl: EINTR is every kick's normal answer. */
        ret = ioctl(v->fd, KVM_RUN, 0);
        err = errno;
        mce_slot_expect_ar(&v->mce_slot, false);
        /* A memory-failure SIGBUS makes KVM_RUN return (EINTR or with an
         * exit); act on it before anything else. */
        ops->poll(ctx, v);
        if (ret < 0) {
            if (err == EINTR || err == EAGAIN)
                continue;
            log_err("vcpu%u: KVM_RUN: %s", v->idx, strerror(err));
            vcpu_report(v, VCPU_EV_ERROR);
            break;
        }
        v->exits++;
        if (!vcpu_handle_exit(v))
            break;
    }
    return NULL;
}

int vcpu_start(struct vcpu *v)
{
    sigset_t all, old;
    int ret;

    /* Threads inherit the creator's mask: start with everything blocked, then
     * the thread runs with what vCPUs take (the kick; SIGBUS for MCEs). */
    sigfillset(&all);
    sigdelset(&all, VCPU_KICK_SIGNAL);
    sigdelset(&all, SIGBUS);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    ret = pthread_create(&v->thread, NULL, vcpu_thread, v);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret) {
        log_err("vcpu%u: pthread_create: %s", v->idx, strerror(ret));
        return -ret;
    }
    v->thread_started = true;
    return 0;
}
