#include "vmm/vm_control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guest-mem/overhead.h"
#include "vmm/log.h"
#include "vmm/mce.h"
#include "vmm/vm.h"
#include "vmm/vm_mce.h"

static json_object *vmc_hex(uint64_t v)
{
    char buf[24];

    snprintf(buf, sizeof(buf), "0x%llx", (unsigned long long)v);
    return json_object_new_string(buf);
}

static json_object *vmc_qstats(const struct net_qstats *q, bool kernel, bool irq_direct)
{
    json_object *o = json_object_new_object();

    /* With vhost the frames never pass through dvmm: the kernel counts
     * them (ip -s link show TAP); with MSI-X, vhost raises the interrupts
     * straight through KVM too, and only relayed ones are counted. */
    if (!kernel) {
        json_object_object_add(o, "packets", json_object_new_int64((int64_t)q->packets));
        json_object_object_add(o, "bytes", json_object_new_int64((int64_t)q->bytes));
        json_object_object_add(o, "drops", json_object_new_int64((int64_t)q->drops));
    }
    if (!irq_direct)
        json_object_object_add(o, "interrupts", json_object_new_int64((int64_t)q->irqs));
    return o;
}

/* One NIC for `status`: link, pairs, per-queue counters, drops by reason. */
static json_object *vmc_net_json(struct vm *vm, unsigned i)
{
    struct net *n = &vm->nets[i];
    struct net_stats s;
    json_object *o = json_object_new_object(), *qs = json_object_new_array(),
                *drops = json_object_new_object();
    char mac[18];

    net_get_stats(n, &s);
    snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->cfg.mac[0], n->cfg.mac[1],
             n->cfg.mac[2], n->cfg.mac[3], n->cfg.mac[4], n->cfg.mac[5]);
    json_object_object_add(o, "dev", json_object_new_string(n->name + strlen("virtio-")));
    json_object_object_add(o, "tap", json_object_new_string(n->tap.name));
    json_object_object_add(o, "mac", json_object_new_string(mac));
    json_object_object_add(o, "link", json_object_new_string(s.link_up ? "up" : "down"));
    json_object_object_add(o, "vhost", json_object_new_boolean(s.vhost));
    json_object_object_add(o, "queue_pairs", json_object_new_int((int)s.pairs));
    json_object_object_add(o, "active_pairs", json_object_new_int((int)s.active));
    for (unsigned q = 0; q < s.pairs; q++) {
        json_object *e = json_object_new_object();

        json_object_object_add(e, "pair", json_object_new_int((int)q));
        json_object_object_add(e, "rx", vmc_qstats(&s.q[q].rx, s.vhost, s.irq_direct));
        json_object_object_add(e, "tx", vmc_qstats(&s.q[q].tx, s.vhost, s.irq_direct));
        json_object_array_add(qs, e);
    }
    json_object_object_add(o, "queues", qs);
    for (unsigned d = NET_PASS + 1; d < NET_DROP_NR; d++)
        json_object_object_add(drops, net_drop_name(d),
                               json_object_new_int64((int64_t)s.drops[d]));
    json_object_object_add(o, "drops", drops);
    json_object_object_add(o, "ctrl_ok", json_object_new_int64((int64_t)s.ctrl_ok));
    json_object_object_add(o, "ctrl_err", json_object_new_int64((int64_t)s.ctrl_err));
    return o;
}

static int vmc_link(void *opaque, unsigned net, bool up, json_object *reply)
{
    struct vm *vm = opaque;

    for (unsigned i = 0; i < vm->nnets; i++) {
        if (vm->nets[i].cfg.index != net)
            continue;
        net_set_link(&vm->nets[i], up);
        json_object_object_add(reply, "link", json_object_new_string(up ? "up" : "down"));
        return 0;
    }
    char msg[64];

    snprintf(msg, sizeof(msg), "link: this VM has no net.%u", net);
    json_object_object_add(reply, "error", json_object_new_string(msg));
    return -ENODEV;
}

static int vmc_status(void *opaque, json_object *reply)
{
    struct vm *vm = opaque;
    json_object *cpus = json_object_new_array();
    bool paused = park_is(&vm->park, PARK_USER);

    json_object_object_add(reply, "name", json_object_new_string(vm->cfg->vm.name));
    json_object_object_add(reply, "state", json_object_new_string(paused ? "paused" : "running"));
    json_object_object_add(reply, "memory", json_object_new_int64((int64_t)vm->cfg->vm.memory));
    json_object_object_add(reply, "backend",
                           json_object_new_string(gm_backend_name(vm->gm.backend)));
    json_object_object_add(reply, "page_size", json_object_new_int64((int64_t)vm->gm.page_size));
    json_object_object_add(reply, "reboots", json_object_new_int((int)vm->reboots));
    json_object_object_add(reply, "poisoned_pages",
                           json_object_new_int((int)gm_poison_list(&vm->gm, NULL, 0)));
    json_object_object_add(reply, "mce_encoding",
                           json_object_new_string(mce_encoding_name(vm->mce.enc)));
    if (vm->nvcpus && vm->vcpus[0].mcg_cap)
        json_object_object_add(reply, "mcg_cap", vmc_hex(vm->vcpus[0].mcg_cap));
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        json_object *c = json_object_new_object();

        json_object_object_add(c, "index", json_object_new_int((int)i));
        json_object_object_add(c, "tid", json_object_new_int(vm->vcpus[i].tid));
        json_object_object_add(c, "exits", json_object_new_int64(
            (int64_t)__atomic_load_n(&vm->vcpus[i].exits, __ATOMIC_RELAXED)));
        json_object_array_add(cpus, c);
    }
    json_object_object_add(reply, "vcpus", cpus);
    if (vm->nnets) {
        json_object *nets = json_object_new_array();

        for (unsigned i = 0; i < vm->nnets; i++)
            json_object_array_add(nets, vmc_net_json(vm, i));
        json_object_object_add(reply, "nets", nets);
    }
    return 0;
}

static int vmc_memstat(void *opaque, json_object *reply)
{
    struct vm *vm = opaque;
    struct gm_overhead o;
    int ret = gm_overhead_measure(&vm->gm, &o);
    json_object *j;

    if (ret < 0)
        return ret;
    j = gm_overhead_to_json(&o);
    if (!j)
        return -ENOMEM;
    json_object_object_add(reply, "memstat", j);
    return 0;
}

static int vmc_mce_inject(void *opaque, const struct ctl_mce_req *req, json_object *reply)
{
    struct vm *vm = opaque;

    return vm_mce_inject(&vm->mce, req, reply);
}

static int vmc_hwpoison(void *opaque, uint64_t gpa, json_object *reply)
{
    struct vm *vm = opaque;

    return vm_mce_hwpoison(&vm->mce, gpa, reply);
}

static int vmc_poisoned(void *opaque, json_object *reply)
{
    struct vm *vm = opaque;
    uint64_t *list;
    json_object *arr;
    unsigned n;

    if (gm_poison_snapshot(&vm->gm, &list, &n) < 0)
        return -ENOMEM;
    arr = json_object_new_array();
    for (unsigned i = 0; i < n; i++)
        json_object_array_add(arr, vmc_hex(list[i]));
    free(list);
    json_object_object_add(reply, "pages", arr);
    json_object_object_add(reply, "count", json_object_new_int((int)n));
    return 0;
}

/* Answer "paused" only once no vCPU runs guest code; a pause during a
 * guest reboot stays after it (vmm/park.h). */
static int vmc_pause(void *opaque, json_object *reply)
{
    struct vm *vm = opaque;

    (void)reply;
    park_all(&vm->park, PARK_USER);
    return 0;
}

static int vmc_resume(void *opaque, json_object *reply)
{
    struct vm *vm = opaque;

    (void)reply;
    park_release(&vm->park, PARK_USER);
    return 0;
}

/* ---- vcpu-state --------------------------------------------------------- */

#define VMC_RFLAGS_IF      (1ULL << 9)

/* MCG_STATUS and, when the vCPU has it, the bank dvmm injects into
 * (MCE_BANK): CTL, STATUS, ADDR, MISC.  One KVM_GET_MSRS for all, so they
 * are read at the same instant of the parked vCPU. */
static int vmc_vcpu_msrs(struct vcpu *v, json_object *reply)
{
    bool bank = (v->mcg_cap & MCE_MCG_CAP_COUNT_MASK) > MCE_BANK;
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[5];
    } m = { .hdr.nmsrs = bank ? 5 : 1 };
    static const char *const names[] = { "ctl", "status", "addr", "misc" };
    json_object *o, *b;
    int n;

    m.e[0].index = MCE_MSR_MCG_STATUS;
    for (unsigned i = 0; i < 4; i++)
        m.e[1 + i].index = MCE_MSR_MCI(MCE_BANK, i);
    n = vcpu_ioctl(v, KVM_GET_MSRS, &m, "vcpu-state: KVM_GET_MSRS");
    if (n < 0)
        return n;
    if ((unsigned)n != m.hdr.nmsrs) {
        /* KVM stops at the first MSR it refuses: name it. */
        log_warn("vcpu%u: vcpu-state: KVM_GET_MSRS read %d of %u MSRs (0x%x refused)",
                 v->idx, n, m.hdr.nmsrs, m.e[n].index);
        return -EIO;
    }
    o = json_object_new_object();
    json_object_object_add(o, "mcg_status", vmc_hex(m.e[0].data));
    json_object_object_add(o, "mcip",
                           json_object_new_boolean((m.e[0].data & MCE_MCG_STATUS_MCIP) != 0));
    json_object_object_add(o, "ripv",
                           json_object_new_boolean((m.e[0].data & MCE_MCG_STATUS_RIPV) != 0));
    json_object_object_add(o, "eipv",
                           json_object_new_boolean((m.e[0].data & MCE_MCG_STATUS_EIPV) != 0));
    if (bank) {
        b = json_object_new_object();
        json_object_object_add(b, "index", json_object_new_int(MCE_BANK));
        for (unsigned i = 0; i < 4; i++)
            json_object_object_add(b, names[i], vmc_hex(m.e[1 + i].data));
        json_object_object_add(b, "val",
                               json_object_new_boolean((m.e[2].data & MCE_MCI_STATUS_VAL) != 0));
        json_object_object_add(o, "bank", b);
    }
    json_object_object_add(reply, "msrs", o);
    return 0;
}

/* KVM_GET_VCPU_EVENTS as JSON.  Without KVM_CAP_EXCEPTION_PAYLOAD (dvmm
 * does not enable it) KVM folds a pending exception into "injected", so an
 * #MC that KVM_X86_SET_MCE queued and no entry delivered yet shows as
 * exception injected, nr 18 (6.1's KVM sets pending with it too: seen in
 * the nested host). */
static json_object *vmc_events_json(const struct kvm_vcpu_events *e)
{
    json_object *o = json_object_new_object(), *x = json_object_new_object(),
                *irq = json_object_new_object(), *nmi = json_object_new_object(),
                *smi = json_object_new_object();

    json_object_object_add(x, "injected", json_object_new_boolean(e->exception.injected));
    json_object_object_add(x, "pending", json_object_new_boolean(e->exception.pending));
    json_object_object_add(x, "nr", json_object_new_int(e->exception.nr));
    json_object_object_add(x, "has_error_code",
                           json_object_new_boolean(e->exception.has_error_code));
    json_object_object_add(x, "error_code", vmc_hex(e->exception.error_code));
    if (e->flags & KVM_VCPUEVENT_VALID_PAYLOAD) {
        json_object_object_add(x, "has_payload",
                               json_object_new_boolean(e->exception_has_payload));
        json_object_object_add(x, "payload", vmc_hex(e->exception_payload));
    }
    json_object_object_add(o, "exception", x);
    json_object_object_add(irq, "injected", json_object_new_boolean(e->interrupt.injected));
    json_object_object_add(irq, "nr", json_object_new_int(e->interrupt.nr));
    json_object_object_add(irq, "soft", json_object_new_boolean(e->interrupt.soft));
    json_object_object_add(irq, "shadow", json_object_new_int(e->interrupt.shadow));
    json_object_object_add(o, "interrupt", irq);
    json_object_object_add(nmi, "injected", json_object_new_boolean(e->nmi.injected));
    json_object_object_add(nmi, "pending", json_object_new_boolean(e->nmi.pending));
    json_object_object_add(nmi, "masked", json_object_new_boolean(e->nmi.masked));
    json_object_object_add(o, "nmi", nmi);
    json_object_object_add(smi, "smm", json_object_new_boolean(e->smi.smm));
    json_object_object_add(smi, "pending", json_object_new_boolean(e->smi.pending));
    json_object_object_add(smi, "smm_inside_nmi",
                           json_object_new_boolean(e->smi.smm_inside_nmi));
    json_object_object_add(smi, "latched_init", json_object_new_boolean(e->smi.latched_init));
    json_object_object_add(o, "smi", smi);
    json_object_object_add(o, "flags", vmc_hex(e->flags));
    return o;
}

/* Reads a parked vCPU.  Runs on main, whose seccomp list already allows
 * the four GET ioctls (status and mce-inject read vCPUs too), so nothing
 * is added to it; the vCPU is out of KVM_RUN, so its fd is free. */
static int vmc_vcpu_read(struct vcpu *v, json_object *reply)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    struct kvm_vcpu_events e;
    int ret;

    if ((ret = vcpu_ioctl(v, KVM_GET_REGS, &r, "vcpu-state: KVM_GET_REGS")) < 0 ||
        (ret = vcpu_ioctl(v, KVM_GET_SREGS, &s, "vcpu-state: KVM_GET_SREGS")) < 0 ||
        (ret = vcpu_ioctl(v, KVM_GET_VCPU_EVENTS, &e, "vcpu-state: KVM_GET_VCPU_EVENTS")) < 0)
        return ret;
    json_object_object_add(reply, "rip", vmc_hex(r.rip));
    json_object_object_add(reply, "cs", vmc_hex(s.cs.selector));
    json_object_object_add(reply, "cpl", json_object_new_int(s.cs.selector & 3));
    json_object_object_add(reply, "rflags", vmc_hex(r.rflags));
    json_object_object_add(reply, "if", json_object_new_boolean((r.rflags & VMC_RFLAGS_IF) != 0));
    json_object_object_add(reply, "cr4", vmc_hex(s.cr4));
    json_object_object_add(reply, "cr4_mce", json_object_new_boolean((s.cr4 & MCE_CR4_MCE) != 0));
    json_object_object_add(reply, "events", vmc_events_json(&e));
    return vmc_vcpu_msrs(v, reply);
}

/* Pauses the VM as `pause` does (kicks every vCPU out of KVM_RUN and waits
 * until all are parked), reads vCPU `idx`, and resumes unless the VM was
 * already paused by the user.  All vCPUs, not just idx: a lost #MC may be
 * about what another vCPU did, and the state read is then a consistent
 * instant. */
static int vmc_vcpu_state(void *opaque, unsigned idx, json_object *reply)
{
    struct vm *vm = opaque;
    bool was_paused;
    int ret;

    if (idx >= vm->nvcpus) {
        char msg[80];

        snprintf(msg, sizeof(msg), "vcpu-state: this VM has no vCPU %u (it has %u)", idx,
                 vm->nvcpus);
        json_object_object_add(reply, "error", json_object_new_string(msg));
        return -ENODEV;
    }
    /* On main, as pause and resume are: nothing changes it meanwhile. */
    was_paused = park_is(&vm->park, PARK_USER);
    if (!park_all(&vm->park, PARK_USER)) {
        /* The vCPUs may be leaving or gone: nothing consistent to read. */
        json_object_object_add(reply, "error",
                               json_object_new_string("vcpu-state: the VM is stopping"));
        ret = -ESHUTDOWN;
    } else {
        json_object_object_add(reply, "vcpu", json_object_new_int((int)idx));
        ret = vmc_vcpu_read(&vm->vcpus[idx], reply);
    }
    if (!was_paused)
        park_release(&vm->park, PARK_USER);
    json_object_object_add(reply, "resumed", json_object_new_boolean(!was_paused));
    return ret;
}

static int vmc_quit(void *opaque, json_object *reply)
{
    (void)reply;
    vm_request_exit(opaque, VM_OUT_SIGNAL, 0);
    return 0;
}

void vm_control_handlers(struct vm *vm, struct ctl_handlers *h)
{
    *h = (struct ctl_handlers){
        .opaque = vm,
        .status = vmc_status,
        .link = vmc_link,
        .memstat = vmc_memstat,
        .mce_inject = vmc_mce_inject,
        .hwpoison = vmc_hwpoison,
        .poisoned = vmc_poisoned,
        .pause = vmc_pause,
        .resume = vmc_resume,
        .quit = vmc_quit,
        .vcpu_state = vmc_vcpu_state,
    };
}
