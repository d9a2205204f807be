/* The control socket's memory-failure commands against real guest memory
 * (16 MiB anon) and no KVM: `hwpoison` gives the clear error on a host
 * without CONFIG_MEMORY_FAILURE (this one) and `mce-inject` refuses what it
 * must, each with the reply's "error" saying why. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "vmm/vm.h"
#include "vmm/vm_mce.h"

#define RAM (16ULL << 20)

static int setup(void **state)
{
    struct gm_config cfg = { .backend = GM_ANON, .host_node = -1 };
    struct vm *vm = calloc(1, sizeof(*vm));
    char err[256];

    if (!vm || gm_open(&vm->gm, &cfg, RAM, err, sizeof(err)) < 0) {
        free(vm);
        return -1;
    }
    *state = vm;
    return 0;
}

static int teardown(void **state)
{
    struct vm *vm = *state;

    gm_close(&vm->gm);
    free(vm);
    return 0;
}

static const char *reply_error(json_object *reply)
{
    json_object *e;

    return json_object_object_get_ex(reply, "error", &e) ? json_object_get_string(e) : "";
}

static void test_hwpoison_without_memory_failure(void **state)
{
    json_object *reply = json_object_new_object();
    int ret;

    if (access("/proc/sys/vm/memory_failure_recovery", F_OK) == 0) {
        json_object_put(reply);
        /* It would really take a page of this process offline. */
        skip();
    }
    ret = vm_mce_hwpoison(*state, 0x100000, reply);
    assert_true(ret == -EINVAL || ret == -EPERM);
    assert_non_null(strstr(reply_error(reply), "madvise(MADV_HWPOISON) at HVA 0x"));
    if (ret == -EINVAL)
        assert_non_null(strstr(reply_error(reply), "no CONFIG_MEMORY_FAILURE"));
    else
        assert_non_null(strstr(reply_error(reply), "CAP_SYS_ADMIN"));
    json_object_put(reply);
}

static void test_hwpoison_outside_ram(void **state)
{
    json_object *reply = json_object_new_object();

    assert_int_equal(vm_mce_hwpoison(*state, RAM, reply), -EFAULT);
    assert_string_equal(reply_error(reply), "gpa is not guest RAM");
    json_object_put(reply);
}

static void test_inject_outside_ram(void **state)
{
    json_object *reply = json_object_new_object();

    assert_int_equal(vm_mce_inject(*state, RAM + 4096, MCE_AR, 0, reply), -EFAULT);
    assert_string_equal(reply_error(reply), "gpa is not guest RAM");
    json_object_put(reply);
}

static void test_inject_ao_to_other_vcpu(void **state)
{
    json_object *reply = json_object_new_object();

    assert_int_equal(vm_mce_inject(*state, 0x100000, MCE_AO, 1, reply), -EINVAL);
    assert_non_null(strstr(reply_error(reply), "go to vCPU 0"));
    json_object_put(reply);
}

/* No vCPU thread runs here, so there is nobody to send the AR to. */
static void test_inject_no_running_vcpu(void **state)
{
    json_object *reply = json_object_new_object();

    assert_int_equal(vm_mce_inject(*state, 0x100000, MCE_AR, 0, reply), -EINVAL);
    assert_string_equal(reply_error(reply), "no such running vCPU");
    json_object_put(reply);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hwpoison_without_memory_failure),
        cmocka_unit_test(test_hwpoison_outside_ram),
        cmocka_unit_test(test_inject_outside_ram),
        cmocka_unit_test(test_inject_ao_to_other_vcpu),
        cmocka_unit_test(test_inject_no_running_vcpu),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, setup, teardown);
}
