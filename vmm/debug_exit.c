#include "vmm/debug_exit.h"

#include <string.h>

#include "vmm/log.h"

int debug_exit_status(uint32_t value)
{
    /* The shell only sees 8 bits; QEMU truncates the same way. */
    return value ? (int)(((value << 1) | 1) & 0xff) : 0;
}

void debug_exit_io(void *dev, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
    struct debug_exit *d = dev;
    uint32_t v = 0;

    if (!is_write) {
        memset(data, 0xff, len);
        return;
    }
    if (off != 0)
        return;
    memcpy(&v, data, len < sizeof(v) ? len : sizeof(v));
    log_debug("debug-exit@0x%x: guest wrote 0x%x", d->port, v);
    if (d->on_exit)
        d->on_exit(d->opaque, v);
}

int debug_exit_init(struct debug_exit *d, struct bus *pio, uint16_t port,
                    unsigned size, void (*on_exit)(void *, uint32_t), void *opaque)
{
    d->port = port;
    d->size = size;
    d->on_exit = on_exit;
    d->opaque = opaque;
    return bus_register(pio, port, size, debug_exit_io, d, "debug-exit");
}
