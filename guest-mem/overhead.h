/* What guest RAM costs the host beyond the RAM itself, per backend:
 * page tables (measured) and struct page (computed).  Measured figures are
 * deltas of kernel counters against a baseline taken in gm_open before the
 * guest RAM was mapped; computed figures follow a stated rule.  The two
 * kinds are always labelled and never summed without saying so. */
#ifndef DVMM_GM_OVERHEAD_H
#define DVMM_GM_OVERHEAD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "guest-mem/gm.h"

struct json_object;

/* Which rule gave the struct page figure. */
enum gm_spage_rule {
    GM_SPAGE_BASE_4K,          /* kernel-managed 4 KiB pages: 64 B each */
    GM_SPAGE_HUGETLB,          /* hugetlb without vmemmap optimisation */
    GM_SPAGE_HUGETLB_HVO,      /* hugetlb with HVO: one 4 KiB vmemmap page kept per huge page */
    GM_SPAGE_NONE,             /* dmemfs: the memory has no struct page */
};

#define GM_STRUCT_PAGE_BYTES 64ULL

struct gm_overhead_region {
    uint64_t gpa, size;
    uint64_t page_size;
    uint64_t struct_page_bytes;    /* computed */
};

struct gm_overhead {
    enum gm_backend backend;
    uint64_t ram_size, page_size;
    unsigned nr;
    struct gm_overhead_region r[GM_MAX_REGIONS];
    int hvo;                       /* /proc/sys/vm/hugetlb_optimize_vmemmap; -1 unknown */
    enum gm_spage_rule rule;
    uint64_t struct_page_bytes;    /* computed, all regions */
    bool vmpte_valid;              /* measured: this process's VmPTE delta */
    int64_t vmpte_bytes;
    bool secpt_valid;              /* measured: host-wide SecPageTables delta */
    int64_t secpt_bytes;
};

/* Pure arithmetic. */
uint64_t gm_overhead_struct_page_bytes(enum gm_backend b, uint64_t size,
                                       uint64_t page_size, int hvo,
                                       enum gm_spage_rule *rule);
double gm_overhead_per_gib(int64_t bytes, uint64_t ram_size);
const char *gm_overhead_rule_text(enum gm_spage_rule rule);
/* Fill `out` from a layout and two snapshots (either may hold -1s). */
void gm_overhead_compute(const struct gm_layout *l, enum gm_backend b,
                         uint64_t page_size, int hvo,
                         const struct gm_overhead_snapshot *base,
                         const struct gm_overhead_snapshot *now,
                         struct gm_overhead *out);

/* Read VmPTE and SecPageTables through host->sysroot.  Missing counters
 * are -1; returns 0, or -errno when neither could be read. */
int gm_overhead_snapshot(const struct gm_host *host, struct gm_overhead_snapshot *s);
/* Store the baseline in gm->ovh_base (gm_open calls this before mapping). */
int gm_overhead_baseline(struct guest_mem *gm);
/* For a VM that has touched all its RAM: measure now and compute. */
int gm_overhead_measure(const struct guest_mem *gm, struct gm_overhead *out);

int gm_overhead_format_text(const struct gm_overhead *o, FILE *out);
/* A new json-c object (caller puts it); NULL on allocation failure. */
struct json_object *gm_overhead_to_json(const struct gm_overhead *o);

#endif
