#include "vmm/vm_mce.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmm/log.h"
#include "vmm/mono.h"
#include "guest-mem/gm.h"
#include "vmm/mce_route.h"
#include "vmm/vcpu.h"

/* mode=user: how often a waiting vCPU is made to leave KVM_RUN to look. */
#define MCE_USER_RETRY_NS   1000000ULL

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

/* Says, once, what the guest's MCG_CAP really is against what was asked:
 * KVM on SVM keeps only bits 8:0, so MCG_SER_P never reaches the guest
 * although KVM_X86_GET_MCE_CAP_SUPPORTED offers it. */
static void vm_mce_report_cap(struct vcpu *v, enum mce_encoding enc, uint64_t asked, int ret)
{
    if (ret < 0) {
        log_warn("vcpu0: reading MCG_CAP back after KVM_X86_SETUP_MCE 0x%llx: %s",
                 (unsigned long long)asked, strerror(-ret));
        return;
    }
    log_info("vcpu0: guest MCG_CAP 0x%llx (asked 0x%llx), %s machine-check encoding",
             (unsigned long long)v->mcg_cap, (unsigned long long)asked,
             mce_encoding_name(enc));
    if (v->mcg_cap & MCE_MCG_SER_P)
        return;
    if (enc == MCE_ENC_AMD)
        /* Not a problem, so not a warning: Linux grades AMD errors by
         * SUCCOR, which the guest's CPUID has. */
        log_info("vcpu0: the guest has no MCG_SER_P (%s); AMD guests do not use it: "
                 "Linux recovers them by CPUID SUCCOR, which dvmm sets",
                 (asked & MCE_MCG_SER_P) ? "KVM on SVM masks MCG_CAP to bits 8:0"
                                         : "KVM does not offer it");
    else
        log_warn("vcpu0: the guest has no MCG_SER_P (%s): an Intel-vendor guest sees "
                 "every uncorrected machine check as fatal, with no software recovery",
                 (asked & MCE_MCG_SER_P) ? "KVM dropped it from MCG_CAP"
                                         : "KVM does not offer it");
}

int vm_mce_setup_vcpu(struct vm_mce *m, struct vcpu *v)
{
    uint64_t cap = mce_mcg_cap(m->kvm_mce_cap);
    int ret;

    v->mce_slot.log_fd = m->log_fd;
    v->mce_slot.encoding = mce_encoding_name(m->enc);
    if (!cap) {
        log_warn("vcpu%u: KVM offers %llu MCE banks, bank 9 needs 10: no "
                 "machine-check injection", v->idx,
                 (unsigned long long)(m->kvm_mce_cap & 0xff));
        return 0;
    }
    ret = vcpu_ioctl(v, KVM_X86_SETUP_MCE, &cap, "KVM_X86_SETUP_MCE");
    if (ret < 0)
        return ret;
    ret = vcpu_get_msr(v, MCE_MSR_MCG_CAP, &v->mcg_cap);
    if (ret < 0)
        v->mcg_cap = 0;
    if (v->idx == 0)
        vm_mce_report_cap(v, m->enc, cap, ret);
    v->mce_ready = true;
    return 0;
}

static void vm_mce_log(struct vm_mce *m, const struct mce_event *ev)
{
    int ret = mce_log_write(m->log_fd, ev);

    if (ret < 0)
        log_err("mce: writing the event log: %s", strerror(-ret));
}

/* The log line of an event a device reported starts its reason with who
 * found it (device, queue, buffer). */
static void vm_mce_log_sig(struct vm_mce *m, const struct mce_event *ev,
                           const struct mce_sig *sig)
{
    struct mce_event e;
    char why[256];

    if (!sig->origin[0]) {
        vm_mce_log(m, ev);
        return;
    }
    e = *ev;
    snprintf(why, sizeof(why), "%.*s: %s", MCE_ORIGIN_LEN, sig->origin,
             ev->reason ? ev->reason : "");
    e.reason = why;
    vm_mce_log(m, &e);
}

/* Whether a machine check now would shut the guest down instead of being
 * delivered: KVM turns it into a triple fault while MCIP is still set or
 * before the guest enabled CR4.MCE.  sregs: the vCPU's, or NULL to read
 * them. */
static const char *vm_mce_blocked(struct vcpu *v, const struct kvm_sregs *sregs)
{
    struct kvm_sregs own;
    uint64_t mcg_status = 0;

    if (vcpu_get_msr(v, MCE_MSR_MCG_STATUS, &mcg_status) == 0 &&
        (mcg_status & MCE_MCG_STATUS_MCIP))
        return "MCIP still set from an earlier machine check";
    if (!sregs && vcpu_ioctl(v, KVM_GET_SREGS, &own, "KVM_GET_SREGS") == 0)
        sregs = &own;
    if (sregs && !(sregs->cr4 & MCE_CR4_MCE))
        return "guest has not enabled CR4.MCE";
    return NULL;
}

/* sent_ns: when this thread sent itself the SIGBUS, 0 when unknown.  The
 * logged event goes to *out too, when out is given. */
static void vm_mce_handle(struct vm_mce *m, struct vcpu *v, const struct mce_sig *sig,
                          uint64_t sent_ns, struct mce_event *out)
{
    struct mce_event ev = {
        .kind = sig->kind, .encoding = m->enc, .hva_known = true,
        .hva = sig->addr, .vcpu = (int)v->idx,
    };
    struct mce_poison_range pr;
    struct kvm_x86_mce mce;
    uint64_t first_gpa;
    const char *blocked;
    bool was_poisoned;
    int ret;

    clock_gettime(CLOCK_REALTIME, &ev.time);
    if (mce_poison_range(sig->addr, sig->lsb, m->gm->page_size, &pr) < 0) {
        pr.start = pr.report = sig->addr & ~4095ULL;
        pr.len = 4096;
    }
    ev.page_size = pr.len;
    if (gm_hva_to_gpa(m->gm, (void *)(uintptr_t)pr.report, &ev.gpa) < 0) {
        ev.reason = "address outside guest RAM";
        vm_mce_log_sig(m, &ev, sig);
        if (sig->kind == MCE_AR) {
            log_err("vcpu%u: action-required memory failure at HVA 0x%llx, which "
                    "is not guest RAM: dvmm itself touched bad memory; stopping",
                    v->idx, (unsigned long long)sig->addr);
            vcpu_report(v, VCPU_EV_ERROR);
        }
        goto out;
    }
    ev.gpa_known = true;
    /* An AO for a page already reported (the kernel's early-kill AO often
     * follows the AR that KVM raised for the same page) tells the guest
     * nothing new, and injecting it while the AR is still being handled
     * would shut the guest down. */
    was_poisoned = gm_poison_query(m->gm, ev.gpa);
    /* The whole failed unit (a dmemfs dpage, a huge page) is gone for good. */
    if (gm_hva_to_gpa(m->gm, (void *)(uintptr_t)pr.start, &first_gpa) < 0)
        first_gpa = ev.gpa;
    ret = gm_poison_add(m->gm, first_gpa, pr.len);
    if (ret < 0)
        log_warn("vcpu%u: poisoned-page list: GPA 0x%llx len 0x%llx: %s", v->idx,
                 (unsigned long long)first_gpa, (unsigned long long)pr.len,
                 strerror(-ret));

    if (!v->mce_ready) {
        ev.reason = "no MCE banks on this vCPU";
        vm_mce_log_sig(m, &ev, sig);
        goto out;
    }
    mce_encode(m->enc, sig->kind, ev.gpa, &mce);
    /* Only a #MC can shut the guest down; a deferred error (AMD's AO) just
     * fills the bank, whatever MCIP and CR4.MCE say. */
    blocked = mce_raises_mc(&mce) ? vm_mce_blocked(v, NULL) : NULL;
    if (sig->kind == MCE_AO && (was_poisoned || blocked)) {
        /* Action-optional means the guest may ignore it; a machine check
         * while MCIP is set cannot be delivered, only shut the guest down. */
        ev.reason = was_poisoned ? "not injected: page already reported"
                                 : "not injected: optional event while a machine "
                                   "check is in progress (MCIP set)";
        vm_mce_log_sig(m, &ev, sig);
        goto out;
    }
    ret = vcpu_ioctl(v, KVM_X86_SET_MCE, &mce, "KVM_X86_SET_MCE");
    if (ret < 0) {
        ev.reason = strerror(-ret);
    } else {
        if (sent_ns) {
            ev.done_ns = mono_ns();
            ev.sent_ns = sent_ns;
        }
        ev.injected = true;
        if (blocked)
            ev.reason = blocked;
        else if (!mce_raises_mc(&mce))
            ev.reason = "deferred error written to bank 9, no #MC: the guest finds "
                        "it when it polls its banks";
        else
            ev.reason = "injected";
        if (blocked)
            v->mce_shutdown_armed = true;
        if (mce_raises_mc(&mce)) {
            __atomic_store_n(&m->last_vcpu, (int)v->idx, __ATOMIC_RELAXED);
            __atomic_store_n(&m->last_gpa, ev.gpa, __ATOMIC_RELAXED);
            __atomic_store_n(&m->last_ns, mono_ns(), __ATOMIC_RELEASE);
        }
    }
    vm_mce_log_sig(m, &ev, sig);
out:
    if (out)
        *out = ev;
}

/* Raise the requested ARs on this (the vCPU) thread.  Each SIGBUS is
 * delivered before mce_route_send returns, through the same handler and
 * slot a real memory failure inside KVM_RUN would use. */
static void vm_mce_selfsend(struct vm_mce *m, struct vcpu *v)
{
    struct mce_sig req[MCE_SLOT_RING];
    unsigned n;

    pthread_mutex_lock(&v->mce_lock);
    n = v->mce_nselfsend;
    memcpy(req, v->mce_selfsend, n * sizeof(req[0]));
    __atomic_store_n(&v->mce_nselfsend, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&v->mce_lock);
    for (unsigned i = 0; i < n; i++) {
        uint64_t sent = mono_ns();
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
            vm_mce_handle(m, v, &sig, sent, NULL);
    }
}

/* ---- mce-inject mode=user ------------------------------------------------ */

static void vm_mce_user_timer(struct vcpu *v, bool on)
{
    struct itimerspec its = { 0 };

    if (on && !v->mce_timer_ok) {
        struct sigevent sev = {
            .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = VCPU_KICK_SIGNAL,
        };

        sev.sigev_notify_thread_id = v->tid;
        if (timer_create(CLOCK_MONOTONIC, &sev, &v->mce_timer) < 0) {
            log_warn("vcpu%u: mode=user retry timer: %s; checking only at the guest's "
                     "own exits", v->idx, strerror(errno));
            return;
        }
        v->mce_timer_ok = true;
    }
    if (!v->mce_timer_ok)
        return;
    if (on) {
        its.it_value.tv_nsec = MCE_USER_RETRY_NS;
        its.it_interval.tv_nsec = MCE_USER_RETRY_NS;
    }
    timer_settime(v->mce_timer, 0, &its, NULL);
}

/* Hand the outcome to the main thread (vCPU thread, or the checkpoint). */
static void vm_mce_user_finish(struct vm_mce *m, struct vcpu *v, int ret, bool injected,
                               const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void vm_mce_user_finish(struct vm_mce *m, struct vcpu *v, int ret, bool injected,
                               const char *fmt, ...)
{
    struct vcpu_mce_user *u = &v->mce_user;
    va_list ap;

    vm_mce_user_timer(v, false);
    pthread_mutex_lock(&v->mce_lock);
    u->ret = ret;
    u->injected = injected;
    u->end_ns = mono_ns();
    va_start(ap, fmt);
    vsnprintf(u->reason, sizeof(u->reason), fmt, ap);
    va_end(ap);
    u->active = false;
    u->done = true;
    __atomic_store_n(&v->mce_user_active, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&v->mce_lock);
    /* A full counter already wakes main; nothing else can fail. */
    if (eventfd_write(m->main_event_fd, 1) < 0 && errno != EAGAIN)
        log_err("vcpu%u: waking main for the mode=user outcome: %s", v->idx,
                strerror(errno));
}

/* One look at the vCPU (stopped, on its own thread): inject if the guest
 * is in user mode with nothing in delivery, give up past the deadline,
 * otherwise make sure the retry timer runs. */
static void vm_mce_user_step(struct vm_mce *m, struct vcpu *v)
{
    struct vcpu_mce_user *u = &v->mce_user;
    struct kvm_vcpu_events events;
    struct kvm_sregs sregs;
    struct kvm_regs regs;
    struct mce_event ev = { 0 };
    const char *blocker;
    struct mce_sig sig;
    uint64_t now = mono_ns(), sent;
    int ret;

    if (!v->mce_ready) {
        vm_mce_user_finish(m, v, -ENODEV, false, "vCPU %u has no MCE banks", v->idx);
        return;
    }
    if ((ret = vcpu_ioctl(v, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS")) < 0 ||
        (ret = vcpu_ioctl(v, KVM_GET_REGS, &regs, "KVM_GET_REGS")) < 0 ||
        (ret = vcpu_ioctl(v, KVM_GET_VCPU_EVENTS, &events, "KVM_GET_VCPU_EVENTS")) < 0) {
        vm_mce_user_finish(m, v, ret, false, "reading vCPU %u's state: %s", v->idx,
                           strerror(-ret));
        return;
    }
    u->checks++;
    u->rip = regs.rip;
    u->cs = sregs.cs.selector;
    blocker = vm_mce_blocked(v, &sregs);
    if (!blocker)
        blocker = mce_user_mode_blocker(&sregs, &events);
    u->blocker = blocker;
    if (blocker) {
        if (now >= u->deadline_ns)
            vm_mce_user_finish(m, v, -ETIMEDOUT, false,
                               "gave up after %llu ms: vCPU %u was never in user mode with "
                               "nothing in delivery (%u looks; last: %s, cs 0x%x rip 0x%llx)",
                               (unsigned long long)((now - u->start_ns) / 1000000), v->idx,
                               u->checks, blocker, u->cs, (unsigned long long)u->rip);
        else
            vm_mce_user_timer(v, true);
        return;
    }
    /* The same path as a real AR inside KVM_RUN: the handler records the
     * SIGBUS, vm_mce_handle translates and injects.  KVM delivers the #MC
     * before the guest runs another instruction, so at this CPL and RIP. */
    sent = mono_ns();
    mce_slot_expect_ar(&v->mce_slot, true);
    ret = mce_route_send(v->tid, MCE_AR, u->sig.addr, u->sig.lsb);
    mce_slot_expect_ar(&v->mce_slot, false);
    if (ret < 0) {
        vm_mce_user_finish(m, v, ret, false, "sending SIGBUS to itself: %s", strerror(-ret));
        return;
    }
    while (mce_slot_pop(&v->mce_slot, &sig))
        vm_mce_handle(m, v, &sig, sent, &ev);
    vm_mce_user_finish(m, v, ev.injected ? 0 : -EIO, ev.injected, "%s",
                       ev.reason ? ev.reason : "no event recorded");
}

void vm_mce_user_cancel(struct vm_mce *m, struct vcpu *v, const char *why)
{
    if (!__atomic_load_n(&v->mce_user_active, __ATOMIC_ACQUIRE))
        return;
    vm_mce_user_finish(m, v, -ECANCELED, false, "gave up: %s", why);
}

static json_object *vm_mce_hexs(uint64_t v)
{
    char buf[24];

    snprintf(buf, sizeof(buf), "0x%llx", (unsigned long long)v);
    return json_object_new_string(buf);
}

void vm_mce_user_poll(struct vm_mce *m, struct ctl_server *ctl)
{
    for (unsigned i = 0; i < m->nvcpus; i++) {
        struct vcpu *v = &m->vcpus[i];
        struct vcpu_mce_user u;
        json_object *f;
        char msg[256];
        bool done;

        /* Copied only once done: until then the vCPU thread updates its
         * progress fields without the lock. */
        pthread_mutex_lock(&v->mce_lock);
        done = v->mce_user.done;
        if (done) {
            u = v->mce_user;
            v->mce_user.done = false;
        }
        pthread_mutex_unlock(&v->mce_lock);
        if (!done || !ctl)
            continue;
        f = json_object_new_object();
        if (!f)
            continue;
        if (u.ret == 0) {
            json_object_object_add(f, "landed", json_object_new_boolean(true));
            json_object_object_add(f, "waited_ms", json_object_new_double(
                (double)(u.end_ns - u.start_ns) / 1e6));
            json_object_object_add(f, "looks", json_object_new_int((int)u.checks));
            json_object_object_add(f, "cs", vm_mce_hexs(u.cs));
            json_object_object_add(f, "rip", vm_mce_hexs(u.rip));
            json_object_object_add(f, "injected", json_object_new_boolean(u.injected));
            json_object_object_add(f, "reason", json_object_new_string(u.reason));
        } else {
            snprintf(msg, sizeof(msg), "mode=user: %s", u.reason);
            json_object_object_add(f, "error", json_object_new_string(msg));
        }
        if (ctl_server_resolve(ctl, u.token, u.ret, f) == -ENOENT)
            log_info("vcpu%u: mode=user outcome for a client that has gone: %s", i,
                     u.reason);
    }
}

void vm_mce_vcpu_poll(struct vm_mce *m, struct vcpu *v)
{
    struct mce_sig sig;

    if (__atomic_load_n(&v->mce_nselfsend, __ATOMIC_ACQUIRE))
        vm_mce_selfsend(m, v);
    while (mce_slot_pop(&v->mce_slot, &sig))
        vm_mce_handle(m, v, &sig, 0, NULL);
    if (__atomic_load_n(&v->mce_user_active, __ATOMIC_ACQUIRE))
        vm_mce_user_step(m, v);
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
        vm_mce_handle(m, v, &sig, 0, NULL);
    }
}

/* kick: make the vCPU leave KVM_RUN now.  A device worker queues without
 * (its sandbox has no way to signal a thread) and wakes main instead, which
 * kicks (vm_mce_main_poll). */
static void vm_mce_queue(struct vcpu *v, const struct mce_sig *sig, bool kick)
{
    bool ok = false;

    pthread_mutex_lock(&v->mce_lock);
    if (v->mce_nqueued < MCE_SLOT_RING) {
        v->mce_queue[v->mce_nqueued] = *sig;
        __atomic_store_n(&v->mce_nqueued, v->mce_nqueued + 1, __ATOMIC_RELEASE);
        ok = true;
    }
    pthread_mutex_unlock(&v->mce_lock);
    if (ok && kick)
        vcpu_kick(v);
    else if (!ok)
        log_err("vcpu%u: MCE queue full; dropping an event for HVA 0x%llx",
                v->idx, (unsigned long long)sig->addr);
}

void vm_mce_main_poll(struct vm_mce *m)
{
    struct mce_sig sig;
    uint64_t cnt;

    if (read(m->main.wake_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
        log_err("mce: wake fd: %s", strerror(errno));
    /* Only AOs land here: an AR on the main thread is its own access to a
     * failed page, which the handler already made fatal. */
    while (mce_slot_pop(&m->main, &sig))
        vm_mce_queue(&m->vcpus[0], &sig, true);
    /* What device workers queued for vCPU 0 (vm_mce_device_failure). */
    if (m->nvcpus && __atomic_load_n(&m->vcpus[0].mce_nqueued, __ATOMIC_ACQUIRE))
        vcpu_kick(&m->vcpus[0]);
}

/* A device worker's own access met a failed page: to the guest that is
 * what the kernel's early-kill AO for the page would have said, so it goes
 * the same way (vCPU 0, AO encoding: #MC for Intel, a deferred error for
 * AMD; nothing new when the page is already on the list). */
int vm_mce_device_failure(struct vm_mce *m, uint64_t hva, unsigned lsb, const char *origin)
{
    struct mce_sig sig = { .addr = hva, .lsb = lsb, .kind = MCE_AO };
    uint64_t gpa;

    snprintf(sig.origin, sizeof(sig.origin), "%s", origin ? origin : "device");
    if (gm_hva_to_gpa(m->gm, (void *)(uintptr_t)(hva & ~4095ULL), &gpa) == 0)
        log_warn("%s: memory failure at GPA 0x%llx (HVA 0x%llx): the request fails, "
                 "the page is reported to the guest through vCPU 0", sig.origin,
                 (unsigned long long)(gpa & ~4095ULL), (unsigned long long)hva);
    else
        log_warn("%s: memory failure at HVA 0x%llx, outside guest RAM", sig.origin,
                 (unsigned long long)hva);
    vm_mce_queue(&m->vcpus[0], &sig, false);
    if (eventfd_write(m->main.wake_fd, 1) < 0 && errno != EAGAIN) {
        int e = errno;

        log_err("%s: waking the main thread for vCPU 0: %s", sig.origin, strerror(e));
        return -e;
    }
    return 0;
}

/* The address and lsb the kernel would report for a failure in the page at
 * `gpa`: dmemfs gives the dpage start with lsb 12, hugetlbfs the huge page
 * start with its shift, everything else the 4 KiB page with lsb 12. */
static void vm_mce_kernel_addr(struct vm_mce *m, uint8_t *hva, uint64_t *addr, unsigned *lsb)
{
    uint64_t a = (uint64_t)(uintptr_t)hva, ps = m->gm->page_size;

    *lsb = 12;
    if (m->gm->backend == GM_DMEMFS) {
        a &= ~(ps - 1);
    } else if (m->gm->backend == GM_HUGETLBFS) {
        a &= ~(ps - 1);
        *lsb = (unsigned)__builtin_ctzll(ps);
    } else {
        a &= ~4095ULL;
    }
    *addr = a;
}

int vm_mce_inject(struct vm_mce *m, const struct ctl_mce_req *req, json_object *reply)
{
    uint8_t *hva = gm_gpa_to_hva(m->gm, req->gpa, 1);
    enum mce_kind kind = req->kind;
    int vcpu = req->vcpu;
    struct kvm_x86_mce enc;
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
    if ((unsigned)vcpu >= m->nvcpus || !m->vcpus[vcpu].tid) {
        json_object_object_add(reply, "error",
                               json_object_new_string("no such running vCPU"));
        return -EINVAL;
    }
    vm_mce_kernel_addr(m, hva, &addr, &lsb);
    if (kind == MCE_AR && req->user_mode) {
        struct vcpu *v = &m->vcpus[vcpu];
        bool busy;

        if (!req->token) {
            json_object_object_add(reply, "error", json_object_new_string(
                "mode=user answers once the guest is in user mode, which only the "
                "control socket can wait for"));
            return -EOPNOTSUPP;
        }
        pthread_mutex_lock(&v->mce_lock);
        busy = v->mce_user.active || v->mce_user.done;
        if (!busy) {
            uint64_t now = mono_ns();

            v->mce_user = (struct vcpu_mce_user){
                .active = true, .token = req->token,
                .sig = { .addr = addr, .lsb = lsb, .kind = MCE_AR },
                .start_ns = now, .deadline_ns = now + req->wait_ms * 1000000ULL,
            };
            __atomic_store_n(&v->mce_user_active, 1, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&v->mce_lock);
        if (busy) {
            json_object_object_add(reply, "error", json_object_new_string(
                "a mode=user machine check is already waiting on that vCPU"));
            return -EBUSY;
        }
        tid = v->tid;
        vcpu_kick(v);
    } else if (kind == MCE_AR) {
        /* AR arrives on the vCPU that consumed the poison; only that thread
         * may send itself a BUS_MCEERR_AR, so ask it to. */
        struct vcpu *v = &m->vcpus[vcpu];
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
    json_object_object_add(reply, "si_addr", vm_mce_hexs(addr));
    json_object_object_add(reply, "si_addr_lsb", json_object_new_int((int)lsb));
    /* What the guest will be given, by its vendor. */
    mce_encode(m->enc, kind, 0, &enc);
    json_object_object_add(reply, "encoding",
                           json_object_new_string(mce_encoding_name(m->enc)));
    json_object_object_add(reply, "mci_status", vm_mce_hexs(enc.status));
    json_object_object_add(reply, "delivery", json_object_new_string(
        mce_raises_mc(&enc) ? "#MC" : "deferred error in bank 9, no #MC"));
    if (req->user_mode) {
        json_object_object_add(reply, "mode", json_object_new_string("user"));
        return CTL_LATER;
    }
    return 0;
}

int vm_mce_hwpoison(struct vm_mce *m, uint64_t gpa, json_object *reply)
{
    uint8_t *hva = gm_gpa_to_hva(m->gm, gpa & ~4095ULL, 4096);
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
