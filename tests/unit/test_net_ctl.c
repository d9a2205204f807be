/* The control socket's `link` command: validation of dev=net.N and
 * state=up|down, the handler call, and the client's `link net.N up` form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/ctl_proto.h"
#include "vmm/ctl_client.h"

static int calls;
static unsigned last_net;
static bool last_up;

static int h_link(void *o, unsigned net, bool up, json_object *reply)
{
    (void)o;
    calls++;
    last_net = net;
    last_up = up;
    if (net == 7) {
        json_object_object_add(reply, "error", json_object_new_string("link: this VM has no net.7"));
        return -19;
    }
    return 0;
}

static const struct ctl_handlers hs = { .link = h_link };

/* ok (1/0) and the error text of one request line. */
static int run(const char *line, char *err, size_t len)
{
    json_object *r = ctl_handle_line(&hs, line, strlen(line)), *v;
    int ok;
    assert_non_null(r);
    assert_true(json_object_object_get_ex(r, "ok", &v));
    ok = json_object_get_boolean(v);
    err[0] = '\0';
    if (!ok && json_object_object_get_ex(r, "error", &v))
        snprintf(err, len, "%s", json_object_get_string(v));
    json_object_put(r);
    return ok;
}

static void test_link_requests(void **state)
{
    char err[256];
    (void)state;
    calls = 0;
    assert_true(run("{\"cmd\":\"link\",\"dev\":\"net.3\",\"state\":\"down\"}", err, sizeof(err)));
    assert_int_equal(last_net, 3);
    assert_false(last_up);
    assert_true(run("{\"cmd\":\"link\",\"dev\":\"net.0\",\"state\":\"up\"}", err, sizeof(err)));
    assert_int_equal(last_net, 0);
    assert_true(last_up);
    assert_int_equal(calls, 2);

    static const struct { const char *req, *err; } bad[] = {
        { "{\"cmd\":\"link\",\"dev\":\"net.0\"}", "link: missing key \"state\"" },
        { "{\"cmd\":\"link\",\"state\":\"up\"}", "link: missing key \"dev\"" },
        { "{\"cmd\":\"link\",\"dev\":\"net.8\",\"state\":\"up\"}", "link: dev must be \"net.0\" .. \"net.7\"" },
        { "{\"cmd\":\"link\",\"dev\":\"net.00\",\"state\":\"up\"}", "dev must be" },
        { "{\"cmd\":\"link\",\"dev\":\"disk.0\",\"state\":\"up\"}", "dev must be" },
        { "{\"cmd\":\"link\",\"dev\":0,\"state\":\"up\"}", "dev must be" },
        { "{\"cmd\":\"link\",\"dev\":\"net.0\\u0000x\",\"state\":\"up\"}", "dev must be" },
        { "{\"cmd\":\"link\",\"dev\":\"net.0\",\"state\":\"UP\"}", "link: state must be \"up\" or \"down\"" },
        { "{\"cmd\":\"link\",\"dev\":\"net.0\",\"state\":true}", "state must be" },
        { "{\"cmd\":\"link\",\"dev\":\"net.0\",\"state\":\"up\",\"x\":1}", "link: unknown key \"x\"" },
        { "{\"cmd\":\"link\",\"dev\":\"net.7\",\"state\":\"up\"}", "link: this VM has no net.7" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (run(bad[i].req, err, sizeof(err)) || !strstr(err, bad[i].err))
            fail_msg("%s: error '%s', want '%s'", bad[i].req, err, bad[i].err);
    }
    assert_int_equal(calls, 3);                 /* only the last reached the handler */

    /* A VM without the handler says so. */
    static const struct ctl_handlers none = { 0 };
    const char *line = "{\"cmd\":\"link\",\"dev\":\"net.0\",\"state\":\"up\"}";
    json_object *r = ctl_handle_line(&none, line, strlen(line));
    assert_string_equal(json_object_get_string(json_object_object_get(r, "error")),
                        "link: not supported by this VM");
    json_object_put(r);
}

static void test_client_forms(void **state)
{
    char err[256];
    (void)state;
    char *pos[] = { "net.2", "down" };
    json_object *r = ctl_client_request("link", 2, pos, err, sizeof(err));
    assert_non_null(r);
    assert_string_equal(json_object_get_string(json_object_object_get(r, "dev")), "net.2");
    assert_string_equal(json_object_get_string(json_object_object_get(r, "state")), "down");
    json_object_put(r);
    char *kv[] = { "dev=net.1", "state=up" };
    r = ctl_client_request("link", 2, kv, err, sizeof(err));
    assert_string_equal(json_object_get_string(json_object_object_get(r, "dev")), "net.1");
    json_object_put(r);
    /* Positional words for other commands are still refused. */
    assert_null(ctl_client_request("status", 1, pos, err, sizeof(err)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_link_requests),
        cmocka_unit_test(test_client_forms),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
