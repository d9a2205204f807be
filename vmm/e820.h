/* The guest's e820 memory map, derived only from the guest-mem layout and
 * its poisoned-page list, so a rebooted guest never sees a page the host
 * has lost.  Shape (the x86 boot contract):
 *   RAM      [0, 0x9fc00)
 *   reserved [0x9fc00, 0x100000)   MP table, legacy VGA/BIOS window
 *   RAM      [0x100000, low RAM end)
 *   RAM      [4 GiB, 4 GiB + high RAM)   when RAM > 3 GiB
 * with every poisoned 4 KiB page cut out of the RAM ranges. */
#ifndef DVMM_E820_H
#define DVMM_E820_H

#include <asm/bootparam.h>
#include <asm/e820.h>

#include "guest-mem/gm.h"

#define E820_EBDA_START 0x9fc00ULL   /* start of the reserved legacy area */
#define E820_HIGH_START 0x100000ULL  /* end of it: 1 MiB */

/* Fill out[0..max) in ascending address order; returns the number of
 * entries, -ENOSPC if they do not fit in max, -EINVAL if RAM is smaller
 * than 1 MiB, -ENOMEM. */
int e820_build(struct guest_mem *gm, struct boot_e820_entry *out, unsigned max);

#endif
