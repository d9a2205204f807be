/* The host-overhead report (see overhead.h). */
#include "guest-mem/overhead.h"
#include "guest-mem/host.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <string.h>

#define SECPT_NOTE "host-wide: other VMs may disturb"

uint64_t gm_overhead_struct_page_bytes(enum gm_backend b, uint64_t size,
                                       uint64_t page_size, int hvo,
                                       enum gm_spage_rule *rule)
{
    enum gm_spage_rule r;
    uint64_t bytes;

    if (b == GM_DMEMFS) {
        r = GM_SPAGE_NONE;
        bytes = 0;
    } else if (b == GM_HUGETLBFS && hvo > 0 && page_size > GM_PAGE_SIZE) {
        /* HVO remaps a huge page's vmemmap onto one 4 KiB page and frees
         * the rest: a 2 MiB page keeps 4 KiB of 32 KiB, a 1 GiB page
         * 4 KiB of 16 MiB. */
        uint64_t vmemmap = page_size / GM_PAGE_SIZE * GM_STRUCT_PAGE_BYTES;

        r = GM_SPAGE_HUGETLB_HVO;
        bytes = size / page_size * (vmemmap < GM_PAGE_SIZE ? vmemmap : GM_PAGE_SIZE);
    } else {
        r = b == GM_HUGETLBFS ? GM_SPAGE_HUGETLB : GM_SPAGE_BASE_4K;
        bytes = size / GM_PAGE_SIZE * GM_STRUCT_PAGE_BYTES;
    }
    if (rule)
        *rule = r;
    return bytes;
}

double gm_overhead_per_gib(int64_t bytes, uint64_t ram_size)
{
    return ram_size ? (double)bytes * (double)GM_GiB / (double)ram_size : 0.0;
}

const char *gm_overhead_rule_text(enum gm_spage_rule rule)
{
    switch (rule) {
    case GM_SPAGE_BASE_4K:
        return "64 B of struct page per 4 KiB base page (kernel-managed memory)";
    case GM_SPAGE_HUGETLB:
        return "hugetlb without vmemmap optimisation: 64 B of struct page per 4 KiB";
    case GM_SPAGE_HUGETLB_HVO:
        return "hugetlb with vmemmap optimisation (HVO): one 4 KiB vmemmap page kept per huge page";
    case GM_SPAGE_NONE:
        return "dmemfs: reserved memory has no struct page";
    }
    return "?";
}

void gm_overhead_compute(const struct gm_layout *l, enum gm_backend b,
                         uint64_t page_size, int hvo,
                         const struct gm_overhead_snapshot *base,
                         const struct gm_overhead_snapshot *now,
                         struct gm_overhead *out)
{
    memset(out, 0, sizeof(*out));
    out->backend = b;
    out->ram_size = l->ram_size;
    out->page_size = page_size;
    out->hvo = hvo;
    out->nr = l->nr;
    out->rule = GM_SPAGE_BASE_4K;
    for (unsigned i = 0; i < l->nr; i++) {
        struct gm_overhead_region *r = &out->r[i];

        r->gpa = l->r[i].gpa;
        r->size = l->r[i].size;
        r->page_size = page_size;
        r->struct_page_bytes = gm_overhead_struct_page_bytes(b, r->size, page_size,
                                                             hvo, &out->rule);
        out->struct_page_bytes += r->struct_page_bytes;
    }
    out->vmpte_valid = base->vmpte_kb >= 0 && now->vmpte_kb >= 0;
    if (out->vmpte_valid)
        out->vmpte_bytes = (now->vmpte_kb - base->vmpte_kb) * (int64_t)GM_KiB;
    out->secpt_valid = base->secpt_kb >= 0 && now->secpt_kb >= 0;
    if (out->secpt_valid)
        out->secpt_bytes = (now->secpt_kb - base->secpt_kb) * (int64_t)GM_KiB;
}

int gm_overhead_snapshot(const struct gm_host *host, struct gm_overhead_snapshot *s)
{
    char buf[8192];
    long n;

    s->vmpte_kb = s->secpt_kb = -1;
    n = gm_host_read(host, "/proc/self/status", buf, sizeof(buf));
    if (n >= 0 && gm_parse_kb(buf, "VmPTE", &s->vmpte_kb))
        s->vmpte_kb = -1;
    n = gm_host_read(host, "/proc/meminfo", buf, sizeof(buf));
    if (n >= 0 && gm_parse_kb(buf, "SecPageTables", &s->secpt_kb))
        s->secpt_kb = -1;
    return s->vmpte_kb < 0 && s->secpt_kb < 0 ? -ENOENT : 0;
}

int gm_overhead_baseline(struct guest_mem *gm)
{
    return gm_overhead_snapshot(gm->host ? gm->host : gm_host_default(), &gm->ovh_base);
}

int gm_overhead_measure(const struct guest_mem *gm, struct gm_overhead *out)
{
    const struct gm_host *host = gm->host ? gm->host : gm_host_default();
    struct gm_overhead_snapshot now;
    uint64_t hvo;
    int ret;

    ret = gm_overhead_snapshot(host, &now);
    if (gm_host_read_u64(host, "/proc/sys/vm/hugetlb_optimize_vmemmap", &hvo))
        hvo = (uint64_t)-1;
    gm_overhead_compute(&gm->layout, gm->backend, gm->page_size,
                        hvo == (uint64_t)-1 ? -1 : (int)(hvo != 0),
                        &gm->ovh_base, &now, out);
    return ret;
}

static void fmt_measured(FILE *f, const char *label, bool valid, int64_t bytes,
                         uint64_t ram)
{
    if (valid)
        fprintf(f, "  %-58s %14" PRId64 " B  %12.0f B/GiB\n", label, bytes,
                gm_overhead_per_gib(bytes, ram));
    else
        fprintf(f, "  %-58s %16s  %14s\n", label, "n/a", "(counter missing)");
}

int gm_overhead_format_text(const struct gm_overhead *o, FILE *f)
{
    char a[32], b[32];
    int64_t measured = 0;

    fprintf(f, "guest memory overhead: backend %s, guest RAM %s, host page size %s\n",
            gm_backend_name(o->backend), gm_fmt_size(o->ram_size, a, sizeof(a)),
            gm_fmt_size(o->page_size, b, sizeof(b)));
    for (unsigned i = 0; i < o->nr; i++) {
        const struct gm_overhead_region *r = &o->r[i];

        fprintf(f, "region %u: GPA 0x%" PRIx64 ", guest RAM %s, host page size %s\n",
                i, r->gpa, gm_fmt_size(r->size, a, sizeof(a)),
                gm_fmt_size(r->page_size, b, sizeof(b)));
        fprintf(f, "  %-58s %14" PRIu64 " B  %12.0f B/GiB\n",
                "struct page (computed)", r->struct_page_bytes,
                gm_overhead_per_gib((int64_t)r->struct_page_bytes, r->size));
    }
    fprintf(f, "struct page rule: %s", gm_overhead_rule_text(o->rule));
    if (o->backend == GM_HUGETLBFS)
        fprintf(f, " (hugetlb_optimize_vmemmap=%s)",
                o->hvo < 0 ? "unreadable, assumed 0" : o->hvo ? "1" : "0");
    fprintf(f, "\nwhole VM:\n");
    fmt_measured(f, "VMM page tables (measured: VmPTE delta)",
                 o->vmpte_valid, o->vmpte_bytes, o->ram_size);
    fmt_measured(f, "KVM secondary page tables (measured: SecPageTables delta)",
                 o->secpt_valid, o->secpt_bytes, o->ram_size);
    fprintf(f, "    (" SECPT_NOTE ")\n");
    fprintf(f, "  %-58s %14" PRIu64 " B  %12.0f B/GiB\n", "struct page (computed)",
            o->struct_page_bytes,
            gm_overhead_per_gib((int64_t)o->struct_page_bytes, o->ram_size));
    if (o->vmpte_valid)
        measured += o->vmpte_bytes;
    if (o->secpt_valid)
        measured += o->secpt_bytes;
    fprintf(f, "  %-58s %14" PRId64 " B  %12.0f B/GiB\n",
            "total (measured + computed)", measured + (int64_t)o->struct_page_bytes,
            gm_overhead_per_gib(measured + (int64_t)o->struct_page_bytes, o->ram_size));
    return ferror(f) ? -EIO : 0;
}

static int json_add(struct json_object *obj, const char *key, struct json_object *v)
{
    if (!v)
        return -ENOMEM;
    return json_object_object_add(obj, key, v) ? -ENOMEM : 0;
}

static struct json_object *json_measured(bool valid, int64_t bytes, uint64_t ram,
                                         const char *source, const char *note)
{
    struct json_object *m = json_object_new_object();
    int ret = 0;

    if (!m)
        return NULL;
    ret |= json_add(m, "kind", json_object_new_string("measured"));
    ret |= json_add(m, "source", json_object_new_string(source));
    if (valid) {
        ret |= json_add(m, "bytes", json_object_new_int64(bytes));
        ret |= json_add(m, "bytes_per_gib", json_object_new_double(
                            gm_overhead_per_gib(bytes, ram)));
    } else {
        /* json-c spells null as a NULL value */
        ret |= json_object_object_add(m, "bytes", NULL) ? -ENOMEM : 0;
    }
    if (note)
        ret |= json_add(m, "note", json_object_new_string(note));
    if (ret) {
        json_object_put(m);
        return NULL;
    }
    return m;
}

struct json_object *gm_overhead_to_json(const struct gm_overhead *o)
{
    struct json_object *root = json_object_new_object();
    struct json_object *regions = json_object_new_array();
    struct json_object *sp = json_object_new_object();
    int64_t total = (int64_t)o->struct_page_bytes;
    int ret = 0;

    if (!root || !regions || !sp) {
        json_object_put(root);
        json_object_put(regions);
        json_object_put(sp);
        return NULL;
    }
    /* root owns both from here, so one put on error frees everything. */
    if (json_object_object_add(root, "regions", regions)) {
        json_object_put(root);
        json_object_put(regions);
        json_object_put(sp);
        return NULL;
    }
    if (json_object_object_add(root, "struct_page", sp)) {
        json_object_put(root);
        json_object_put(sp);
        return NULL;
    }
    ret |= json_add(root, "backend", json_object_new_string(gm_backend_name(o->backend)));
    ret |= json_add(root, "guest_ram_bytes", json_object_new_int64((int64_t)o->ram_size));
    ret |= json_add(root, "host_page_size", json_object_new_int64((int64_t)o->page_size));
    for (unsigned i = 0; i < o->nr; i++) {
        struct json_object *r = json_object_new_object();

        if (!r || json_object_array_add(regions, r)) {
            json_object_put(r);
            ret = -ENOMEM;
            break;
        }
        ret |= json_add(r, "gpa", json_object_new_int64((int64_t)o->r[i].gpa));
        ret |= json_add(r, "guest_ram_bytes", json_object_new_int64((int64_t)o->r[i].size));
        ret |= json_add(r, "host_page_size", json_object_new_int64((int64_t)o->r[i].page_size));
        ret |= json_add(r, "struct_page_bytes_computed",
                        json_object_new_int64((int64_t)o->r[i].struct_page_bytes));
    }
    ret |= json_add(sp, "kind", json_object_new_string("computed"));
    ret |= json_add(sp, "rule", json_object_new_string(gm_overhead_rule_text(o->rule)));
    if (o->hvo < 0)
        ret |= json_object_object_add(sp, "hugetlb_optimize_vmemmap", NULL) ? -ENOMEM : 0;
    else
        ret |= json_add(sp, "hugetlb_optimize_vmemmap", json_object_new_int(o->hvo));
    ret |= json_add(sp, "bytes", json_object_new_int64((int64_t)o->struct_page_bytes));
    ret |= json_add(sp, "bytes_per_gib", json_object_new_double(
                        gm_overhead_per_gib((int64_t)o->struct_page_bytes, o->ram_size)));
    ret |= json_add(root, "vmm_page_tables",
                    json_measured(o->vmpte_valid, o->vmpte_bytes, o->ram_size,
                                  "VmPTE delta, /proc/self/status", NULL));
    ret |= json_add(root, "kvm_secondary_page_tables",
                    json_measured(o->secpt_valid, o->secpt_bytes, o->ram_size,
                                  "SecPageTables delta, /proc/meminfo", SECPT_NOTE));
    if (o->vmpte_valid)
        total += o->vmpte_bytes;
    if (o->secpt_valid)
        total += o->secpt_bytes;
    ret |= json_add(root, "total_measured_plus_computed_bytes", json_object_new_int64(total));
    ret |= json_add(root, "total_measured_plus_computed_per_gib",
                    json_object_new_double(gm_overhead_per_gib(total, o->ram_size)));
    if (ret) {
        json_object_put(root);
        return NULL;
    }
    return root;
}
