/* MP table: checksums, header fields and every entry the contract lists. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/mptable.h"

#define GPA 0x9fc00

struct parsed {
    unsigned ncpu, nbus, nioapic, nioint, nlint;
    struct mpt_processor cpu[MPTABLE_MAX_CPUS];
    struct mpt_bus bus[4];
    struct mpt_ioapic ioapic;
    struct mpt_intsrc ioint[64], lint[4];
};

/* Walk the config table the way an OS does: by entry type and size. */
static void parse(const uint8_t *buf, int len, struct parsed *p)
{
    const struct mpt_floating *fp = (const void *)buf;
    const struct mpt_config *c;
    const uint8_t *e, *end;

    memset(p, 0, sizeof(*p));
    assert_memory_equal(fp->signature, "_MP_", 4);
    assert_int_equal(fp->length, 1);
    assert_int_equal(fp->spec_rev, 4);
    assert_int_equal(mptable_checksum(fp, 16), 0);
    assert_int_equal(fp->feature[0], 0);
    assert_int_equal(fp->physptr, GPA + 16);

    c = (const void *)(buf + (fp->physptr - GPA));
    assert_memory_equal(c->signature, "PCMP", 4);
    assert_int_equal(c->spec_rev, 4);
    assert_int_equal(16 + c->length, len);
    assert_int_equal(mptable_checksum(c, c->length), 0);
    assert_int_equal(c->lapic, MPTABLE_LAPIC_ADDR);
    assert_int_equal(c->ext_length, 0);

    e = (const uint8_t *)(c + 1);
    end = (const uint8_t *)c + c->length;
    for (unsigned i = 0; i < c->count; i++) {
        assert_true(e < end);
        switch (*e) {
        case MPT_PROCESSOR:
            memcpy(&p->cpu[p->ncpu++], e, sizeof(struct mpt_processor));
            e += sizeof(struct mpt_processor);
            break;
        case MPT_BUS:
            memcpy(&p->bus[p->nbus++], e, sizeof(struct mpt_bus));
            e += sizeof(struct mpt_bus);
            break;
        case MPT_IOAPIC:
            memcpy(&p->ioapic, e, sizeof(struct mpt_ioapic));
            p->nioapic++;
            e += sizeof(struct mpt_ioapic);
            break;
        case MPT_IOINT:
            memcpy(&p->ioint[p->nioint++], e, sizeof(struct mpt_intsrc));
            e += sizeof(struct mpt_intsrc);
            break;
        case MPT_LINT:
            memcpy(&p->lint[p->nlint++], e, sizeof(struct mpt_intsrc));
            e += sizeof(struct mpt_intsrc);
            break;
        default:
            fail_msg("unknown entry type %u", *e);
        }
    }
    assert_ptr_equal(e, end);
}

static const struct mpt_intsrc *find_ioint(const struct parsed *p, uint8_t bus, uint8_t irq)
{
    for (unsigned i = 0; i < p->nioint; i++)
        if (p->ioint[i].src_bus == bus && p->ioint[i].src_irq == irq)
            return &p->ioint[i];
    return NULL;
}

static void check(unsigned ncpus)
{
    size_t sz = mptable_size(ncpus);
    uint8_t *buf = malloc(sz);
    struct parsed *p = malloc(sizeof(*p));
    int len = mptable_write(buf, sz, GPA, ncpus);

    assert_int_equal(len, sz);
    parse(buf, len, p);

    assert_int_equal(p->ncpu, ncpus);
    for (unsigned i = 0; i < ncpus; i++) {
        assert_int_equal(p->cpu[i].apic_id, i);
        assert_int_equal(p->cpu[i].cpu_flags, MPT_CPU_EN | (i == 0 ? MPT_CPU_BP : 0));
    }

    assert_int_equal(p->nbus, 2);
    assert_int_equal(p->bus[0].bus_id, MPTABLE_PCI_BUS);
    assert_memory_equal(p->bus[0].bus_type, "PCI   ", 6);
    assert_int_equal(p->bus[1].bus_id, MPTABLE_ISA_BUS);
    assert_memory_equal(p->bus[1].bus_type, "ISA   ", 6);

    assert_int_equal(p->nioapic, 1);
    assert_int_equal(p->ioapic.apic_id, ncpus);
    assert_int_equal(p->ioapic.apic_ver, 0x11);
    assert_int_equal(p->ioapic.flags, MPT_IOAPIC_EN);
    assert_int_equal(p->ioapic.addr, 0xfec00000U);

    /* ISA: IRQ 0 -> INTIN 2, IRQ 2 absent, the rest identity, edge/high. */
    for (unsigned irq = 0; irq < 16; irq++) {
        const struct mpt_intsrc *e = find_ioint(p, MPTABLE_ISA_BUS, (uint8_t)irq);
        if (irq == 2) {
            assert_null(e);
            continue;
        }
        assert_non_null(e);
        assert_int_equal(e->irq_type, MPT_INT);
        assert_int_equal(e->irq_flags, 0);
        assert_int_equal(e->dst_apic, ncpus);
        assert_int_equal(e->dst_pin, irq == 0 ? 2 : irq);
    }
    /* PCI: slot s INTA# -> 16 + (s-1) % 8, level/active-low. */
    for (unsigned s = 1; s <= 31; s++) {
        const struct mpt_intsrc *e = find_ioint(p, MPTABLE_PCI_BUS, (uint8_t)(s << 2));
        assert_non_null(e);
        assert_int_equal(e->irq_flags, MPT_IRQ_LEVEL | MPT_IRQ_ACTIVE_LOW);
        assert_int_equal(e->irq_flags, 0xf);
        assert_int_equal(e->dst_apic, ncpus);
        assert_int_equal(e->dst_pin, 16 + (s - 1) % 8);
    }
    assert_null(find_ioint(p, MPTABLE_PCI_BUS, 0));   /* slot 0 is the host bridge */
    assert_int_equal(p->nioint, 15 + 31);
    assert_int_equal(find_ioint(p, MPTABLE_PCI_BUS, 9 << 2)->dst_pin, 16);
    assert_int_equal(find_ioint(p, MPTABLE_PCI_BUS, 31 << 2)->dst_pin, 22);

    assert_int_equal(p->nlint, 2);
    assert_int_equal(p->lint[0].irq_type, MPT_EXTINT);
    assert_int_equal(p->lint[0].dst_apic, 0xff);
    assert_int_equal(p->lint[0].dst_pin, 0);
    assert_int_equal(p->lint[1].irq_type, MPT_NMI);
    assert_int_equal(p->lint[1].dst_apic, 0xff);
    assert_int_equal(p->lint[1].dst_pin, 1);
    free(p);
    free(buf);
}

static void t_1cpu(void **s) { (void)s; check(1); }
static void t_4cpu(void **s) { (void)s; check(4); }
static void t_max(void **s) { (void)s; check(MPTABLE_MAX_CPUS); }

static void t_fits_reserved_area(void **s)
{
    (void)s;
    /* The contract puts the table in [0x9fc00, 0x100000). */
    assert_true(GPA + mptable_size(MPTABLE_MAX_CPUS) <= 0x100000);
    /* And for small guests within the 1 KiB Linux scans at 639 KiB. */
    assert_true(mptable_size(8) <= 1024);
}

static void t_errors(void **s)
{
    (void)s;
    uint8_t buf[8192];
    assert_int_equal(mptable_write(buf, sizeof(buf), GPA, 0), -EINVAL);
    assert_int_equal(mptable_write(buf, sizeof(buf), GPA, MPTABLE_MAX_CPUS + 1), -EINVAL);
    assert_int_equal(mptable_write(buf, mptable_size(2) - 1, GPA, 2), -ENOSPC);
    assert_int_equal(mptable_write(buf, sizeof(buf), 0xfffffff0ULL, 2), -EINVAL);
}

static void t_checksum(void **s)
{
    (void)s;
    const uint8_t a[] = { 0x01, 0xff, 0x10 };
    assert_int_equal(mptable_checksum(a, 3), 0x10);
    assert_int_equal(mptable_checksum(a, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_1cpu),
        cmocka_unit_test(t_4cpu),
        cmocka_unit_test(t_max),
        cmocka_unit_test(t_fits_reserved_area),
        cmocka_unit_test(t_errors),
        cmocka_unit_test(t_checksum),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
