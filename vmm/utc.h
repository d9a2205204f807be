/* UTC calendar time from CLOCK_REALTIME seconds, by arithmetic alone
 * (Hinnant's days-to-civil).  Why not gmtime_r: glibc's first call of
 * gmtime_r, localtime_r or strftime reads /etc/localtime, which a
 * sandboxed vCPU may not open (the RTC and the MCE log's time stamps run
 * there), and none of them is async-signal-safe (the SIGBUS handler
 * writes its own log line).  This one is both. */
#ifndef DVMM_UTC_H
#define DVMM_UTC_H

#include <stdint.h>

struct utc {
    int64_t year;
    unsigned mon;       /* 1..12 */
    unsigned day;       /* 1..31 */
    unsigned hour, min, sec;
    unsigned wday;      /* 0 = Sunday, as struct tm */
};

void utc_from_secs(int64_t secs, struct utc *u);

#endif
