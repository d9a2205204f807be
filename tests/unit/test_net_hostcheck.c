/* hostcheck's virtio-net rows on fake roots: tun-multiqueue from the
 * <root>/.tun-features fixture (TUNGETFEATURES on the real host) and
 * vhost-net from <root>/dev/vhost-net. */
#include <fcntl.h>
#include <linux/if_tun.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kernel-support/hostcheck.h"

static char root[64];

static void put(const char *rel, const char *text)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void rm(const char *rel)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    unlink(p);
}

static const struct hc_check *row(struct hc_report *rep, const char *name)
{
    assert_int_equal(hostcheck_run(root, NULL, rep), 0);
    const struct hc_check *c = hc_report_find(rep, name);
    assert_non_null(c);
    return c;
}

static void test_rows(void **state)
{
    struct hc_report *rep = calloc(1, sizeof(*rep));
    char feat[32];
    (void)state;

    /* No fixture: not probed, no complaint. */
    const struct hc_check *c = row(rep, "tun-multiqueue");
    assert_int_equal(c->status, HC_OK);
    assert_non_null(strstr(c->value, "not probed"));
    c = row(rep, "vhost-net");
    assert_int_equal(c->status, HC_WARN);
    assert_non_null(strstr(c->advice, "vhost = auto and no use the user-space datapath"));

    snprintf(feat, sizeof(feat), "0x%x\n", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE);
    put(".tun-features", feat);
    put("dev/vhost-net", "");
    c = row(rep, "tun-multiqueue");
    assert_int_equal(c->status, HC_OK);
    assert_non_null(strstr(c->value, "IFF_MULTI_QUEUE and IFF_VNET_HDR"));
    c = row(rep, "vhost-net");
    assert_int_equal(c->status, HC_OK);

    snprintf(feat, sizeof(feat), "0x%x\n", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
    put(".tun-features", feat);
    c = row(rep, "tun-multiqueue");
    assert_int_equal(c->status, HC_WARN);
    assert_non_null(strstr(c->value, "IFF_MULTI_QUEUE no, IFF_VNET_HDR yes"));
    assert_non_null(strstr(c->advice, "net.N.queues > 1"));

    put(".tun-features", "0x2\n");
    c = row(rep, "tun-multiqueue");
    assert_int_equal(c->status, HC_WARN);
    assert_non_null(strstr(c->advice, "vnet headers"));
    free(rep);
}

static int setup(void **state)
{
    char p[128];
    (void)state;
    strcpy(root, "/tmp/dvmm-hcnet-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    snprintf(p, sizeof(p), "%s/dev", root);
    mkdir(p, 0755);
    return 0;
}

static int teardown(void **state)
{
    char p[128];
    (void)state;
    rm(".tun-features");
    rm("dev/vhost-net");
    snprintf(p, sizeof(p), "%s/dev", root);
    rmdir(p);
    rmdir(root);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_rows) };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, setup, teardown);
}
