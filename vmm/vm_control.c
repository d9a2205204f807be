#include "vmm/vm_control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "guest-mem/overhead.h"
#include "vmm/vm.h"
#include "vmm/vm_mce.h"

static json_object *hex(uint64_t v)
{
    char buf[24];

    snprintf(buf, sizeof(buf), "0x%llx", (unsigned long long)v);
    return json_object_new_string(buf);
}

static int ctl_status(void *opaque, json_object *reply)
{
    struct vm *vm = opaque;
    json_object *cpus = json_object_new_array();
    bool paused;

    pthread_mutex_lock(&vm->lock);
    paused = vm->user_paused;
    pthread_mutex_unlock(&vm->lock);
    json_object_object_add(reply, "name", json_object_new_string(vm->cfg->vm.name));
    json_object_object_add(reply, "state", json_object_new_string(paused ? "paused" : "running"));
    json_object_object_add(reply, "memory", json_object_new_int64((int64_t)vm->cfg->vm.memory));
    json_object_object_add(reply, "backend",
                           json_object_new_string(gm_backend_name(vm->gm.backend)));
    json_object_object_add(reply, "page_size", json_object_new_int64((int64_t)vm->gm.page_size));
    json_object_object_add(reply, "reboots", json_object_new_int((int)vm->reboots));
    json_object_object_add(reply, "poisoned_pages",
                           json_object_new_int((int)gm_poison_list(&vm->gm, NULL, 0)));
    json_object_object_add(reply, "mce_encoding",
                           json_object_new_string(mce_encoding_name(vm->mce_enc)));
    if (vm->nvcpus && vm->vcpus[0].mcg_cap)
        json_object_object_add(reply, "mcg_cap", hex(vm->vcpus[0].mcg_cap));
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        json_object *c = json_object_new_object();

        json_object_object_add(c, "index", json_object_new_int((int)i));
        json_object_object_add(c, "tid", json_object_new_int(vm->vcpus[i].tid));
        json_object_object_add(c, "exits", json_object_new_int64(
            (int64_t)__atomic_load_n(&vm->vcpus[i].exits, __ATOMIC_RELAXED)));
        json_object_array_add(cpus, c);
    }
    json_object_object_add(reply, "vcpus", cpus);
    return 0;
}

static int ctl_memstat(void *opaque, json_object *reply)
{
    struct vm *vm = opaque;
    struct gm_overhead o;
    int ret = gm_overhead_measure(&vm->gm, &o);
    json_object *j;

    if (ret < 0)
        return ret;
    j = gm_overhead_to_json(&o);
    if (!j)
        return -ENOMEM;
    json_object_object_add(reply, "memstat", j);
    return 0;
}

static int ctl_mce_inject(void *opaque, const struct ctl_mce_req *req, json_object *reply)
{
    return vm_mce_inject(opaque, req, reply);
}

static int ctl_hwpoison(void *opaque, uint64_t gpa, json_object *reply)
{
    return vm_mce_hwpoison(opaque, gpa, reply);
}

static int ctl_poisoned(void *opaque, json_object *reply)
{
    struct vm *vm = opaque;
    uint64_t *list;
    json_object *arr;
    unsigned n;

    if (gm_poison_snapshot(&vm->gm, &list, &n) < 0)
        return -ENOMEM;
    arr = json_object_new_array();
    for (unsigned i = 0; i < n; i++)
        json_object_array_add(arr, hex(list[i]));
    free(list);
    json_object_object_add(reply, "pages", arr);
    json_object_object_add(reply, "count", json_object_new_int((int)n));
    return 0;
}

int vm_pause(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->user_paused = true;
    if (!vm->park_request) {
        vm->park_request = true;
        pthread_mutex_unlock(&vm->lock);
        for (unsigned i = 0; i < vm->nvcpus; i++)
            vcpu_kick(&vm->vcpus[i]);
        pthread_mutex_lock(&vm->lock);
    }
    /* Answer "paused" only once no vCPU runs guest code. */
    while (vm->parked < vm->nvcpus && !vm->stopping)
        pthread_cond_wait(&vm->cond, &vm->lock);
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

int vm_resume(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->user_paused = false;
    /* A pending reboot keeps the vCPUs parked until it is done. */
    if (!vm->reboot_pending)
        vm->park_request = false;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

static int ctl_pause(void *opaque, json_object *reply)
{
    (void)reply;
    return vm_pause(opaque);
}

static int ctl_resume(void *opaque, json_object *reply)
{
    (void)reply;
    return vm_resume(opaque);
}

static int ctl_quit(void *opaque, json_object *reply)
{
    (void)reply;
    vm_request_exit(opaque, VM_OUT_SIGNAL, 0);
    return 0;
}

void vm_control_handlers(struct vm *vm, struct ctl_handlers *h)
{
    *h = (struct ctl_handlers){
        .opaque = vm,
        .status = ctl_status,
        .memstat = ctl_memstat,
        .mce_inject = ctl_mce_inject,
        .hwpoison = ctl_hwpoison,
        .poisoned = ctl_poisoned,
        .pause = ctl_pause,
        .resume = ctl_resume,
        .quit = ctl_quit,
    };
}
