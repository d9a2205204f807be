/* Per-vCPU CPUID, built from KVM_GET_SUPPORTED_CPUID.  Pure: no ioctls, so
 * unit tests feed it a synthetic table.
 *
 * Topology presented: one package, nvcpus cores, one thread per core; the
 * APIC ID (xAPIC and x2APIC) is the vCPU index, matching the MP table.
 * Everything KVM reports as supported is kept (Linux picks what it uses);
 * only the topology fields and the hypervisor bit are rewritten, and an
 * AMD or Hygon guest gets the machine-check recovery bits of leaf
 * 0x80000007 EBX that KVM leaves out (CPUID_RAS_EBX_MCA_RECOV). */
#ifndef DVMM_CPUID_H
#define DVMM_CPUID_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

/* CPUID 1 ECX: the TSC-deadline LAPIC timer mode.  KVM emulates it and
 * says so only through KVM_CAP_TSC_DEADLINE_TIMER (vmm/kvm.c sets it). */
#define CPUID_1_ECX_TSC_DEADLINE (1U << 24)

/* CPUID 0x80000007 EBX, AMD's RAS capabilities. */
#define CPUID_RAS_EBX_OVERFLOW_RECOV (1U << 0)   /* McaOverflowRecov */
#define CPUID_RAS_EBX_SUCCOR         (1U << 1)   /* software uncorrectable error containment and recovery */
#define CPUID_RAS_EBX_SMCA           (1U << 3)   /* scalable MCA: never offered */
/* What an AMD/Hygon guest is given, as QEMU >= 9.1 does. */
#define CPUID_RAS_EBX_MCA_RECOV (CPUID_RAS_EBX_OVERFLOW_RECOV | CPUID_RAS_EBX_SUCCOR)

/* Whether the table's vendor (leaf 0) is AuthenticAMD or HygonGenuine:
 * the guest then follows AMD's machine-check rules. */
bool cpuid_vendor_amd(const struct kvm_cpuid2 *c);

/* out->nent is the capacity of out->entries on entry, the entry count on
 * return.  Returns 0, -EINVAL (nvcpus 0, index >= nvcpus, or more than 256
 * vCPUs: xAPIC IDs are 8 bits) or -E2BIG (out too small). */
int cpuid_build(const struct kvm_cpuid2 *supported, unsigned vcpu_index,
                unsigned nvcpus, struct kvm_cpuid2 *out);

/* The entry for function/index, or NULL.  Entries without
 * KVM_CPUID_FLAG_SIGNIFCANT_INDEX match any index. */
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t function,
                                    uint32_t index);

#endif
