/* What the hostcheck modules share: the context of one run, and the two
 * calls that add a line to the report (implemented in hostcheck.c).  Each
 * area is a module of its own with a header as its interface:
 *   hostcheck_root  reading the host tree, real ("/") or fake (--root)
 *   hostcheck_kvm   /dev/kvm, the KVM flavour and capabilities, vCPUs
 *   hostcheck_mem   THP, hugetlb pools, the [memory] section of --config
 *   hostcheck_dmem  dmemfs, its reservations, memory-failure handling
 *   hostcheck_io    io_uring, TAP, vhost-net, the disks of --config
 * hostcheck.c is the report, the driver and the CLI. */
#ifndef DVMM_HOSTCHECK_CTX_H
#define DVMM_HOSTCHECK_CTX_H

#include <stdbool.h>
#include <stdint.h>

#include "guest-mem/gm.h"
#include "kernel-support/hostcheck.h"
#include "vmm/kvm_caps.h"

struct hc_ctx {
    const char *root;
    bool real;                     /* root is "/": ioctls and syscalls allowed */
    /* The root as guest-mem's host: its reads and the backend checks go
     * through it, with statfs answered from the root's mount table when
     * the root is fake. */
    struct gm_host host;
    struct hc_report *rep;
    char *dmesg;                   /* kernel log, NULL when unreadable */
    char *mounts;                  /* /proc/mounts, NULL when unreadable */
    bool kvm_dev;                  /* /dev/kvm usable */
    bool caps_known;               /* caps came from /dev/kvm or .kvm-caps */
    struct kvm_cap_set caps;
    /* Set by hostcheck_dmem, read by the [memory] check of --config. */
    bool dmemfs;                   /* registered in /proc/filesystems */
    uint64_t dpage_size;           /* from debugfs or the mount; 0 unknown */
    uint64_t free_dpages;
    bool have_free_dpages;
    struct hc_check overflow;      /* sink once the report is full */
};

/* Add a line to the report (the value printf-formatted) and return it, so
 * that hc_advise can add the advice; once the report is full the line goes
 * to a sink, with a warning in the log. */
struct hc_check *hc_add(struct hc_ctx *x, const char *name, enum hc_status st,
                        const char *vfmt, ...) __attribute__((format(printf, 4, 5)));
void hc_advise(struct hc_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
