/* GPA <-> HVA translation.  Every guest-provided address goes through
 * gm_gpa_to_hva, so it is the one place that bounds-checks guest input
 * against RAM. */
#include "guest-mem/gm.h"

#include <errno.h>

void *gm_gpa_to_hva(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
    const struct gm_layout *l = &gm->layout;

    if (len == 0)
        len = 1;
    for (unsigned i = 0; i < l->nr; i++) {
        const struct gm_region *r = &l->r[i];
        uint64_t off;

        if (gpa < r->gpa || gpa - r->gpa >= r->size)
            continue;
        off = gpa - r->gpa;
        /* A range may not run off the end of its region: the next region
         * is not contiguous in either GPA or (necessarily) HVA space. */
        if (len > r->size - off || !r->hva)
            return NULL;
        return r->hva + off;
    }
    return NULL;
}

int gm_hva_to_gpa(const struct guest_mem *gm, const void *hva, uint64_t *gpa)
{
    const struct gm_layout *l = &gm->layout;
    uintptr_t a = (uintptr_t)hva;

    for (unsigned i = 0; i < l->nr; i++) {
        const struct gm_region *r = &l->r[i];
        uintptr_t base = (uintptr_t)r->hva;

        if (r->hva && a >= base && a - base < r->size) {
            *gpa = r->gpa + (a - base);
            return 0;
        }
    }
    return -EFAULT;
}
