/* hostcheck's memory-failure and dmemfs lines: dmemfs, dmem-cmdline
 * (dmem= and memmap=SIZE$ADDR reservations), dmemfs-mounts, dmem-pages,
 * dmem-memmap (the ranges must be System RAM), memory-failure.  Sets
 * hc_ctx.dmemfs, dpage_size and the free dpage count. */
#ifndef DVMM_HOSTCHECK_DMEM_H
#define DVMM_HOSTCHECK_DMEM_H

#include "kernel-support/hostcheck_ctx.h"

void hc_dmem_check(struct hc_ctx *x, const char *cmdline);

#endif
