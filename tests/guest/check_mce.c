/* mce: machine-check recovery as a guest kernel sees it.  The host (the
 * harness, through `dvmm ctl ... mce-inject`) injects; the guest only waits
 * on its victim page and checks what arrives, bit for bit, against the
 * encoding dvmm promises (DESIGN.md "Memory-failure routing").
 *
 * The encoding is the one for the CPU vendor this guest sees (CPUID leaf
 * 0, read by mce_expect_for_vendor()): Intel's raises a #MC for both AR
 * and AO; AMD's (AuthenticAMD, HygonGenuine) raises one for AR and
 * reports AO as a deferred error that only sits in bank 9, which the guest
 * finds by polling the bank (mce_poll_loop), as Linux's periodic poll does.
 *
 * One boot is one phase, chosen by what the e820 map says:
 *   A  the victim page is RAM: take an AR on it (reading it), then an AO
 *      on the next page (without touching it), clearing MCi_STATUS and
 *      MCIP each time, then reset through
 *      the i8042 (the VMM reboots us with the lost pages cut out);
 *   B  the victim page is gone from RAM (so this is the reboot): say so,
 *      then take an AR on a third page and leave MCIP set, so that the
 *      next machine check must shut the VM down.
 * mce_retouch=1 adds a case to A after the AO: read the AO victim again and
 * expect an AR for it.  Only a host that really poisoned that page (the
 * harness's `hwpoison`) produces one, from KVM's own SIGBUS.
 * mce_phases=ar[,ao][,retouch] runs only those cases of A and ends the
 * check there, for injectors that cannot reboot the guest without its lost
 * pages (QEMU's `mce` monitor command, tests/integration/qemu-mce.t).  With
 * mce_reboot=1 it reboots after them instead, and the boot that finds the
 * victim gone only checks that the failed unit left e820, so that later
 * checks (mem) run on what is left (tests/integration/dmemfs.t).
 * mce_unit=SIZE is the host's unit of loss (a dmemfs dpage, a huge page):
 * MCi_ADDR then names the unit's start, not the victim page, and the whole
 * unit must leave e820.
 *
 * mcebench: the handler clears the bank and MCIP and at once writes one
 * byte (0x06) to the UART, N times; tests/bench/mce-latency times it. */
#include <stdbool.h>

#include "checks.h"
#include "cmdline.h"
#include "console.h"
#include "idt.h"
#include "io.h"
#include "lib.h"

#define PAGE			UINT64_C(4096)
#define MC_VECTOR		18
#define CR4_MCE			(UINT64_C(1) << 6)

#define MSR_MCG_CAP		0x179
#define MSR_MCG_STATUS		0x17a
#define MSR_MCG_CTL		0x17b
#define MCE_BANK		9
#define MSR_MC_CTL(b)		(0x400 + 4 * (b))
#define MSR_MC_STATUS(b)	(0x401 + 4 * (b))
#define MSR_MC_ADDR(b)		(0x402 + 4 * (b))
#define MSR_MC_MISC(b)		(0x403 + 4 * (b))
#define MCG_CAP_COUNT		UINT64_C(0xff)
#define MCG_CTL_P		(UINT64_C(1) << 8)
#define MCG_STATUS_MCIP		(UINT64_C(1) << 2)

/* What dvmm injects (vmm/mce.h); restated here, not included, so the guest
 * checks the contract rather than agreeing with itself. */
#define AR_MCG_STATUS		UINT64_C(0x7)		/* MCIP|EIPV|RIPV */
#define AR_MCI_STATUS		UINT64_C(0xBD80000000000134)
#define AO_MCG_STATUS		UINT64_C(0x5)		/* MCIP|RIPV */
#define AO_MCI_STATUS		UINT64_C(0xBD000000000000C0)
/* AMD guests (QEMU >= 9.1): AR with POISON and no S/AR/MCACOD; AO a
 * deferred error with UC clear, which raises no #MC and leaves MCG_STATUS
 * alone (0 once the previous handler cleared it). */
#define AMD_AR_MCI_STATUS	UINT64_C(0xBC00080000000000)
#define AMD_AO_MCI_STATUS	UINT64_C(0x9C00180000000000)
#define AMD_AO_MCG_STATUS	UINT64_C(0)
#define MCI_MISC		UINT64_C(0x8c)
#define MCI_STATUS_VAL		(UINT64_C(1) << 63)

#define DEFAULT_VICTIM		UINT64_C(0x2000000)
#define DEFAULT_TIMEOUT_S	60
/* Without CPUID's TSC leaves assume a fast TSC, so the bound errs long. */
#define FALLBACK_TSC_HZ		UINT64_C(3000000000)
#define RESET_GRACE_CYCLES	UINT64_C(20000000000)
#define BENCH_ACK		0x06
#define BENCH_DEFAULT_N		1000
#define COM1			0x3f8
#define PHASE_AR		(1 << 0)
#define PHASE_AO		(1 << 1)
#define PHASE_RETOUCH		(1 << 2)

/* What the #MC hook saw; it runs with no context argument, so this is
 * the one place it can leave its record. */
struct mce_seen {
	uint64_t count;
	uint64_t mcg_status, status, addr, misc, rip;
	bool leave_mcip;	/* phase B: do not clear MCIP */
	bool bench;		/* mcebench: ack on the UART, nothing else */
};

static struct mce_seen mce_seen;

/* What to expect, by the vendor CPUID shows this guest. */
struct mce_expect {
	const char *name;	/* "intel" / "amd", as dvmm's log spells it */
	char vendor[13];
	uint64_t ar_mcg_status, ar_status;
	uint64_t ao_mcg_status, ao_status;
	bool ao_polled;		/* AO raises no #MC: poll bank 9 for it */
};

static struct mce_expect mce_expect;

static void mce_expect_for_vendor(struct mce_expect *e)
{
	static const struct mce_expect intel = {
		.name = "intel", .ar_mcg_status = AR_MCG_STATUS, .ar_status = AR_MCI_STATUS,
		.ao_mcg_status = AO_MCG_STATUS, .ao_status = AO_MCI_STATUS,
	};
	static const struct mce_expect amd = {
		.name = "amd", .ar_mcg_status = AR_MCG_STATUS, .ar_status = AMD_AR_MCI_STATUS,
		.ao_mcg_status = AMD_AO_MCG_STATUS, .ao_status = AMD_AO_MCI_STATUS,
		.ao_polled = true,
	};
	uint32_t max, regs[3];
	char vendor[13];

	cpuid(0, &max, &regs[0], &regs[2], &regs[1]);	/* EBX, EDX, ECX spell it */
	memcpy(vendor, regs, 12);
	vendor[12] = '\0';
	*e = !strncmp(vendor, "AuthenticAMD", 12) || !strncmp(vendor, "HygonGenuine", 12)
		? amd : intel;
	memcpy(e->vendor, vendor, sizeof(vendor));
}

/* mce_touch_loop(p, deadline) reads *p until the TSC passes deadline and
 * returns 0.  A machine check inside it resumes at mce_touch_recover, which
 * returns 1: the guest stops touching the page it was told is bad, rather
 * than re-running the load, which on real poison would fault again.  It
 * keeps to rax/rdx/r8 and the stack pointer it was called with, so the hook
 * can resume at mce_touch_recover with any of them clobbered. */
__asm__(
	".text\n"
	".balign 16\n"
	".globl mce_touch_loop\n"
	"mce_touch_loop:\n"
	"	movq %rsi, %r8\n"
	"1:	movq (%rdi), %rax\n"
	"	rdtsc\n"
	"	shlq $32, %rdx\n"
	"	orq %rdx, %rax\n"
	"	cmpq %r8, %rax\n"
	"	jb 1b\n"
	"	xorl %eax, %eax\n"
	"	ret\n"
	".globl mce_touch_end\n"
	"mce_touch_end:\n"
	".globl mce_touch_recover\n"
	"mce_touch_recover:\n"
	"	movl $1, %eax\n"
	"	ret\n");

extern const char mce_touch_end[], mce_touch_recover[];
int mce_touch_loop(const volatile uint64_t *p, uint64_t tsc_deadline);

/* Deferred errors raise nothing: read bank 9 until it holds a valid record
 * (and take it, as Linux's machine_check_poll does), or the TSC passes
 * deadline.  Returns false on the deadline.  A #MC meanwhile is counted by
 * the hook as usual, so the caller sees it. */
static bool mce_poll_loop(struct mce_seen *s, uint64_t tsc_deadline)
{
	while (rdtsc() < tsc_deadline) {
		uint64_t status = rdmsr(MSR_MC_STATUS(MCE_BANK));

		if (status & MCI_STATUS_VAL) {
			s->mcg_status = rdmsr(MSR_MCG_STATUS);
			s->status = status;
			s->addr = rdmsr(MSR_MC_ADDR(MCE_BANK));
			s->misc = rdmsr(MSR_MC_MISC(MCE_BANK));
			s->rip = 0;
			wrmsr(MSR_MC_STATUS(MCE_BANK), 0);
			return true;
		}
		/* Each RDMSR is a VM exit; there is no hurry. */
		for (unsigned i = 0; i < 1000; i++)
			cpu_relax();
	}
	return false;
}

static bool mce_hook(struct exc_frame *f)
{
	struct mce_seen *s = &mce_seen;

	if (s->bench) {
		wrmsr(MSR_MC_STATUS(MCE_BANK), 0);
		wrmsr(MSR_MCG_STATUS, 0);
		/* Counted before the acknowledgement: the host may inject the
		 * next one as soon as it sees the byte, and that machine check
		 * can land on the instruction after the outb, nested in here. */
		__atomic_fetch_add(&s->count, 1, __ATOMIC_SEQ_CST);
		outb(COM1, BENCH_ACK);
		return true;
	}
	s->mcg_status = rdmsr(MSR_MCG_STATUS);
	s->status = rdmsr(MSR_MC_STATUS(MCE_BANK));
	s->addr = rdmsr(MSR_MC_ADDR(MCE_BANK));
	s->misc = rdmsr(MSR_MC_MISC(MCE_BANK));
	s->rip = f->rip;
	s->count++;
	/* Done with the bank: a later error must not find VAL set (which
	 * would add OVER) nor MCIP (which would shut the CPU down). */
	wrmsr(MSR_MC_STATUS(MCE_BANK), 0);
	if (!s->leave_mcip)
		wrmsr(MSR_MCG_STATUS, 0);
	if (f->rip >= (uintptr_t)mce_touch_loop && f->rip < (uintptr_t)mce_touch_end)
		f->rip = (uintptr_t)mce_touch_recover;
	return true;
}

static uint64_t tsc_hz(void)
{
	uint32_t a, b, c, d, max;

	cpuid(0, &max, &b, &c, &d);
	if (max >= 0x15) {
		cpuid(0x15, &a, &b, &c, &d);
		if (a && b && c)
			return (uint64_t)c * b / a;
	}
	if (max >= 0x16) {
		cpuid(0x16, &a, &b, &c, &d);
		if (a & 0xffff)
			return (uint64_t)(a & 0xffff) * 1000000;
	}
	return FALLBACK_TSC_HZ;
}

static bool page_is_ram(const struct bootinfo *bi, uint64_t pa)
{
	for (unsigned i = 0; i < bi->n_e820; i++) {
		const struct bi_e820 *e = &bi->e820[i];

		if (e->type == E820_RAM && pa >= e->addr && pa + PAGE <= e->addr + e->size)
			return true;
	}
	return false;
}

/* CR4.MCE on, every bank-9 error reported, a clean bank; fails the check
 * when the VMM offers no bank 9. */
static bool mce_enable(struct check_ctx *c)
{
	uint64_t cap = rdmsr(MSR_MCG_CAP);

	console_printf("# mce: MCG_CAP 0x%lx (%lu banks%s)\n", cap, cap & MCG_CAP_COUNT,
		       cap & MCG_CTL_P ? ", MCG_CTL_P" : "");
	mce_expect_for_vendor(&mce_expect);
	console_printf("# mce: CPU vendor %s: expecting the %s encoding: AR MC9_STATUS 0x%lx "
		       "MCG_STATUS 0x%lx (#MC), AO MC9_STATUS 0x%lx %s\n", mce_expect.vendor,
		       mce_expect.name, mce_expect.ar_status, mce_expect.ar_mcg_status,
		       mce_expect.ao_status, mce_expect.ao_polled
		       ? "(deferred: no #MC, found by polling bank 9)" : "MCG_STATUS 0x5 (#MC)");
	if ((cap & MCG_CAP_COUNT) <= MCE_BANK) {
		check_fail(c, "MCG_CAP reports %lu banks; bank %d is needed",
			   cap & MCG_CAP_COUNT, MCE_BANK);
		return false;
	}
	idt_set_hook(MC_VECTOR, mce_hook);
	if (cap & MCG_CTL_P)
		wrmsr(MSR_MCG_CTL, ~UINT64_C(0));
	wrmsr(MSR_MC_CTL(MCE_BANK), ~UINT64_C(0));
	wrmsr(MSR_MC_STATUS(MCE_BANK), 0);
	write_cr4(read_cr4() | CR4_MCE);
	return true;
}

struct mce_case {
	const char *kind;	/* as the harness spells it */
	uint64_t gpa;
	uint64_t mcg_status;
	uint64_t status;
	bool touch;		/* read the victim while waiting */
	uint64_t addr;		/* MCi_ADDR expected: the start of the lost unit */
	bool polled;		/* no #MC: poll bank 9 instead (AMD's deferred AO) */
};

/* Announce the victim, touch it until a machine check comes, and compare
 * what the handler read with the expected encoding.  *n is the guest's own
 * TAP counter for these sub-results. */
static bool mce_take(struct check_ctx *c, const struct mce_case *k, const char *note,
		     uint64_t timeout_cycles, unsigned *n)
{
	struct mce_seen *s = &mce_seen;
	uint64_t before = s->count;
	/* An AR is the CPU consuming the poison, so the guest reads the page.
	 * An AO reports a page nobody has consumed: touching it would turn a
	 * real (hwpoison) failure into KVM's AR before the AO arrives. */
	uint64_t untouched = 0;
	const volatile uint64_t *p = k->touch ? (const volatile uint64_t *)(uintptr_t)k->gpa
					      : &untouched;

	console_printf("# mce: victim gpa 0x%lx kind %s%s\n", k->gpa, k->kind, note);
	if (k->polled ? !mce_poll_loop(s, rdtsc() + timeout_cycles)
		      : !mce_touch_loop(p, rdtsc() + timeout_cycles)) {
		console_printf("not ok %u - mce %s delivered # none arrived in time%s\n", ++*n,
			       k->kind, k->polled ? " (polling bank 9 for a deferred error)" : "");
		check_fail(c, "no %s machine check arrived for GPA 0x%lx", k->kind, k->gpa);
		return false;
	}
	if (k->polled && s->count != before) {
		console_printf("not ok %u - mce %s delivered # a #MC arrived for what should be a "
			       "deferred error (MCG_STATUS 0x%lx MC9_STATUS 0x%lx rip 0x%lx)\n",
			       ++*n, k->kind, s->mcg_status, s->status, s->rip);
		check_fail(c, "%s for GPA 0x%lx raised a #MC; the %s encoding raises none",
			   k->kind, k->gpa, mce_expect.name);
		return false;
	}
	if (s->count != before + !k->polled || s->mcg_status != k->mcg_status ||
	    s->status != k->status || s->addr != k->addr || s->misc != MCI_MISC) {
		console_printf("not ok %u - mce %s delivered # %lu events; MCG_STATUS 0x%lx "
			       "(want 0x%lx) MC9_STATUS 0x%lx (want 0x%lx) MC9_ADDR 0x%lx "
			       "(want 0x%lx) MC9_MISC 0x%lx (want 0x%lx) rip 0x%lx\n",
			       ++*n, k->kind, s->count - before, s->mcg_status, k->mcg_status,
			       s->status, k->status, s->addr, k->addr, s->misc, MCI_MISC, s->rip);
		check_fail(c, "%s machine check for GPA 0x%lx does not match the encoding",
			   k->kind, k->gpa);
		return false;
	}
	if (k->polled)
		console_printf("ok %u - mce %s delivered: MCG_STATUS 0x%lx MC9_STATUS 0x%lx "
			       "MC9_ADDR 0x%lx MC9_MISC 0x%lx polled (deferred error, no #MC)\n",
			       ++*n, k->kind, s->mcg_status, s->status, s->addr, s->misc);
	else
		console_printf("ok %u - mce %s delivered: MCG_STATUS 0x%lx MC9_STATUS 0x%lx "
			       "MC9_ADDR 0x%lx MC9_MISC 0x%lx rip 0x%lx\n", ++*n, k->kind,
			       s->mcg_status, s->status, s->addr, s->misc, s->rip);
	return true;
}

/* mce_phases= as PHASE_* bits: 0 when absent (dvmm's full run), -1 when
 * malformed. */
static int mce_phases(const char *cmdline)
{
	size_t len;
	const char *v = cmdline_find(cmdline, "mce_phases", &len);
	int mask = 0;

	if (!v)
		return 0;
	while (len) {
		size_t w = 0;

		while (w < len && v[w] != ',')
			w++;
		if (w == 2 && !strncmp(v, "ar", 2))
			mask |= PHASE_AR;
		else if (w == 2 && !strncmp(v, "ao", 2))
			mask |= PHASE_AO;
		else if (w == 7 && !strncmp(v, "retouch", 7))
			mask |= PHASE_RETOUCH;
		else
			return -1;
		v += w;
		len -= w;
		if (len) {
			v++;
			len--;
		}
	}
	return mask ? mask : -1;
}

/* mce_unit= (a power of two, at least a page; a page when absent), or 0
 * when malformed. */
static uint64_t mce_unit(const char *cmdline)
{
	uint64_t unit = PAGE;

	if (cmdline_get_u64(cmdline, "mce_unit", false, &unit) < 0 || unit < PAGE ||
	    (unit & (unit - 1)))
		return 0;
	return unit;
}

/* phases: PHASE_* bits to run and then return (or reboot, with reboot
 * set); 0 for all of them followed by the reboot into phase B. */
static void mce_phase_a(struct check_ctx *c, uint64_t victim, uint64_t timeout, int phases,
			uint64_t unit, bool reboot)
{
	const uint64_t lost = ~(unit - 1);
	const struct mce_expect *e = &mce_expect;
	const struct mce_case cases[] = {
		{ "ar", victim, e->ar_mcg_status, e->ar_status, true, victim & lost, false },
		{ "ao", victim + PAGE, e->ao_mcg_status, e->ao_status, false,
		  (victim + PAGE) & lost, e->ao_polled },
		{ "ar", victim + PAGE, e->ar_mcg_status, e->ar_status, true,
		  (victim + PAGE) & lost, false },
	};
	const char *notes[] = { "", "", " retouch" };
	uint64_t retouch = 0;
	unsigned n = 0;
	uint64_t start;

	if (cmdline_get_u64(c->bi->cmdline, "mce_retouch", false, &retouch) < 0)
		retouch = 0;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (i == 2 && !retouch && !(phases & PHASE_RETOUCH))
			break;
		if (phases && !(phases & (1 << i)))
			continue;
		if (!page_is_ram(c->bi, cases[i].gpa)) {
			check_fail(c, "victim GPA 0x%lx is not e820 RAM", cases[i].gpa);
			return;
		}
		if (!mce_take(c, &cases[i], notes[i], timeout, &n))
			return;
		if (rdmsr(MSR_MCG_STATUS) & MCG_STATUS_MCIP) {
			check_fail(c, "MCIP still set after the handler cleared it");
			return;
		}
		/* Retired: this boot leaves it alone (but for mce_retouch's
		 * deliberate read); the VMM keeps it out of the next one. */
		console_printf("# mce: retired page 0x%lx\n", cases[i].gpa);
	}
	if (phases && !reboot) {
		console_puts("# mce: mce_phases done, no reboot\n");
		return;
	}
	console_puts("# mce: rebooting\n");
	outb(0x64, 0xfe);
	start = rdtsc();
	while (rdtsc() - start < RESET_GRACE_CYCLES)
		cpu_relax();
	check_fail(c, "still running after the i8042 reset command");
}

/* No byte of [start, start + len) is e820 RAM. */
static bool range_not_ram(const struct bootinfo *bi, uint64_t start, uint64_t len)
{
	for (unsigned i = 0; i < bi->n_e820; i++) {
		const struct bi_e820 *e = &bi->e820[i];

		if (e->type == E820_RAM && e->addr < start + len && start < e->addr + e->size)
			return false;
	}
	return true;
}

/* phases: the reboot after mce_phases/mce_reboot; only the absence of the
 * lost unit is checked, and the checks after mce run on what is left. */
static void mce_phase_b(struct check_ctx *c, uint64_t victim, uint64_t timeout, int phases,
			uint64_t unit)
{
	const struct mce_case last = { "ar", victim + 2 * PAGE, mce_expect.ar_mcg_status,
				       mce_expect.ar_status, true,
				       (victim + 2 * PAGE) & ~(unit - 1), false };
	unsigned n = 0;

	for (unsigned i = 0; i < c->bi->n_e820; i++)
		console_printf("# mce: e820 [0x%lx, 0x%lx) type %u\n", c->bi->e820[i].addr,
			       c->bi->e820[i].addr + c->bi->e820[i].size, c->bi->e820[i].type);
	if (page_is_ram(c->bi, victim + PAGE)) {
		console_printf("not ok - mce victim pages absent from e820 after reboot "
			       "# 0x%lx is RAM\n", victim + PAGE);
		check_fail(c, "AO victim 0x%lx is still e820 RAM after the reboot", victim + PAGE);
		return;
	}
	if (!range_not_ram(c->bi, (victim + PAGE) & ~(unit - 1), unit)) {
		console_printf("not ok - mce victim pages absent from e820 after reboot "
			       "# part of the lost unit [0x%lx, +0x%lx) is RAM\n",
			       (victim + PAGE) & ~(unit - 1), unit);
		check_fail(c, "the lost unit of 0x%lx is still e820 RAM after the reboot",
			   victim + PAGE);
		return;
	}
	console_puts("ok - mce victim pages absent from e820 after reboot\n");
	if (phases)
		return;
	if (!page_is_ram(c->bi, last.gpa)) {
		check_fail(c, "third victim GPA 0x%lx is not e820 RAM", last.gpa);
		return;
	}
	mce_seen.leave_mcip = true;
	if (!mce_take(c, &last, " leave-mcip", timeout, &n))
		return;
	if (!(rdmsr(MSR_MCG_STATUS) & MCG_STATUS_MCIP)) {
		check_fail(c, "MCIP clear although the handler left it set");
		return;
	}
	console_puts("# mce: first machine check taken, MCIP left set\n");
	/* The next machine check finds MCIP set: a real CPU shuts down, and so
	 * must KVM.  Coming back from this loop either way is the failure. */
	if (mce_touch_loop((const volatile uint64_t *)(uintptr_t)last.gpa, rdtsc() + timeout))
		check_fail(c, "a machine check was delivered while MCIP was set "
			   "(MCG_STATUS 0x%lx)", mce_seen.mcg_status);
	else
		check_fail(c, "no second machine check arrived (expected a shutdown)");
}

static uint64_t mce_timeout_cycles(const struct check_ctx *c)
{
	uint64_t secs = DEFAULT_TIMEOUT_S;

	if (cmdline_get_u64(c->bi->cmdline, "mce_timeout", false, &secs) < 0 || !secs)
		secs = DEFAULT_TIMEOUT_S;
	return secs * tsc_hz();
}

bool mce_guest_enable(struct check_ctx *c)
{
	return mce_enable(c);
}

bool mce_guest_take_ao(struct check_ctx *c, uint64_t gpa, unsigned *n)
{
	uint64_t unit = mce_unit(c->bi->cmdline);
	struct mce_case k = {
		.kind = "ao", .gpa = gpa, .mcg_status = mce_expect.ao_mcg_status,
		.status = mce_expect.ao_status, .addr = gpa, .polled = mce_expect.ao_polled,
	};

	if (!unit) {
		check_fail(c, "mce_unit must be a power of two of at least 4096");
		return false;
	}
	k.addr = gpa & ~(unit - 1);	/* the host reports the lost unit's start */
	return mce_take(c, &k, "", mce_timeout_cycles(c), n);
}

bool mce_guest_quiet(uint64_t ms)
{
	uint64_t before = mce_seen.count;
	struct mce_seen s;

	if (mce_poll_loop(&s, rdtsc() + ms * (tsc_hz() / 1000)))
		return false;
	return mce_seen.count == before;
}

void check_mce(struct check_ctx *c)
{
	uint64_t victim = DEFAULT_VICTIM;
	int rc = cmdline_get_u64(c->bi->cmdline, "mce_victim", true, &victim);
	int phases = mce_phases(c->bi->cmdline);
	uint64_t unit = mce_unit(c->bi->cmdline), reboot = 0;

	if (rc < 0 || victim % PAGE || victim + 3 * PAGE > c->mapped_top) {
		check_fail(c, "mce_victim must be a page address inside the identity map");
		return;
	}
	if (phases < 0) {
		check_fail(c, "mce_phases must be a comma-separated list of ar, ao and retouch");
		return;
	}
	if (!unit) {
		check_fail(c, "mce_unit must be a power of two of at least 4096");
		return;
	}
	if (cmdline_get_u64(c->bi->cmdline, "mce_reboot", false, &reboot) < 0)
		reboot = 0;
	if (!mce_enable(c))
		return;
	if (page_is_ram(c->bi, victim))
		mce_phase_a(c, victim, mce_timeout_cycles(c), phases, unit, reboot);
	else if (victim < bootinfo_ram_top(c->bi) || (phases && reboot))
		mce_phase_b(c, victim, mce_timeout_cycles(c), phases, unit);
	else
		check_fail(c, "victim GPA 0x%lx lies above guest RAM", victim);
}

void check_mcebench(struct check_ctx *c)
{
	uint64_t n = BENCH_DEFAULT_N, idle = mce_timeout_cycles(c), last, seen;

	if (cmdline_get_u64(c->bi->cmdline, "mcebench_n", false, &n) < 0 || !n)
		n = BENCH_DEFAULT_N;
	if (!mce_enable(c))
		return;
	mce_seen.bench = true;
	console_printf("# mcebench: ready for %lu machine checks\n", n);
	last = rdtsc();
	seen = 0;
	while (__atomic_load_n(&mce_seen.count, __ATOMIC_RELAXED) < n) {
		uint64_t now = __atomic_load_n(&mce_seen.count, __ATOMIC_RELAXED);

		if (now != seen) {
			seen = now;
			last = rdtsc();
		} else if (rdtsc() - last > idle) {
			check_fail(c, "only %lu of %lu machine checks arrived", seen, n);
			return;
		}
		cpu_relax();
	}
	console_printf("# mcebench: %lu machine checks handled\n", mce_seen.count);
}
