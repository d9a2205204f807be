/* The control socket's memory-failure commands against real guest memory
 * (16 MiB anon) and no KVM: `hwpoison` gives the clear error on a host
 * without CONFIG_MEMORY_FAILURE (this one) and `mce-inject` refuses what it
 * must, each with the reply's "error" saying why; `mce-inject mode=user`
 * over a real control socket answers only when its vCPU hands back the
 * outcome (here: a vCPU without KVM that gives up).  A device's report of a
 * failed page (vmif memory_failure) is queued to vCPU 0 as an AO, wakes
 * main, and when vCPU 0 handles it the page is on the poisoned list and the
 * log line's reason starts with the device's words. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "vmm/vm.h"
#include "vmm/vm_control.h"
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
    vm->mce.gm = &vm->gm;
    vm->mce.log_fd = STDERR_FILENO;
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

static int inject(struct vm *vm, uint64_t gpa, enum mce_kind kind, int vcpu,
                  json_object *reply)
{
    struct ctl_mce_req req = { .gpa = gpa, .kind = kind, .vcpu = vcpu };

    return vm_mce_inject(&vm->mce, &req, reply);
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
    ret = vm_mce_hwpoison(&((struct vm *)*state)->mce, 0x100000, reply);
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

    assert_int_equal(vm_mce_hwpoison(&((struct vm *)*state)->mce, RAM, reply), -EFAULT);
    assert_string_equal(reply_error(reply), "gpa is not guest RAM");
    json_object_put(reply);
}

static void test_inject_outside_ram(void **state)
{
    json_object *reply = json_object_new_object();

    assert_int_equal(inject(*state, RAM + 4096, MCE_AR, 0, reply), -EFAULT);
    assert_string_equal(reply_error(reply), "gpa is not guest RAM");
    json_object_put(reply);
}

static void test_inject_ao_to_other_vcpu(void **state)
{
    json_object *reply = json_object_new_object();

    assert_int_equal(inject(*state, 0x100000, MCE_AO, 1, reply), -EINVAL);
    assert_non_null(strstr(reply_error(reply), "go to vCPU 0"));
    json_object_put(reply);
}

/* No vCPU thread runs here, so there is nobody to send the AR to. */
static void test_inject_no_running_vcpu(void **state)
{
    json_object *reply = json_object_new_object();

    assert_int_equal(inject(*state, 0x100000, MCE_AR, 0, reply), -EINVAL);
    assert_string_equal(reply_error(reply), "no such running vCPU");
    json_object_put(reply);
}

/* A VM with one "running" vCPU (this thread's id, no KVM fd, never in
 * KVM_RUN) and AMD's encoding: all vm_mce sees is struct vm_mce. */
static void fake_vcpu(struct vm *vm)
{
    vm->nvcpus = 1;
    vm->vcpus = calloc(1, sizeof(*vm->vcpus));
    assert_non_null(vm->vcpus);
    vm->vcpus[0].fd = -1;
    vm->vcpus[0].tid = (pid_t)syscall(SYS_gettid);
    pthread_mutex_init(&vm->vcpus[0].mce_lock, NULL);
    vm->mce.vcpus = vm->vcpus;
    vm->mce.nvcpus = 1;
    vm->mce.enc = MCE_ENC_AMD;
    vm->mce.main_event_fd = eventfd(0, EFD_NONBLOCK);
    assert_true(vm->mce.main_event_fd >= 0);
}

static void unfake_vcpu(struct vm *vm)
{
    pthread_mutex_destroy(&vm->vcpus[0].mce_lock);
    free(vm->vcpus);
    vm->vcpus = vm->mce.vcpus = NULL;
    vm->nvcpus = vm->mce.nvcpus = 0;
    close(vm->mce.main_event_fd);
}

static void test_inject_reply_names_encoding(void **state)
{
    struct vm *vm = *state;
    json_object *reply = json_object_new_object(), *v;
    struct ctl_mce_req req = { .gpa = 0x100000, .kind = MCE_AR, .vcpu = 0 };

    fake_vcpu(vm);
    assert_int_equal(vm_mce_inject(&vm->mce, &req, reply), 0);
    assert_true(json_object_object_get_ex(reply, "encoding", &v));
    assert_string_equal(json_object_get_string(v), "amd");
    assert_true(json_object_object_get_ex(reply, "mci_status", &v));
    assert_string_equal(json_object_get_string(v), "0xbc00080000000000");
    assert_true(json_object_object_get_ex(reply, "delivery", &v));
    assert_string_equal(json_object_get_string(v), "#MC");
    json_object_put(reply);
    /* token 0: nobody to answer later. */
    reply = json_object_new_object();
    req.user_mode = true;
    req.wait_ms = 100;
    assert_int_equal(vm_mce_inject(&vm->mce, &req, reply), -EOPNOTSUPP);
    assert_non_null(strstr(reply_error(reply), "only the control socket"));
    json_object_put(reply);
    unfake_vcpu(vm);
}

/* The whole deferred path without KVM: a request over a real socket, the
 * vCPU side giving up (as the checkpoint does when the VM pauses), the
 * main side's poll answering the client. */
static void test_user_mode_over_socket(void **state)
{
    struct vm *vm = *state;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char dir[] = "/tmp/dvmm-vm-mce.XXXXXX", err[256], buf[4096];
    struct ctl_handlers h;
    json_object *r, *v;
    size_t len = 0;
    int fd;

    fake_vcpu(vm);
    assert_non_null(mkdtemp(dir));
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s", dir);
    vm_control_handlers(vm, &h);
    assert_int_equal(ctl_server_open(&vm->ctl, sa.sun_path, &h, err, sizeof(err)), 0);
    vm->ctl_open = true;
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    dprintf(fd, "{\"cmd\":\"mce-inject\",\"gpa\":\"0x100000\",\"kind\":\"ar\","
                "\"mode\":\"user\",\"wait_ms\":50}\n"
                "{\"cmd\":\"mce-inject\",\"gpa\":\"0x100000\",\"kind\":\"ar\","
                "\"mode\":\"user\"}\n");
    for (unsigned i = 0; i < 100 && !vm->vcpus[0].mce_user_active; i++) {
        struct pollfd p = { .fd = ctl_server_fd(&vm->ctl), .events = POLLIN };

        poll(&p, 1, 10);
        ctl_server_dispatch(&vm->ctl);
    }
    assert_true(vm->vcpus[0].mce_user.active);
    assert_true(vm->vcpus[0].mce_user.deadline_ns - vm->vcpus[0].mce_user.start_ns ==
                50000000ULL);
    assert_int_equal(vm->vcpus[0].mce_user.sig.kind, MCE_AR);
    /* Nothing answered yet. */
    assert_int_equal(recv(fd, buf, sizeof(buf), MSG_DONTWAIT), -1);

    vm_mce_user_cancel(&vm->mce, &vm->vcpus[0], "the VM is pausing");
    assert_false(vm->vcpus[0].mce_user.active);
    vm_mce_user_poll(&vm->mce, &vm->ctl);
    /* The second request ran only after the first was answered: it is
     * the one waiting now. */
    assert_true(vm->vcpus[0].mce_user.active);
    while (!memchr(buf, '\n', len)) {
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);

        assert_true(n > 0);
        len += (size_t)n;
    }
    buf[len] = '\0';
    *strchr(buf, '\n') = '\0';
    r = json_tokener_parse(buf);
    assert_non_null(r);
    assert_true(json_object_object_get_ex(r, "ok", &v));
    assert_false(json_object_get_boolean(v));
    assert_string_equal(reply_error(r), "mode=user: gave up: the VM is pausing");
    json_object_put(r);

    close(fd);
    ctl_server_close(&vm->ctl);
    vm->ctl_open = false;
    rmdir(dir);
    unfake_vcpu(vm);
}

/* What virtio-blk does when its probe finds a failed page. */
static void test_device_failure_routed_to_vcpu0(void **state)
{
    struct vm *vm = *state;
    uint8_t *hva = gm_gpa_to_hva(&vm->gm, 0x203000, 4096);
    int lp[2];
    uint64_t cnt = 0;
    char line[1024];
    ssize_t n;
    json_object *j, *f;

    assert_non_null(hva);
    fake_vcpu(vm);
    vm->mce.main.wake_fd = eventfd(0, EFD_NONBLOCK);
    assert_true(vm->mce.main.wake_fd >= 0);
    assert_int_equal(pipe(lp), 0);
    vm->mce.log_fd = lp[1];

    assert_int_equal(vm_mce_device_failure(&vm->mce, (uint64_t)(uintptr_t)hva + 0x10, 12,
                                           "virtio-blk.0 queue 0: read buffer"), 0);
    assert_int_equal(read(vm->mce.main.wake_fd, &cnt, sizeof(cnt)), sizeof(cnt));
    assert_true(cnt == 1);
    assert_int_equal(vm->vcpus[0].mce_nqueued, 1);
    assert_int_equal(vm->vcpus[0].mce_queue[0].kind, MCE_AO);
    assert_string_equal(vm->vcpus[0].mce_queue[0].origin, "virtio-blk.0 queue 0: read buffer");
    assert_false(gm_poison_query(&vm->gm, 0x203000));

    /* vCPU 0 after KVM_RUN: this one has no MCE banks, so nothing is
     * injected, but the page is poisoned and the event logged. */
    vm_mce_vcpu_poll(&vm->mce, &vm->vcpus[0]);
    assert_int_equal(vm->vcpus[0].mce_nqueued, 0);
    assert_true(gm_poison_query(&vm->gm, 0x203000));
    n = read(lp[0], line, sizeof(line) - 1);
    assert_true(n > 0);
    line[n] = '\0';
    j = json_tokener_parse(line);
    assert_non_null(j);
    assert_true(json_object_object_get_ex(j, "gpa", &f));
    assert_string_equal(json_object_get_string(f), "0x203000");
    assert_true(json_object_object_get_ex(j, "kind", &f));
    assert_string_equal(json_object_get_string(f), "AO");
    assert_true(json_object_object_get_ex(j, "reason", &f));
    assert_string_equal(json_object_get_string(f),
                        "virtio-blk.0 queue 0: read buffer: no MCE banks on this vCPU");
    json_object_put(j);

    close(lp[0]);
    close(lp[1]);
    close(vm->mce.main.wake_fd);
    unfake_vcpu(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hwpoison_without_memory_failure),
        cmocka_unit_test(test_hwpoison_outside_ram),
        cmocka_unit_test(test_inject_outside_ram),
        cmocka_unit_test(test_inject_ao_to_other_vcpu),
        cmocka_unit_test(test_inject_no_running_vcpu),
        cmocka_unit_test(test_inject_reply_names_encoding),
        cmocka_unit_test(test_user_mode_over_socket),
        cmocka_unit_test_setup_teardown(test_device_failure_routed_to_vcpu0, setup, teardown),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, setup, teardown);
}
