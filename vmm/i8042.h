/* Just enough of the i8042 keyboard controller for Linux to probe it and to
 * reset the machine through it (command 0xFE, or clearing output-port bit 0). */
#ifndef DVMM_I8042_H
#define DVMM_I8042_H

#include <pthread.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "vmm/vmif.h"

#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT  0x64
#define I8042_KBD_IRQ   1

struct i8042 {
    pthread_mutex_t lock;
    struct vmif *vmif;
    uint8_t cmd_byte;
    uint8_t pending_cmd;        /* controller command awaiting its data byte */
    uint8_t out[16];            /* output buffer queue */
    unsigned out_head, out_count;
    bool self_tested;
    void (*on_reset)(void *opaque);
    void *opaque;
};

int i8042_init(struct i8042 *k, struct bus *pio, struct vmif *vmif,
               void (*on_reset)(void *), void *opaque);
void i8042_destroy(struct i8042 *k);
void i8042_io(void *dev, uint64_t off, uint8_t *data, unsigned len, bool is_write);

#endif
