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

#define GM_KiB (1ULL << 10)
#define GM_MiB (1ULL << 20)
#define GM_GiB (1ULL << 30)
#define GM_PAGE_SIZE 4096ULL
#define GM_LOW_RAM_MAX (3 * GM_GiB)   /* start of the 32-bit hole */
#define GM_HIGH_RAM_BASE (4 * GM_GiB)
#define GM_MAX_REGIONS 2

enum gm_backend { GM_ANON, GM_MEMFD, GM_HUGETLBFS, GM_DMEMFS };

/* The [memory] section, validated for syntax by the config module; the
 * host-dependent checks (statfs magic, free pages) are gm_open's. */
struct gm_config {
    enum gm_backend backend;
    char path[PATH_MAX];   /* hugetlbfs/dmemfs mount point or file in one */
    bool prealloc;
    bool thp;              /* anon and memfd only */
    int host_node;         /* -1: no binding */
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
 * config key and value to err and returns -errno. */
int gm_open(struct guest_mem *gm, const struct gm_config *cfg, uint64_t ram_size,
            char *err, size_t errlen);
void gm_close(struct guest_mem *gm);

/* HVA for [gpa, gpa+len), or NULL if any byte of it is outside guest RAM
 * or the range crosses a region end.  len 0 is treated as 1. */
void *gm_gpa_to_hva(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
/* 0 and *gpa set, or -EFAULT if hva is not guest RAM. */
int gm_hva_to_gpa(const struct guest_mem *gm, const void *hva, uint64_t *gpa);

/* Poisoned pages: add every 4 KiB page of [gpa, gpa+len). -EFAULT outside RAM. */
int gm_poison_add(struct guest_mem *gm, uint64_t gpa, uint64_t len);
bool gm_poison_query(struct guest_mem *gm, uint64_t gpa);
/* Copy up to max sorted GPAs; returns the total count. */
unsigned gm_poison_list(struct guest_mem *gm, uint64_t *out, unsigned max);

const char *gm_backend_name(enum gm_backend b);

#endif
