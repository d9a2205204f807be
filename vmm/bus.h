/* The PIO and MMIO buses: devices register address ranges with a callback,
 * the vCPU run loop dispatches exits here.  Lookups take a read lock so many
 * vCPUs dispatch at once; registration (BAR moves) takes the write lock.
 * Devices do their own locking for their state. */
#ifndef DVMM_BUS_H
#define DVMM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* `offset` is relative to the registered base.  For reads the callback fills
 * data[0..len); unhandled bytes should be left as 0xff by convention. */
typedef void (*bus_io_fn)(void *dev, uint64_t offset, uint8_t *data,
                          unsigned len, bool is_write);

struct bus_range {
    uint64_t base, len;
    bus_io_fn fn;
    void *dev;
    const char *name;
};

struct bus {
    const char *name;          /* "pio" or "mmio", for logs */
    pthread_rwlock_t lock;
    struct bus_range *ranges;  /* sorted by base, never overlapping */
    unsigned nr, cap;
};

int bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);
/* -EEXIST when the range overlaps one already registered. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_io_fn fn,
                 void *dev, const char *name);
/* Removes the range registered at exactly `base` for `dev`; -ENOENT if none. */
int bus_unregister(struct bus *bus, uint64_t base, void *dev);
/* -ENOENT when nothing claims [addr, addr+len): reads then see all-ones. */
int bus_dispatch(struct bus *bus, uint64_t addr, uint8_t *data, unsigned len,
                 bool is_write);

#endif
