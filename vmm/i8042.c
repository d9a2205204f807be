#include "vmm/i8042.h"

#include <string.h>

#include "vmm/log.h"

#define ST_OBF     0x01   /* output buffer full */
#define ST_SYS     0x04   /* system flag, set after self-test */
#define ST_CMD     0x08   /* last write was to the command port */
#define ST_UNLOCK  0x10   /* keyboard not inhibited (no keylock) */
#define CB_KBD_INT 0x01

/* There is no AUX (mouse) port.  Linux's probe (i8042_check_aux) learns
 * that in two quick steps when the controller answers at once: the AUX
 * loopback byte comes back as keyboard data (no AUX bit in the status), and
 * the AUX interface test reports its clock line stuck high, as an open
 * line with its pull-up reads.  Left unanswered, the loopback costs a
 * 0.5 s timeout and the IRQ test another 250 ms: about 2 s of a Linux boot
 * in the nested KVM host, where each status poll is an exit. */
#define AUX_TEST_CLOCK_HIGH 0x02

static void i8042_push(struct i8042 *k, uint8_t v, bool kbd)
{
    if (k->out_count == sizeof(k->out))
        return;
    k->out[(k->out_head + k->out_count++) % sizeof(k->out)] = v;
    /* Edge on IRQ1 for keyboard replies when the guest enabled them. */
    if (kbd && (k->cmd_byte & CB_KBD_INT) && k->vmif && k->vmif->irq_line) {
        k->vmif->irq_line(k->vmif->opaque, I8042_KBD_IRQ, 1);
        k->vmif->irq_line(k->vmif->opaque, I8042_KBD_IRQ, 0);
    }
}

static void i8042_reset_guest(struct i8042 *k, const char *why)
{
    log_debug("i8042: guest reset (%s)", why);
    if (k->on_reset)
        k->on_reset(k->opaque);
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
    switch (cmd) {
    case 0x20:                      /* read command byte */
        i8042_push(k, k->cmd_byte, false);
        break;
    case 0x60:                      /* write command byte: data follows */
    case 0xd1:                      /* write output port: data follows */
    case 0xd2:                      /* write keyboard output buffer */
    case 0xd3:                      /* write aux output buffer */
    case 0xd4:                      /* write to aux device */
        k->pending_cmd = cmd;
        break;
    case 0xa7: k->cmd_byte |= 0x20; break;   /* disable aux */
    case 0xa8: k->cmd_byte &= (uint8_t)~0x20; break;
    case 0xad: k->cmd_byte |= 0x10; break;   /* disable keyboard */
    case 0xae: k->cmd_byte &= (uint8_t)~0x10; break;
    case 0xa9:                      /* aux interface test: no aux port */
        i8042_push(k, AUX_TEST_CLOCK_HIGH, false);
        break;
    case 0xaa:                      /* controller self-test */
        k->self_tested = true;
        i8042_push(k, 0x55, false);
        break;
    case 0xab:                      /* keyboard interface test */
        i8042_push(k, 0x00, false);
        break;
    case 0xfe:                      /* pulse output line 0: CPU reset */
        i8042_reset_guest(k, "command 0xfe");
        break;
    default:
        break;
    }
}

static void i8042_data(struct i8042 *k, uint8_t v)
{
    uint8_t cmd = k->pending_cmd;

    k->pending_cmd = 0;
    switch (cmd) {
    case 0x60:
        k->cmd_byte = v;
        return;
    case 0xd1:
        if (!(v & 1))
            i8042_reset_guest(k, "output port bit 0 cleared");
        return;
    case 0xd2:
        i8042_push(k, v, true);
        return;
    case 0xd3:                      /* aux loopback: no aux port, so the */
        i8042_push(k, v, false);    /* byte comes back as keyboard data */
        return;
    case 0xd4:
        return;                     /* no aux device behind the port */
    default:
        break;
    }
    /* A byte for the keyboard itself: acknowledge, and answer the few
     * commands Linux's atkbd probe sends. */
    i8042_push(k, 0xfa, true);
    if (v == 0xff)
        i8042_push(k, 0xaa, true);            /* reset: self-test passed */
    else if (v == 0xf2) {
        i8042_push(k, 0xab, true);            /* identify: MF2 keyboard */
        i8042_push(k, 0x83, true);
    }
}

void i8042_io(void *dev, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
    struct i8042 *k = dev;
    if (len != 1 || (off != 0 && off != 4)) {
        if (!is_write)
            memset(data, 0xff, len);
        return;
    }
    pthread_mutex_lock(&k->lock);
    if (off == 0) {                  /* data port */
        if (is_write) {
            i8042_data(k, data[0]);
        } else if (k->out_count) {
            data[0] = k->out[k->out_head];
            k->out_head = (k->out_head + 1) % sizeof(k->out);
            k->out_count--;
        } else {
            data[0] = 0;
        }
    } else {                         /* status / command port */
        if (is_write)
            i8042_command(k, data[0]);
        else
            data[0] = (uint8_t)((k->out_count ? ST_OBF : 0) | ST_UNLOCK |
                                (k->self_tested ? ST_SYS : 0) |
                                (k->pending_cmd ? ST_CMD : 0));
    }
    pthread_mutex_unlock(&k->lock);
}

int i8042_init(struct i8042 *k, struct bus *pio, struct vmif *vmif,
               void (*on_reset)(void *), void *opaque)
{
    memset(k, 0, sizeof(*k));
    pthread_mutex_init(&k->lock, NULL);
    k->vmif = vmif;
    k->on_reset = on_reset;
    k->opaque = opaque;
    k->cmd_byte = 0x45;   /* kbd interrupt on, system flag, translation: BIOS default */
    /* One range over 0x60-0x64: port 0x61 never exits (the in-kernel PIT
     * owns it) and 0x62/0x63 read as nothing. */
    return pio ? bus_register(pio, I8042_DATA_PORT, 5, i8042_io, k, "i8042") : 0;
}

void i8042_destroy(struct i8042 *k)
{
    pthread_mutex_destroy(&k->lock);
}
