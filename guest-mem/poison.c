/* The poisoned-page list.  Additions come from vCPU threads (AR) and the
 * main thread (AO), reads from the reset path building the next e820, so
 * every access takes poison_lock. */
#include "guest-mem/gm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void gm_poison_init(struct guest_mem *gm)
{
    pthread_mutex_init(&gm->poison_lock, NULL);
    gm->poison = NULL;
    gm->npoison = gm->poison_cap = 0;
}

void gm_poison_destroy(struct guest_mem *gm)
{
    free(gm->poison);
    gm->poison = NULL;
    gm->npoison = gm->poison_cap = 0;
    pthread_mutex_destroy(&gm->poison_lock);
}

/* Index of the first entry >= gpa. */
static unsigned poison_lower_bound(const struct guest_mem *gm, uint64_t gpa)
{
    unsigned lo = 0, hi = gm->npoison;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;

        if (gm->poison[mid] < gpa)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int poison_insert_locked(struct guest_mem *gm, uint64_t page)
{
    unsigned i = poison_lower_bound(gm, page);

    if (i < gm->npoison && gm->poison[i] == page)
        return 0;
    if (gm->npoison == gm->poison_cap) {
        unsigned cap = gm->poison_cap ? gm->poison_cap * 2 : 64;
        uint64_t *p;

        if (cap < gm->poison_cap)
            return -ENOMEM;
        p = realloc(gm->poison, (size_t)cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        gm->poison = p;
        gm->poison_cap = cap;
    }
    memmove(&gm->poison[i + 1], &gm->poison[i],
            (size_t)(gm->npoison - i) * sizeof(*gm->poison));
    gm->poison[i] = page;
    gm->npoison++;
    return 0;
}

int gm_poison_add(struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
    uint64_t first, last;
    int ret = 0;

    if (!gm_layout_contains(&gm->layout, gpa, len))
        return -EFAULT;
    if (len == 0)
        len = 1;
    first = gm_align_down(gpa, GM_PAGE_SIZE);
    last = gm_align_down(gpa + len - 1, GM_PAGE_SIZE);

    pthread_mutex_lock(&gm->poison_lock);
    for (uint64_t p = first; ; p += GM_PAGE_SIZE) {
        ret = poison_insert_locked(gm, p);
        if (ret || p == last)
            break;
    }
    pthread_mutex_unlock(&gm->poison_lock);
    return ret;
}

bool gm_poison_query(struct guest_mem *gm, uint64_t gpa)
{
    uint64_t page = gm_align_down(gpa, GM_PAGE_SIZE);
    bool hit;
    unsigned i;

    pthread_mutex_lock(&gm->poison_lock);
    i = poison_lower_bound(gm, page);
    hit = i < gm->npoison && gm->poison[i] == page;
    pthread_mutex_unlock(&gm->poison_lock);
    return hit;
}

unsigned gm_poison_list(struct guest_mem *gm, uint64_t *out, unsigned max)
{
    unsigned n;

    pthread_mutex_lock(&gm->poison_lock);
    n = gm->npoison;
    if (out && n && max)
        memcpy(out, gm->poison, (size_t)(n < max ? n : max) * sizeof(*out));
    pthread_mutex_unlock(&gm->poison_lock);
    return n;
}

int gm_poison_snapshot(struct guest_mem *gm, uint64_t **out, unsigned *n)
{
    unsigned cap = 0;
    uint64_t *buf = NULL;

    for (;;) {
        unsigned total = gm_poison_list(gm, buf, cap);

        if (total <= cap) {
            *out = buf;
            *n = total;
            return 0;
        }
        free(buf);
        cap = total + 16;
        buf = malloc(cap * sizeof(*buf));
        if (!buf)
            return -ENOMEM;
    }
}
