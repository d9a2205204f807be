/* mem: every 4 KiB page of e820 RAM gets a signature derived from its
 * address in its first and last 8 bytes; after all are written, all are
 * read back.  That catches aliasing (two GPAs backed by one host page),
 * holes and lost writes, while touching each page only once per pass -
 * string fills are far too slow in an instruction emulator.  A sample of
 * pages also gets a full 4 KiB pattern.
 * mem_zero=1 first checks that RAM from 1 MiB up, outside the guest's own
 * image, reads as zero (the first boot on a backend that must hand out
 * cleared memory: dmemfs reuses pages that held another owner's data). */
#include <stdbool.h>

#include "checks.h"
#include "cmdline.h"
#include "console.h"

#define PAGE		UINT64_C(4096)
#define QWORDS		(PAGE / 8)
#define SIG_XOR		0x5a17c3e9d00dfeedULL
#define FILL_MUL	0x9e3779b97f4a7c15ULL
#define DEFAULT_SAMPLE	64
#define MAX_REPORTS	8

extern char __image_start[], __image_end[];

static inline uint64_t page_sig(uint64_t pa)
{
	return pa ^ SIG_XOR;
}

/* Word i of a fully patterned page; word 0 and the last word equal the
 * plain signature pair, so one verify routine serves both kinds. */
static inline uint64_t fill_word(uint64_t pa, uint64_t i)
{
	if (i == 0)
		return page_sig(pa);
	if (i == QWORDS - 1)
		return ~page_sig(pa);
	return page_sig(pa) ^ (i * FILL_MUL);
}

enum walk_pass {
	PASS_ZERO,
	PASS_WRITE,
	PASS_VERIFY,
};

struct mem_walk {
	struct check_ctx *c;
	struct mem_stats *st;
	enum walk_pass pass;
	uint64_t sample_every;	/* 0: no full-pattern pages */
	uint64_t until_full;	/* countdown to the next full-pattern page */
	uint64_t unmapped;	/* RAM bytes beyond the identity map */
	uint64_t nonzero;	/* PASS_ZERO: pages that held data */
	uint64_t zeroed;	/* PASS_ZERO: pages checked */
};

/* Below 1 MiB the VMM writes the boot data (zero page, cmdline, MP table). */
#define ZERO_FROM	UINT64_C(0x100000)

static bool page_is_ours(uint64_t pa)
{
	return pa + PAGE > (uintptr_t)__image_start && pa < (uintptr_t)__image_end;
}

static void mem_report(struct mem_walk *w, uint64_t pa, uint64_t got, uint64_t want)
{
	if (w->st->mismatches++ < MAX_REPORTS)
		console_printf("# mem: mismatch at GPA 0x%lx: read 0x%016lx, wrote 0x%016lx\n",
			       pa, got, want);
	check_fail(w->c, "mismatch at GPA 0x%lx (read 0x%lx, wrote 0x%lx)", pa, got, want);
}

static void mem_page(struct mem_walk *w, uint64_t pa)
{
	volatile uint64_t *q = (volatile uint64_t *)(uintptr_t)pa;
	/* A countdown, not a modulo: a division per page is measurable at
	 * emulator speed. */
	bool full = w->sample_every && w->until_full == 0;

	if (full)
		w->until_full = w->sample_every;
	w->until_full--;
	switch (w->pass) {
	case PASS_ZERO:
		if (pa < ZERO_FROM)
			return;
		for (uint64_t i = 0; i < (full ? QWORDS : 1); i++) {
			uint64_t v = q[full ? i : 0] | q[QWORDS - 1];

			if (v) {
				if (w->nonzero++ < MAX_REPORTS)
					console_printf("# mem: GPA 0x%lx is not zero at first boot "
						       "(0x%016lx)\n", pa, v);
				break;
			}
		}
		w->zeroed++;
		return;
	case PASS_WRITE:
		if (full) {
			for (uint64_t i = 0; i < QWORDS; i++)
				q[i] = fill_word(pa, i);
		} else {
			q[0] = page_sig(pa);
			q[QWORDS - 1] = ~page_sig(pa);
		}
		return;
	case PASS_VERIFY:
		break;
	}
	if (full) {
		for (uint64_t i = 0; i < QWORDS; i++) {
			uint64_t v = q[i];

			if (v != fill_word(pa, i)) {
				mem_report(w, pa + i * 8, v, fill_word(pa, i));
				return;
			}
		}
		w->st->full_pages++;
	} else {
		uint64_t a = q[0], b = q[QWORDS - 1];

		if (a != page_sig(pa)) {
			mem_report(w, pa, a, page_sig(pa));
			return;
		}
		if (b != ~page_sig(pa)) {
			mem_report(w, pa + PAGE - 8, b, ~page_sig(pa));
			return;
		}
	}
	w->st->pages++;
}

/* Clips RAM range e to testable whole pages [*start, *end) below the
 * identity map's end; returns the bytes of it above the map. */
static uint64_t ram_range(const struct bi_e820 *e, uint64_t top, uint64_t *start, uint64_t *end)
{
	uint64_t unmapped = 0;

	*start = (e->addr + PAGE - 1) & ~(PAGE - 1);
	*end = (e->addr + e->size) & ~(PAGE - 1);
	if (*end > top) {
		uint64_t from = *start > top ? *start : top;

		if (*end > from)
			unmapped = *end - from;
		*end = top;
	}
	if (*end < *start)
		*end = *start;
	return unmapped;
}

/* The number of pages a walk will visit, by arithmetic: walking just to
 * count costs real time in an instruction emulator. */
static uint64_t mem_count_pages(const struct check_ctx *c)
{
	uint64_t img_s = (uintptr_t)__image_start & ~(PAGE - 1);
	uint64_t img_e = ((uintptr_t)__image_end + PAGE - 1) & ~(PAGE - 1);
	uint64_t pages = 0;

	for (unsigned i = 0; i < c->bi->n_e820; i++) {
		uint64_t start, end, lo, hi;

		if (c->bi->e820[i].type != E820_RAM)
			continue;
		ram_range(&c->bi->e820[i], c->mapped_top, &start, &end);
		pages += (end - start) / PAGE;
		lo = start > img_s ? start : img_s;
		hi = end < img_e ? end : img_e;
		if (hi > lo)
			pages -= (hi - lo) / PAGE;
	}
	return pages;
}

/* One pass over every testable RAM page: page-aligned, inside the identity
 * map, outside the guest's own image (code, stacks, page tables). */
static void mem_walk_ram(struct mem_walk *w, enum walk_pass pass)
{
	const struct bootinfo *bi = w->c->bi;

	w->pass = pass;
	w->until_full = 0;
	w->unmapped = 0;
	for (unsigned e = 0; e < bi->n_e820; e++) {
		uint64_t start, end;

		if (bi->e820[e].type != E820_RAM)
			continue;
		w->unmapped += ram_range(&bi->e820[e], w->c->mapped_top, &start, &end);
		for (uint64_t pa = start; pa < end; pa += PAGE)
			if (!page_is_ours(pa))
				mem_page(w, pa);
	}
}

static void mem_run_zero(struct check_ctx *c, uint64_t sample_every)
{
	struct mem_walk w = { .c = c, .sample_every = sample_every };

	mem_walk_ram(&w, PASS_ZERO);
	console_printf("# mem: %lu pages from 1 MiB up checked for zero, %lu not zero\n",
		       w.zeroed, w.nonzero);
	if (w.nonzero)
		check_fail(c, "%lu RAM pages held data at first boot", w.nonzero);
}

void mem_run(struct check_ctx *c, uint64_t sample_every, struct mem_stats *st)
{
	struct mem_walk w = { .c = c, .st = st };

	if (!sample_every) {
		sample_every = mem_count_pages(c) / DEFAULT_SAMPLE;
		if (!sample_every)
			sample_every = 1;
	}
	w.sample_every = sample_every;
	mem_walk_ram(&w, PASS_WRITE);
	mem_walk_ram(&w, PASS_VERIFY);
	if (w.unmapped)
		console_printf("# mem: %lu MiB of RAM above the %u GiB identity map not checked\n",
			       w.unmapped >> 20, (unsigned)(c->mapped_top >> 30));
	console_printf("# mem: %lu pages (%lu MiB) verified, %lu with a full pattern (every %lu pages)\n",
		       st->pages, st->pages * PAGE >> 20, st->full_pages, sample_every);
	if (!st->pages)
		check_fail(c, "no RAM pages to check");
	else if (st->mismatches)
		console_printf("# mem: %lu mismatches\n", st->mismatches);
}

void check_mem(struct check_ctx *c)
{
	struct mem_stats st = { 0 };
	uint64_t every = 0;
	int rc = cmdline_get_u64(c->bi->cmdline, "mem_sample", false, &every);

	if (rc < 0) {
		check_fail(c, "malformed mem_sample=");
		return;
	}
	uint64_t zero = 0;

	if (cmdline_get_u64(c->bi->cmdline, "mem_zero", false, &zero) < 0)
		zero = 0;
	/* mem_sample=N adds a full pattern on every N-th page; N=0 is the
	 * default spread-out sample. */
	if (zero)
		mem_run_zero(c, every ? every : mem_count_pages(c) / DEFAULT_SAMPLE + 1);
	mem_run(c, every, &st);
}
