/* [net.N]: every rule of cfg_net has a malformed config here that must fail
 * with one line naming net.N.key and the value; the good configs check the
 * defaults (the stable MAC above all), overrides and the queue-pair clamp
 * with its warning. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/config.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static char tmpdir[64];
static const struct cfg_limits limits = { .max_vcpus = 64, .host_memory = 4ULL << 30 };

static void write_file(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
    assert_int_equal(close(fd), 0);
}

/* Load "[vm]\nkernel=...\n" + body as @T/<name>, with --set strings. */
static int load(const char *name, const char *body, const char *const *sets,
                struct dvmm_config *cfg, char *err, size_t errlen)
{
    char path[256], text[4096];
    unsigned n = 0;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    snprintf(text, sizeof(text), "[vm]\nkernel = %s/vmlinuz\n%s", tmpdir, body);
    write_file(path, text);
    while (sets && sets[n])
        n++;
    return cfg_load(path, (char *const *)sets, n, &limits, cfg, err, errlen);
}

/* Run load with stderr in a file; the log goes to log[]. */
static int load_logged(const char *body, struct dvmm_config *cfg, char *log, size_t loglen)
{
    char path[256], err[512];
    int saved, fd, rc;

    snprintf(path, sizeof(path), "%s/stderr.txt", tmpdir);
    fflush(stderr);
    saved = dup(2);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    rc = load("vm.ini", body, NULL, cfg, err, sizeof(err));
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fd = open(path, O_RDONLY);
    ssize_t n = read(fd, log, loglen - 1);
    close(fd);
    log[n > 0 ? n : 0] = '\0';
    if (rc)
        fail_msg("load failed: %s", err);
    return rc;
}

struct bad_case {
    const char *name;
    const char *body;
    const char *set;          /* one --set, or NULL */
    const char *expect;       /* substring of the one-line error */
};

#define T0 "[net.0]\ntap = tap0\n"
static const struct bad_case bad_cases[] = {
    { "section net", "[net]\ntap = t\n", NULL, "[net]: unknown section (NICs are [net.0] .. [net.7])" },
    { "net.8", "[net.8]\ntap = t\n", NULL, "[net.8]: net index out of range (use net.0 .. net.7)" },
    { "net.01", "[net.01]\ntap = t\n", NULL, "[net.01]: bad net section (use net.0 .. net.7)" },
    { "net.x", "[net.x]\ntap = t\n", NULL, "[net.x]: bad net section" },
    { "net.", "[net.]\ntap = t\n", NULL, "[net.]: bad net section" },
    { "unknown key", T0 "speed = 10G\n", NULL, "net.0.speed = '10G': unknown key" },
    { "no tap", "[net.3]\nmac = 02:00:00:00:00:01\n", NULL, "vm.ini: net.3.tap: missing (required: a TAP interface to use or create)" },
    { "tap empty", "[net.0]\ntap = \"\"\n", NULL, "net.0.tap = '': empty" },
    { "tap 16 bytes", "[net.0]\ntap = abcdefghijklmnop\n", NULL, "net.0.tap = 'abcdefghijklmnop': longer than 15 bytes (IFNAMSIZ)" },
    { "tap slash", "[net.0]\ntap = a/b\n", NULL, "net.0.tap = 'a/b': interface names cannot hold" },
    { "tap colon", "[net.0]\ntap = eth0:1\n", NULL, "net.0.tap = 'eth0:1': interface names cannot hold" },
    { "tap space", "[net.0]\ntap = \"a b\"\n", NULL, "net.0.tap = 'a b': interface names cannot hold" },
    { "tap dot", "[net.0]\ntap = .\n", NULL, "net.0.tap = '.': not an interface name" },
    { "tap dotdot", "[net.0]\ntap = ..\n", NULL, "net.0.tap = '..': not an interface name" },
    { "mac short", T0 "mac = 02:00:00:00:00\n", NULL, "net.0.mac = '02:00:00:00:00': not a MAC address" },
    { "mac junk", T0 "mac = 02:00:00:00:00:zz\n", NULL, "net.0.mac = '02:00:00:00:00:zz': not a MAC address (use xx:xx:xx:xx:xx:xx, hex)" },
    { "mac dashes", T0 "mac = 02-00-00-00-00-01\n", NULL, "net.0.mac = '02-00-00-00-00-01': not a MAC address" },
    { "mac one digit groups", T0 "mac = 2:0:0:0:0:1:0:0:0\n", NULL, "not a MAC address" },
    { "mac with space", T0 "mac = \" 2:00:00:00:00:01\"\n", NULL, "not a MAC address" },
    { "mac trailing", T0 "mac = 02:00:00:00:00:01x\n", NULL, "not a MAC address" },
    { "mac multicast", T0 "mac = 01:00:5e:00:00:01\n", NULL, "net.0.mac = '01:00:5e:00:00:01': a multicast address" },
    { "mac broadcast", T0 "mac = ff:ff:ff:ff:ff:ff\n", NULL, "net.0.mac = 'ff:ff:ff:ff:ff:ff': a multicast address" },
    { "mac zero", T0 "mac = 00:00:00:00:00:00\n", NULL, "net.0.mac = '00:00:00:00:00:00': all zeros" },
    { "queues 0", T0 "queues = 0\n", NULL, "net.0.queues = '0': must be at least 1" },
    { "queues 32", T0 "queues = 32\n", NULL, "net.0.queues = '32': out of range (use 1..31 queue pairs)" },
    { "queues junk", T0 "queues = many\n", NULL, "net.0.queues = 'many': not a number" },
    { "queue_size 3", T0 "queue_size = 3\n", NULL, "net.0.queue_size = '3': not a power of two" },
    { "queue_size 512", T0 "queue_size = 512\n", NULL, "net.0.queue_size = '512': out of range (use 2..256)" },
    { "mtu 67", T0 "mtu = 67\n", NULL, "net.0.mtu = '67': out of range (use 68..65535)" },
    { "mtu 65536", T0 "mtu = 65536\n", NULL, "net.0.mtu = '65536': out of range (use 68..65535)" },
    { "mtu junk", T0 "mtu = 1.5k\n", NULL, "net.0.mtu = '1.5k': not a number" },
    { "vhost junk", T0 "vhost = maybe\n", NULL, "net.0.vhost = 'maybe': unknown value (use no, yes or auto)" },
    { "two NICs one TAP", T0 "[net.4]\ntap = tap0\n", NULL, "net.4.tap = 'tap0': same TAP interface as net.0" },
    { "second NIC bad", T0 "[net.1]\ntap = tap1\nmtu = 0\n", NULL, "net.1.mtu = '0': out of range" },
    { "--set bad", T0, "net.0.vhost=sometimes", "--set net.0.vhost: net.0.vhost = 'sometimes': unknown value" },
    { "--set makes a NIC without tap", "", "net.2.mtu=9000", "--set net.2.mtu: net.2.tap: missing" },
    { "--set bad section", "", "net.9.tap=x", "--set net.9.tap: [net.9]: net index out of range" },
};

static void test_bad(void **state)
{
    const struct bad_case *bc = *state;
    const char *sets[2] = { bc->set, NULL };
    struct dvmm_config cfg;
    char err[1024] = "";
    int rc = load("vm.ini", bc->body, sets, &cfg, err, sizeof(err));

    if (rc != -EINVAL || !strstr(err, bc->expect))
        fail_msg("rc %d, error '%s'; want -EINVAL and '%s'", rc, err, bc->expect);
    assert_null(strchr(err, '\n'));
}

static void test_defaults(void **state)
{
    struct dvmm_config cfg;
    char err[512] = "";
    uint8_t mac[6];

    (void)state;
    assert_int_equal(load("vm.ini", "vcpus = 3\n" T0, NULL, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.nnets, 1);
    const struct cfg_net *n = &cfg.net[0];
    assert_int_equal(n->index, 0);
    assert_string_equal(n->tap, "tap0");
    assert_int_equal(n->queues, 3);            /* one pair per vCPU */
    assert_int_equal(n->queues_requested, 0);
    assert_int_equal(n->queue_size, 256);
    assert_int_equal(n->mtu, 1500);
    assert_int_equal(n->vhost, CFG_VHOST_NO);
    assert_false(n->mac_given);
    /* Locally administered, unicast, and what cfg_net_default_mac says. */
    assert_int_equal(n->mac[0], 0x02);
    cfg_net_default_mac("vm", 0, mac);
    assert_memory_equal(n->mac, mac, 6);
}

static void test_default_mac_stable(void **state)
{
    uint8_t a[6], b[6], c[6], d[6];

    (void)state;
    cfg_net_default_mac("web-1", 0, a);
    cfg_net_default_mac("web-1", 0, b);
    cfg_net_default_mac("web-1", 1, c);
    cfg_net_default_mac("web-2", 0, d);
    assert_memory_equal(a, b, 6);
    assert_memory_not_equal(a, c, 6);
    assert_memory_not_equal(a, d, 6);
    for (const uint8_t *m = a; m; m = m == a ? c : m == c ? d : NULL) {
        assert_int_equal(m[0] & 1, 0);      /* unicast */
        assert_int_equal(m[0] & 2, 2);      /* locally administered */
    }
}

static void test_full(void **state)
{
    struct dvmm_config cfg;
    char err[512] = "";

    (void)state;
    assert_int_equal(load("full.ini",
                          "vcpus = 8\n"
                          "[net.5]\ntap = tapB\nmac = 52:54:00:AB:cd:01\nqueues = 4\n"
                          "queue_size = 64\nmtu = 9000\nvhost = AUTO\n"
                          "[net.1]\ntap = tapA\nvhost = yes\n",
                          NULL, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.nnets, 2);
    /* Sorted by N. */
    assert_int_equal(cfg.net[0].index, 1);
    assert_string_equal(cfg.net[0].tap, "tapA");
    assert_int_equal(cfg.net[0].vhost, CFG_VHOST_YES);
    assert_int_equal(cfg.net[0].queues, 8);
    const struct cfg_net *n = &cfg.net[1];
    assert_int_equal(n->index, 5);
    assert_true(n->mac_given);
    assert_memory_equal(n->mac, ((uint8_t[]){ 0x52, 0x54, 0x00, 0xab, 0xcd, 0x01 }), 6);
    assert_int_equal(n->queues, 4);
    assert_int_equal(n->queues_requested, 4);
    assert_int_equal(n->queue_size, 64);
    assert_int_equal(n->mtu, 9000);
    assert_int_equal(n->vhost, CFG_VHOST_AUTO);
}

static void test_set(void **state)
{
    static const char *const sets[] = { "net.0.tap=tapX", "net.0.queues=1", NULL };
    struct dvmm_config cfg;
    char err[512] = "";

    (void)state;
    assert_int_equal(load("vm.ini", "vcpus = 2\n", sets, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.nnets, 1);
    assert_string_equal(cfg.net[0].tap, "tapX");
    assert_int_equal(cfg.net[0].queues, 1);
}

static void test_clamp(void **state)
{
    struct dvmm_config cfg;
    char log[4096];

    (void)state;
    load_logged("vcpus = 2\n" T0 "queues = 8\n", &cfg, log, sizeof(log));
    assert_int_equal(cfg.net[0].queues, 2);
    assert_int_equal(cfg.net[0].queues_requested, 8);
    if (!strstr(log, "net.0.queues = 8 is more than the 2 vCPUs; using 2 queue pairs"))
        fail_msg("no clamp warning naming 8 and 2 in: %s", log);
    /* Default: no warning, and never more than 31 pairs. */
    load_logged("vcpus = 40\n" T0, &cfg, log, sizeof(log));
    assert_int_equal(cfg.net[0].queues, 31);
    assert_null(strstr(log, "more than"));
}

static int group_setup(void **state)
{
    char path[256];

    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/dvmm-netcfg-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(path, sizeof(path), "%s/vmlinuz", tmpdir);
    write_file(path, "kernel");
    return 0;
}

static int group_teardown(void **state)
{
    char path[256];

    (void)state;
    static const char *const files[] = { "vmlinuz", "vm.ini", "full.ini", "stderr.txt" };
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    return 0;
}

int main(void)
{
    static const struct CMUnitTest good[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_default_mac_stable),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_clamp),
    };
    struct CMUnitTest tests[ARRAY_SIZE(bad_cases) + ARRAY_SIZE(good)];
    char *names[ARRAY_SIZE(bad_cases)];
    int rc;

    for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
        if (asprintf(&names[i], "bad [net.N]: %s", bad_cases[i].name) < 0)
            return 1;
        tests[i] = (struct CMUnitTest){
            .name = names[i], .test_func = test_bad,
            .initial_state = (void *)&bad_cases[i],
        };
    }
    memcpy(tests + ARRAY_SIZE(bad_cases), good, sizeof(good));
    cmocka_set_message_output(CM_OUTPUT_TAP);
    rc = _cmocka_run_group_tests("test_net_config", tests, ARRAY_SIZE(tests), group_setup,
                                 group_teardown);
    for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++)
        free(names[i]);
    return rc;
}
