/* QEMU-compatible isa-debug-exit: a guest write of v ends the VM.  QEMU exits
 * with 2v+1; dvmm does the same except that v = 0 exits 0, so a passing test
 * guest gives a plain success and 1 stays reserved for guest crashes. */
#ifndef DVMM_DEBUG_EXIT_H
#define DVMM_DEBUG_EXIT_H

#include <stdint.h>

#include "vmm/bus.h"

struct debug_exit {
    uint16_t port;
    unsigned size;
    void (*on_exit)(void *opaque, uint32_t value);
    void *opaque;
};

int debug_exit_init(struct debug_exit *d, struct bus *pio, uint16_t port,
                    unsigned size, void (*on_exit)(void *, uint32_t), void *opaque);
/* The process exit status for a guest write of `value`. */
int debug_exit_status(uint32_t value);
void debug_exit_io(void *dev, uint64_t off, uint8_t *data, unsigned len, bool is_write);

#endif
