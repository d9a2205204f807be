/* hostcheck's KVM lines: see hostcheck_kvm.h. */
#include "kernel-support/hostcheck_kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "kernel-support/hostcheck_root.h"
#include "vmm/kvm_caps.h"
#include "vmm/log.h"
#include "vmm/mce.h"

/* A fake root's KVM facts: <root>/.kvm-caps in kvm_caps_parse's format. */
static void hc_kvm_caps_from_fixture(struct hc_ctx *x)
{
    char *t = hc_root_slurp(x, "/.kvm-caps");
    if (!t)
        return;
    kvm_caps_parse(t, &x->caps);
    x->caps_known = true;
    free(t);
}

static void hc_kvm_caps_from_dev(struct hc_ctx *x, int fd)
{
    int r = kvm_caps_probe(fd, &x->caps);
    if (r)
        log_debug("hostcheck: KVM_GET_API_VERSION: %s", strerror(-r));
    x->caps_known = r == 0;
}

/* kvm-pvm explains itself in one line: "(needs A=0 B=1; has A=1 B=1)".
 * Return the items that differ, e.g. "PTI=0 (has PTI=1)". */
static void hc_kvm_pvm_mismatch(const char *line, char *out, size_t len, bool *pti, bool *ibt)
{
    out[0] = '\0';
    const char *n = strstr(line, "needs "), *h = strstr(line, "has ");
    if (!n || !h)
        return;
    n += 6;
    h += 4;
    size_t used = 0;
    while (*n && *n != ';' && *n != ')') {
        while (*n == ' ')
            n++;
        size_t tl = strcspn(n, " ;)");
        const char *eq = memchr(n, '=', tl);
        if (eq && tl) {
            size_t kl = (size_t)(eq - n) + 1;   /* "PTI=" */
            char key[32];
            snprintf(key, sizeof(key), "%.*s", (int)kl, n);
            const char *hv = strstr(h, key);
            size_t hl = hv ? strcspn(hv, " ;)") : 0;
            if (hv && (hl != tl || strncmp(hv, n, tl))) {
                int w = snprintf(out + used, len - used, "%s%.*s (has %.*s)",
                                 used ? ", " : "", (int)tl, n, (int)hl, hv);
                if (w > 0 && (size_t)w < len - used)
                    used += (size_t)w;
                if (!strncmp(key, "PTI=", 4))
                    *pti = true;
                if (!strncmp(key, "IBT=", 4))
                    *ibt = true;
            }
        }
        n += tl;
    }
}

void hc_kvm_check(struct hc_ctx *x, const char *cpuinfo)
{
    bool pvm = hc_root_exists(x, "/sys/module/kvm_pvm");
    bool intel = hc_root_exists(x, "/sys/module/kvm_intel");
    bool amd = hc_root_exists(x, "/sys/module/kvm_amd");
    bool vmx = hc_root_cpu_flag(cpuinfo, "vmx"), svm = hc_root_cpu_flag(cpuinfo, "svm");
    struct hc_check *c;

    /* /dev/kvm itself */
    char dev[PATH_MAX + 64];
    hc_root_path(x, "/dev/kvm", dev, sizeof(dev));
    int fd = -1, err = 0;
    if (x->real) {
        fd = open(dev, O_RDWR | O_CLOEXEC);
        err = fd < 0 ? errno : 0;
    } else {
        err = access(dev, R_OK | W_OK) ? errno : 0;
    }
    if (!err) {
        x->kvm_dev = true;
        if (x->real)
            hc_kvm_caps_from_dev(x, fd);
        else
            hc_kvm_caps_from_fixture(x);
        if (x->caps_known && x->caps.api_version != KVM_API_VERSION) {
            c = hc_add(x, "kvm-device", HC_FAIL, "/dev/kvm API version %ld, dvmm needs %d",
                       x->caps.api_version, KVM_API_VERSION);
            hc_advise(c, "this KVM speaks another API; use a mainline-compatible host kernel");
        } else if (x->caps_known) {
            hc_add(x, "kvm-device", HC_OK, "/dev/kvm read-write, API version %ld",
                   x->caps.api_version);
        } else {
            c = hc_add(x, "kvm-device", HC_OK, "/dev/kvm read-write (API version unknown)");
            hc_advise(c, "a fake root gives KVM facts in %s/.kvm-caps", x->root);
        }
        if (fd >= 0)
            close(fd);
    } else if (err == ENOENT) {
        char line[1024], miss[512];
        bool pti = false, ibt = false;
        /* Its lines start "kvm-pvm:" on the kernels seen so far; a prefix
         * built from KBUILD_MODNAME would read "kvm_pvm:", so both match.
         * The reason varies by kernel and host (a settings mismatch, "this
         * kernel is itself a kvm-pvm guest", ...): the line is quoted
         * whole, and only a "needs ...; has ..." list is taken apart. */
        static const char *const pvm_names[] = { "kvm-pvm", "kvm_pvm", NULL };
        if (pvm && hc_root_dmesg_find(x, pvm_names, "not binding", line, sizeof(line))) {
            hc_kvm_pvm_mismatch(line, miss, sizeof(miss), &pti, &ibt);
            if (miss[0])
                c = hc_add(x, "kvm-device", HC_FAIL,
                           "/dev/kvm missing: kvm_pvm is loaded but refused to bind, it needs %s; kernel log: \"%s\"",
                           miss, line);
            else
                c = hc_add(x, "kvm-device", HC_FAIL,
                           "/dev/kvm missing: kvm_pvm is loaded but refused to bind; kernel log: \"%s\"", line);
            if (miss[0])
                hc_advise(c, "reboot the host with %s%s%sor use a VT-x/AMD-V host; meanwhile KVM tests run in the nested QEMU harness (tests/lib)",
                          pti ? "pti=off " : "", ibt ? "ibt=off " : "",
                          (pti || ibt) ? "(what kvm-pvm needs) " : "the settings kvm-pvm needs ");
            else
                hc_advise(c, "the quoted line is kvm-pvm's reason; use a VT-x/AMD-V host or a host kernel kvm-pvm binds on; meanwhile KVM tests run in the nested QEMU harness (tests/lib)");
        } else if (pvm) {
            c = hc_add(x, "kvm-device", HC_FAIL,
                       "/dev/kvm missing although kvm_pvm is loaded (the module did not bind; kernel log %s)",
                       x->dmesg ? "has no kvm-pvm \"not binding\" line" : "unreadable");
            hc_advise(c, "run `dmesg | grep -E 'kvm[-_]pvm'` as root for the reason (PVM needs PTI=0 among others)");
        } else if (intel || amd) {
            c = hc_add(x, "kvm-device", HC_FAIL, "/dev/kvm missing although %s is loaded",
                       intel ? "kvm_intel" : "kvm_amd");
            hc_advise(c, "virtualisation may be disabled in the firmware; see `dmesg | grep kvm`");
        } else {
            c = hc_add(x, "kvm-device", HC_FAIL, "/dev/kvm missing: no KVM vendor module loaded");
            hc_advise(c, "%s", vmx ? "modprobe kvm_intel" : svm ? "modprobe kvm_amd"
                      : "this CPU has no VT-x/AMD-V; a PVM host kernel (kvm_pvm) is the only option");
        }
    } else {
        c = hc_add(x, "kvm-device", HC_FAIL, "/dev/kvm: %s", strerror(err));
        hc_advise(c, "%s", err == EACCES ? "add your user to the group that owns /dev/kvm (usually kvm), then log in again"
                                         : "check `ls -l /dev/kvm`");
    }

    /* flavour */
    if (pvm) {
        c = hc_add(x, "kvm-flavour", HC_WARN, "PVM (kvm_pvm loaded%s)",
                   vmx ? "; CPU also has VT-x" : svm ? "; CPU also has AMD-V"
                   : hc_root_cpu_flag(cpuinfo, "hypervisor") ? "; no VT-x/AMD-V, running under a hypervisor"
                   : "; no VT-x/AMD-V");
        hc_advise(c, "only PVM-enabled guest kernels run at full speed; other guests run in KVM's instruction emulator (~3M instructions/s)");
    } else if (intel || amd) {
        hc_add(x, "kvm-flavour", HC_OK, "%s (%s loaded)", intel ? "VT-x" : "AMD-V",
               intel ? "kvm_intel" : "kvm_amd");
    } else if (vmx || svm) {
        c = hc_add(x, "kvm-flavour", x->kvm_dev ? HC_OK : HC_WARN,
                   "%s in the CPU, no vendor module in /sys/module", vmx ? "VT-x" : "AMD-V");
        if (!x->kvm_dev)
            hc_advise(c, "modprobe %s", vmx ? "kvm_intel" : "kvm_amd");
    } else {
        c = hc_add(x, "kvm-flavour", HC_FAIL, "none: no VT-x, no AMD-V, no kvm_pvm");
        hc_advise(c, "run on a host with hardware virtualisation or a PVM host kernel");
    }

    /* capabilities dvmm needs */
    if (!x->caps_known) {
        c = hc_add(x, "kvm-caps", HC_WARN, "unknown: %s",
                   !x->kvm_dev ? "/dev/kvm is not usable"
                   : "fake root without .kvm-caps");
        hc_advise(c, "%s", !x->kvm_dev ? "fix kvm-device first" : "add key=value lines to <root>/.kvm-caps");
        return;
    }
    /* Every required row of the table `dvmm run` checks, one line each. */
    const struct kvm_cap_set *k = &x->caps;
    for (unsigned i = 0; i < KC_COUNT; i++) {
        const struct kvm_cap_info *ci = &kvm_caps[i];
        if (!ci->required)
            continue;
        char name[HC_NAME_MAX];
        snprintf(name, sizeof(name), "kvm-%s", ci->key);
        for (char *p = name; *p; p++)
            if (*p == '_')
                *p = '-';
        if (k->val[i] > 1)
            c = hc_add(x, name, HC_OK, "%s yes (%ld)", ci->name, k->val[i]);
        else
            c = hc_add(x, name, k->val[i] > 0 ? HC_OK : HC_FAIL, "%s %s", ci->name,
                       k->val[i] > 0 ? "yes" : "no");
        if (k->val[i] <= 0)
            hc_advise(c, "%s; `dvmm run` refuses this host", ci->use);
    }
    if (!k->mce_cap) {
        c = hc_add(x, "kvm-mce", HC_FAIL, "KVM_X86_GET_MCE_CAP_SUPPORTED unavailable");
        hc_advise(c, "%s", kvm_caps[KC_MCE].use);
    } else {
        unsigned banks = (unsigned)(k->mce_cap & MCE_MCG_CAP_COUNT_MASK);
        bool ser = k->mce_cap & MCE_MCG_SER_P;
        /* mce_mcg_cap is what the vCPUs hand KVM: 0 means no bank 9. */
        enum hc_status st = !mce_mcg_cap(k->mce_cap) ? HC_FAIL : !ser ? HC_WARN : HC_OK;
        c = hc_add(x, "kvm-mce", st, "%u MCE banks, MCG_SER_P %s (mcg_cap 0x%" PRIx64 ")",
                   banks, ser ? "yes" : "no", k->mce_cap);
        if (st == HC_FAIL)
            hc_advise(c, "dvmm injects memory errors in bank %d and needs at least %d banks",
                      MCE_BANK, MCE_NR_BANKS);
        else if (st == HC_WARN)
            hc_advise(c, "without software error recovery (SER) the guest cannot recover from AR/AO events");
    }
    bool given = k->val[KC_MAX_VCPUS] > 0 || k->val[KC_NR_VCPUS] > 0;
    c = hc_add(x, "kvm-max-vcpus", given ? HC_OK : HC_WARN,
               "max %u vCPUs per VM (recommended %ld); dvmm allows %u",
               kvm_caps_max_vcpus(k), k->val[KC_NR_VCPUS], kvm_caps_vcpu_limit(k));
    if (!given)
        hc_advise(c, "KVM reported no vCPU limit; dvmm assumes 4, as the KVM API says");
}

void hc_kvm_check_config(struct hc_ctx *x, const struct dvmm_config *cfg)
{
    struct hc_check *c;

    if (!x->caps_known) {
        c = hc_add(x, "config-vcpus", HC_WARN, "%u vCPUs; KVM limit unknown", cfg->vm.vcpus);
        hc_advise(c, "fix kvm-device first");
    } else {
        /* the limit `dvmm run` applies: KVM's, at most KVM_CAPS_VCPU_LIMIT */
        unsigned lim = kvm_caps_vcpu_limit(&x->caps);
        bool ok = cfg->vm.vcpus <= lim;
        c = hc_add(x, "config-vcpus", ok ? HC_OK : HC_FAIL, "%u vCPUs, dvmm allows %u (KVM %u)",
                   cfg->vm.vcpus, lim, kvm_caps_max_vcpus(&x->caps));
        if (!ok)
            hc_advise(c, "lower vm.vcpus to %u or less", lim);
    }
}
