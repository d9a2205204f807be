/* Per-vCPU CPUID, built from KVM_GET_SUPPORTED_CPUID.  Pure: no ioctls, so
 * unit tests feed it a synthetic table.
 *
 * Topology presented: one package, nvcpus cores, one thread per core; the
 * APIC ID (xAPIC and x2APIC) is the vCPU index, matching the MP table.
 * Everything KVM reports as supported is kept (Linux picks what it uses);
 * only the topology fields and the hypervisor bit are rewritten. */
#ifndef DVMM_CPUID_H
#define DVMM_CPUID_H

#include <stdint.h>

#include <linux/kvm.h>

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
