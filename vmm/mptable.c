/* MP spec 1.4 floating pointer and configuration table (see mptable.h). */
#include "vmm/mptable.h"

#include <errno.h>
#include <string.h>

#define MPT_SPEC_REV 4
/* ISA IRQs listed: 0..15 without 2 (IRQ 0 takes INTIN 2). */
#define MPT_ISA_IRQS 15

static size_t mptable_entries_size(unsigned ncpus)
{
    return ncpus * sizeof(struct mpt_processor) +
           2 * sizeof(struct mpt_bus) +
           sizeof(struct mpt_ioapic) +
           (MPT_ISA_IRQS + MPTABLE_PCI_SLOTS) * sizeof(struct mpt_intsrc) +
           2 * sizeof(struct mpt_intsrc);
}

size_t mptable_size(unsigned ncpus)
{
    return sizeof(struct mpt_floating) + sizeof(struct mpt_config) +
           mptable_entries_size(ncpus);
}

uint8_t mptable_checksum(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint8_t sum = 0;

    while (len--)
        sum += *p++;
    return sum;
}

static void mpt_intsrc(uint8_t **p, uint8_t type, uint8_t irq_type, uint16_t flags,
                       uint8_t bus, uint8_t src_irq, uint8_t dst_apic, uint8_t pin)
{
    struct mpt_intsrc e = {
        .type = type, .irq_type = irq_type, .irq_flags = flags,
        .src_bus = bus, .src_irq = src_irq, .dst_apic = dst_apic, .dst_pin = pin,
    };
    memcpy(*p, &e, sizeof(e));
    *p += sizeof(e);
}

int mptable_write(void *buf, size_t avail, uint64_t gpa, unsigned ncpus)
{
    size_t total = mptable_size(ncpus);
    struct mpt_floating *fp = buf;
    struct mpt_config *cfg;
    uint8_t *p;
    uint8_t ioapic_id = (uint8_t)ncpus;
    uint16_t count = 0;

    if (ncpus == 0 || ncpus > MPTABLE_MAX_CPUS || gpa + total > UINT32_MAX)
        return -EINVAL;
    if (avail < total)
        return -ENOSPC;
    memset(buf, 0, total);

    cfg = (struct mpt_config *)(fp + 1);
    p = (uint8_t *)(cfg + 1);

    for (unsigned i = 0; i < ncpus; i++) {
        struct mpt_processor c = {
            .type = MPT_PROCESSOR,
            .apic_id = (uint8_t)i,
            .apic_ver = MPTABLE_LAPIC_VER,
            .cpu_flags = MPT_CPU_EN | (i == 0 ? MPT_CPU_BP : 0),
            /* Family 6; features FPU|APIC as in a generic PC table, since
             * Linux reads the real values from CPUID anyway. */
            .signature = 0x600,
            .features = 0x201,
        };
        memcpy(p, &c, sizeof(c));
        p += sizeof(c);
        count++;
    }

    static const struct { uint8_t id; char name[6]; } buses[] = {
        { MPTABLE_PCI_BUS, { 'P', 'C', 'I', ' ', ' ', ' ' } },
        { MPTABLE_ISA_BUS, { 'I', 'S', 'A', ' ', ' ', ' ' } },
    };
    for (unsigned i = 0; i < 2; i++) {
        struct mpt_bus b = { .type = MPT_BUS, .bus_id = buses[i].id };
        memcpy(b.bus_type, buses[i].name, sizeof(b.bus_type));
        memcpy(p, &b, sizeof(b));
        p += sizeof(b);
        count++;
    }

    struct mpt_ioapic io = {
        .type = MPT_IOAPIC, .apic_id = ioapic_id, .apic_ver = MPTABLE_IOAPIC_VER,
        .flags = MPT_IOAPIC_EN, .addr = MPTABLE_IOAPIC_ADDR,
    };
    memcpy(p, &io, sizeof(io));
    p += sizeof(io);
    count++;

    /* ISA interrupts are edge/active-high, "conforms to bus" (flags 0). */
    for (unsigned irq = 0; irq < 16; irq++) {
        if (irq == 2)
            continue;
        mpt_intsrc(&p, MPT_IOINT, MPT_INT, 0, MPTABLE_ISA_BUS, (uint8_t)irq,
                   ioapic_id, (uint8_t)(irq == 0 ? 2 : irq));
        count++;
    }
    for (unsigned slot = 1; slot <= MPTABLE_PCI_SLOTS; slot++) {
        mpt_intsrc(&p, MPT_IOINT, MPT_INT, MPT_IRQ_ACTIVE_LOW | MPT_IRQ_LEVEL,
                   MPTABLE_PCI_BUS, (uint8_t)(slot << 2), ioapic_id,
                   (uint8_t)(MPTABLE_PCI_PIN_BASE + (slot - 1) % 8));
        count++;
    }
    mpt_intsrc(&p, MPT_LINT, MPT_EXTINT, 0, MPTABLE_ISA_BUS, 0, 0xff, 0);
    mpt_intsrc(&p, MPT_LINT, MPT_NMI, 0, MPTABLE_ISA_BUS, 0, 0xff, 1);
    count += 2;

    memcpy(cfg->signature, "PCMP", 4);
    cfg->length = (uint16_t)(p - (uint8_t *)cfg);
    cfg->spec_rev = MPT_SPEC_REV;
    memcpy(cfg->oem, "DVMM    ", 8);
    memcpy(cfg->product, "KVM VM      ", 12);
    cfg->count = count;
    cfg->lapic = MPTABLE_LAPIC_ADDR;
    cfg->checksum = (uint8_t)-mptable_checksum(cfg, cfg->length);

    memcpy(fp->signature, "_MP_", 4);
    fp->physptr = (uint32_t)(gpa + sizeof(*fp));
    fp->length = 1;
    fp->spec_rev = MPT_SPEC_REV;
    fp->checksum = (uint8_t)-mptable_checksum(fp, sizeof(*fp));

    return (int)(p - (uint8_t *)buf);
}
