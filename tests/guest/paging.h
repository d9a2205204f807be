/* The guest's own identity map, built from the e820 map so that RAM above
 * 4 GiB is reachable whatever the loader mapped. */
#ifndef GUEST_PAGING_H
#define GUEST_PAGING_H

#include <stdint.h>

#include "bootinfo.h"

/* Same cap as dvmm's boot page tables: one page directory per GiB. */
#define PAGING_MAX_GIB	64

/* The PML4 that APs load in 32-bit mode (hence below 4 GiB: it is in the
 * image). */
extern uint64_t paging_pml4[512];

/* Maps [0, max(4 GiB, top of RAM) rounded up to 1 GiB), capped at
 * PAGING_MAX_GIB, with 2 MiB pages, and switches CR3 to it.  Returns the
 * end of the mapped range. */
uint64_t paging_init(const struct bootinfo *bi);

#endif
