/* Per-vCPU CPUID from KVM_GET_SUPPORTED_CPUID (see cpuid.h).
 *
 * Choices: one package of nvcpus cores with one thread each, so the APIC
 * ID needs ceil(log2(nvcpus)) core bits and no SMT bits.  Leaves 0xB and
 * 0x1F are regenerated whole (KVM passes the host's topology through, which
 * would contradict the MP table); leaf 4 and the AMD topology leaves are
 * patched in place.  Nothing KVM supports is masked: features the
 * instruction emulator cannot run are the guest's to avoid. */
#include "vmm/cpuid.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define CPUID_1_ECX_HYPERVISOR (1U << 31)
#define CPUID_1_EDX_HTT (1U << 28)
#define CPUID_TOPO_SMT 1
#define CPUID_TOPO_CORE 2
#define CPUID_AMD_EBX 0x68747541U    /* "Auth" */
#define CPUID_HYGON_EBX 0x6f677948U  /* "Hygo" */
#define CPUID_EXT_BASE 0x80000000U
#define CPUID_EXT_RAS 0x80000007U

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t function,
                                    uint32_t index)
{
    for (uint32_t i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        if (e->function != function)
            continue;
        if (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == index)
            return e;
    }
    return NULL;
}

bool cpuid_vendor_amd(const struct kvm_cpuid2 *c)
{
    for (uint32_t i = 0; i < c->nent; i++)
        if (c->entries[i].function == 0)
            return c->entries[i].ebx == CPUID_AMD_EBX ||
                   c->entries[i].ebx == CPUID_HYGON_EBX;
    return false;
}

static unsigned cpuid_core_bits(unsigned n)
{
    unsigned bits = 0;

    while ((1U << bits) < n)
        bits++;
    return bits;
}

static int cpuid_append(struct kvm_cpuid2 *out, uint32_t cap,
                        const struct kvm_cpuid_entry2 *e)
{
    if (out->nent >= cap)
        return -E2BIG;
    out->entries[out->nent++] = *e;
    return 0;
}

/* Extended topology leaf (0xB or 0x1F): SMT level of 1 thread, core level
 * of nvcpus, then the terminating invalid level. */
static int cpuid_topology_leaf(struct kvm_cpuid2 *out, uint32_t cap, uint32_t fn,
                               unsigned apic_id, unsigned nvcpus, unsigned core_bits)
{
    for (uint32_t sub = 0; sub < 3; sub++) {
        struct kvm_cpuid_entry2 e = {
            .function = fn, .index = sub,
            .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
            .edx = apic_id,
        };
        if (sub == 0) {
            e.eax = 0;
            e.ebx = 1;
            e.ecx = (CPUID_TOPO_SMT << 8) | sub;
        } else if (sub == 1) {
            e.eax = core_bits;
            e.ebx = nvcpus;
            e.ecx = (CPUID_TOPO_CORE << 8) | sub;
        } else {
            e.ecx = sub;
        }
        int rc = cpuid_append(out, cap, &e);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int cpuid_build(const struct kvm_cpuid2 *supported, unsigned vcpu_index,
                unsigned nvcpus, struct kvm_cpuid2 *out)
{
    uint32_t cap = out->nent;
    unsigned core_bits = cpuid_core_bits(nvcpus);
    unsigned addressable = 1U << core_bits;
    bool has_b = false, has_1f = false, has_ras = false;
    bool amd = cpuid_vendor_amd(supported);
    uint32_t max_basic = 0;
    int rc;

    if (nvcpus == 0 || nvcpus > 256 || vcpu_index >= nvcpus)
        return -EINVAL;

    out->nent = 0;
    out->padding = 0;
    for (uint32_t i = 0; i < supported->nent; i++) {
        const struct kvm_cpuid_entry2 *s = &supported->entries[i];
        if (s->function == 0)
            max_basic = s->eax;
        if (s->function == 0xb) {
            has_b = true;
            continue;
        }
        if (s->function == 0x1f) {
            has_1f = true;
            continue;
        }
        rc = cpuid_append(out, cap, s);
        if (rc < 0)
            return rc;
    }

    for (uint32_t i = 0; i < out->nent; i++) {
        struct kvm_cpuid_entry2 *e = &out->entries[i];
        switch (e->function) {
        case 1:
            e->ebx = (e->ebx & 0xffff) | (vcpu_index << 24) |
                     ((addressable > 255 ? 255 : addressable) << 16);
            if (nvcpus > 1)
                e->edx |= CPUID_1_EDX_HTT;
            else
                e->edx &= ~CPUID_1_EDX_HTT;
            e->ecx |= CPUID_1_ECX_HYPERVISOR;
            break;
        case 4:
            if ((e->eax & 0x1f) == 0)   /* no more caches */
                break;
            e->eax &= 0x3fff;
            e->eax |= ((addressable > 64 ? 64 : addressable) - 1) << 26;
            /* L1 and L2 are per core; L3 and beyond shared by the package. */
            if (((e->eax >> 5) & 7) >= 3)
                e->eax |= ((addressable > 4096 ? 4096 : addressable) - 1) << 14;
            break;
        case CPUID_EXT_BASE:
            /* Room for the RAS leaf, which an AMD guest needs (below). */
            if (amd && e->eax < CPUID_EXT_RAS)
                e->eax = CPUID_EXT_RAS;
            break;
        case CPUID_EXT_RAS:
            /* KVM reports EBX = 0; Linux on AMD then panics on every
             * uncorrected error.  SUCCOR lets it recover from one taken in
             * user mode, McaOverflowRecov from one whose OVER bit KVM set
             * (an AR finding an unpolled deferred AO in the bank).  Never
             * SMCA: KVM does not emulate the MSRs it switches to. */
            if (amd) {
                e->ebx |= CPUID_RAS_EBX_MCA_RECOV;
                e->ebx &= ~CPUID_RAS_EBX_SMCA;
                has_ras = true;
            }
            break;
        case 0x80000008:
            if (amd)
                e->ecx = (e->ecx & ~0xf0ffU) | (core_bits << 12) | (nvcpus - 1);
            break;
        case 0x8000001e:
            if (amd) {
                e->eax = vcpu_index;
                e->ebx = (e->ebx & ~0xffffU) | (vcpu_index & 0xff);
                e->ecx &= ~0x7ffU;   /* node 0, one node per package */
            }
            break;
        }
    }

    if (amd && !has_ras) {
        struct kvm_cpuid_entry2 e = {
            .function = CPUID_EXT_RAS, .ebx = CPUID_RAS_EBX_MCA_RECOV,
        };

        rc = cpuid_append(out, cap, &e);
        if (rc < 0)
            return rc;
        if (!cpuid_find(out, CPUID_EXT_BASE, 0)) {
            struct kvm_cpuid_entry2 base = {
                .function = CPUID_EXT_BASE, .eax = CPUID_EXT_RAS,
            };

            rc = cpuid_append(out, cap, &base);
            if (rc < 0)
                return rc;
        }
    }
    if (has_b || max_basic >= 0xb) {
        rc = cpuid_topology_leaf(out, cap, 0xb, vcpu_index, nvcpus, core_bits);
        if (rc < 0)
            return rc;
    }
    if (has_1f) {
        rc = cpuid_topology_leaf(out, cap, 0x1f, vcpu_index, nvcpus, core_bits);
        if (rc < 0)
            return rc;
    }
    return 0;
}
