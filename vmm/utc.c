#include "vmm/utc.h"

void utc_from_secs(int64_t secs, struct utc *u)
{
    int64_t days = secs / 86400, sod = secs % 86400;
    int64_t z, era, doe, yoe, doy, mp, m;

    if (sod < 0) {
        sod += 86400;
        days--;
    }
    /* 1970-01-01 was a Thursday. */
    u->wday = (unsigned)(((days % 7) + 11) % 7);
    z = days + 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    m = mp < 10 ? mp + 3 : mp - 9;
    u->day = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    u->mon = (unsigned)m;
    u->year = yoe + era * 400 + (m <= 2);
    u->hour = (unsigned)(sod / 3600);
    u->min = (unsigned)(sod / 60 % 60);
    u->sec = (unsigned)(sod % 60);
}
