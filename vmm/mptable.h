/* Intel MultiProcessor Specification 1.4 tables: the floating pointer and
 * the configuration table right behind it.  Linux finds the pointer by
 * scanning the last KiB of base memory (0x9fc00), and with no ACPI this is
 * how it learns the CPUs, the IOAPIC and the interrupt routing.
 *
 * Contents (the x86 boot contract): one processor per vCPU (APIC ID =
 * index, BSP = 0), bus 0 "PCI   ", bus 1 "ISA   ", IOAPIC ID = ncpus at
 * 0xfec00000, ISA IRQ n -> INTIN n except IRQ 0 -> INTIN 2 (IRQ 2, the
 * 8259 cascade, is not listed), PCI slot s INTA# -> INTIN 16 + (s-1) % 8
 * level/active-low, ExtINT -> LINT0 and NMI -> LINT1 on every LAPIC.
 *
 * The structs are the spec's on-memory format; they are public so tests
 * and the test guest's checks can parse what was written. */
#ifndef DVMM_MPTABLE_H
#define DVMM_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#define MPTABLE_IOAPIC_ADDR 0xfec00000U
#define MPTABLE_LAPIC_ADDR  0xfee00000U
#define MPTABLE_IOAPIC_VER  0x11
#define MPTABLE_LAPIC_VER   0x14
#define MPTABLE_PCI_BUS     0
#define MPTABLE_ISA_BUS     1
#define MPTABLE_PCI_SLOTS   31      /* slots 1..31 get an INTA# entry */
#define MPTABLE_PCI_PIN_BASE 16
#define MPTABLE_MAX_CPUS    254     /* 8-bit APIC IDs, and the IOAPIC takes ncpus */

enum mpt_entry_type {
    MPT_PROCESSOR = 0, MPT_BUS = 1, MPT_IOAPIC = 2, MPT_IOINT = 3, MPT_LINT = 4,
};
enum mpt_int_type { MPT_INT = 0, MPT_NMI = 1, MPT_SMI = 2, MPT_EXTINT = 3 };

#define MPT_CPU_EN 0x01
#define MPT_CPU_BP 0x02
#define MPT_IOAPIC_EN 0x01
/* Interrupt-entry flags: polarity in bits 1:0, trigger mode in bits 3:2. */
#define MPT_IRQ_ACTIVE_LOW 0x3
#define MPT_IRQ_LEVEL      (0x3 << 2)

struct mpt_floating {
    char signature[4];          /* "_MP_" */
    uint32_t physptr;           /* GPA of struct mpt_config */
    uint8_t length;             /* in 16-byte units: 1 */
    uint8_t spec_rev;           /* 4 */
    uint8_t checksum;
    uint8_t feature[5];         /* feature[0] 0: a config table exists */
} __attribute__((packed));

struct mpt_config {
    char signature[4];          /* "PCMP" */
    uint16_t length;            /* base table, header included */
    uint8_t spec_rev;
    uint8_t checksum;
    char oem[8];
    char product[12];
    uint32_t oem_ptr;
    uint16_t oem_size;
    uint16_t count;             /* entries after the header */
    uint32_t lapic;
    uint16_t ext_length;
    uint8_t ext_checksum;
    uint8_t reserved;
} __attribute__((packed));

struct mpt_processor {
    uint8_t type;
    uint8_t apic_id;
    uint8_t apic_ver;
    uint8_t cpu_flags;
    uint32_t signature;
    uint32_t features;
    uint32_t reserved[2];
} __attribute__((packed));

struct mpt_bus {
    uint8_t type;
    uint8_t bus_id;
    char bus_type[6];
} __attribute__((packed));

struct mpt_ioapic {
    uint8_t type;
    uint8_t apic_id;
    uint8_t apic_ver;
    uint8_t flags;
    uint32_t addr;
} __attribute__((packed));

/* MPT_IOINT and MPT_LINT entries share this shape. */
struct mpt_intsrc {
    uint8_t type;
    uint8_t irq_type;
    uint16_t irq_flags;
    uint8_t src_bus;
    uint8_t src_irq;            /* PCI: (device << 2) | INTx (0 = INTA#) */
    uint8_t dst_apic;           /* IOAPIC ID, or 0xff = every LAPIC */
    uint8_t dst_pin;
} __attribute__((packed));

/* Bytes mptable_write needs for ncpus. */
size_t mptable_size(unsigned ncpus);

/* Write the floating pointer at buf and the config table after it; gpa is
 * where buf lives in the guest (the pointer holds absolute addresses).
 * Returns bytes written, -EINVAL for ncpus 0 or > MPTABLE_MAX_CPUS or a gpa
 * that does not fit 32 bits, -ENOSPC when avail is too small. */
int mptable_write(void *buf, size_t avail, uint64_t gpa, unsigned ncpus);

/* Byte sum modulo 256 of [buf, buf+len): 0 for a valid MP structure. */
uint8_t mptable_checksum(const void *buf, size_t len);

#endif
