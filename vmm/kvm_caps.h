/* The KVM capabilities dvmm needs, in one table, as kvmtool's kvm_req_ext[]
 * and the KVM selftests' kvm_has_cap() keep them: `dvmm run` refuses a host
 * that lacks a required one before it creates a VM, and `dvmm hostcheck`
 * reports every row of the same table, so the two cannot disagree about
 * what a usable host is.
 *
 * The values come either from /dev/kvm (kvm_caps_probe) or, for hostcheck's
 * fake host trees and the unit tests, from "key=value" text
 * (kvm_caps_parse); the key of each row is its name without "KVM_CAP_", in
 * lower case ("irqchip", "pit2", "max_vcpus"), plus "api_version" and
 * "mce_cap" (the folded MCG_CAP below). */
#ifndef DVMM_KVM_CAPS_H
#define DVMM_KVM_CAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 8-bit xAPIC IDs in the MP table and CPUID cap dvmm at 255 vCPUs, whatever
 * KVM allows. */
#define KVM_CAPS_VCPU_LIMIT 255

/* One row per capability; the index of kvm_caps[] and of kvm_cap_set.val. */
enum kvm_cap_id {
    KC_IRQCHIP,
    KC_IRQFD,
    KC_IOEVENTFD,
    KC_IRQ_ROUTING,
    KC_SIGNAL_MSI,
    KC_PIT2,
    KC_IMMEDIATE_EXIT,
    KC_USER_MEMORY,
    KC_MCE,
    KC_MAX_VCPUS,
    KC_NR_VCPUS,
    KC_TSC_DEADLINE_TIMER,
    KC_COUNT
};

struct kvm_cap_info {
    long cap;              /* KVM_CAP_* for KVM_CHECK_EXTENSION */
    const char *name;      /* "KVM_CAP_IRQCHIP" */
    const char *key;       /* "irqchip": the text key, and hostcheck's "kvm-irqchip" */
    bool required;         /* dvmm run refuses a host without it */
    const char *use;       /* what dvmm does with it: hostcheck's advice */
};

extern const struct kvm_cap_info kvm_caps[KC_COUNT];

/* What one host offers.  val[i] is KVM_CHECK_EXTENSION's answer for row i
 * (> 0 yes; for MCE the bank count, for the vCPU rows the count); 0 no. */
struct kvm_cap_set {
    long api_version;
    long val[KC_COUNT];
    /* MCG_CAP as dvmm sees it: KVM_X86_GET_MCE_CAP_SUPPORTED's flag bits
     * with KVM_CAP_MCE's bank count in bits 7:0; 0 when there is none. */
    uint64_t mce_cap;
};

/* Ask the /dev/kvm fd `kvm_fd`.  0, or -errno when KVM_GET_API_VERSION
 * itself fails (the fd is not /dev/kvm). */
int kvm_caps_probe(int kvm_fd, struct kvm_cap_set *set);

/* Read "key=value" lines (values decimal or 0x hex; unknown keys and other
 * lines ignored; a key not given is 0, api_version defaults to KVM's 12). */
void kvm_caps_parse(const char *text, struct kvm_cap_set *set);

/* What dvmm run checks before it creates a VM: the API version and every
 * required row.  0, -EINVAL (API version) or -ENOTSUP (missing row), with
 * one line in err naming what is missing. */
int kvm_caps_check(const struct kvm_cap_set *set, char *err, size_t errlen);

/* The most vCPUs KVM allows per VM, by the KVM API documentation's rule:
 * KVM_CAP_MAX_VCPUS, else KVM_CAP_NR_VCPUS, else 4. */
unsigned kvm_caps_max_vcpus(const struct kvm_cap_set *set);

/* The vm.vcpus limit dvmm run applies: kvm_caps_max_vcpus, at most
 * KVM_CAPS_VCPU_LIMIT. */
unsigned kvm_caps_vcpu_limit(const struct kvm_cap_set *set);

#endif
