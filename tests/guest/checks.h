/* The check framework.  The cmdline option dvmmtest=a,b,c picks checks by
 * name; each check lives in its own check_<name>.c and is listed once in
 * the table in checks.c.  To add one (e.g. blk, mce): write
 * check_<name>.c with `void check_<name>(struct check_ctx *c)`, declare it
 * below and add a line to the table. */
#ifndef GUEST_CHECKS_H
#define GUEST_CHECKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bootinfo.h"

/* A device check's rings and buffers: not cleared at boot (guest.ld's
 * .devmem); the check that owns them clears them before use. */
#define DEVMEM __attribute__((section(".bss.devmem")))

enum check_status {
	CHECK_PASS,
	CHECK_FAIL,
	CHECK_SKIP,
};

struct check_ctx {
	const struct bootinfo *bi;
	uint64_t mapped_top;		/* end of the guest's identity map */
	enum check_status status;	/* starts as CHECK_PASS */
	char reason[192];		/* first failure or the skip reason */
};

typedef void check_fn(struct check_ctx *c);

struct check {
	const char *name;
	check_fn *fn;
};

/* Returns the check called exactly name[0..len), or NULL. */
const struct check *checks_find(const char *name, size_t len);

/* Marks the check failed; only the first reason is kept (later ones should
 * also be printed as "# " lines by the caller if useful). */
void check_fail(struct check_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Marks the check skipped, unless it already failed. */
void check_skip(struct check_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

check_fn check_none;
check_fn check_boot;
check_fn check_mem;
check_fn check_smp;
check_fn check_reset;
check_fn check_demo;
check_fn check_fault;
check_fn check_trap;
check_fn check_triple;
check_fn check_mce;
check_fn check_mcebench;
check_fn check_blk;
check_fn check_blkcrash;
check_fn check_net;

/* Pieces of check_mce.c that blk's poison mode reuses.  mce_guest_enable:
 * CR4.MCE, bank 9 and the #MC hook (fails the check when there is no bank
 * 9).  mce_guest_take_ao: announce gpa ("# mce: victim gpa ... kind ao"),
 * then wait up to mce_timeout= seconds for the action-optional report of
 * it in the encoding of this guest's CPU vendor (Intel: a #MC; AMD: a
 * deferred error found by polling bank 9) and check it bit for bit, with
 * MCi_ADDR the start of the mce_unit= the page lies in; prints
 * "ok/not ok N - mce ao delivered ..." with ++*n.  mce_guest_quiet: true
 * when neither a #MC nor a bank-9 record arrives for `ms` milliseconds. */
bool mce_guest_enable(struct check_ctx *c);
bool mce_guest_take_ao(struct check_ctx *c, uint64_t gpa, unsigned *n);
bool mce_guest_quiet(uint64_t ms);

/* Pieces that demo reuses. */
struct mem_stats {
	uint64_t pages;		/* pages that held their data */
	uint64_t full_pages;	/* pages with a full 4 KiB pattern verified */
	uint64_t mismatches;
};
/* sample_every: full pattern on every N-th page; 0 picks ~64 pages spread
 * over RAM. */
void mem_run(struct check_ctx *c, uint64_t sample_every, struct mem_stats *st);

struct smp_stats {
	unsigned mp_cpus;	/* enabled processors in the MP table */
	unsigned up;		/* CPUs running our code, BSP included */
};
void smp_run(struct check_ctx *c, struct smp_stats *st);
/* When set before smp_run(), each AP calls fn on its own stack after it
 * reports in, instead of halting (blk drives a queue from every vCPU).  fn
 * must not return.  NULL restores halting; an AP reads the pointer before
 * it reports in, so clearing it once smp_run() returns is safe. */
typedef void smp_ap_fn(void);
void smp_set_ap_work(smp_ap_fn *fn);

#endif
