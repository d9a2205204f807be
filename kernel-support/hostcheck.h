/* `dvmm hostcheck`: is this host ready to run dvmm, and (with --config) can
 * this VM start now?  Each check reads only /proc, /sys, debugfs and
 * /dev/kvm (plus the kernel log for the reason a vendor module refused to
 * bind); nothing touches the network or changes the host.
 *
 * Every path is taken under a root directory, "/" for the real host, so the
 * unit tests run every check against a fake tree.  Facts that only ioctls or
 * syscalls can tell come from files at the top of a fake root instead:
 *   <root>/.kvm-caps   key=value lines as kvm_caps_parse reads them
 *                      (vmm/kvm_caps.h): api_version, one key per row of
 *                      the capability table, mce_cap (hex ok).  Absent:
 *                      KVM caps unknown.
 *   <root>/.dmesg      the kernel log (klogctl on the real host).
 *   <root>/.io_uring   "ok" or an errno name/number (the io_uring_setup
 *                      probe on the real host).
 * Paths inside a --config file (kernel, disks) are real paths: the config
 * module checks them as written.  memory.path is matched against the mount
 * table of the root, as written. */
#ifndef DVMM_HOSTCHECK_H
#define DVMM_HOSTCHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum hc_status { HC_OK, HC_WARN, HC_FAIL };

#define HC_NAME_MAX 32
#define HC_TEXT_MAX 512
#define HC_MAX_CHECKS 64

struct hc_check {
    char name[HC_NAME_MAX];
    enum hc_status status;
    char value[HC_TEXT_MAX];   /* what was found */
    char advice[HC_TEXT_MAX];  /* "" when there is nothing to do */
};

struct hc_report {
    char root[4096];
    unsigned n;
    struct hc_check c[HC_MAX_CHECKS];
};

/* Run every check against `root` ("/" or a fake tree); with `config` (may be
 * NULL) also the "can this VM start now" checks.  Returns 0, or -errno when
 * the report itself could not be built (not when a check fails). */
int hostcheck_run(const char *root, const char *config, struct hc_report *rep);

/* The check called `name`, or NULL. */
const struct hc_check *hc_report_find(const struct hc_report *rep, const char *name);
unsigned hc_report_count(const struct hc_report *rep, enum hc_status st);

/* One line per check: STATUS NAME VALUE [=> ADVICE]. */
int hc_report_print(const struct hc_report *rep, FILE *out);
/* One JSON object {root, checks: [{name, status, value, advice}], ok, warn,
 * fail}; malloc'd, the caller frees.  NULL on allocation failure. */
char *hc_report_json(const struct hc_report *rep);

const char *hc_status_name(enum hc_status st);

/* The CLI: argv[0] is "hostcheck"; [--config FILE] [--json] [--root DIR]
 * [--help].  Exit code 0 with no FAIL, 1 with any FAIL, 2 on usage errors. */
int hostcheck_main(int argc, char **argv);

#endif
