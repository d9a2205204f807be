/* hostcheck's memory lines: thp, hugetlb-2M/1G pools, hugetlb-vmemmap; and
 * config-memory for --config, judged by gm_backend_check, the check dvmm
 * run makes, over the run's root. */
#ifndef DVMM_HOSTCHECK_MEM_H
#define DVMM_HOSTCHECK_MEM_H

#include "kernel-support/hostcheck_ctx.h"
#include "vmm/config.h"

void hc_mem_check(struct hc_ctx *x, const char *cpuinfo);
/* Needs hc_dmem_check's dpage facts for dmemfs. */
void hc_mem_check_config(struct hc_ctx *x, const struct dvmm_config *cfg);

#endif
