#include "vmm/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bus_init(struct bus *bus, const char *name)
{
    memset(bus, 0, sizeof(*bus));
    bus->name = name;
    return -pthread_rwlock_init(&bus->lock, NULL);
}

void bus_destroy(struct bus *bus)
{
    free(bus->ranges);
    bus->ranges = NULL;
    bus->nr = bus->cap = 0;
    pthread_rwlock_destroy(&bus->lock);
}

/* Index of the first range whose end is above addr (ranges are sorted and
 * disjoint, so that is the only candidate to contain addr). */
static unsigned bus_lower_bound(const struct bus *bus, uint64_t addr)
{
    unsigned lo = 0, hi = bus->nr;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        const struct bus_range *r = &bus->ranges[mid];

        if (r->base + r->len <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_io_fn fn,
                 void *dev, const char *name)
{
    unsigned i;
    int ret = 0;

    if (!len || base + len < base || !fn)
        return -EINVAL;
    pthread_rwlock_wrlock(&bus->lock);
    i = bus_lower_bound(bus, base);
    if (i < bus->nr && bus->ranges[i].base < base + len) {
        ret = -EEXIST;
        goto out;
    }
    if (bus->nr == bus->cap) {
        unsigned cap = bus->cap ? bus->cap * 2 : 16;
        struct bus_range *n = realloc(bus->ranges, cap * sizeof(*n));

        if (!n) {
            ret = -ENOMEM;
            goto out;
        }
        bus->ranges = n;
        bus->cap = cap;
    }
    memmove(&bus->ranges[i + 1], &bus->ranges[i],
            (bus->nr - i) * sizeof(bus->ranges[0]));
    bus->ranges[i] = (struct bus_range){ base, len, fn, dev, name };
    bus->nr++;
out:
    pthread_rwlock_unlock(&bus->lock);
    return ret;
}

int bus_unregister(struct bus *bus, uint64_t base, void *dev)
{
    unsigned i;
    int ret = -ENOENT;

    pthread_rwlock_wrlock(&bus->lock);
    i = bus_lower_bound(bus, base);
    if (i < bus->nr && bus->ranges[i].base == base && bus->ranges[i].dev == dev) {
        memmove(&bus->ranges[i], &bus->ranges[i + 1],
                (bus->nr - i - 1) * sizeof(bus->ranges[0]));
        bus->nr--;
        ret = 0;
    }
    pthread_rwlock_unlock(&bus->lock);
    return ret;
}

int bus_dispatch(struct bus *bus, uint64_t addr, uint8_t *data, unsigned len,
                 bool is_write)
{
    struct bus_range r;
    unsigned i;

    pthread_rwlock_rdlock(&bus->lock);
    i = bus_lower_bound(bus, addr);
    if (i >= bus->nr || bus->ranges[i].base > addr ||
        addr + len > bus->ranges[i].base + bus->ranges[i].len) {
        pthread_rwlock_unlock(&bus->lock);
        if (!is_write)
            memset(data, 0xff, len);
        return -ENOENT;
    }
    r = bus->ranges[i];
    /* The callback runs under the read lock so a concurrent BAR move cannot
     * free the device range while it is in use. */
    r.fn(r.dev, addr - r.base, data, len, is_write);
    pthread_rwlock_unlock(&bus->lock);
    return 0;
}
