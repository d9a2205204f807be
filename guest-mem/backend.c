/* Backend checks: everything about the host that can make gm_open fail is
 * checked here first, so a bad [memory] section is one clear line before
 * any VM exists, rather than a SIGBUS halfway through boot. */
#include "guest-mem/gm.h"
#include "guest-mem/host.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm/log.h"

const char *gm_backend_name(enum gm_backend b)
{
    switch (b) {
    case GM_ANON: return "anon";
    case GM_MEMFD: return "memfd";
    case GM_HUGETLBFS: return "hugetlbfs";
    case GM_DMEMFS: return "dmemfs";
    }
    return "?";
}

bool gm_backend_allows_odirect(const struct guest_mem *gm)
{
    return gm->backend != GM_DMEMFS;
}

/* statfs the path, or its directory when the file is yet to be created. */
/* statfs of path, or of its directory when path is a file yet to be
 * created there (then *parent names that directory, else it is ""). */
static int backend_statfs(const struct gm_host *h, const char *path,
                          struct statfs *st, char *parent, size_t plen)
{
    char dir[PATH_MAX];
    int ret = h->statfs(h, path, st);

    parent[0] = '\0';
    if (ret != -ENOENT)
        return ret;
    snprintf(dir, sizeof(dir), "%s", path);
    snprintf(parent, plen, "%s", dirname(dir));
    return h->statfs(h, parent, st);
}

static int check_hugetlb_free(const struct gm_host *h, uint64_t ram_size,
                              uint64_t page, char *err, size_t errlen)
{
    char file[128], sz[32];
    uint64_t free_pages, resv = 0, need = ram_size / page;
    int ret;

    snprintf(file, sizeof(file),
             "/sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB/free_hugepages",
             (uint64_t)(page / GM_KiB));
    ret = gm_host_read_u64(h, file, &free_pages);
    if (ret) {
        /* mmap of a MAP_SHARED hugetlbfs file still reserves the pages and
         * fails cleanly, so an unreadable count is not fatal. */
        log_warn("memory.backend=hugetlbfs: cannot read %s (%s); "
                 "relying on the mmap reservation", file, strerror(-ret));
        return 0;
    }
    /* Free pages already promised to other mappings are not ours to use. */
    snprintf(file, sizeof(file),
             "/sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB/resv_hugepages",
             (uint64_t)(page / GM_KiB));
    if (gm_host_read_u64(h, file, &resv) || resv > free_pages)
        resv = 0;
    if (need > free_pages - resv)
        return log_fail(err, errlen, -ENOMEM,
                        "memory.backend=hugetlbfs: vm.memory=%s needs %" PRIu64
                        " pages of %s but only %" PRIu64 " are free (free_hugepages %"
                        PRIu64 " - resv_hugepages %" PRIu64 ")",
                        gm_fmt_size(ram_size, sz, sizeof(sz)), need,
                        gm_fmt_size(page, (char[32]){0}, 32), free_pages - resv,
                        free_pages, resv);
    return 0;
}

/* dmemfs only maps dpages with PMD/PUD entries when THP allows it for the
 * VMA; with THP "never" everything silently falls back to 4 KiB PTEs and
 * the overhead the user is measuring is not the one they asked for. */
static void check_dmem_thp(const struct gm_host *h, uint64_t page)
{
    char buf[128];

    if (page <= GM_PAGE_SIZE ||
        gm_host_read(h, "/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof(buf)) < 0)
        return;
    if (strstr(buf, "[never]"))
        log_warn("memory.backend=dmemfs: transparent_hugepage is [never], so %s dpages "
                 "will be mapped with 4 KiB PTEs", gm_fmt_size(page, (char[32]){0}, 32));
}

static int check_dmem_free(const struct gm_host *h, uint64_t ram_size,
                           uint64_t page, char *err, size_t errlen)
{
    uint64_t free_dpages, shift, need;
    char sz[32];

    /* debugfs is root-only and may be unmounted; capacity is unknowable
     * then and the fault path is the only judge. */
    if (gm_host_read_u64(h, "/sys/kernel/debug/dmem/free_dpages", &free_dpages))
        return 0;
    if (gm_host_read_u64(h, "/sys/kernel/debug/dmem/dpage_shift", &shift) ||
        shift >= 64)
        shift = (uint64_t)__builtin_ctzll(page);
    else if ((1ULL << shift) != page)
        log_warn("memory.backend=dmemfs: dpage_shift %" PRIu64
                 " disagrees with statfs f_bsize %" PRIu64, shift, page);
    need = ram_size >> shift;
    if (need > free_dpages)
        return log_fail(err, errlen, -ENOMEM,
                        "memory.backend=dmemfs: vm.memory=%s needs %" PRIu64
                        " dpages of %s but only %" PRIu64 " are free "
                        "(/sys/kernel/debug/dmem/free_dpages)",
                        gm_fmt_size(ram_size, sz, sizeof(sz)), need,
                        gm_fmt_size(1ULL << shift, (char[32]){0}, 32), free_dpages);
    return 0;
}

int gm_backend_check(const struct gm_host *h, const struct gm_config *cfg,
                     uint64_t ram_size, uint64_t *page_size,
                     char *err, size_t errlen)
{
    const char *name = gm_backend_name(cfg->backend);
    uint64_t magic, page;
    struct statfs st;
    char sz[32], parent[PATH_MAX];
    int ret;

    if (cfg->host_node >= 0) {
        char node[64], path[PATH_MAX];

        snprintf(node, sizeof(node), "/sys/devices/system/node/node%d",
                 cfg->host_node);
        if (gm_host_path(h, node, path, sizeof(path)) || access(path, F_OK))
            return log_fail(err, errlen, -EINVAL,
                            "memory.host_node=%d: no such host NUMA node (%s)",
                            cfg->host_node, node);
    }
    if (cfg->backend == GM_ANON || cfg->backend == GM_MEMFD) {
        *page_size = GM_PAGE_SIZE;
        return 0;
    }

    magic = cfg->backend == GM_HUGETLBFS ? HUGETLBFS_MAGIC : GM_DMEMFS_MAGIC;
    if (!cfg->path[0])
        return log_fail(err, errlen, -EINVAL,
                        "memory.path is required for memory.backend=%s", name);
    ret = backend_statfs(h, cfg->path, &st, parent, sizeof(parent));
    if (ret == -ENOENT && parent[0])
        return log_fail(err, errlen, ret,
                        "memory.path=%s does not exist, nor does its directory %s",
                        cfg->path, parent);
    if (ret)
        return log_fail(err, errlen, ret,
                        "memory.path=%s: statfs: %s", cfg->path, strerror(-ret));
    if ((uint64_t)(uint32_t)st.f_type != magic && parent[0]) {
        /* A missing file is only fine inside a mount of the right kind. */
        return log_fail(err, errlen, -ENOENT,
                        "memory.path=%s does not exist, and its directory %s is not on %s "
                        "(f_type 0x%" PRIx64 ", want 0x%" PRIx64 ") for memory.backend=%s",
                        cfg->path, parent, name, (uint64_t)(uint32_t)st.f_type, magic, name);
    }
    if ((uint64_t)(uint32_t)st.f_type != magic)
        return log_fail(err, errlen, -EINVAL,
                        "memory.path=%s is not on %s (f_type 0x%" PRIx64 ", want 0x%" PRIx64
                        ") for memory.backend=%s", cfg->path, name,
                        (uint64_t)(uint32_t)st.f_type, magic, name);
    page = (uint64_t)st.f_bsize;
    if (page < GM_PAGE_SIZE || (page & (page - 1)) || page > GM_GiB)
        return log_fail(err, errlen, -EINVAL, "memory.path=%s: unsupported page size %" PRIu64
                        " (statfs f_bsize)", cfg->path, page);
    if (ram_size == 0 || ram_size % page)
        return log_fail(err, errlen, -EINVAL,
                        "vm.memory=%s is not a multiple of the %s page size %s of memory.path=%s",
                        gm_fmt_size(ram_size, sz, sizeof(sz)), name,
                        gm_fmt_size(page, (char[32]){0}, 32), cfg->path);
    if (cfg->backend == GM_DMEMFS)
        check_dmem_thp(h, page);
    ret = cfg->backend == GM_HUGETLBFS
        ? check_hugetlb_free(h, ram_size, page, err, errlen)
        : check_dmem_free(h, ram_size, page, err, errlen);
    if (ret)
        return ret;
    *page_size = page;
    return 0;
}
