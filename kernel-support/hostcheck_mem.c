/* hostcheck's memory lines: see hostcheck_mem.h. */
#include "kernel-support/hostcheck_mem.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "guest-mem/host.h"
#include "kernel-support/hostcheck_root.h"

static void hc_mem_check_thp(struct hc_ctx *x)
{
    char line[256];
    struct hc_check *c;
    if (hc_root_read_line(x, "/sys/kernel/mm/transparent_hugepage/enabled", line, sizeof(line))) {
        c = hc_add(x, "thp", HC_WARN, "absent: kernel without transparent huge pages");
        hc_advise(c, "dmemfs and THP-backed RAM fall back to 4 KiB mappings");
        return;
    }
    const char *b = strchr(line, '['), *e = b ? strchr(b, ']') : NULL;
    char mode[32] = "?";
    if (b && e && e - b - 1 < (long)sizeof(mode))
        snprintf(mode, sizeof(mode), "%.*s", (int)(e - b - 1), b + 1);
    bool on = !strcmp(mode, "always") || !strcmp(mode, "madvise");
    c = hc_add(x, "thp", on ? HC_OK : HC_WARN, "%s", mode);
    if (!on)
        hc_advise(c, "dmemfs huge (2 MiB/1 GiB) faults need THP for the VMA: echo madvise > /sys/kernel/mm/transparent_hugepage/enabled");
}

struct hc_mem_pool { bool present; uint64_t total, free, resv; };

static struct hc_mem_pool hc_mem_hugetlb_pool(const struct hc_ctx *x, uint64_t size)
{
    struct hc_mem_pool p = { 0 };
    char base[128], f[192];
    snprintf(base, sizeof(base), "/sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB", size >> 10);
    snprintf(f, sizeof(f), "%s/nr_hugepages", base);
    if (hc_root_read_u64(x, f, &p.total))
        return p;
    p.present = true;
    snprintf(f, sizeof(f), "%s/free_hugepages", base);
    hc_root_read_u64(x, f, &p.free);
    snprintf(f, sizeof(f), "%s/resv_hugepages", base);
    hc_root_read_u64(x, f, &p.resv);
    if (p.resv > p.free)
        p.resv = p.free;
    return p;
}

static void hc_mem_check_hugetlb(struct hc_ctx *x, const char *cpuinfo)
{
    static const struct { uint64_t size; const char *name; } pools[] = {
        { 2 * GM_MiB, "hugetlb-2M" }, { GM_GiB, "hugetlb-1G" },
    };
    for (unsigned i = 0; i < 2; i++) {
        struct hc_mem_pool p = hc_mem_hugetlb_pool(x, pools[i].size);
        struct hc_check *c;
        char sz[32];
        if (!p.present) {
            c = hc_add(x, pools[i].name, HC_WARN, "no pool (no /sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB)",
                       pools[i].size >> 10);
            hc_advise(c, "%s", pools[i].size == GM_GiB && !hc_root_cpu_flag(cpuinfo, "pdpe1gb")
                      ? "the CPU lacks pdpe1gb: no 1 GiB pages on this host"
                      : "kernel without CONFIG_HUGETLBFS, or this size is unsupported");
            continue;
        }
        gm_fmt_size((p.free - p.resv) * pools[i].size, sz, sizeof(sz));
        c = hc_add(x, pools[i].name, HC_OK, "total %" PRIu64 ", free %" PRIu64 ", reserved %" PRIu64 " (%s available)",
                   p.total, p.free, p.resv, sz);
        if (!p.total)
            hc_advise(c, "reserve pages for [memory] backend=hugetlbfs: echo N > /sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB/nr_hugepages",
                      pools[i].size >> 10);
    }

    uint64_t hvo;
    struct hc_check *c;
    int r = hc_root_read_u64(x, "/proc/sys/vm/hugetlb_optimize_vmemmap", &hvo);
    if (r) {
        c = hc_add(x, "hugetlb-vmemmap", HC_WARN, "absent: kernel without CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP");
        hc_advise(c, "every huge page keeps its full struct page array (16 MiB per 1 GiB page)");
    } else if (!hvo) {
        c = hc_add(x, "hugetlb-vmemmap", HC_WARN, "off (hugetlb_optimize_vmemmap=0)");
        hc_advise(c, "echo 1 > /proc/sys/vm/hugetlb_optimize_vmemmap before reserving pages: frees most of the struct page memory of each huge page");
    } else {
        hc_add(x, "hugetlb-vmemmap", HC_OK, "on (hugetlb_optimize_vmemmap=%" PRIu64 ")", hvo);
    }
}

void hc_mem_check(struct hc_ctx *x, const char *cpuinfo)
{
    hc_mem_check_thp(x);
    hc_mem_check_hugetlb(x, cpuinfo);
}

void hc_mem_check_config(struct hc_ctx *x, const struct dvmm_config *cfg)
{
    char need_s[32], have_s[32], err[512] = "";
    struct hc_check *c;
    uint64_t ram = cfg->vm.memory, psz = 0;
    const char *bname = gm_backend_name(cfg->memory.backend);
    bool dmem = cfg->memory.backend == GM_DMEMFS;
    const char *type = dmem ? "dmemfs" : "hugetlbfs";
    struct hc_root_mount m;

    /* What `dvmm run` (and `dvmm check`) decide about this host's memory,
     * by the same function, over this root. */
    int r = gm_backend_check(&x->host, &cfg->memory, ram, &psz, err, sizeof(err));
    if (r) {
        c = hc_add(x, "config-memory", HC_FAIL, "%s", err);
        if (r == -ENOMEM)
            hc_advise(c, "%s", dmem ? "free dpages (stop other VMs) or reserve more (dmem=, or memmap=SIZE$ADDR for the project's module)"
                                   : "reserve more: echo N > /sys/kernel/mm/hugepages/hugepages-<size>kB/nr_hugepages");
        else if (cfg->memory.backend != GM_ANON && cfg->memory.backend != GM_MEMFD &&
                 !hc_root_find_mount(x->mounts, cfg->memory.path, type, &m))
            hc_advise(c, "%s", dmem ? "mount one: kernel-support/dmemfs-setup -o pagesize=1G DIR"
                                   : "mount one: mount -t hugetlbfs -o pagesize=2M none DIR");
        else
            hc_advise(c, "`dvmm run` refuses this [memory] section on this host");
        return;
    }

    if (cfg->memory.backend == GM_ANON || cfg->memory.backend == GM_MEMFD) {
        uint64_t avail = hc_root_meminfo(&x->host, "MemAvailable");
        gm_fmt_size(ram, need_s, sizeof(need_s));
        gm_fmt_size(avail, have_s, sizeof(have_s));
        c = hc_add(x, "config-memory", avail >= ram ? HC_OK : HC_WARN,
                   "backend=%s needs %s, MemAvailable %s", bname, need_s, have_s);
        if (avail < ram)
            hc_advise(c, "the guest may be OOM-killed once it touches all its memory; lower vm.memory");
        return;
    }
    const char *where = hc_root_find_mount(x->mounts, cfg->memory.path, type, &m) ? m.dir
                                                                            : cfg->memory.path;
    /* gm_backend_check made vm.memory a multiple of the page size */
    uint64_t need = ram / psz, have;
    bool known = true;
    if (dmem) {
        known = x->have_free_dpages;
        have = x->free_dpages;
    } else {
        struct hc_mem_pool p = hc_mem_hugetlb_pool(x, psz);
        known = p.present;
        have = p.free - p.resv;
    }
    gm_fmt_size(psz, have_s, sizeof(have_s));
    if (!known) {
        c = hc_add(x, "config-memory", HC_WARN, "backend=%s needs %" PRIu64 " x %s pages; free count unknown",
                   bname, need, have_s);
        hc_advise(c, "%s", dmem ? "mount debugfs to read dmem/free_dpages" : "no hugetlb pool of that size");
        return;
    }
    hc_add(x, "config-memory", HC_OK, "backend=%s at %s needs %" PRIu64 " x %s pages, %" PRIu64 " free",
           bname, where, need, have_s, have);
}
