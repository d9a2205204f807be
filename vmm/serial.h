/* 8250/16550A UART: guest output to a file descriptor, host input fed in by
 * the main loop, interrupts on one legacy IRQ line through struct vmif. */
#ifndef DVMM_SERIAL_H
#define DVMM_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "vmm/vmif.h"

#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_COM1_IRQ  4
#define SERIAL_FIFO      64

struct serial {
    pthread_mutex_t lock;
    struct vmif *vmif;
    unsigned irq;
    int out_fd;                 /* -1: output discarded */
    uint8_t ier, fcr, lcr, mcr, lsr, msr, scr, dll, dlm;
    bool thri_pending;          /* THR-empty interrupt waiting to be seen */
    int irq_level;              /* last level driven, to avoid redundant ioctls */
    uint8_t rx[SERIAL_FIFO];
    unsigned rx_head, rx_count;
    bool out_error_logged;
};

int serial_init(struct serial *s, struct bus *pio, uint16_t base, unsigned irq,
                struct vmif *vmif, int out_fd);
void serial_destroy(struct serial *s);
/* Queue host input for the guest; returns how many bytes fit. */
unsigned serial_feed(struct serial *s, const uint8_t *buf, unsigned len);
/* Register access, exposed for unit tests; the bus calls it. */
void serial_io(void *dev, uint64_t off, uint8_t *data, unsigned len, bool is_write);
void serial_reset(struct serial *s);

#endif
