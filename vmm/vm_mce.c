#include "vmm/vm_mce.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmm/log.h"
#include "vmm/mce_route.h"
#include "vmm/vm.h"

#define MSR_IA32_MCG_STATUS 0x17a
#define MCG_STATUS_MCIP     (1ULL << 2)
#define X86_CR4_MCE         (1ULL << 6)

int vm_mce_setup_vcpu(struct vcpu *v)
{
    uint64_t cap = mce_mcg_cap(v->vm->kvm.mce_cap);

    if (!cap) {
        log_warn("vcpu%u: KVM offers %llu MCE banks, bank 9 needs 10: no "
                 "machine-check injection", v->idx,
                 (unsigned long long)(v->vm->kvm.mce_cap & 0xff));
        return 0;
    }
    if (ioctl(v->fd, KVM_X86_SETUP_MCE, &cap) < 0) {
        int e = errno;

        log_err("vcpu%u: KVM_X86_SETUP_MCE 0x%llx: %s", v->idx,
                (unsigned long long)cap, strerror(e));
        return -e;
    }
    if (!(cap & (1ULL << 24)) && v->idx == 0)
        log_warn("vcpu0: KVM does not offer MCG_SER_P (as on AMD hosts): guests "
                 "see machine checks without software error recovery");
    v->mce_ready = true;
    return 0;
}

static void vm_mce_log(struct vm *vm, const struct mce_event *ev)
{
    int ret = mce_log_write(vm->mce_log_fd, ev);

    if (ret < 0)
        log_err("mce: writing the event log: %s", strerror(-ret));
}

/* Whether a machine check now would shut the guest down instead of being
 * delivered: KVM turns it into a triple fault while MCIP is still set or
 * before the guest enabled CR4.MCE. */
static const char *vm_mce_blocked(struct vcpu *v)
{
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e;
    } m = { .hdr.nmsrs = 1, .e.index = MSR_IA32_MCG_STATUS };
    struct kvm_sregs sregs;

    if (ioctl(v->fd, KVM_GET_MSRS, &m) == 1 && (m.e.data & MCG_STATUS_MCIP))
        return "MCIP still set from an earlier machine check";
    if (ioctl(v->fd, KVM_GET_SREGS, &sregs) == 0 && !(sregs.cr4 & X86_CR4_MCE))
        return "guest has not enabled CR4.MCE";
    return NULL;
}

static uint64_t vm_mce_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* sent_ns: when this thread sent itself the SIGBUS, 0 when unknown. */
static void vm_mce_handle(struct vcpu *v, const struct mce_sig *sig, uint64_t sent_ns)
{
    struct vm *vm = v->vm;
    struct mce_event ev = {
        .kind = sig->kind, .hva_known = true, .hva = sig->addr, .vcpu = (int)v->idx,
    };
    struct mce_poison_range pr;
    struct kvm_x86_mce mce;
    uint64_t first_gpa;
    const char *blocked;
    bool was_poisoned;
    int ret;

    clock_gettime(CLOCK_REALTIME, &ev.time);
    if (mce_poison_range(sig->addr, sig->lsb, vm->gm.page_size, &pr) < 0) {
        pr.start = pr.report = sig->addr & ~4095ULL;
        pr.len = 4096;
    }
    ev.page_size = pr.len;
    if (gm_hva_to_gpa(&vm->gm, (void *)(uintptr_t)pr.report, &ev.gpa) < 0) {
        ev.reason = "address outside guest RAM";
        vm_mce_log(vm, &ev);
        if (sig->kind == MCE_AR) {
            log_err("vcpu%u: action-required memory failure at HVA 0x%llx, which "
                    "is not guest RAM: dvmm itself touched bad memory; stopping",
                    v->idx, (unsigned long long)sig->addr);
            vm_request_exit(vm, VM_OUT_ERROR, 1);
        }
        return;
    }
    ev.gpa_known = true;
    /* An AO for a page already reported (the kernel's early-kill AO often
     * follows the AR that KVM raised for the same page) tells the guest
     * nothing new, and injecting it while the AR is still being handled
     * would shut the guest down. */
    was_poisoned = gm_poison_query(&vm->gm, ev.gpa);
    /* The whole failed unit (a dmemfs dpage, a huge page) is gone for good. */
    if (gm_hva_to_gpa(&vm->gm, (void *)(uintptr_t)pr.start, &first_gpa) < 0)
        first_gpa = ev.gpa;
    ret = gm_poison_add(&vm->gm, first_gpa, pr.len);
    if (ret < 0)
        log_warn("vcpu%u: poisoned-page list: GPA 0x%llx len 0x%llx: %s", v->idx,
                 (unsigned long long)first_gpa, (unsigned long long)pr.len,
                 strerror(-ret));

    if (!v->mce_ready) {
        ev.reason = "no MCE banks on this vCPU";
        vm_mce_log(vm, &ev);
        return;
    }
    blocked = vm_mce_blocked(v);
    if (sig->kind == MCE_AO && (was_poisoned || blocked)) {
        /* Action-optional means the guest may ignore it; a machine check
         * while MCIP is set cannot be delivered, only shut the guest down. */
        ev.reason = was_poisoned ? "not injected: page already reported"
                                 : "not injected: optional event while a machine "
                                   "check is in progress (MCIP set)";
        vm_mce_log(vm, &ev);
        return;
    }
    mce_encode(sig->kind, ev.gpa, &mce);
    if (ioctl(v->fd, KVM_X86_SET_MCE, &mce) < 0) {
        ev.reason = strerror(errno);
    } else {
        if (sent_ns) {
            ev.done_ns = vm_mce_mono_ns();
            ev.sent_ns = sent_ns;
        }
        ev.injected = true;
        ev.reason = blocked ? blocked : "injected";
        if (blocked)
            v->mce_shutdown_armed = true;
    }
    vm_mce_log(vm, &ev);
}

/* Raise the requested ARs on this (the vCPU) thread.  Each SIGBUS is
 * delivered before mce_route_send returns, through the same handler and
 * slot a real memory failure inside KVM_RUN would use. */
static void vm_mce_selfsend(struct vcpu *v)
{
    struct mce_sig req[MCE_SLOT_RING];
    unsigned n;

    pthread_mutex_lock(&v->mce_lock);
    n = v->mce_nselfsend;
    memcpy(req, v->mce_selfsend, n * sizeof(req[0]));
    __atomic_store_n(&v->mce_nselfsend, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&v->mce_lock);
    for (unsigned i = 0; i < n; i++) {
        uint64_t sent = vm_mce_mono_ns();
        struct mce_sig sig;
        int ret;

        mce_slot_expect_ar(&v->mce_slot, true);
        ret = mce_route_send(v->tid, req[i].kind, req[i].addr, req[i].lsb);
        mce_slot_expect_ar(&v->mce_slot, false);

        if (ret < 0)
            log_err("vcpu%u: sending SIGBUS for HVA 0x%llx to itself: %s", v->idx,
                    (unsigned long long)req[i].addr, strerror(-ret));
        /* Handled here, so the log can say how long send-to-inject took. */
        while (mce_slot_pop(&v->mce_slot, &sig))
            vm_mce_handle(v, &sig, sent);
    }
}

void vm_mce_vcpu_poll(struct vcpu *v)
{
    struct mce_sig sig;

    if (__atomic_load_n(&v->mce_nselfsend, __ATOMIC_ACQUIRE))
        vm_mce_selfsend(v);
    while (mce_slot_pop(&v->mce_slot, &sig))
        vm_mce_handle(v, &sig, 0);
    if (!__atomic_load_n(&v->mce_nqueued, __ATOMIC_ACQUIRE))
        return;
    for (;;) {
        bool got = false;

        pthread_mutex_lock(&v->mce_lock);
        if (v->mce_nqueued) {
            sig = v->mce_queue[0];
            memmove(&v->mce_queue[0], &v->mce_queue[1],
                    --v->mce_nqueued * sizeof(v->mce_queue[0]));
            got = true;
        }
        pthread_mutex_unlock(&v->mce_lock);
        if (!got)
            break;
        vm_mce_handle(v, &sig, 0);
    }
}

static void vm_mce_queue(struct vcpu *v, const struct mce_sig *sig)
{
    bool ok = false;

    pthread_mutex_lock(&v->mce_lock);
    if (v->mce_nqueued < MCE_SLOT_RING) {
        v->mce_queue[v->mce_nqueued] = *sig;
        __atomic_store_n(&v->mce_nqueued, v->mce_nqueued + 1, __ATOMIC_RELEASE);
        ok = true;
    }
    pthread_mutex_unlock(&v->mce_lock);
    if (ok)
        vcpu_kick(v);
    else
        log_err("vcpu%u: MCE queue full; dropping an event for HVA 0x%llx",
                v->idx, (unsigned long long)sig->addr);
}

void vm_mce_main_poll(struct vm *vm)
{
    struct mce_sig sig;
    uint64_t cnt;

    if (read(vm->mce_main.wake_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
        log_err("mce: wake fd: %s", strerror(errno));
    /* Only AOs land here: an AR on the main thread is its own access to a
     * failed page, which the handler already made fatal. */
    while (mce_slot_pop(&vm->mce_main, &sig))
        vm_mce_queue(&vm->vcpus[0], &sig);
}

/* The address and lsb the kernel would report for a failure in the page at
 * `gpa`: dmemfs gives the dpage start with lsb 12, hugetlbfs the huge page
 * start with its shift, everything else the 4 KiB page with lsb 12. */
static void vm_mce_kernel_addr(struct vm *vm, uint8_t *hva, uint64_t *addr, unsigned *lsb)
{
    uint64_t a = (uint64_t)(uintptr_t)hva, ps = vm->gm.page_size;

    *lsb = 12;
    if (vm->gm.backend == GM_DMEMFS) {
        a &= ~(ps - 1);
    } else if (vm->gm.backend == GM_HUGETLBFS) {
        a &= ~(ps - 1);
        *lsb = (unsigned)__builtin_ctzll(ps);
    } else {
        a &= ~4095ULL;
    }
    *addr = a;
}

int vm_mce_inject(struct vm *vm, uint64_t gpa, enum mce_kind kind, int vcpu,
                  json_object *reply)
{
    uint8_t *hva = gm_gpa_to_hva(&vm->gm, gpa, 1);
    uint64_t addr;
    unsigned lsb;
    pid_t tid;
    int ret;

    if (!hva) {
        json_object_object_add(reply, "error",
                               json_object_new_string("gpa is not guest RAM"));
        return -EFAULT;
    }
    if (kind == MCE_AO && vcpu > 0) {
        json_object_object_add(reply, "error", json_object_new_string(
            "action-optional events arrive on the main thread and go to vCPU 0; "
            "vcpu applies to kind=ar only"));
        return -EINVAL;
    }
    if (vcpu < 0)
        vcpu = 0;
    if ((unsigned)vcpu >= vm->nvcpus || !vm->vcpus[vcpu].tid) {
        json_object_object_add(reply, "error",
                               json_object_new_string("no such running vCPU"));
        return -EINVAL;
    }
    vm_mce_kernel_addr(vm, hva, &addr, &lsb);
    if (kind == MCE_AR) {
        /* AR arrives on the vCPU that consumed the poison; only that thread
         * may send itself a BUS_MCEERR_AR, so ask it to. */
        struct vcpu *v = &vm->vcpus[vcpu];
        bool queued = false;

        tid = v->tid;
        pthread_mutex_lock(&v->mce_lock);
        if (v->mce_nselfsend < MCE_SLOT_RING) {
            v->mce_selfsend[v->mce_nselfsend] =
                (struct mce_sig){ .addr = addr, .lsb = lsb, .kind = kind };
            __atomic_store_n(&v->mce_nselfsend, v->mce_nselfsend + 1, __ATOMIC_RELEASE);
            queued = true;
        }
        pthread_mutex_unlock(&v->mce_lock);
        if (!queued) {
            json_object_object_add(reply, "error", json_object_new_string(
                "too many machine checks pending on that vCPU"));
            return -EBUSY;
        }
        vcpu_kick(v);
    } else {
        /* AO arrives on the main thread, which is the caller here. */
        tid = getpid();
        ret = mce_route_send(tid, kind, addr, lsb);
        if (ret < 0)
            return ret;
    }
    json_object_object_add(reply, "signal", json_object_new_string(
        kind == MCE_AR ? "SIGBUS BUS_MCEERR_AR" : "SIGBUS BUS_MCEERR_AO"));
    json_object_object_add(reply, "tid", json_object_new_int(tid));
    json_object_object_add(reply, "vcpu", json_object_new_int(vcpu));
    {
        char buf[32];

        snprintf(buf, sizeof(buf), "0x%llx", (unsigned long long)addr);
        json_object_object_add(reply, "si_addr", json_object_new_string(buf));
    }
    json_object_object_add(reply, "si_addr_lsb", json_object_new_int((int)lsb));
    return 0;
}

int vm_mce_hwpoison(struct vm *vm, uint64_t gpa, json_object *reply)
{
    uint8_t *hva = gm_gpa_to_hva(&vm->gm, gpa & ~4095ULL, 4096);
    char msg[256];
    int e;

    if (!hva) {
        json_object_object_add(reply, "error",
                               json_object_new_string("gpa is not guest RAM"));
        return -EFAULT;
    }
    /* A page the guest has only read is the kernel's shared zero page, not
     * memory of its own: poisoning that is a kernel-page failure the kernel
     * refuses (EBUSY).  Give the guest page its own frame first, contents
     * unchanged, so the failure hits what a real one would.  Where this
     * cannot work (dmemfs: no get_user_pages) the page is already its own. */
    if (madvise(hva, 4096, MADV_POPULATE_WRITE) < 0 && errno != EINVAL)
        log_warn("mce: hwpoison GPA 0x%llx: MADV_POPULATE_WRITE at HVA %p: %s",
                 (unsigned long long)gpa, (void *)hva, strerror(errno));
    if (madvise(hva, 4096, MADV_HWPOISON) == 0) {
        json_object_object_add(reply, "poisoned", json_object_new_boolean(1));
        return 0;
    }
    e = errno;
    snprintf(msg, sizeof(msg), "madvise(MADV_HWPOISON) at HVA %p: %s%s", (void *)hva,
             strerror(e),
             e == EINVAL ? ": this host kernel has no CONFIG_MEMORY_FAILURE; "
                           "use mce-inject for a synthetic SIGBUS"
             : e == EPERM ? ": needs CAP_SYS_ADMIN" : "");
    json_object_object_add(reply, "error", json_object_new_string(msg));
    return -e;
}
