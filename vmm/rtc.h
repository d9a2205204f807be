/* CMOS RTC at 0x70/0x71: the host's wall-clock time in BCD, 24-hour mode,
 * plus the 128 bytes of CMOS storage. */
#ifndef DVMM_RTC_H
#define DVMM_RTC_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "vmm/bus.h"

struct rtc {
    pthread_mutex_t lock;
    uint8_t index;
    uint8_t cmos[128];
    time_t (*now)(time_t *);    /* time(), replaceable in unit tests */
};

int rtc_init(struct rtc *r, struct bus *pio);
void rtc_destroy(struct rtc *r);
void rtc_io(void *dev, uint64_t off, uint8_t *data, unsigned len, bool is_write);

#endif
