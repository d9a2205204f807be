/* utc_from_secs against glibc's gmtime_r (fine here: no sandbox), over
 * leap days, century years, the epoch and before it, far ahead, and
 * 2,000 spread-out instants, weekday included (the RTC reports it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "vmm/utc.h"

static void check(int64_t t)
{
    time_t tt = (time_t)t;
    struct utc u;
    struct tm tm;

    assert_non_null(gmtime_r(&tt, &tm));
    utc_from_secs(t, &u);
    assert_int_equal(u.year, (int64_t)tm.tm_year + 1900);
    assert_int_equal(u.mon, (unsigned)tm.tm_mon + 1);
    assert_int_equal(u.day, (unsigned)tm.tm_mday);
    assert_int_equal(u.hour, (unsigned)tm.tm_hour);
    assert_int_equal(u.min, (unsigned)tm.tm_min);
    assert_int_equal(u.sec, (unsigned)tm.tm_sec);
    assert_int_equal(u.wday, (unsigned)tm.tm_wday);
}

static void test_utc_matches_gmtime(void **state)
{
    static const int64_t at[] = {
        0, -1, -86400, 951782400 /* 2000-02-29 */, 951868800, 4107542400 /* 2100-03-01 */,
        4107456000, 1700000000, 253402300799 /* 9999-12-31T23:59:59 */,
        -2208988800 /* 1900-01-01 */,
    };

    (void)state;
    for (unsigned i = 0; i < sizeof(at) / sizeof(at[0]); i++)
        check(at[i]);
    for (int64_t i = 0; i < 2000; i++)
        check(i * 7919 * 86413 - 3000000000LL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utc_matches_gmtime),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
