/* mce: machine-check recovery as the guest sees it (stub, filled in next). */
#include "checks.h"

void check_mce(struct check_ctx *c)
{
	check_skip(c, "not written yet");
}

void check_mcebench(struct check_ctx *c)
{
	check_skip(c, "not written yet");
}
