/* MCE encodings bit for bit (Intel and AMD guests), MCG_CAP choices, the
 * user-mode landing rule, poison-range rounding for every backend page
 * size, and the JSON event line. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "vmm/mce.h"

static void test_encode_ar(void **state)
{
    struct kvm_x86_mce m;
    static const uint8_t zero[sizeof(m.pad1) + sizeof(m.pad2)];

    (void)state;
    memset(&m, 0xa5, sizeof(m));
    assert_int_equal(mce_encode(MCE_ENC_INTEL, MCE_AR, 0x12345000, &m), 0);
    assert_true(m.status == 0xBD80000000000134ULL);
    assert_true(m.mcg_status == 0x7);          /* MCIP|EIPV|RIPV */
    assert_true(m.addr == 0x12345000);
    assert_true(m.misc == 0x8c);
    assert_int_equal(m.bank, 9);
    assert_memory_equal(m.pad1, zero, sizeof(m.pad1));
    assert_memory_equal(m.pad2, zero, sizeof(m.pad2));
    /* The named bits really make up the constant. */
    assert_true(m.status == MCE_STATUS_AR);
    assert_true((m.status & 0xffff) == MCE_MCACOD_AR);
    assert_true(mce_raises_mc(&m));
}

static void test_encode_ao(void **state)
{
    struct kvm_x86_mce m;

    (void)state;
    memset(&m, 0xa5, sizeof(m));
    assert_int_equal(mce_encode(MCE_ENC_INTEL, MCE_AO, 0x100000000ULL, &m), 0);
    assert_true(m.status == 0xBD000000000000C0ULL);
    assert_true(m.status == MCE_STATUS_AO);
    assert_true(m.mcg_status == 0x5);          /* MCIP|RIPV, no EIPV */
    assert_true(m.addr == 0x100000000ULL);
    assert_true(m.misc == 0x8c);
    assert_int_equal(m.bank, 9);
    assert_false(m.status & MCE_MCI_STATUS_AR);
    assert_true(mce_raises_mc(&m));
}

/* QEMU >= 9.1 for AMD guests: an uncorrected #MC with POISON, no S/AR
 * (bit 55 is TCC on AMD) and no MCACOD; MCG_STATUS non-zero, or KVM would
 * take it for a UCNA and raise nothing. */
static void test_encode_amd_ar(void **state)
{
    struct kvm_x86_mce m;
    static const uint8_t zero[sizeof(m.pad1) + sizeof(m.pad2)];

    (void)state;
    memset(&m, 0xa5, sizeof(m));
    assert_int_equal(mce_encode(MCE_ENC_AMD, MCE_AR, 0x3ffa0000, &m), 0);
    assert_true(m.status == 0xBC00080000000000ULL);
    assert_true(m.status == MCE_STATUS_AMD_AR);
    assert_true(m.status == (MCE_MCI_STATUS_VAL | MCE_MCI_STATUS_UC | MCE_MCI_STATUS_EN |
                             MCE_MCI_STATUS_MISCV | MCE_MCI_STATUS_ADDRV |
                             MCE_MCI_STATUS_POISON));
    assert_true(m.mcg_status == 0x7);          /* MCIP|EIPV|RIPV */
    assert_true(m.addr == 0x3ffa0000);
    assert_true(m.misc == 0x8c);
    assert_int_equal(m.bank, 9);
    assert_memory_equal(m.pad1, zero, sizeof(m.pad1));
    assert_memory_equal(m.pad2, zero, sizeof(m.pad2));
    assert_false(m.status & (MCE_MCI_STATUS_S | MCE_MCI_STATUS_AR | MCE_MCI_STATUS_OVER |
                             MCE_MCI_STATUS_DEFERRED));
    assert_true(mce_raises_mc(&m));
}

/* AMD's AO: a deferred error, UC clear, so KVM writes the bank and raises
 * no #MC; the guest's poll finds it. */
static void test_encode_amd_ao(void **state)
{
    struct kvm_x86_mce m;

    (void)state;
    memset(&m, 0xa5, sizeof(m));
    assert_int_equal(mce_encode(MCE_ENC_AMD, MCE_AO, 0x2001000, &m), 0);
    assert_true(m.status == 0x9C00180000000000ULL);
    assert_true(m.status == MCE_STATUS_AMD_AO);
    assert_true(m.status == (MCE_MCI_STATUS_VAL | MCE_MCI_STATUS_EN | MCE_MCI_STATUS_MISCV |
                             MCE_MCI_STATUS_ADDRV | MCE_MCI_STATUS_DEFERRED |
                             MCE_MCI_STATUS_POISON));
    assert_true(m.mcg_status == 0x5);          /* as QEMU passes it; KVM ignores it */
    assert_true(m.addr == 0x2001000);
    assert_true(m.misc == 0x8c);
    assert_int_equal(m.bank, 9);
    assert_false(mce_raises_mc(&m));
}

static void test_encode_bad_kind(void **state)
{
    struct kvm_x86_mce m;

    (void)state;
    assert_int_equal(mce_encode(MCE_ENC_INTEL, (enum mce_kind)7, 0, &m), -EINVAL);
    assert_int_equal(mce_encode(MCE_ENC_AMD, (enum mce_kind)7, 0, &m), -EINVAL);
    assert_int_equal(mce_encode((enum mce_encoding)5, MCE_AR, 0, &m), -EINVAL);
    assert_string_equal(mce_encoding_name(MCE_ENC_INTEL), "intel");
    assert_string_equal(mce_encoding_name(MCE_ENC_AMD), "amd");
}

/* mode=user lands only at CPL 3 with nothing half-delivered. */
static void test_user_mode_blocker(void **state)
{
    struct kvm_sregs sr;
    struct kvm_vcpu_events ev;

    (void)state;
    memset(&sr, 0, sizeof(sr));
    memset(&ev, 0, sizeof(ev));
    sr.cs.selector = 0x33;
    sr.ss.selector = 0x2b;
    sr.ss.dpl = 3;
    assert_null(mce_user_mode_blocker(&sr, &ev));
    /* A queued, undelivered NMI or interrupt goes after the #MC. */
    ev.nmi.pending = 1;
    assert_null(mce_user_mode_blocker(&sr, &ev));

    ev.interrupt.injected = 1;
    assert_string_equal(mce_user_mode_blocker(&sr, &ev), "an interrupt is being delivered");
    ev.interrupt.injected = 0;
    ev.exception.injected = 1;
    assert_string_equal(mce_user_mode_blocker(&sr, &ev), "an exception is being delivered");
    ev.exception.injected = 0;
    ev.nmi.injected = 1;
    assert_string_equal(mce_user_mode_blocker(&sr, &ev), "an NMI is being delivered");
    ev.nmi.injected = 0;

    /* The kernel: CPL 0. */
    sr.cs.selector = 0x10;
    sr.ss.selector = 0x18;
    sr.ss.dpl = 0;
    assert_string_equal(mce_user_mode_blocker(&sr, &ev), "not at CPL 3");
    /* SS.DPL is the CPL KVM reports; a CS that disagrees is not trusted. */
    sr.ss.dpl = 3;
    assert_string_equal(mce_user_mode_blocker(&sr, &ev), "CS.RPL is not 3");
}

static void test_mcg_cap(void **state)
{
    (void)state;
    /* PVM: 32 banks, CTL_P, SER_P and LMCE_P (bit 27) offered. */
    assert_true(mce_mcg_cap(32 | MCE_MCG_CTL_P | MCE_MCG_SER_P | (1ULL << 27)) ==
                (10 | MCE_MCG_CTL_P | MCE_MCG_SER_P));
    assert_true(mce_mcg_cap(10 | MCE_MCG_SER_P) == (10 | MCE_MCG_SER_P));
    assert_true(mce_mcg_cap(10) == 10);
    assert_true(mce_mcg_cap(255 | MCE_MCG_CTL_P) == (10 | MCE_MCG_CTL_P));
    /* Bank 9 would not exist. */
    assert_true(mce_mcg_cap(9 | MCE_MCG_SER_P | MCE_MCG_CTL_P) == 0);
    assert_true(mce_mcg_cap(0) == 0);
    /* Other capability bits never leak through. */
    assert_true(mce_mcg_cap(0xffffffffffffffffULL) ==
                (10 | MCE_MCG_CTL_P | MCE_MCG_SER_P));
}

static void test_range_4k(void **state)
{
    struct mce_poison_range r;

    (void)state;
    assert_int_equal(mce_poison_range(0x7f0000123456ULL, 12, 4096, &r), 0);
    assert_true(r.start == 0x7f0000123000ULL);
    assert_true(r.len == 4096);
    assert_true(r.report == 0x7f0000123000ULL);
    /* lsb 0 (old kernels) still loses a whole 4 KiB page. */
    assert_int_equal(mce_poison_range(0x7f0000123456ULL, 0, 4096, &r), 0);
    assert_true(r.start == 0x7f0000123000ULL && r.len == 4096);
}

static void test_range_2m_dpage(void **state)
{
    struct mce_poison_range r;

    (void)state;
    /* dmemfs: si_addr is the dpage start, lsb 12, whole dpage is gone. */
    assert_int_equal(mce_poison_range(0x7f0000200000ULL, 12, 2ULL << 20, &r), 0);
    assert_true(r.start == 0x7f0000200000ULL);
    assert_true(r.len == 2ULL << 20);
    assert_true(r.report == 0x7f0000200000ULL);
    /* An address inside the dpage still poisons the whole dpage. */
    assert_int_equal(mce_poison_range(0x7f00003ff123ULL, 12, 2ULL << 20, &r), 0);
    assert_true(r.start == 0x7f0000200000ULL && r.len == 2ULL << 20);
    assert_true(r.report == 0x7f00003ff000ULL);
    /* hugetlbfs reports lsb 21 on a 4 KiB-configured caller: lsb wins. */
    assert_int_equal(mce_poison_range(0x7f00003ff123ULL, 21, 4096, &r), 0);
    assert_true(r.start == 0x7f0000200000ULL && r.len == 2ULL << 20);
}

static void test_range_1g_dpage(void **state)
{
    struct mce_poison_range r;

    (void)state;
    assert_int_equal(mce_poison_range(0x7f0040000000ULL, 12, 1ULL << 30, &r), 0);
    assert_true(r.start == 0x7f0040000000ULL);
    assert_true(r.len == 1ULL << 30);
    assert_true(r.report == 0x7f0040000000ULL);
    assert_int_equal(mce_poison_range(0x7f007fffffffULL, 30, 1ULL << 30, &r), 0);
    assert_true(r.start == 0x7f0040000000ULL && r.len == 1ULL << 30);
    assert_true(r.report == 0x7f007ffff000ULL);
}

static void test_range_invalid(void **state)
{
    struct mce_poison_range r;

    (void)state;
    assert_int_equal(mce_poison_range(0x1000, 12, 0, &r), -EINVAL);
    assert_int_equal(mce_poison_range(0x1000, 12, 2048, &r), -EINVAL);
    assert_int_equal(mce_poison_range(0x1000, 12, 3 * 4096, &r), -EINVAL);
    assert_int_equal(mce_poison_range(0x1000, 64, 4096, &r), -EINVAL);
}

static json_object *parse_line(const char *line)
{
    size_t n = strlen(line);

    assert_true(n > 1);
    assert_int_equal(line[n - 1], '\n');
    assert_null(memchr(line, '\n', n - 1));   /* exactly one line */
    return json_tokener_parse(line);
}

static const char *get_str(json_object *o, const char *key)
{
    json_object *v;

    assert_true(json_object_object_get_ex(o, key, &v));
    assert_true(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

static void test_log_line_full(void **state)
{
    struct mce_event ev = {
        .time = { .tv_sec = 1700000000, .tv_nsec = 123456789 },
        .kind = MCE_AR,
        .encoding = MCE_ENC_AMD,
        .hva_known = true, .hva = 0x7f1234567000ULL,
        .gpa_known = true, .gpa = 0x1000,
        .page_size = 2ULL << 20,
        .vcpu = 1,
        .injected = true,
        .reason = "vcpu access \"quoted\"",
    };
    char buf[1024];
    json_object *o, *v;
    int n;

    (void)state;
    n = mce_log_line(buf, sizeof(buf), &ev);
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(buf));
    o = parse_line(buf);
    assert_non_null(o);
    assert_int_equal(json_object_object_length(o), 9);
    assert_string_equal(get_str(o, "time"), "2023-11-14T22:13:20.123456Z");
    assert_string_equal(get_str(o, "kind"), "AR");
    assert_string_equal(get_str(o, "encoding"), "amd");
    assert_string_equal(get_str(o, "hva"), "0x7f1234567000");
    assert_string_equal(get_str(o, "gpa"), "0x1000");
    assert_string_equal(get_str(o, "reason"), "vcpu access \"quoted\"");
    assert_true(json_object_object_get_ex(o, "page_size", &v));
    assert_true(json_object_is_type(v, json_type_int));
    assert_int_equal(json_object_get_int64(v), 2 << 20);
    assert_true(json_object_object_get_ex(o, "vcpu", &v));
    assert_true(json_object_is_type(v, json_type_int));
    assert_int_equal(json_object_get_int(v), 1);
    assert_true(json_object_object_get_ex(o, "injected", &v));
    assert_true(json_object_is_type(v, json_type_boolean));
    assert_true(json_object_get_boolean(v));
    json_object_put(o);
}

static void test_log_line_nulls(void **state)
{
    struct mce_event ev = {
        .time = { .tv_sec = 0, .tv_nsec = 999999999 },
        .kind = MCE_AO,
        .hva_known = true, .hva = 0xdead000,
        .gpa_known = false,
        .page_size = 4096,
        .vcpu = -1,
        .injected = false,
        .reason = NULL,
    };
    char buf[1024];
    json_object *o, *v;

    (void)state;
    assert_true(mce_log_line(buf, sizeof(buf), &ev) > 0);
    o = parse_line(buf);
    assert_non_null(o);
    assert_string_equal(get_str(o, "time"), "1970-01-01T00:00:00.999999Z");
    assert_string_equal(get_str(o, "kind"), "AO");
    assert_string_equal(get_str(o, "encoding"), "intel");
    assert_true(json_object_object_get_ex(o, "gpa", &v));
    assert_null(v);
    assert_true(json_object_object_get_ex(o, "vcpu", &v));
    assert_null(v);
    assert_true(json_object_object_get_ex(o, "injected", &v));
    assert_false(json_object_get_boolean(v));
    assert_string_equal(get_str(o, "reason"), "");
    json_object_put(o);
}

static void test_log_line_small_buffer(void **state)
{
    struct mce_event ev = { .kind = MCE_AR, .vcpu = 0 };
    char buf[16];

    (void)state;
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(mce_log_line(buf, sizeof(buf), &ev), -ENOSPC);
    assert_string_equal(buf, "");
}

static void test_log_write(void **state)
{
    struct mce_event ev = { .kind = MCE_AO, .vcpu = 0, .reason = "pipe" };
    char buf[1024];
    int p[2];
    ssize_t n;
    json_object *o;

    (void)state;
    assert_int_equal(pipe(p), 0);
    assert_int_equal(mce_log_write(p[1], &ev), 0);
    n = read(p[0], buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    o = parse_line(buf);
    assert_non_null(o);
    assert_string_equal(get_str(o, "reason"), "pipe");
    json_object_put(o);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);   /* see the error, not the signal */
    assert_int_equal(mce_log_write(p[1], &ev), -EPIPE);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_ar),
        cmocka_unit_test(test_encode_ao),
        cmocka_unit_test(test_encode_amd_ar),
        cmocka_unit_test(test_encode_amd_ao),
        cmocka_unit_test(test_encode_bad_kind),
        cmocka_unit_test(test_user_mode_blocker),
        cmocka_unit_test(test_mcg_cap),
        cmocka_unit_test(test_range_4k),
        cmocka_unit_test(test_range_2m_dpage),
        cmocka_unit_test(test_range_1g_dpage),
        cmocka_unit_test(test_range_invalid),
        cmocka_unit_test(test_log_line_full),
        cmocka_unit_test(test_log_line_nulls),
        cmocka_unit_test(test_log_line_small_buffer),
        cmocka_unit_test(test_log_write),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
