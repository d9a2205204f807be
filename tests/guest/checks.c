#include "checks.h"

#include <stdarg.h>

#include "fmt.h"
#include "lib.h"

static const struct check check_table[] = {
	{ "none", check_none },
	{ "boot", check_boot },
	{ "mem", check_mem },
	{ "smp", check_smp },
	{ "reset", check_reset },
	{ "demo", check_demo },
	{ "fault", check_fault },
	{ "trap", check_trap },
	{ "triple", check_triple },
	{ "mce", check_mce },
	{ "mcebench", check_mcebench },
	{ "blk", check_blk },
	{ "blkcrash", check_blkcrash },
	{ "net", check_net },
};

const struct check *checks_find(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(check_table) / sizeof(check_table[0]); i++)
		if (strlen(check_table[i].name) == len && !strncmp(check_table[i].name, name, len))
			return &check_table[i];
	return NULL;
}

void check_fail(struct check_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->status == CHECK_FAIL)
		return;
	c->status = CHECK_FAIL;
	va_start(ap, fmt);
	fmt_vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
}

void check_skip(struct check_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->status == CHECK_FAIL)
		return;
	c->status = CHECK_SKIP;
	va_start(ap, fmt);
	fmt_vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
}

/* For start-up benchmarks: nothing to do. */
void check_none(struct check_ctx *c)
{
	(void)c;
}
