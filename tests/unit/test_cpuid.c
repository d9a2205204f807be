/* Per-vCPU CPUID from a synthetic KVM_GET_SUPPORTED_CPUID table. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/cpuid.h"

#define SIG KVM_CPUID_FLAG_SIGNIFCANT_INDEX
#define CAP 64

static struct kvm_cpuid2 *alloc_cpuid(unsigned cap)
{
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + cap * sizeof(struct kvm_cpuid_entry2));
    c->nent = cap;
    return c;
}

static void add(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx, uint32_t flags,
                uint32_t a, uint32_t b, uint32_t cx, uint32_t d)
{
    c->entries[c->nent++] = (struct kvm_cpuid_entry2){
        .function = fn, .index = idx, .flags = flags,
        .eax = a, .ebx = b, .ecx = cx, .edx = d };
}

/* Looks like a host with 2 threads x 8 cores: topology that must not leak. */
static struct kvm_cpuid2 *supported(int amd)
{
    struct kvm_cpuid2 *c = alloc_cpuid(CAP);
    c->nent = 0;
    add(c, 0, 0, 0, 0x1f, amd ? 0x68747541 : 0x756e6547, 0, 0);
    add(c, 1, 0, 0, 0x906ea, 0x07100800, 0x7ffafbbf, 0xbfebfbff);
    add(c, 4, 0, SIG, 0x1c004121, 0x01c0003f, 0x3f, 0);   /* L1d */
    add(c, 4, 1, SIG, 0x1c004122, 0x01c0003f, 0x3f, 0);   /* L1i */
    add(c, 4, 2, SIG, 0x1c004143, 0x00c0003f, 0x3ff, 0);  /* L2 */
    add(c, 4, 3, SIG, 0x1c03c163, 0x03c0003f, 0x2fff, 6); /* L3 */
    add(c, 4, 4, SIG, 0, 0, 0, 0);
    add(c, 0xb, 0, SIG, 1, 2, 0x100, 5);
    add(c, 0xb, 1, SIG, 4, 16, 0x201, 5);
    add(c, 0x1f, 0, SIG, 1, 2, 0x100, 5);
    add(c, 0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d);
    add(c, 0x80000000, 0, 0, 0x8000001e, 0, 0, 0);
    add(c, 0x80000008, 0, 0, 0x3027, 0, 0x400f, 0);
    add(c, 0x8000001e, 0, 0, 5, 0x0107, 0x0300, 0);
    return c;
}

static void check_vcpu(const struct kvm_cpuid2 *sup, unsigned idx, unsigned n, int amd)
{
    struct kvm_cpuid2 *out = alloc_cpuid(CAP);
    struct kvm_cpuid_entry2 *e;
    unsigned bits = 0;

    while ((1U << bits) < n)
        bits++;
    assert_int_equal(cpuid_build(sup, idx, n, out), 0);

    e = cpuid_find(out, 1, 0);
    assert_non_null(e);
    assert_int_equal(e->ebx >> 24, idx);
    assert_int_equal((e->ebx >> 16) & 0xff, 1U << bits);
    assert_int_equal(e->ebx & 0xffff, 0x0800);          /* CLFLUSH size kept */
    assert_true(e->ecx & (1U << 31));                   /* hypervisor */
    assert_int_equal(!!(e->edx & (1U << 28)), n > 1);   /* HTT */
    assert_int_equal(e->eax, 0x906ea);                  /* signature kept */

    for (unsigned fn = 0xb; fn <= 0x1f; fn += 0x1f - 0xb) {
        e = cpuid_find(out, fn, 0);
        assert_non_null(e);
        assert_int_equal(e->eax, 0);
        assert_int_equal(e->ebx, 1);
        assert_int_equal(e->ecx, 0x100);
        assert_int_equal(e->edx, idx);
        e = cpuid_find(out, fn, 1);
        assert_non_null(e);
        assert_int_equal(e->eax, bits);
        assert_int_equal(e->ebx, n);
        assert_int_equal(e->ecx, 0x201);
        assert_int_equal(e->edx, idx);
        e = cpuid_find(out, fn, 2);
        assert_non_null(e);
        assert_int_equal(e->ebx, 0);
        assert_int_equal((e->ecx >> 8) & 0xff, 0);      /* invalid level ends the list */
        /* x2APIC ID agrees with the xAPIC ID, and fits the core field. */
        assert_int_equal(e->edx, cpuid_find(out, 1, 0)->ebx >> 24);
        assert_true((e->edx >> bits) == 0);
    }

    for (unsigned sub = 0; sub < 4; sub++) {
        e = cpuid_find(out, 4, sub);
        assert_non_null(e);
        assert_int_equal(e->eax >> 26, (1U << bits) - 1);
        assert_int_equal((e->eax >> 14) & 0xfff, sub == 3 ? (1U << bits) - 1 : 0);
        assert_int_equal(e->eax & 0x3fff, sup->entries[2 + sub].eax & 0x3fff);
    }
    e = cpuid_find(out, 4, 4);
    assert_int_equal(e->eax, 0);

    e = cpuid_find(out, 0x40000000, 0);
    assert_non_null(e);
    assert_int_equal(e->ebx, 0x4b4d564b);

    e = cpuid_find(out, 0x80000008, 0);
    if (amd) {
        assert_int_equal(e->ecx & 0xff, n - 1);
        assert_int_equal((e->ecx >> 12) & 0xf, bits);
        assert_int_equal(cpuid_find(out, 0x8000001e, 0)->eax, idx);
        assert_int_equal(cpuid_find(out, 0x8000001e, 0)->ebx & 0xff, idx);
    } else {
        assert_int_equal(e->ecx, 0x400f);
    }
    free(out);
}

static void t_topology(void **s)
{
    (void)s;
    for (int amd = 0; amd < 2; amd++) {
        struct kvm_cpuid2 *sup = supported(amd);
        const unsigned counts[] = { 1, 2, 3, 4, 8, 64 };
        for (unsigned k = 0; k < sizeof(counts) / sizeof(counts[0]); k++)
            for (unsigned i = 0; i < counts[k]; i++)
                check_vcpu(sup, i, counts[k], amd);
        free(sup);
    }
}

static void t_ids_differ(void **s)
{
    (void)s;
    struct kvm_cpuid2 *sup = supported(0);
    unsigned seen[4] = {0};
    for (unsigned i = 0; i < 4; i++) {
        struct kvm_cpuid2 *out = alloc_cpuid(CAP);
        assert_int_equal(cpuid_build(sup, i, 4, out), 0);
        seen[i] = cpuid_find(out, 1, 0)->ebx >> 24;
        for (unsigned j = 0; j < i; j++)
            assert_int_not_equal(seen[i], seen[j]);
        free(out);
    }
    free(sup);
}

/* Without 0xB in the host table but a max leaf that includes it, the
 * topology leaf is still provided; without 0x1F, none is invented. */
static void t_leaf_b_synthesised(void **s)
{
    (void)s;
    struct kvm_cpuid2 *sup = alloc_cpuid(4), *out = alloc_cpuid(CAP);
    sup->nent = 0;
    add(sup, 0, 0, 0, 0xd, 0x756e6547, 0, 0);
    add(sup, 1, 0, 0, 0, 0, 0, 0);
    assert_int_equal(cpuid_build(sup, 1, 2, out), 0);
    assert_int_equal(out->nent, 5);
    assert_int_equal(cpuid_find(out, 0xb, 1)->ebx, 2);
    assert_null(cpuid_find(out, 0x1f, 0));
    free(sup);
    free(out);
}

/* AMD and Hygon guests get SUCCOR and McaOverflowRecov in 0x80000007 EBX
 * (KVM reports 0 there), never SMCA; the leaf is added, and the maximum
 * extended leaf raised, when the host table lacks them.  Intel guests keep
 * the leaf as KVM gave it. */
static void t_amd_mca_recovery(void **s)
{
    (void)s;
    struct kvm_cpuid2 *sup = supported(1), *out = alloc_cpuid(CAP);
    struct kvm_cpuid_entry2 *e;

    /* Leaf absent (as the synthetic AMD table): appended. */
    assert_true(cpuid_vendor_amd(sup));
    assert_int_equal(cpuid_build(sup, 0, 2, out), 0);
    e = cpuid_find(out, 0x80000007, 0);
    assert_non_null(e);
    assert_int_equal(e->ebx, CPUID_RAS_EBX_SUCCOR | CPUID_RAS_EBX_OVERFLOW_RECOV);
    assert_int_equal(e->ebx, 0x3);
    assert_int_equal(cpuid_find(out, 0x80000000, 0)->eax, 0x8000001e);
    free(out);

    /* Present, with invariant TSC in EDX and (as if) SMCA in EBX: EDX kept,
     * SMCA cleared, the recovery bits added. */
    add(sup, 0x80000007, 0, 0, 0, CPUID_RAS_EBX_SMCA | 0x10, 0, 0x100);
    out = alloc_cpuid(CAP);
    assert_int_equal(cpuid_build(sup, 1, 2, out), 0);
    e = cpuid_find(out, 0x80000007, 0);
    assert_int_equal(e->ebx, 0x13);
    assert_int_equal(e->edx, 0x100);
    {
        unsigned n = 0;

        for (unsigned i = 0; i < out->nent; i++)
            n += out->entries[i].function == 0x80000007;
        assert_int_equal(n, 1);   /* patched, not appended again */
    }
    free(out);
    free(sup);

    /* Hygon, and a maximum extended leaf below 0x80000007: raised. */
    sup = alloc_cpuid(8);
    sup->nent = 0;
    add(sup, 0, 0, 0, 0xd, 0x6f677948, 0x656e6975, 0x6e65476e);
    add(sup, 0x80000000, 0, 0, 0x80000001, 0, 0, 0);
    out = alloc_cpuid(CAP);
    assert_true(cpuid_vendor_amd(sup));
    assert_int_equal(cpuid_build(sup, 0, 1, out), 0);
    assert_int_equal(cpuid_find(out, 0x80000000, 0)->eax, 0x80000007);
    assert_int_equal(cpuid_find(out, 0x80000007, 0)->ebx, 0x3);
    free(out);
    free(sup);

    /* Intel: nothing added, a present leaf untouched. */
    sup = supported(0);
    assert_false(cpuid_vendor_amd(sup));
    out = alloc_cpuid(CAP);
    assert_int_equal(cpuid_build(sup, 0, 2, out), 0);
    assert_null(cpuid_find(out, 0x80000007, 0));
    free(out);
    add(sup, 0x80000007, 0, 0, 0, 0, 0, 0x100);
    out = alloc_cpuid(CAP);
    assert_int_equal(cpuid_build(sup, 0, 2, out), 0);
    assert_int_equal(cpuid_find(out, 0x80000007, 0)->ebx, 0);
    free(out);
    free(sup);
}

static void t_errors(void **s)
{
    (void)s;
    struct kvm_cpuid2 *sup = supported(0), *out = alloc_cpuid(CAP), *small = alloc_cpuid(5);
    assert_int_equal(cpuid_build(sup, 0, 0, out), -EINVAL);
    out->nent = CAP;
    assert_int_equal(cpuid_build(sup, 4, 4, out), -EINVAL);
    out->nent = CAP;
    assert_int_equal(cpuid_build(sup, 0, 257, out), -EINVAL);
    assert_int_equal(cpuid_build(sup, 0, 2, small), -E2BIG);
    free(sup);
    free(out);
    free(small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_topology),
        cmocka_unit_test(t_ids_differ),
        cmocka_unit_test(t_leaf_b_synthesised),
        cmocka_unit_test(t_amd_mca_recovery),
        cmocka_unit_test(t_errors),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
