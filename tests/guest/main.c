/* guest_start: read what the loader gave us, run the checks the command
 * line asks for, report TAP on the UART and leave through debug-exit. */
#include <stdbool.h>

#include "bootinfo.h"
#include "checks.h"
#include "cmdline.h"
#include "console.h"
#include "exit.h"
#include "idt.h"
#include "lib.h"
#include "paging.h"
#include "reenter.h"

#define MAX_SELECTED	32

struct selection {
	const char *name;
	size_t len;
};

void guest_start(const void *info, unsigned kind);

static struct bootinfo boot_info;

/* Splits dvmmtest=a,b,c; "boot" when the option is absent. */
static unsigned select_checks(const char *cmdline, struct selection *sel)
{
	size_t len;
	const char *v = cmdline_find(cmdline, "dvmmtest", &len);
	unsigned n = 0;

	if (!v) {
		sel[0].name = "boot";
		sel[0].len = 4;
		return 1;
	}
	while (len && n < MAX_SELECTED) {
		size_t w = 0;

		while (w < len && v[w] != ',')
			w++;
		if (w) {
			sel[n].name = v;
			sel[n].len = w;
			n++;
		}
		v += w;
		len -= w;
		if (len) {
			v++;
			len--;
		}
	}
	return n;
}

static void set_exit_port(const char *cmdline)
{
	uint64_t port;
	int rc = cmdline_get_u64(cmdline, "exitport", false, &port);

	if (rc > 0 && port <= 0xffff)
		guest_set_exit_port((uint16_t)port);
	else if (rc != 0)
		console_puts("# bad exitport= value, using 0xf4\n");
}

/* e820_fake=ADDR:SIZE adds a RAM range the VM does not have, so tests can
 * prove that the mem check reports memory that does not hold its data. */
static void add_fake_ram(struct bootinfo *bi)
{
	size_t len, colon = 0;
	const char *v = cmdline_find(bi->cmdline, "e820_fake", &len);
	uint64_t addr, size;

	if (!v)
		return;
	while (colon < len && v[colon] != ':')
		colon++;
	if (colon == len || !parse_u64(v, colon, true, &addr) ||
	    !parse_u64(v + colon + 1, len - colon - 1, true, &size) ||
	    bi->n_e820 >= BI_MAX_E820) {
		console_puts("# e820_fake: want ADDR:SIZE, ignored\n");
		return;
	}
	bi->e820[bi->n_e820++] = (struct bi_e820){ addr, size, E820_RAM };
	console_printf("# e820_fake: pretending [0x%lx, 0x%lx) is RAM\n", addr, addr + size);
}

static bool want_linux64(const char *cmdline)
{
	size_t len;
	const char *v = cmdline_find(cmdline, "entry", &len);

	return v && len == 7 && !strncmp(v, "linux64", 7);
}

static bool only_none(const struct selection *sel, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (sel[i].len != 4 || strncmp(sel[i].name, "none", 4))
			return false;
	return true;
}

void guest_start(const void *info, unsigned kind)
{
	struct bootinfo *bi = &boot_info;
	struct selection sel[MAX_SELECTED];
	const char *why = "";
	uint64_t mapped_top = 0;
	unsigned n, failed = 0;
	int rc;

	console_init();
	idt_init();
	if (kind == BOOT_PVH)
		rc = bootinfo_from_pvh(bi, info, &why);
	else
		rc = bootinfo_from_boot_params(bi, info, &why);
	console_puts("# dvmm test guest\n");
	if (rc) {
		console_printf("1..1\nnot ok 1 - bootinfo # %s\n", why);
		guest_exit(1);
	}
	if (bi->kind == BOOT_PVH && want_linux64(bi->cmdline)) {
		console_puts("# entry=linux64: re-entering through the Linux 64-bit boot protocol\n");
		reenter_linux64(bi);
	}
	set_exit_port(bi->cmdline);
	add_fake_ram(bi);
	n = select_checks(bi->cmdline, sel);
	console_printf("1..%u\n", n);
	/* Start-up benchmarks time "none": skip rebuilding the page tables,
	 * which costs real time in an instruction emulator. */
	if (!only_none(sel, n))
		mapped_top = paging_init(bi);

	for (unsigned i = 0; i < n; i++) {
		const struct check *chk = checks_find(sel[i].name, sel[i].len);
		struct check_ctx c = { .bi = bi, .mapped_top = mapped_top, .status = CHECK_PASS };
		char name[32];
		size_t nlen = sel[i].len < sizeof(name) - 1 ? sel[i].len : sizeof(name) - 1;

		memcpy(name, sel[i].name, nlen);
		name[nlen] = '\0';
		if (!chk) {
			console_printf("not ok %u - %s # unknown check\n", i + 1, name);
			failed++;
			continue;
		}
		chk->fn(&c);
		switch (c.status) {
		case CHECK_PASS:
			console_printf("ok %u - %s\n", i + 1, name);
			break;
		case CHECK_SKIP:
			console_printf("ok %u - %s # SKIP %s\n", i + 1, name, c.reason);
			break;
		case CHECK_FAIL:
			console_printf("not ok %u - %s # %s\n", i + 1, name, c.reason);
			failed++;
			break;
		}
	}
	if (failed)
		console_printf("# %u of %u checks failed\n", failed, n);
	guest_exit(failed ? 1 : 0);
}
