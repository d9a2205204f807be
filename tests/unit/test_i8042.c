/* i8042: Linux's probe sequence (drivers/input/serio/i8042.c) answered
 * without a single timeout, and the two reset paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/i8042.h"

#define ST_OBF     0x01
#define ST_KEYLOCK 0x10   /* Linux's I8042_STR_KEYLOCK: set = not locked */
#define ST_AUXDATA 0x20

static int resets;
static void on_reset(void *opaque)
{
    (void)opaque;
    resets++;
}

static uint8_t rd(struct i8042 *k, uint64_t port)
{
    uint8_t v = 0;
    i8042_io(k, port - I8042_DATA_PORT, &v, 1, false);
    return v;
}

static void wr(struct i8042 *k, uint64_t port, uint8_t v)
{
    i8042_io(k, port - I8042_DATA_PORT, &v, 1, true);
}

/* The reply to a command, as __i8042_command waits for it: the output
 * buffer must already be full (a guest would otherwise poll for 0.5 s). */
static uint8_t reply(struct i8042 *k, uint8_t *status)
{
    *status = rd(k, I8042_CMD_PORT);
    assert_true(*status & ST_OBF);
    return rd(k, I8042_DATA_PORT);
}

static void test_linux_probe(void **state)
{
    struct i8042 k;
    uint8_t st, v;

    (void)state;
    assert_int_equal(i8042_init(&k, NULL, NULL, on_reset, NULL), 0);

    /* i8042_controller_check: nothing left to flush. */
    assert_false(rd(&k, I8042_CMD_PORT) & ST_OBF);
    /* i8042_controller_selftest */
    wr(&k, I8042_CMD_PORT, 0xaa);
    assert_int_equal(reply(&k, &st), 0x55);
    /* i8042_controller_init: read the CTR; no "Keylock active" warning. */
    wr(&k, I8042_CMD_PORT, 0x20);
    assert_int_equal(reply(&k, &st), 0x45);
    assert_true(rd(&k, I8042_CMD_PORT) & ST_KEYLOCK);

    /* i8042_check_aux: the loopback byte comes back at once, but not as
     * AUX data ("auxerr"), and the AUX interface test then reports an
     * error, so Linux decides there is no AUX port without waiting. */
    wr(&k, I8042_CMD_PORT, 0xd3);
    wr(&k, I8042_DATA_PORT, 0x5a);
    v = reply(&k, &st);
    assert_false(st & ST_AUXDATA);
    assert_int_equal(v, 0x5a);
    wr(&k, I8042_CMD_PORT, 0xa9);
    v = reply(&k, &st);
    assert_true(v != 0 && v != 0xfa && v != 0xff);

    /* The keyboard interface test, and atkbd's GETID. */
    wr(&k, I8042_CMD_PORT, 0xab);
    assert_int_equal(reply(&k, &st), 0x00);
    wr(&k, I8042_DATA_PORT, 0xf2);
    assert_int_equal(reply(&k, &st), 0xfa);
    assert_int_equal(reply(&k, &st), 0xab);
    assert_int_equal(reply(&k, &st), 0x83);
    assert_false(rd(&k, I8042_CMD_PORT) & ST_OBF);
    assert_int_equal(resets, 0);
    i8042_destroy(&k);
}

static void test_reset(void **state)
{
    struct i8042 k;

    (void)state;
    resets = 0;
    assert_int_equal(i8042_init(&k, NULL, NULL, on_reset, NULL), 0);
    wr(&k, I8042_CMD_PORT, 0xfe);                 /* pulse the reset line */
    assert_int_equal(resets, 1);
    wr(&k, I8042_CMD_PORT, 0xd1);                 /* output port, bit 0 clear */
    wr(&k, I8042_DATA_PORT, 0xfe);
    assert_int_equal(resets, 2);
    wr(&k, I8042_CMD_PORT, 0xd1);                 /* bit 0 set: no reset */
    wr(&k, I8042_DATA_PORT, 0x01);
    assert_int_equal(resets, 2);
    i8042_destroy(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linux_probe),
        cmocka_unit_test(test_reset),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
