/* Guest physical memory: the layout (one source of truth for e820, memslots,
 * MP table and the overhead report), the backend mappings, GPA<->HVA
 * translation, and the poisoned-page list.
 *
 * Layout rule: RAM below 4 GiB is [0, min(ram, 3 GiB)); the rest starts at
 * 4 GiB, so the 32-bit hole is [3 GiB, 4 GiB).  Each region's HVA has the
 * same offset modulo 1 GiB as its GPA, so host and KVM can both use 1 GiB
 * mappings. */
#ifndef DVMM_GM_H
#define DVMM_GM_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/statfs.h>

#define GM_KiB (1ULL << 10)
#define GM_MiB (1ULL << 20)
#define GM_GiB (1ULL << 30)
#define GM_PAGE_SIZE 4096ULL
#define GM_LOW_RAM_MAX (3 * GM_GiB)   /* start of the 32-bit hole */
#define GM_HIGH_RAM_BASE (4 * GM_GiB)
#define GM_MAX_REGIONS 2
/* 64 TiB: far above any host here, and keeps every GPA end below 2^52. */
#define GM_MAX_RAM (64ULL << 40)
#define GM_DMEMFS_MAGIC 0x2ace90c6
#define GM_PREFAULT_MAX_THREADS 16

enum gm_backend { GM_ANON, GM_MEMFD, GM_HUGETLBFS, GM_DMEMFS };

/* The [memory] section, validated for syntax by the config module; the
 * host-dependent checks (statfs magic, free pages) are gm_open's. */
struct gm_config {
    enum gm_backend backend;
    char path[PATH_MAX];   /* hugetlbfs/dmemfs mount point or file in one */
    bool prealloc;
    bool thp;              /* anon and memfd only */
    int host_node;         /* -1: no binding */
    /* No /proc baseline for the overhead report (two /proc reads at
     * start-up): nothing will measure.  gm's overhead report then says
     * n/a for the measured counters. */
    bool no_overhead_base;
};

/* Everything gm asks of the host outside its own mappings goes through
 * here, so unit tests can point it at a fake tree and a mocked statfs. */
struct gm_host {
    /* 0 or -errno, like statfs(2) but returning the error.  It gets the
     * host itself so that a fake one can answer from its sysroot's mount
     * table (dvmm hostcheck --root). */
    int (*statfs)(const struct gm_host *h, const char *path, struct statfs *st);
    /* Prefix for every /sys and /proc read; "" is the real root. */
    const char *sysroot;
};
const struct gm_host *gm_host_default(void);

/* Host counters for the overhead report; -1 where the host lacks them. */
struct gm_overhead_snapshot {
    int64_t vmpte_kb;      /* /proc/self/status VmPTE */
    int64_t secpt_kb;      /* /proc/meminfo SecPageTables (host-wide) */
};

struct gm_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *hva;          /* NULL until mapped */
    uint64_t file_off;     /* offset in the backing file (memfd/hugetlbfs/dmemfs) */
};

struct gm_layout {
    uint64_t ram_size;     /* page-rounded */
    unsigned nr;
    struct gm_region r[GM_MAX_REGIONS];
};

struct guest_mem {
    struct gm_layout layout;
    enum gm_backend backend;
    uint64_t page_size;    /* host page size of the backend */
    int fd;                /* -1 for anon */
    void *reserve;         /* the whole reserved VA range, for munmap */
    size_t reserve_len;
    pthread_mutex_t poison_lock;
    uint64_t *poison;      /* sorted GPAs of poisoned 4 KiB pages */
    unsigned npoison, poison_cap;
    const struct gm_host *host;
    /* Taken just before guest RAM is mapped, for gm_overhead_measure. */
    struct gm_overhead_snapshot ovh_base;
    /* Every byte of guest RAM still reads as zero (gm_open's fresh or
     * truncated backing; the kernel loader clears it once it writes): the
     * loader need not clear a bss, and fault in its pages, on first boot. */
    bool pristine;
};

/* Pure arithmetic: fill `out` for `ram_size` bytes (rounded up to 4 KiB).
 * -EINVAL for 0. */
int gm_layout_compute(uint64_t ram_size, struct gm_layout *out);

/* Round `v` up/down to `align` (a power of two). */
static inline uint64_t gm_align_up(uint64_t v, uint64_t align)
{ return (v + align - 1) & ~(align - 1); }
static inline uint64_t gm_align_down(uint64_t v, uint64_t align)
{ return v & ~(align - 1); }

/* Map guest RAM per cfg.  On failure writes a one-line message naming the
 * config key and value to err and returns -errno.  For hugetlbfs/dmemfs a
 * memory.path directory gets an unnamed file (freed at exit); a named file
 * is truncated (guest RAM never starts with old contents) and kept. */
int gm_open(struct guest_mem *gm, const struct gm_config *cfg, uint64_t ram_size,
            char *err, size_t errlen);
/* gm_open with the host's statfs and sysfs routed through `host`. */
int gm_open_host(struct guest_mem *gm, const struct gm_config *cfg,
                 uint64_t ram_size, const struct gm_host *host,
                 char *err, size_t errlen);
/* Safe on a zeroed or already-closed guest_mem. */
void gm_close(struct guest_mem *gm);

/* The host checks gm_open runs before mapping anything: filesystem magic,
 * page size (statfs f_bsize), RAM a multiple of it, enough free huge pages
 * or dpages.  Sets *page_size.  One-line error in err, -errno. */
int gm_backend_check(const struct gm_host *host, const struct gm_config *cfg,
                     uint64_t ram_size, uint64_t *page_size,
                     char *err, size_t errlen);

/* False for dmemfs: get_user_pages fails there, so O_DIRECT into guest RAM
 * cannot work and block backends must use buffered I/O or bounce buffers. */
bool gm_backend_allows_odirect(const struct guest_mem *gm);

/* Write-fault (contents kept) or, when `zero`, memset to 0 all guest RAM with one thread per
 * host CPU, at most GM_PREFAULT_MAX_THREADS (0 = that default).  gm_open
 * calls it for prealloc and always zeroes dmemfs. */
int gm_prefault(struct guest_mem *gm, bool zero, unsigned max_threads);

/* True if [gpa, gpa+len) lies within one region of the layout (len 0 = 1). */
bool gm_layout_contains(const struct gm_layout *l, uint64_t gpa, uint64_t len);

/* HVA for [gpa, gpa+len), or NULL if any byte of it is outside guest RAM
 * or the range crosses a region end.  len 0 is treated as 1. */
void *gm_gpa_to_hva(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
/* 0 and *gpa set, or -EFAULT if hva is not guest RAM. */
int gm_hva_to_gpa(const struct guest_mem *gm, const void *hva, uint64_t *gpa);

/* Poison list setup, done by gm_open; for a guest_mem built by hand. */
void gm_poison_init(struct guest_mem *gm);
void gm_poison_destroy(struct guest_mem *gm);
/* Poisoned pages (thread-safe): add every 4 KiB page of [gpa, gpa+len). -EFAULT outside RAM. */
int gm_poison_add(struct guest_mem *gm, uint64_t gpa, uint64_t len);
bool gm_poison_query(struct guest_mem *gm, uint64_t gpa);
/* Copy up to max sorted GPAs; returns the total count. */
unsigned gm_poison_list(struct guest_mem *gm, uint64_t *out, unsigned max);
/* A consistent malloc'd copy of the whole list (*out NULL when empty; the
 * caller frees).  The list may grow between sizing and copying (an AO event
 * on another thread), which this handles.  0 or -ENOMEM. */
int gm_poison_snapshot(struct guest_mem *gm, uint64_t **out, unsigned *n);

const char *gm_backend_name(enum gm_backend b);

#endif
