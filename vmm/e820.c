/* e820 map from the guest-mem layout and poison list (see e820.h). */
#include "vmm/e820.h"

#include <errno.h>
#include <stdlib.h>

#include "vmm/log.h"

struct e820_out {
    struct boot_e820_entry *e;
    unsigned n, max;
    int overflow;
};

static void e820_emit(struct e820_out *o, uint64_t addr, uint64_t size, uint32_t type)
{
    if (size == 0)
        return;
    if (o->n >= o->max) {
        o->overflow = 1;
        return;
    }
    o->e[o->n].addr = addr;
    o->e[o->n].size = size;
    o->e[o->n].type = type;
    o->n++;
}

/* RAM [s, e) minus the poisoned pages inside it.  poison is sorted, so the
 * holes come out in order and adjacent poisoned pages make one hole. */
static void e820_emit_ram(struct e820_out *o, uint64_t s, uint64_t e,
                          const uint64_t *poison, unsigned np)
{
    uint64_t cur = s;

    for (unsigned i = 0; i < np; i++) {
        uint64_t p = poison[i] & ~(GM_PAGE_SIZE - 1);
        if (p + GM_PAGE_SIZE <= cur || p >= e)
            continue;
        if (p > cur)
            e820_emit(o, cur, p - cur, E820_RAM);
        cur = p + GM_PAGE_SIZE;
    }
    if (cur < e)
        e820_emit(o, cur, e - cur, E820_RAM);
}

int e820_build(struct guest_mem *gm, struct boot_e820_entry *out, unsigned max)
{
    struct e820_out o = { .e = out, .max = max };
    uint64_t *poison = NULL;
    unsigned np = 0;
    int rc;

    if (gm->layout.nr == 0 || gm->layout.r[0].gpa != 0 ||
        gm->layout.r[0].size < E820_HIGH_START) {
        log_err("e820: guest RAM must start at GPA 0 and cover 1 MiB");
        return -EINVAL;
    }
    rc = gm_poison_snapshot(gm, &poison, &np);
    if (rc < 0)
        return rc;

    e820_emit_ram(&o, 0, E820_EBDA_START, poison, np);
    e820_emit(&o, E820_EBDA_START, E820_HIGH_START - E820_EBDA_START, E820_RESERVED);
    for (unsigned i = 0; i < gm->layout.nr; i++) {
        const struct gm_region *r = &gm->layout.r[i];
        uint64_t s = r->gpa < E820_HIGH_START ? E820_HIGH_START : r->gpa;
        uint64_t e = r->gpa + r->size;
        if (s < e)
            e820_emit_ram(&o, s, e, poison, np);
    }
    free(poison);
    if (o.overflow) {
        log_err("e820: more than %u entries (%u poisoned pages fragment RAM)", max, np);
        return -ENOSPC;
    }
    return (int)o.n;
}
