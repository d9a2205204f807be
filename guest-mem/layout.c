/* Guest physical layout: pure arithmetic, no host state. */
#include "guest-mem/gm.h"

#include <errno.h>
#include <string.h>

int gm_layout_compute(uint64_t ram_size, struct gm_layout *out)
{
    uint64_t ram, low;

    memset(out, 0, sizeof(*out));
    if (ram_size == 0)
        return -EINVAL;
    /* Checked before rounding so the round-up cannot wrap. */
    if (ram_size > GM_MAX_RAM)
        return -ERANGE;
    ram = gm_align_up(ram_size, GM_PAGE_SIZE);
    low = ram < GM_LOW_RAM_MAX ? ram : GM_LOW_RAM_MAX;

    out->ram_size = ram;
    out->r[0] = (struct gm_region){ .gpa = 0, .size = low, .file_off = 0 };
    out->nr = 1;
    if (ram > low) {
        /* The 32-bit hole [3 GiB, 4 GiB) is left for MMIO; RAM resumes
         * above it, so the backing file is contiguous but GPAs are not. */
        out->r[1] = (struct gm_region){ .gpa = GM_HIGH_RAM_BASE,
                                        .size = ram - low, .file_off = low };
        out->nr = 2;
    }
    return 0;
}

bool gm_layout_contains(const struct gm_layout *l, uint64_t gpa, uint64_t len)
{
    if (len == 0)
        len = 1;
    for (unsigned i = 0; i < l->nr; i++) {
        const struct gm_region *r = &l->r[i];

        /* Written as offsets so gpa+len never has to be computed (it may
         * overflow for hostile input). */
        if (gpa >= r->gpa && gpa - r->gpa < r->size &&
            len <= r->size - (gpa - r->gpa))
            return true;
    }
    return false;
}
