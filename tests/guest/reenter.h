/* entry=linux64 on a PVH boot: rebuild the state dvmm hands over (a
 * boot_params at 0x7000 with the same e820 and cmdline) and jump to the
 * Linux 64-bit entry.  That runs dvmm's entry path under QEMU, which
 * cannot load an ELF through the Linux boot protocol itself. */
#ifndef GUEST_REENTER_H
#define GUEST_REENTER_H

#include "bootinfo.h"

void reenter_linux64(const struct bootinfo *bi) __attribute__((noreturn));

#endif
