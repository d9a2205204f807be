/* Mapping guest RAM: reserve VA space, map each region of the layout from
 * the backend at an HVA congruent to its GPA modulo 1 GiB, apply THP and
 * NUMA policy, then prefault or zero. */
#include "guest-mem/gm.h"
#include "guest-mem/host.h"
#include "guest-mem/overhead.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/mempolicy.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm/log.h"

/* log_fail with ": strerror(-ret)" after the message. */
static int map_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int map_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return log_fail(err, errlen, ret, "%s: %s", msg, strerror(-ret));
}

/* An unnamed file in a mount-point directory, or the named file itself. */
static int map_open_file(const struct gm_config *cfg, char *err, size_t errlen)
{
    const char *name = gm_backend_name(cfg->backend);
    struct stat st;
    int fd, ret;

    if (stat(cfg->path, &st) == 0 && S_ISDIR(st.st_mode)) {
        char tmpl[PATH_MAX];

        fd = open(cfg->path, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
            return fd;
        /* Filesystems without O_TMPFILE: create and unlink at once, so the
         * pages go back to the pool when dvmm exits. */
        if (snprintf(tmpl, sizeof(tmpl), "%s/dvmm-ram-XXXXXX", cfg->path)
            >= (int)sizeof(tmpl))
            return map_fail(err, errlen, -ENAMETOOLONG, "memory.path=%s", cfg->path);
        fd = mkostemp(tmpl, O_CLOEXEC);
        if (fd < 0)
            return map_fail(err, errlen, -errno, "memory.backend=%s: create in memory.path=%s",
                            name, cfg->path);
        if (unlink(tmpl)) {
            ret = -errno;
            close(fd);
            return map_fail(err, errlen, ret, "memory.path=%s: unlink %s", cfg->path, tmpl);
        }
        return fd;
    }
    /* A named file is kept after exit (the user asked for it by name). */
    fd = open(cfg->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return map_fail(err, errlen, -errno, "memory.backend=%s: open memory.path=%s",
                        name, cfg->path);
    return fd;
}

static int map_open_backing(struct guest_mem *gm, const struct gm_config *cfg,
                            char *err, size_t errlen)
{
    uint64_t size = gm->layout.ram_size;
    int fd;

    switch (cfg->backend) {
    case GM_ANON:
        return 0;
    case GM_MEMFD:
        fd = memfd_create("dvmm-guest-ram", MFD_CLOEXEC);
        if (fd < 0)
            return map_fail(err, errlen, -errno, "memory.backend=memfd: memfd_create");
        break;
    case GM_HUGETLBFS:
    case GM_DMEMFS:
        fd = map_open_file(cfg, err, errlen);
        if (fd < 0)
            return fd;
        /* Truncating to 0 first drops whatever an existing named file held:
         * a guest never starts with another run's memory. */
        if (ftruncate(fd, 0)) {
            int ret = -errno;

            close(fd);
            return map_fail(err, errlen, ret, "memory.path=%s: ftruncate", cfg->path);
        }
        break;
    default:
        return map_fail(err, errlen, -EINVAL, "memory.backend=%d", (int)cfg->backend);
    }
    gm->fd = fd;
    if (ftruncate(fd, (off_t)size))
        return map_fail(err, errlen, -errno, "memory.backend=%s: ftruncate to vm.memory=%" PRIu64,
                        gm_backend_name(cfg->backend), size);
    return 0;
}

static int map_bind_node(void *addr, uint64_t len, int node)
{
    unsigned long mask[1024 / (8 * sizeof(unsigned long))] = { 0 };
    const unsigned long bits = 8 * sizeof(unsigned long);

    if (node < 0 || (unsigned long)node >= sizeof(mask) * 8)
        return -EINVAL;
    mask[node / bits] |= 1UL << (node % bits);
    /* The kernel ignores the last bit of maxnode, hence +1. */
    if (syscall(SYS_mbind, addr, len, MPOL_BIND, mask, sizeof(mask) * 8 + 1, 0))
        return -errno;
    return 0;
}

static int map_region(struct guest_mem *gm, const struct gm_config *cfg,
                      struct gm_region *r, uint8_t *hva, char *err, size_t errlen)
{
    const char *name = gm_backend_name(cfg->backend);
    int flags = MAP_FIXED, ret;
    void *p;

    if (cfg->backend == GM_ANON)
        flags |= MAP_PRIVATE | MAP_ANONYMOUS;
    else
        flags |= MAP_SHARED;    /* dmemfs accepts nothing else */
    p = mmap(hva, r->size, PROT_READ | PROT_WRITE, flags,
             cfg->backend == GM_ANON ? -1 : gm->fd,
             cfg->backend == GM_ANON ? 0 : (off_t)r->file_off);
    if (p == MAP_FAILED)
        return map_fail(err, errlen, -errno,
                        "memory.backend=%s: mmap GPA 0x%" PRIx64 "+0x%" PRIx64, name,
                        r->gpa, r->size);
    r->hva = p;

    if (cfg->backend == GM_ANON || cfg->backend == GM_MEMFD) {
        int advice = cfg->thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE;

        /* A kernel without THP refuses the advice; the VM still works. */
        if (madvise(p, r->size, advice))
            log_warn("memory.thp=%s: madvise on GPA 0x%" PRIx64 ": %s",
                     cfg->thp ? "yes" : "no", r->gpa, strerror(errno));
    }
    if (cfg->host_node >= 0) {
        if (cfg->backend == GM_DMEMFS) {
            log_warn("memory.host_node=%d: ignored for memory.backend=dmemfs "
                     "(dpages come from dmem's own per-node pools)", cfg->host_node);
        } else {
            ret = map_bind_node(p, r->size, cfg->host_node);
            if (ret)
                return map_fail(err, errlen, ret, "memory.host_node=%d: mbind GPA 0x%" PRIx64,
                                cfg->host_node, r->gpa);
        }
    }
    return 0;
}

int gm_open_host(struct guest_mem *gm, const struct gm_config *cfg,
                 uint64_t ram_size, const struct gm_host *host,
                 char *err, size_t errlen)
{
    uint8_t *base;
    void *res;
    int ret;

    memset(gm, 0, sizeof(*gm));
    gm->fd = -1;
    gm->backend = cfg->backend;
    gm->host = host;
    gm_poison_init(gm);

    ret = gm_layout_compute(ram_size, &gm->layout);
    if (ret) {
        log_fail(err, errlen, ret, "vm.memory=%" PRIu64 ": %s", ram_size,
                 ret == -ERANGE ? "larger than dvmm supports (64T)" : "must be > 0");
        goto fail;
    }
    ret = gm_backend_check(host, cfg, ram_size, &gm->page_size, err, errlen);
    if (ret)
        goto fail;
    /* Before anything is mapped, so the VmPTE delta is guest RAM's alone. */
    if (cfg->no_overhead_base)
        gm->ovh_base.vmpte_kb = gm->ovh_base.secpt_kb = -1;
    else
        gm_overhead_baseline(gm);
    ret = map_open_backing(gm, cfg, err, errlen);
    if (ret)
        goto fail;

    /* 1 GiB of slack lets the start be rounded up to a 1 GiB boundary.
     * Regions then sit at base + file_off: the high region's 3 GiB offset
     * keeps HVA = GPA (mod 1 GiB) as well. */
    gm->reserve_len = gm->layout.ram_size + GM_GiB;
    res = mmap(NULL, gm->reserve_len, PROT_NONE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED) {
        gm->reserve_len = 0;
        ret = map_fail(err, errlen, -errno, "vm.memory=%" PRIu64 ": reserve VA space",
                       ram_size);
        goto fail;
    }
    gm->reserve = res;
    base = (uint8_t *)gm_align_up((uintptr_t)res, GM_GiB);
    for (unsigned i = 0; i < gm->layout.nr; i++) {
        struct gm_region *r = &gm->layout.r[i];

        ret = map_region(gm, cfg, r, base + r->file_off, err, errlen);
        if (ret)
            goto fail;
    }

    if (cfg->backend == GM_DMEMFS || cfg->prealloc) {
        ret = gm_prefault(gm, cfg->backend == GM_DMEMFS, 0);
        if (ret) {
            map_fail(err, errlen, ret, "memory.backend=%s memory.prealloc=%s: prefault of vm.memory=%" PRIu64,
                     gm_backend_name(cfg->backend), cfg->prealloc ? "yes" : "no", ram_size);
            goto fail;
        }
    }
    gm->pristine = true;
    log_info("guest-mem: %s, %s in %u region(s), host page %s, HVA %p%s",
             gm_backend_name(cfg->backend),
             gm_fmt_size(gm->layout.ram_size, (char[32]){0}, 32), gm->layout.nr,
             gm_fmt_size(gm->page_size, (char[32]){0}, 32), (void *)base,
             cfg->backend == GM_DMEMFS ? ", zeroed" : cfg->prealloc ? ", prefaulted" : "");
    return 0;

fail:
    gm_close(gm);
    return ret;
}

int gm_open(struct guest_mem *gm, const struct gm_config *cfg, uint64_t ram_size,
            char *err, size_t errlen)
{
    return gm_open_host(gm, cfg, ram_size, gm_host_default(), err, errlen);
}

void gm_close(struct guest_mem *gm)
{
    /* host doubles as the "opened" mark, so a second close is harmless. */
    if (!gm->host)
        return;
    if (gm->reserve && munmap(gm->reserve, gm->reserve_len))
        log_warn("guest-mem: munmap of %zu bytes at %p: %s", gm->reserve_len,
                 gm->reserve, strerror(errno));
    gm->reserve = NULL;
    gm->reserve_len = 0;
    for (unsigned i = 0; i < gm->layout.nr; i++)
        gm->layout.r[i].hva = NULL;
    if (gm->fd >= 0)
        close(gm->fd);
    gm->fd = -1;
    gm_poison_destroy(gm);
    gm->host = NULL;
}
