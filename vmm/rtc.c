#include "vmm/rtc.h"

#include <string.h>

#include "vmm/utc.h"

#define RTC_SEC 0x00
#define RTC_MIN 0x02
#define RTC_HOUR 0x04
#define RTC_WDAY 0x06
#define RTC_MDAY 0x07
#define RTC_MON 0x08
#define RTC_YEAR 0x09
#define RTC_REG_A 0x0a
#define RTC_REG_B 0x0b
#define RTC_REG_C 0x0c
#define RTC_REG_D 0x0d
#define RTC_CENTURY 0x32
#define RTC_B_24H 0x02

static uint8_t bcd(unsigned v) { return (uint8_t)(((v / 10) << 4) | (v % 10)); }

/* Time registers are computed on every read, so the guest always sees the
 * host's current UTC time and "update in progress" is never set. */
static uint8_t rtc_read(struct rtc *r, uint8_t reg)
{
    time_t t = r->now(NULL);
    struct utc tm;

    if (reg > RTC_YEAR && reg != RTC_CENTURY) {
        if (reg == RTC_REG_C) {
            uint8_t v = r->cmos[reg];

            r->cmos[reg] = 0;       /* reading C acknowledges interrupts */
            return v;
        }
        return r->cmos[reg];
    }
    /* Not gmtime_r: its first call reads /etc/localtime (vmm/utc.h). */
    utc_from_secs((int64_t)t, &tm);
    switch (reg) {
    case RTC_SEC: return bcd(tm.sec);
    case RTC_MIN: return bcd(tm.min);
    case RTC_HOUR: return bcd(tm.hour);
    case RTC_WDAY: return bcd(tm.wday + 1);
    case RTC_MDAY: return bcd(tm.day);
    case RTC_MON: return bcd(tm.mon);
    case RTC_YEAR: return bcd((unsigned)(tm.year % 100));
    case RTC_CENTURY: return bcd((unsigned)(tm.year / 100));
    default: return 0;              /* alarm registers */
    }
}

void rtc_io(void *dev, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
    struct rtc *r = dev;

    if (len != 1) {
        if (!is_write)
            memset(data, 0xff, len);
        return;
    }
    pthread_mutex_lock(&r->lock);
    if (off == 0) {
        if (is_write)
            r->index = data[0] & 0x7f;   /* bit 7 is the NMI mask */
        else
            data[0] = 0xff;
    } else if (is_write) {
        /* Keep the clock registers read-only: the guest cannot skew the host
         * clock view, and there is no persistent RTC to set. */
        if (r->index > RTC_YEAR && r->index != RTC_REG_C && r->index != RTC_REG_D &&
            r->index != RTC_CENTURY)
            r->cmos[r->index] = data[0];
        if (r->index == RTC_REG_B)
            r->cmos[RTC_REG_B] |= RTC_B_24H;    /* BCD and 24-hour only */
    } else {
        data[0] = rtc_read(r, r->index);
    }
    pthread_mutex_unlock(&r->lock);
}

int rtc_init(struct rtc *r, struct bus *pio)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->now = time;
    r->cmos[RTC_REG_A] = 0x26;      /* 32.768 kHz base, 1024 Hz rate */
    r->cmos[RTC_REG_B] = RTC_B_24H;
    r->cmos[RTC_REG_D] = 0x80;      /* battery good, time valid */
    return pio ? bus_register(pio, 0x70, 2, rtc_io, r, "rtc") : 0;
}

void rtc_destroy(struct rtc *r)
{
    pthread_mutex_destroy(&r->lock);
}
