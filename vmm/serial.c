#include "vmm/serial.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "vmm/log.h"

/* Register offsets and bits, from the 16550A data sheet. */
enum { RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };
#define IER_RDI   0x01
#define IER_THRI  0x02
#define IER_RLSI  0x04
#define IER_MSI   0x08
#define IIR_NONE  0x01
#define IIR_THRI  0x02
#define IIR_RDI   0x04
#define IIR_FIFO  0xc0
#define FCR_ENABLE 0x01
#define FCR_CLR_RX 0x02
#define LCR_DLAB  0x80
#define MCR_DTR   0x01
#define MCR_RTS   0x02
#define MCR_OUT1  0x04
#define MCR_OUT2  0x08
#define MCR_LOOP  0x10
#define LSR_DR    0x01
#define LSR_THRE  0x20
#define LSR_TEMT  0x40
#define MSR_CTS   0x10
#define MSR_DSR   0x20
#define MSR_RI    0x40
#define MSR_DCD   0x80

static uint8_t serial_iir(const struct serial *s)
{
    uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO : 0;

    if ((s->ier & IER_RDI) && s->rx_count)
        return fifo | IIR_RDI;
    if ((s->ier & IER_THRI) && s->thri_pending)
        return fifo | IIR_THRI;
    return fifo | IIR_NONE;
}

/* On a PC the UART's interrupt output reaches the PIC only while OUT2 is
 * set; Linux relies on that gate when it probes. */
static void serial_update_irq(struct serial *s)
{
    int level = !(serial_iir(s) & IIR_NONE) && (s->mcr & MCR_OUT2);

    if (level == s->irq_level || !s->vmif || !s->vmif->irq_line)
        return;
    s->irq_level = level;
    s->vmif->irq_line(s->vmif->opaque, s->irq, level);
}

static void serial_rx_push(struct serial *s, uint8_t c)
{
    if (s->rx_count == SERIAL_FIFO)
        return;
    s->rx[(s->rx_head + s->rx_count++) % SERIAL_FIFO] = c;
    s->lsr |= LSR_DR;
}

static void serial_tx(struct serial *s, uint8_t c)
{
    if (s->mcr & MCR_LOOP) {
        serial_rx_push(s, c);
    } else if (s->out_fd >= 0) {
        ssize_t n;

        do
            n = write(s->out_fd, &c, 1);
        while (n < 0 && errno == EINTR);
        if (n < 0 && !s->out_error_logged) {
            log_warn("serial@0x3f8: console write: %s; further output dropped",
                     strerror(errno));
            s->out_error_logged = true;
        }
    }
    /* Output is synchronous, so THR is empty again at once. */
    s->thri_pending = true;
}

static uint8_t serial_msr(const struct serial *s)
{
    if (s->mcr & MCR_LOOP) {
        /* Loopback wires the modem outputs back to the inputs; Linux's
         * autoconfig checks exactly this mapping. */
        return (uint8_t)(((s->mcr & MCR_RTS) ? MSR_CTS : 0) |
                         ((s->mcr & MCR_DTR) ? MSR_DSR : 0) |
                         ((s->mcr & MCR_OUT1) ? MSR_RI : 0) |
                         ((s->mcr & MCR_OUT2) ? MSR_DCD : 0));
    }
    return s->msr;
}

static uint8_t serial_read(struct serial *s, unsigned reg)
{
    uint8_t v = 0;

    switch (reg) {
    case RBR_THR:
        if (s->lcr & LCR_DLAB)
            return s->dll;
        if (s->rx_count) {
            v = s->rx[s->rx_head];
            s->rx_head = (s->rx_head + 1) % SERIAL_FIFO;
            if (--s->rx_count == 0)
                s->lsr &= (uint8_t)~LSR_DR;
        }
        return v;
    case IER:
        return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
    case IIR_FCR:
        v = serial_iir(s);
        /* Reading IIR while it reports THRE acknowledges that interrupt. */
        if ((v & 0x0f) == IIR_THRI)
            s->thri_pending = false;
        return v;
    case LCR:
        return s->lcr;
    case MCR:
        return s->mcr;
    case LSR:
        return s->lsr;
    case MSR:
        return serial_msr(s);
    default:
        return s->scr;
    }
}

static void serial_write(struct serial *s, unsigned reg, uint8_t v)
{
    switch (reg) {
    case RBR_THR:
        if (s->lcr & LCR_DLAB)
            s->dll = v;
        else
            serial_tx(s, v);
        break;
    case IER:
        if (s->lcr & LCR_DLAB) {
            s->dlm = v;
        } else {
            /* Enabling THRI with an empty THR raises it at once: the Linux
             * driver starts transmission by waiting for that interrupt. */
            if (!(s->ier & IER_THRI) && (v & IER_THRI))
                s->thri_pending = true;
            s->ier = v & 0x0f;
        }
        break;
    case IIR_FCR:
        s->fcr = v & (FCR_ENABLE | 0xc0);
        if (v & FCR_CLR_RX) {
            s->rx_count = 0;
            s->lsr &= (uint8_t)~LSR_DR;
        }
        break;
    case LCR:
        s->lcr = v;
        break;
    case MCR:
        s->mcr = v & 0x1f;
        break;
    case SCR:
        s->scr = v;
        break;
    default:
        break;   /* LSR and MSR are read-only */
    }
}

void serial_io(void *dev, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
    struct serial *s = dev;

    pthread_mutex_lock(&s->lock);
    /* The UART is byte-wide; wider accesses touch consecutive registers. */
    for (unsigned i = 0; i < len && off + i < 8; i++) {
        if (is_write)
            serial_write(s, (unsigned)(off + i), data[i]);
        else
            data[i] = serial_read(s, (unsigned)(off + i));
    }
    serial_update_irq(s);
    pthread_mutex_unlock(&s->lock);
}

void serial_reset(struct serial *s)
{
    pthread_mutex_lock(&s->lock);
    s->ier = s->fcr = s->lcr = s->mcr = s->scr = 0;
    s->dll = 0x0c;              /* 9600 baud, as a BIOS would leave it */
    s->dlm = 0;
    s->lsr = LSR_THRE | LSR_TEMT;
    s->msr = MSR_DCD | MSR_DSR | MSR_CTS;
    s->thri_pending = false;
    s->rx_head = s->rx_count = 0;
    serial_update_irq(s);
    pthread_mutex_unlock(&s->lock);
}

int serial_init(struct serial *s, struct bus *pio, uint16_t base, unsigned irq,
                struct vmif *vmif, int out_fd)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->vmif = vmif;
    s->irq = irq;
    s->out_fd = out_fd;
    serial_reset(s);
    return pio ? bus_register(pio, base, 8, serial_io, s, "serial") : 0;
}

void serial_destroy(struct serial *s)
{
    pthread_mutex_destroy(&s->lock);
}

unsigned serial_feed(struct serial *s, const uint8_t *buf, unsigned len)
{
    unsigned n = 0;

    pthread_mutex_lock(&s->lock);
    while (n < len && s->rx_count < SERIAL_FIFO)
        serial_rx_push(s, buf[n++]);
    serial_update_irq(s);
    pthread_mutex_unlock(&s->lock);
    return n;
}
