/* The KVM capability table and its checks: see kvm_caps.h. */
#include "vmm/kvm_caps.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/log.h"
#include "vmm/mce.h"

/* Required rows first; kvm_vm_create names the first one missing. */
const struct kvm_cap_info kvm_caps[KC_COUNT] = {
    [KC_IRQCHIP] = { KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", "irqchip", true,
                     "dvmm needs the in-kernel LAPIC/IOAPIC/PIC" },
    [KC_IRQFD] = { KVM_CAP_IRQFD, "KVM_CAP_IRQFD", "irqfd", true,
                   "devices raise interrupts only through irqfd" },
    [KC_IOEVENTFD] = { KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD", "ioeventfd", true,
                       "virtio queue kicks need ioeventfd" },
    [KC_IRQ_ROUTING] = { KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING", "irq_routing", true,
                         "legacy IRQs and virtio MSI-X vectors are GSI routes" },
    /* MSI routing entries exist only where KVM reports SIGNAL_MSI
     * (CONFIG_HAVE_KVM_MSI); without it the first MSI-X vector fails. */
    [KC_SIGNAL_MSI] = { KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI", "signal_msi", true,
                        "virtio MSI-X vectors need MSI routes" },
    [KC_PIT2] = { KVM_CAP_PIT2, "KVM_CAP_PIT2", "pit2", true,
                  "the guest's timer is KVM's in-kernel PIT (KVM_CREATE_PIT2)" },
    [KC_IMMEDIATE_EXIT] = { KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT",
                            "immediate_exit", true,
                            "vCPUs are stopped and paused through kvm_run.immediate_exit" },
    [KC_USER_MEMORY] = { KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", "user_memory", true,
                         "guest RAM is mapped with KVM_SET_USER_MEMORY_REGION" },
    /* Optional: without them dvmm runs, with less. */
    [KC_MCE] = { KVM_CAP_MCE, "KVM_CAP_MCE", "mce", false,
                 "machine-check injection (the [mce] feature) needs KVM_CAP_MCE" },
    [KC_MAX_VCPUS] = { KVM_CAP_MAX_VCPUS, "KVM_CAP_MAX_VCPUS", "max_vcpus", false,
                       "the vCPU limit per VM" },
    [KC_NR_VCPUS] = { KVM_CAP_NR_VCPUS, "KVM_CAP_NR_VCPUS", "nr_vcpus", false,
                      "the recommended vCPU count per VM" },
    [KC_TSC_DEADLINE_TIMER] = { KVM_CAP_TSC_DEADLINE_TIMER, "KVM_CAP_TSC_DEADLINE_TIMER",
                                "tsc_deadline_timer", false,
                                "the guest's CPUID offers the TSC-deadline timer" },
};

int kvm_caps_probe(int kvm_fd, struct kvm_cap_set *set)
{
    uint64_t mcg = 0;
    int ver;

    memset(set, 0, sizeof(*set));
    ver = ioctl(kvm_fd, KVM_GET_API_VERSION, 0);
    if (ver < 0)
        return -errno;
    set->api_version = ver;
    for (unsigned i = 0; i < KC_COUNT; i++) {
        int n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, kvm_caps[i].cap);

        /* KVM_CHECK_EXTENSION answers 0 for "no" and does not fail for a
         * cap it knows; a failure is read as "no" all the same. */
        set->val[i] = n > 0 ? n : 0;
    }
    /* KVM reports the bank count through KVM_CAP_MCE and only the flag bits
     * through KVM_X86_GET_MCE_CAP_SUPPORTED; fold them into one MCG_CAP. */
    if (set->val[KC_MCE] > 0 && ioctl(kvm_fd, KVM_X86_GET_MCE_CAP_SUPPORTED, &mcg) == 0)
        set->mce_cap = (mcg & ~MCE_MCG_CAP_COUNT_MASK) |
                       (uint64_t)(set->val[KC_MCE] > 255 ? 255 : set->val[KC_MCE]);
    return 0;
}

/* The value of "key=" at the start of a line of text, or dflt. */
static unsigned long long caps_value(const char *text, const char *key,
                                     unsigned long long dflt)
{
    size_t kl = strlen(key);

    for (const char *l = text; l && *l;) {
        if (!strncmp(l, key, kl) && l[kl] == '=')
            return strtoull(l + kl + 1, NULL, 0);
        l = strchr(l, '\n');
        if (l)
            l++;
    }
    return dflt;
}

void kvm_caps_parse(const char *text, struct kvm_cap_set *set)
{
    memset(set, 0, sizeof(*set));
    set->api_version = (long)caps_value(text, "api_version", KVM_API_VERSION);
    for (unsigned i = 0; i < KC_COUNT; i++)
        set->val[i] = (long)caps_value(text, kvm_caps[i].key, 0);
    set->mce_cap = caps_value(text, "mce_cap", 0);
    /* Text that gives only the folded MCG_CAP has the banks in it. */
    if (!set->val[KC_MCE])
        set->val[KC_MCE] = (long)(set->mce_cap & MCE_MCG_CAP_COUNT_MASK);
}

int kvm_caps_check(const struct kvm_cap_set *set, char *err, size_t errlen)
{
    if (set->api_version != KVM_API_VERSION)
        return log_fail(err, errlen, -EINVAL, "/dev/kvm: API version %ld, dvmm needs %d",
                        set->api_version, KVM_API_VERSION);
    for (unsigned i = 0; i < KC_COUNT; i++)
        if (kvm_caps[i].required && set->val[i] <= 0)
            return log_fail(err, errlen, -ENOTSUP, "/dev/kvm: missing capability %s",
                            kvm_caps[i].name);
    return 0;
}

unsigned kvm_caps_max_vcpus(const struct kvm_cap_set *set)
{
    if (set->val[KC_MAX_VCPUS] > 0)
        return (unsigned)set->val[KC_MAX_VCPUS];
    if (set->val[KC_NR_VCPUS] > 0)
        return (unsigned)set->val[KC_NR_VCPUS];
    return 4;
}

unsigned kvm_caps_vcpu_limit(const struct kvm_cap_set *set)
{
    unsigned n = kvm_caps_max_vcpus(set);

    return n < KVM_CAPS_VCPU_LIMIT ? n : KVM_CAPS_VCPU_LIMIT;
}
