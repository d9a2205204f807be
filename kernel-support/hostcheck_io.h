/* hostcheck's I/O lines: io-uring, tun, tun-multiqueue, vhost-net; and
 * config-disk.N for --config. */
#ifndef DVMM_HOSTCHECK_IO_H
#define DVMM_HOSTCHECK_IO_H

#include "kernel-support/hostcheck_ctx.h"
#include "vmm/config.h"

void hc_io_check(struct hc_ctx *x);
void hc_io_check_config(struct hc_ctx *x, const struct dvmm_config *cfg);

#endif
