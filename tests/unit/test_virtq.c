/* Split virtqueue parsing against hand-built rings, malformed cases included. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tests/unit/test_virtq_fake.h"
#include "virtio/virtq.h"

struct fix {
    struct fake_ram ram;
    struct fake_drv drv;
    struct vq vq;
    struct vq_elem e;
};

static int setup_common(void **state, int adjacent, int event_idx)
{
    struct fix *f = calloc(1, sizeof(*f));
    fake_ram_init(&f->ram, adjacent);
    fake_drv_init(&f->drv, &f->ram, 8, 0x1000);
    assert_int_equal(vq_init(&f->vq, &f->ram.gm, 8, f->drv.desc_gpa,
                             f->drv.avail_gpa, f->drv.used_gpa, event_idx), 0);
    *state = f;
    return 0;
}
static int setup_adj(void **s) { return setup_common(s, 1, 0); }
static int setup_gap(void **s) { return setup_common(s, 0, 0); }
static int setup_ev(void **s) { return setup_common(s, 1, 1); }

static int teardown(void **state)
{
    struct fix *f = *state;
    fake_ram_free(&f->ram);
    free(f);
    return 0;
}

static void expect_broken(struct fix *f)
{
    assert_int_equal(vq_pop(&f->vq, &f->e), -EIO);
    assert_true(f->vq.broken);
    assert_non_null(f->vq.err);
    /* Stays broken. */
    assert_int_equal(vq_pop(&f->vq, &f->e), -EIO);
}

static void test_simple_chain(void **state)
{
    struct fix *f = *state;
    struct vring_desc *d = f->drv.desc;

    assert_int_equal(vq_pop(&f->vq, &f->e), 0);
    fake_desc(d, 3, 0x10000, 16, VRING_DESC_F_NEXT, 5);
    fake_desc(d, 5, 0x11000, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 6);
    fake_desc(d, 6, 0x12000, 1, VRING_DESC_F_WRITE, 0);
    fake_avail(&f->drv, 3);
    assert_int_equal(vq_pop(&f->vq, &f->e), 1);
    assert_int_equal(f->e.head, 3);
    assert_int_equal(f->e.nout, 1);
    assert_int_equal(f->e.nin, 2);
    assert_int_equal(f->e.out_len, 16);
    assert_int_equal(f->e.in_len, 513);
    assert_ptr_equal(f->e.iov[0].iov_base, f->ram.buf[0] + 0x10000);
    assert_ptr_equal(f->e.iov[2].iov_base, f->ram.buf[0] + 0x12000);
    assert_int_equal(vq_pop(&f->vq, &f->e), 0);

    vq_push(&f->vq, 3, 513);
    uint32_t id, len;
    assert_int_equal(fake_used(&f->drv, &id, &len), 1);
    assert_int_equal(id, 3);
    assert_int_equal(len, 513);
    /* No EVENT_IDX: interrupt unless the driver set NO_INTERRUPT. */
    assert_true(vq_should_notify(&f->vq));
    f->drv.avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
    assert_false(vq_should_notify(&f->vq));
    vq_disable_notify(&f->vq);
    assert_int_equal(f->drv.used->flags, VRING_USED_F_NO_NOTIFY);
    assert_false(vq_enable_notify(&f->vq));
    assert_int_equal(f->drv.used->flags, 0);
}

static void test_ring_wraps(void **state)
{
    struct fix *f = *state;
    for (unsigned i = 0; i < 40; i++) {
        fake_desc(f->drv.desc, i % 8, 0x10000 + i, 1, 0, 0);
        fake_avail(&f->drv, i % 8);
        assert_int_equal(vq_pop(&f->vq, &f->e), 1);
        assert_int_equal(f->e.head, i % 8);
        vq_push(&f->vq, f->e.head, 0);
        uint32_t id, len;
        assert_int_equal(fake_used(&f->drv, &id, &len), 1);
        assert_int_equal(id, i % 8);
    }
}

static void test_indirect(void **state)
{
    struct fix *f = *state;
    struct vring_desc *t = fake_hva(&f->ram, 0x20000);
    fake_desc(t, 0, 0x30000, 16, VRING_DESC_F_NEXT, 1);
    fake_desc(t, 1, 0x31000, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
    fake_desc(t, 2, 0x32000, 1, VRING_DESC_F_WRITE, 0);
    fake_desc(f->drv.desc, 0, 0x20000, 3 * 16, VRING_DESC_F_INDIRECT, 0);
    fake_avail(&f->drv, 0);
    assert_int_equal(vq_pop(&f->vq, &f->e), 1);
    assert_int_equal(f->e.nout, 1);
    assert_int_equal(f->e.nin, 2);
    assert_int_equal(f->e.in_len, 4097);
}

static void test_span_adjacent_regions(void **state)
{
    struct fix *f = *state;
    /* 4 KiB that starts 1 KiB before the end of region 0. */
    fake_desc(f->drv.desc, 0, FAKE_REGION - 1024, 4096, VRING_DESC_F_WRITE, 0);
    fake_avail(&f->drv, 0);
    assert_int_equal(vq_pop(&f->vq, &f->e), 1);
    assert_int_equal(f->e.nin, 2);
    assert_ptr_equal(f->e.iov[0].iov_base, f->ram.buf[0] + FAKE_REGION - 1024);
    assert_int_equal(f->e.iov[0].iov_len, 1024);
    assert_ptr_equal(f->e.iov[1].iov_base, f->ram.buf[1]);
    assert_int_equal(f->e.iov[1].iov_len, 3072);
    /* Scatter/gather helpers cross the split. */
    uint8_t src[4096], dst[4096];
    for (unsigned i = 0; i < sizeof(src); i++)
        src[i] = i * 7;
    assert_int_equal(vq_buf_to_iov(f->e.iov, 2, 100, src, 4000), 3996);
    assert_int_equal(vq_iov_to_buf(f->e.iov, 2, 100, dst, 4096), 3996);
    assert_memory_equal(src, dst, 3996);
}

static void test_span_gap(void **state)
{
    struct fix *f = *state;
    fake_desc(f->drv.desc, 0, FAKE_REGION - 1024, 4096, VRING_DESC_F_WRITE, 0);
    fake_avail(&f->drv, 0);
    expect_broken(f);
}

static void test_outside_ram(void **state)
{
    struct fix *f = *state;
    fake_desc(f->drv.desc, 0, 64ULL << 30, 16, 0, 0);
    fake_avail(&f->drv, 0);
    expect_broken(f);
}

static void test_wrap_addr(void **state)
{
    struct fix *f = *state;
    fake_desc(f->drv.desc, 0, UINT64_MAX - 8, 4096, 0, 0);
    fake_avail(&f->drv, 0);
    expect_broken(f);
}

static void test_loop(void **state)
{
    struct fix *f = *state;
    fake_desc(f->drv.desc, 0, 0x10000, 16, VRING_DESC_F_NEXT, 1);
    fake_desc(f->drv.desc, 1, 0x10000, 16, VRING_DESC_F_NEXT, 0);
    fake_avail(&f->drv, 0);
    expect_broken(f);
}

static void test_self_loop(void **state)
{
    struct fix *f = *state;
    fake_desc(f->drv.desc, 2, 0x10000, 0, VRING_DESC_F_NEXT, 2);
    fake_avail(&f->drv, 2);
    expect_broken(f);
}

static void test_head_out_of_range(void **state)
{
    struct fix *f = *state;
    fake_avail(&f->drv, 8);
    expect_broken(f);
}

static void test_next_out_of_range(void **state)
{
    struct fix *f = *state;
    fake_desc(f->drv.desc, 0, 0x10000, 16, VRING_DESC_F_NEXT, 0xffff);
    fake_avail(&f->drv, 0);
    expect_broken(f);
}

static void test_indirect_loop(void **state)
{
    struct fix *f = *state;
    struct vring_desc *t = fake_hva(&f->ram, 0x20000);
    for (unsigned i = 0; i < 8; i++)
        fake_desc(t, i, 0x30000, 16, VRING_DESC_F_NEXT, (i + 1) % 8);
    fake_desc(f->drv.desc, 0, 0x20000, 8 * 16, VRING_DESC_F_INDIRECT, 0);
    fake_avail(&f->drv, 0);
    expect_broken(f);
}

static void test_indirect_nested(void **state)
{
    struct fix *f = *state;
    struct vring_desc *t = fake_hva(&f->ram, 0x20000);
    fake_desc(t, 0, 0x20000, 16, VRING_DESC_F_INDIRECT, 0);
    fake_desc(f->drv.desc, 0, 0x20000, 16, VRING_DESC_F_INDIRECT, 0);
    fake_avail(&f->drv, 0);
    expect_broken(f);
}

static void test_indirect_bad_len(void **state)
{
    struct fix *f = *state;
    fake_desc(f->drv.desc, 0, 0x20000, 24, VRING_DESC_F_INDIRECT, 0);
    fake_avail(&f->drv, 0);
    expect_broken(f);
}

static void test_indirect_zero_len(void **state)
{
    struct fix *f = *state;
    fake_desc(f->drv.desc, 0, 0x20000, 0, VRING_DESC_F_INDIRECT, 0);
    fake_avail(&f->drv, 0);
    expect_broken(f);
}

static void test_indirect_with_next(void **state)
{
    struct fix *f = *state;
    fake_desc(f->drv.desc, 0, 0x20000, 16,
              VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
    fake_avail(&f->drv, 0);
    expect_broken(f);
}

static void test_indirect_outside_ram(void **state)
{
    struct fix *f = *state;
    fake_desc(f->drv.desc, 0, FAKE_REGION - 16, 32, VRING_DESC_F_INDIRECT, 0);
    fake_avail(&f->drv, 0);
    expect_broken(f);
}

static void test_indirect_too_long(void **state)
{
    struct fix *f = *state;
    fake_desc(f->drv.desc, 0, 0x20000, 16 * 4096, VRING_DESC_F_INDIRECT, 0);
    fake_avail(&f->drv, 0);
    expect_broken(f);
}

static void test_read_after_write(void **state)
{
    struct fix *f = *state;
    fake_desc(f->drv.desc, 0, 0x10000, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    fake_desc(f->drv.desc, 1, 0x11000, 16, 0, 0);
    fake_avail(&f->drv, 0);
    expect_broken(f);
}

static void test_avail_jump(void **state)
{
    struct fix *f = *state;
    f->drv.avail->idx = 9;
    expect_broken(f);
}

static void test_init_checks(void **state)
{
    struct fix *f = *state;
    struct vq q;
    assert_int_equal(vq_init(&q, &f->ram.gm, 6, 0x1000, 0x2000, 0x3000, 0), -EINVAL);
    assert_int_equal(vq_init(&q, &f->ram.gm, 512, 0x1000, 0x2000, 0x3000, 0), -EINVAL);
    assert_int_equal(vq_init(&q, &f->ram.gm, 0, 0x1000, 0x2000, 0x3000, 0), -EINVAL);
    assert_int_equal(vq_init(&q, &f->ram.gm, 8, 0x1008, 0x2000, 0x3000, 0), -EINVAL);
    assert_int_equal(vq_init(&q, &f->ram.gm, 8, 0x1000, 0x2001, 0x3000, 0), -EINVAL);
    assert_int_equal(vq_init(&q, &f->ram.gm, 8, 0x1000, 0x2000, 0x3002, 0), -EINVAL);
    assert_int_equal(vq_init(&q, &f->ram.gm, 8, 0x1000, 0x2000, 16ULL << 30, 0), -EFAULT);
    /* Used ring crossing into the gap. */
    assert_int_equal(vq_init(&q, &f->ram.gm, 256, 0x1000, 0x2000,
                             FAKE_REGION - 64, 0), -EFAULT);
    assert_int_equal(vq_init(&q, &f->ram.gm, 256, 0x1000, 0x3000,
                             4 * FAKE_REGION, 0), 0);
}

static void test_event_idx(void **state)
{
    struct fix *f = *state;
    uint16_t *used_event = &f->drv.avail->ring[8];
    uint16_t *avail_event = (uint16_t *)&f->drv.used->ring[8];

    for (unsigned i = 0; i < 4; i++) {
        fake_desc(f->drv.desc, i, 0x10000, 1, VRING_DESC_F_WRITE, 0);
        fake_avail(&f->drv, i);
    }
    vq_disable_notify(&f->vq);
    /* EVENT_IDX does not use the flags. */
    assert_int_equal(f->drv.used->flags, 0);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(vq_pop(&f->vq, &f->e), 1);
    assert_false(vq_enable_notify(&f->vq));
    assert_int_equal(*avail_event, 4);

    /* Driver wants an interrupt once used idx passes 2. */
    *used_event = 2;
    vq_push(&f->vq, 0, 1);
    assert_true(vq_should_notify(&f->vq));      /* first decision always */
    vq_push(&f->vq, 1, 1);
    assert_false(vq_should_notify(&f->vq));     /* idx 2: not past event 2 */
    vq_push(&f->vq, 2, 1);
    assert_true(vq_should_notify(&f->vq));      /* idx 3 crosses event 2 */
    vq_push(&f->vq, 3, 1);
    assert_false(vq_should_notify(&f->vq));
    /* Arrival during re-enable is reported. */
    fake_desc(f->drv.desc, 4, 0x10000, 1, VRING_DESC_F_WRITE, 0);
    fake_avail(&f->drv, 4);
    assert_true(vq_enable_notify(&f->vq));
}

int main(void)
{
#define T(fn, s) cmocka_unit_test_setup_teardown(fn, s, teardown)
    const struct CMUnitTest tests[] = {
        T(test_simple_chain, setup_adj),
        T(test_ring_wraps, setup_adj),
        T(test_indirect, setup_adj),
        T(test_span_adjacent_regions, setup_adj),
        T(test_span_gap, setup_gap),
        T(test_outside_ram, setup_adj),
        T(test_wrap_addr, setup_adj),
        T(test_loop, setup_adj),
        T(test_self_loop, setup_adj),
        T(test_head_out_of_range, setup_adj),
        T(test_next_out_of_range, setup_adj),
        T(test_indirect_loop, setup_adj),
        T(test_indirect_nested, setup_adj),
        T(test_indirect_bad_len, setup_adj),
        T(test_indirect_zero_len, setup_adj),
        T(test_indirect_with_next, setup_gap),
        T(test_indirect_outside_ram, setup_gap),
        T(test_indirect_too_long, setup_adj),
        T(test_read_after_write, setup_adj),
        T(test_avail_jump, setup_adj),
        T(test_init_checks, setup_gap),
        T(test_event_idx, setup_ev),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
