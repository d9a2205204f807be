/* smp: find the MP table (MP spec 1.4), start every enabled application
 * processor with INIT-SIPI-SIPI through the xAPIC, and have each report in
 * from long mode.  All waits are bounded, so a dead AP is a "not ok", not
 * a hang. */
#include <stdbool.h>

#include "asm.h"
#include "checks.h"
#include "cmdline.h"
#include "console.h"
#include "idt.h"
#include "io.h"
#include "lib.h"
#include "fmt.h"

#define MSR_APIC_BASE		0x1b
#define APIC_BASE_ENABLE	(1ULL << 11)
#define APIC_BASE_X2APIC	(1ULL << 10)
#define APIC_ID			0x020
#define APIC_SVR		0x0f0
#define APIC_ICR_LO		0x300
#define APIC_ICR_HI		0x310
#define APIC_SVR_ENABLE		0x100
#define ICR_BUSY		(1U << 12)
#define ICR_LEVEL_ASSERT	(1U << 14)
#define ICR_INIT		(5U << 8)
#define ICR_STARTUP		(6U << 8)

#define MP_PROC_ENABLED		0x01
#define MP_PROC_BSP		0x02

/* Bounds in TSC cycles (KVM and TCG both tick at GHz rates), with a loop
 * cap in case the TSC does not move at all. */
#define INIT_DELAY_CYCLES	40000000ULL	/* >= 10 ms */
#define SIPI_DELAY_CYCLES	1000000ULL	/* >= 200 us */
#define AP_WAIT_CYCLES		6000000000ULL	/* a couple of seconds */
#define ICR_WAIT_CYCLES		100000000ULL
#define SPIN_LOOP_CAP		(1ULL << 31)

struct mp_floating {
	char signature[4];	/* "_MP_" */
	uint32_t config_pa;
	uint8_t length;		/* in 16-byte units */
	uint8_t spec_rev;
	uint8_t checksum;
	uint8_t features[5];
} __attribute__((packed));

struct mp_config {
	char signature[4];	/* "PCMP" */
	uint16_t length;
	uint8_t spec_rev;
	uint8_t checksum;
	char oem[8];
	char product[12];
	uint32_t oem_table;
	uint16_t oem_size;
	uint16_t entries;
	uint32_t lapic_pa;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));

struct mp_processor {
	uint8_t type;		/* 0 */
	uint8_t apic_id;
	uint8_t apic_version;
	uint8_t flags;
	uint32_t signature;
	uint32_t features;
	uint32_t reserved[2];
} __attribute__((packed));

_Static_assert(sizeof(struct mp_floating) == 16, "MP floating pointer");
_Static_assert(sizeof(struct mp_config) == 44, "MP config header");
_Static_assert(sizeof(struct mp_processor) == 20, "MP processor entry");

struct smp_cpu {
	uint8_t apic_id;
	bool bsp;
};

/* Written by APs, which have no context of their own but their slot. */
static volatile uint32_t ap_reported;
static volatile uint32_t ap_last_id;
static smp_ap_fn *volatile ap_work;

extern const char tramp_start[], tramp_end[];
void smp_ap_main(unsigned slot);

static uint8_t sum_bytes(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	while (n--)
		s += *b++;
	return s;
}

static const struct mp_floating *mp_scan(uint64_t start, uint64_t len)
{
	for (uint64_t a = start; a + sizeof(struct mp_floating) <= start + len; a += 16) {
		const struct mp_floating *f = (const struct mp_floating *)(uintptr_t)a;

		if (!memcmp(f->signature, "_MP_", 4) && f->length &&
		    sum_bytes(f, f->length * 16U) == 0)
			return f;
	}
	return NULL;
}

static const struct mp_floating *mp_find(const struct bootinfo *bi)
{
	const struct mp_floating *f = NULL;

	if (bi->ebda >= 0x80000 && bi->ebda < 0xa0000)
		f = mp_scan(bi->ebda, 1024);
	if (!f)
		f = mp_scan(0x9fc00, 0x400);
	if (!f)
		f = mp_scan(0xf0000, 0x10000);
	return f;
}

/* Fills cpus from the MP table; returns the count, or -1 (with the check
 * failed) when the table is malformed. */
static int mp_cpus(struct check_ctx *c, const struct mp_floating *f, struct smp_cpu *cpus)
{
	const struct mp_config *t;
	const uint8_t *p, *end;
	unsigned seen;
	int n = 0;

	console_printf("# smp: MP floating pointer at 0x%lx, spec 1.%u, config table at 0x%x\n",
		       (uint64_t)(uintptr_t)f, f->spec_rev, f->config_pa);
	if (!f->config_pa) {
		/* A default configuration (features[0] != 0) means two CPUs,
		 * APIC IDs 0 and 1. */
		console_printf("# smp: default MP configuration %u\n", f->features[0]);
		cpus[0] = (struct smp_cpu){ 0, true };
		cpus[1] = (struct smp_cpu){ 1, false };
		return 2;
	}
	t = (const struct mp_config *)(uintptr_t)f->config_pa;
	if (memcmp(t->signature, "PCMP", 4)) {
		check_fail(c, "MP config table at 0x%x has no PCMP signature", f->config_pa);
		return -1;
	}
	if (t->length < sizeof(*t) || sum_bytes(t, t->length) != 0) {
		check_fail(c, "MP config table checksum/length bad (length %u)", t->length);
		return -1;
	}
	console_printf("# smp: MP config table: %u entries, %u bytes, OEM \"%.8s\"\n",
		       t->entries, t->length, t->oem);
	p = (const uint8_t *)(t + 1);
	end = (const uint8_t *)t + t->length;
	/* Walk by length, as Linux does: some firmware (qboot) leaves the
	 * entry count at 0. */
	for (seen = 0; p < end; seen++) {
		/* Entry sizes from the MP spec: processor 20, the rest 8. */
		if (*p == 0) {
			const struct mp_processor *e = (const struct mp_processor *)p;

			if (p + sizeof(*e) > end)
				break;
			console_printf("# smp: MP processor apic id %u%s%s\n", e->apic_id,
				       e->flags & MP_PROC_BSP ? " bsp" : "",
				       e->flags & MP_PROC_ENABLED ? "" : " disabled");
			if ((e->flags & MP_PROC_ENABLED) && n < MAX_CPUS)
				cpus[n++] = (struct smp_cpu){ e->apic_id, !!(e->flags & MP_PROC_BSP) };
			p += sizeof(*e);
		} else if (*p <= 4) {
			p += 8;
		} else {
			check_fail(c, "MP table entry %u has unknown type %u", seen, *p);
			return -1;
		}
	}
	if (p != end)
		check_fail(c, "MP table entries overrun the table length %u", t->length);
	if (seen != t->entries)
		console_printf("# smp: MP table header says %u entries, %u found\n", t->entries, seen);
	return n;
}

/* Spins until *flag != old or the bound passes; true when it changed. */
static bool wait_change(volatile uint32_t *flag, uint32_t old, uint64_t cycles)
{
	uint64_t start = rdtsc();

	for (uint64_t i = 0; i < SPIN_LOOP_CAP; i++) {
		if (*flag != old)
			return true;
		if (rdtsc() - start > cycles)
			break;
		cpu_relax();
	}
	return *flag != old;
}

static void tsc_delay(uint64_t cycles)
{
	uint64_t start = rdtsc();

	for (uint64_t i = 0; i < SPIN_LOOP_CAP && rdtsc() - start < cycles; i++)
		cpu_relax();
}

static bool apic_send(uint64_t apic, uint8_t dest, uint32_t icr)
{
	uint64_t start = rdtsc();

	mmio_write32(apic + APIC_ICR_HI, (uint32_t)dest << 24);
	mmio_write32(apic + APIC_ICR_LO, icr);
	for (uint64_t i = 0; i < SPIN_LOOP_CAP; i++) {
		if (!(mmio_read32(apic + APIC_ICR_LO) & ICR_BUSY))
			return true;
		if (rdtsc() - start > ICR_WAIT_CYCLES)
			break;
		cpu_relax();
	}
	return false;
}

/* Starts one AP; returns true when an AP reported in, with its APIC ID. */
static bool smp_start_ap(struct check_ctx *c, uint64_t apic, uint8_t id, uint32_t *got_id)
{
	uint32_t before = ap_reported;

	if (!apic_send(apic, id, ICR_INIT | ICR_LEVEL_ASSERT)) {
		check_fail(c, "INIT to APIC %u stuck in the ICR", id);
		return false;
	}
	tsc_delay(INIT_DELAY_CYCLES);
	for (int sipi = 0; sipi < 2; sipi++) {
		if (!apic_send(apic, id, ICR_STARTUP | TRAMPOLINE_SIPI_VECTOR)) {
			check_fail(c, "SIPI to APIC %u stuck in the ICR", id);
			return false;
		}
		if (wait_change(&ap_reported, before, sipi ? AP_WAIT_CYCLES : SIPI_DELAY_CYCLES))
			break;
	}
	if (ap_reported == before)
		return false;
	*got_id = ap_last_id;
	return true;
}

void smp_run(struct check_ctx *c, struct smp_stats *st)
{
	struct smp_cpu cpus[MAX_CPUS];
	const struct mp_floating *f = mp_find(c->bi);
	uint64_t base = rdmsr(MSR_APIC_BASE), apic = base & 0xffffff000ULL, expect;
	uint32_t bsp_id;
	char ids[4 * MAX_CPUS + 1] = "";
	size_t idlen;
	int n, rc;

	st->mp_cpus = 0;
	st->up = 0;
	rc = cmdline_get_u64(c->bi->cmdline, "expect_cpus", false, &expect);
	if (rc < 0) {
		check_fail(c, "malformed expect_cpus=");
		return;
	}
	if (!f) {
		if (rc > 0 && expect > 1)
			check_fail(c, "no MP table, but expect_cpus=%lu", expect);
		else
			check_skip(c, "no MP table (scanned EBDA, 0x9fc00 and 0xf0000)");
		return;
	}
	n = mp_cpus(c, f, cpus);
	if (n < 0)
		return;
	st->mp_cpus = (unsigned)n;
	if (base & APIC_BASE_X2APIC) {
		check_skip(c, "firmware left the LAPIC in x2APIC mode");
		return;
	}
	wrmsr(MSR_APIC_BASE, base | APIC_BASE_ENABLE);
	mmio_write32(apic + APIC_SVR, APIC_SVR_ENABLE | 0xff);
	bsp_id = mmio_read32(apic + APIC_ID) >> 24;
	idlen = (size_t)fmt_snprintf(ids, sizeof(ids), "%u", bsp_id);
	st->up = 1;

	memcpy((void *)(uintptr_t)TRAMPOLINE_ADDR, tramp_start, (size_t)(tramp_end - tramp_start));
	for (int i = 0; i < n; i++) {
		uint32_t got;

		if (cpus[i].apic_id == bsp_id) {
			if (!cpus[i].bsp)
				console_printf("# smp: our APIC ID %u is not flagged BSP in the MP table\n", bsp_id);
			continue;
		}
		if (!smp_start_ap(c, apic, cpus[i].apic_id, &got)) {
			check_fail(c, "AP with APIC ID %u did not come up", cpus[i].apic_id);
			continue;
		}
		if (got != cpus[i].apic_id)
			check_fail(c, "started APIC ID %u but APIC ID %u reported", cpus[i].apic_id, got);
		st->up++;
		if (idlen < sizeof(ids))
			idlen += (size_t)fmt_snprintf(ids + idlen, sizeof(ids) - idlen, " %u", got);
	}
	console_printf("# smp: %u cpus up (apic ids %s), %u in the MP table\n", st->up, ids, st->mp_cpus);
	if (rc > 0 && (expect != st->mp_cpus || expect != st->up))
		check_fail(c, "expect_cpus=%lu but %u in the MP table and %u up", expect, st->mp_cpus, st->up);
}

void smp_set_ap_work(smp_ap_fn *fn)
{
	ap_work = fn;
}

void check_smp(struct check_ctx *c)
{
	struct smp_stats st;

	smp_run(c, &st);
}

/* Called on each AP's own stack, in long mode with our GDT and page
 * tables, from trampoline.S. */
void smp_ap_main(unsigned slot)
{
	uint32_t a, b, cx, d, one = 1;
	smp_ap_fn *work;

	(void)slot;	/* the stack it selected is all it is needed for */
	idt_load();
	cpuid(1, &a, &b, &cx, &d);
	ap_last_id = b >> 24;
	/* Take the work before reporting in: once the count moves, smp_run
	 * returns and its caller clears ap_work, maybe before this AP (its
	 * vCPU thread preempted on a busy host) reads it, which left it
	 * halted and the BSP waiting for it (blk.t, 1 run in 200). */
	work = ap_work;
	/* The store above is visible before the count moves (x86 orders
	 * stores); the BSP starts APs one at a time and waits for the count. */
	__asm__ volatile("lock xaddl %0, %1" : "+r"(one), "+m"(ap_reported) : : "memory");
	if (work)
		work();
	cpu_halt_forever();
}
