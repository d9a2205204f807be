#include "vmm/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/cpuid.h"
#include "vmm/kvm_caps.h"
#include "vmm/log.h"

/* Below the 4 GiB boundary, inside the 32-bit hole but clear of the IOAPIC,
 * LAPIC and BIOS areas: where KVM may put the three TSS pages and the EPT
 * identity-map page that real-mode emulation on VMX needs. */
#define KVM_TSS_ADDR      0xfffbd000ULL
#define KVM_IDENTITY_ADDR 0xfffbc000ULL
#define KVM_FIRST_MSI_GSI KVM_IOAPIC_PINS

void kvm_dev_open(struct kvm_dev *d)
{
    memset(d, 0, sizeof(*d));
    d->fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (d->fd < 0) {
        d->err = -errno;
        return;
    }
    d->err = kvm_caps_probe(d->fd, &d->caps);
    d->probe_failed = d->err != 0;
}

void kvm_dev_close(struct kvm_dev *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
}

/* kvm_dev_open's failure, in the words the open or the probe would have. */
static int kvm_dev_fail(const struct kvm_dev *d, char *err, size_t errlen)
{
    if (d->probe_failed)
        return log_fail(err, errlen, d->err, "/dev/kvm: KVM_GET_API_VERSION: %s",
                        strerror(-d->err));
    if (d->err == -ENOENT)
        return log_fail(err, errlen, d->err, "/dev/kvm: no such device: this host has "
                        "no usable KVM (see `dvmm hostcheck`)");
    return log_fail(err, errlen, d->err, "/dev/kvm: %s", strerror(-d->err));
}

/* Every checked ioctl on the /dev/kvm fd or the VM fd: the ioctl's result
 * (>= 0), or -errno with "kvm: WHAT: strerror" formatted through log_fail
 * into err.  WHAT is printf-formatted so a message can carry its context
 * (GSI, address, memslot).  The runtime paths devices reach through vmif
 * have no caller's buffer to fill: with err NULL the message is logged as
 * an error instead. */
static int kvm_ioctl(int fd, unsigned long req, void *arg, char *err, size_t errlen,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int kvm_ioctl(int fd, unsigned long req, void *arg, char *err, size_t errlen,
                     const char *fmt, ...)
{
    char what[192];
    va_list ap;
    int ret = ioctl(fd, req, arg);
    int e = errno;

    if (ret >= 0)
        return ret;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (!err) {
        log_err("kvm: %s: %s", what, strerror(e));
        return -e;
    }
    return log_fail(err, errlen, -e, "kvm: %s: %s", what, strerror(e));
}

/* Legacy interrupts as a PC routes them: GSI 0-15 reach both the PIC and the
 * IOAPIC, except that the PIT's GSI 0 lands on IOAPIC pin 2 (the MP table says
 * so with an override entry) and nothing else uses pin 2; GSI 16-23 are
 * IOAPIC-only, for PCI INTx. */
static void kvm_default_routes(struct kvm_irq_routing *rt)
{
    struct kvm_irq_routing_entry *e = rt->entries;
    unsigned n = 0, gsi;

    for (gsi = 0; gsi < 16; gsi++) {
        e[n++] = (struct kvm_irq_routing_entry){
            .gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = { .irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
                                              : KVM_IRQCHIP_PIC_SLAVE,
                           .pin = gsi % 8 } };
    }
    for (gsi = 0; gsi < KVM_IOAPIC_PINS; gsi++) {
        if (gsi == 2)
            continue;
        e[n++] = (struct kvm_irq_routing_entry){
            .gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC,
                           .pin = gsi == 0 ? 2 : gsi } };
    }
    rt->nr = n;
}

static int kvm_commit_routes(struct kvm_vm *vm)
{
    int ret = kvm_ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, vm->routes, NULL, 0,
                        "KVM_SET_GSI_ROUTING (%u entries)", vm->routes->nr);

    return ret < 0 ? ret : 0;
}

static int kvm_find_route(const struct kvm_vm *vm, uint32_t gsi)
{
    for (unsigned i = 0; i < vm->routes->nr; i++)
        if (vm->routes->entries[i].gsi == gsi &&
            vm->routes->entries[i].type == KVM_IRQ_ROUTING_MSI)
            return (int)i;
    return -1;
}

static int kvm_if_msi_route(void *opaque, int *gsi, uint64_t addr, uint32_t data)
{
    struct kvm_vm *vm = opaque;
    int idx, ret;

    pthread_mutex_lock(&vm->routes_lock);
    if (*gsi < 0) {
        if (vm->routes->nr >= KVM_MAX_GSI_ROUTES) {
            ret = -ENOSPC;
            goto out;
        }
        idx = (int)vm->routes->nr++;
        vm->routes->entries[idx] = (struct kvm_irq_routing_entry){
            .gsi = vm->next_msi_gsi++, .type = KVM_IRQ_ROUTING_MSI };
    } else {
        idx = kvm_find_route(vm, (uint32_t)*gsi);
        if (idx < 0) {
            ret = -ENOENT;
            goto out;
        }
    }
    vm->routes->entries[idx].u.msi.address_lo = (uint32_t)addr;
    vm->routes->entries[idx].u.msi.address_hi = (uint32_t)(addr >> 32);
    vm->routes->entries[idx].u.msi.data = data;
    ret = kvm_commit_routes(vm);
    if (!ret)
        *gsi = (int)vm->routes->entries[idx].gsi;
out:
    pthread_mutex_unlock(&vm->routes_lock);
    return ret;
}

static int kvm_if_msi_release(void *opaque, int gsi)
{
    struct kvm_vm *vm = opaque;
    int idx, ret;

    pthread_mutex_lock(&vm->routes_lock);
    idx = kvm_find_route(vm, (uint32_t)gsi);
    if (idx < 0) {
        ret = -ENOENT;
    } else {
        vm->routes->entries[idx] = vm->routes->entries[--vm->routes->nr];
        ret = kvm_commit_routes(vm);
    }
    pthread_mutex_unlock(&vm->routes_lock);
    return ret;
}

static int kvm_if_ioeventfd(void *opaque, uint64_t addr, unsigned len, bool mmio,
                            int fd, bool assign)
{
    struct kvm_vm *vm = opaque;
    struct kvm_ioeventfd io = {
        .addr = addr, .len = len, .fd = fd,
        .flags = (mmio ? 0 : KVM_IOEVENTFD_FLAG_PIO) |
                 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
    };

    int ret = kvm_ioctl(vm->vm_fd, KVM_IOEVENTFD, &io, NULL, 0,
                        "KVM_IOEVENTFD %s 0x%llx len %u", mmio ? "mmio" : "pio",
                        (unsigned long long)addr, len);

    return ret < 0 ? ret : 0;
}

static int kvm_if_irqfd(void *opaque, unsigned gsi, int fd, int resample_fd,
                        bool assign)
{
    struct kvm_vm *vm = opaque;
    struct kvm_irqfd irqfd = { .fd = (uint32_t)fd, .gsi = gsi };
    int ret;

    if (!assign)
        irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
    else if (resample_fd >= 0) {
        irqfd.flags = KVM_IRQFD_FLAG_RESAMPLE;
        irqfd.resamplefd = (uint32_t)resample_fd;
    }
    ret = kvm_ioctl(vm->vm_fd, KVM_IRQFD, &irqfd, NULL, 0, "KVM_IRQFD gsi %u", gsi);
    return ret < 0 ? ret : 0;
}

static int kvm_if_irq_line(void *opaque, unsigned irq, int level)
{
    struct kvm_vm *vm = opaque;
    struct kvm_irq_level l = { .irq = irq, .level = (uint32_t)level };

    int ret = kvm_ioctl(vm->vm_fd, KVM_IRQ_LINE, &l, NULL, 0, "KVM_IRQ_LINE irq %u level %d",
                        irq, level);

    return ret < 0 ? ret : 0;
}

/* KVM emulates the TSC-deadline timer but reports it only as
 * KVM_CAP_TSC_DEADLINE_TIMER, never in the supported CPUID, so every VMM
 * sets the bit itself (QEMU and Firecracker do).  Without it Linux
 * calibrates the LAPIC timer against the PIT, which under nesting fails
 * its own verification ("APIC timer disabled due to verification
 * failure"), and the guest then ticks from the PIT broadcast with no
 * one-shot timers: slower boots and coarse sleeps. */
static void kvm_cpuid_add_tsc_deadline(const struct kvm_cap_set *caps, struct kvm_cpuid2 *c)
{
    struct kvm_cpuid_entry2 *leaf1 = cpuid_find(c, 1, 0);

    if (leaf1 && caps->val[KC_TSC_DEADLINE_TIMER] > 0)
        leaf1->ecx |= CPUID_1_ECX_TSC_DEADLINE;
}

static int kvm_get_cpuid(struct kvm_vm *vm, const struct kvm_cap_set *caps,
                         char *err, size_t errlen)
{
    int e;

    for (unsigned n = 128; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

        if (!c)
            return -ENOMEM;
        c->nent = n;
        /* Not through kvm_ioctl: E2BIG asks for a bigger table, and is no
         * failure to report. */
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            kvm_cpuid_add_tsc_deadline(caps, c);
            vm->cpuid = c;
            return 0;
        }
        e = errno;
        free(c);
        if (e != E2BIG)
            return log_fail(err, errlen, -e, "kvm: KVM_GET_SUPPORTED_CPUID: %s", strerror(e));
    }
    return log_fail(err, errlen, -E2BIG, "kvm: KVM_GET_SUPPORTED_CPUID: too many entries");
}

int kvm_vm_create(struct kvm_vm *vm, struct kvm_dev *dev, char *err, size_t errlen)
{
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    uint64_t identity = KVM_IDENTITY_ADDR;
    const struct kvm_cap_set *caps = &dev->caps;
    int ret;

    memset(vm, 0, sizeof(*vm));
    vm->vm_fd = -1;
    /* The fd is the VM's from here on, whatever happens next. */
    vm->kvm_fd = dev->fd;
    dev->fd = -1;
    if (dev->err) {
        ret = kvm_dev_fail(dev, err, errlen);
        goto fail;
    }
    /* The same table and check `dvmm hostcheck` reports (kvm_caps.h). */
    ret = kvm_caps_check(caps, err, errlen);
    if (ret)
        goto fail;
    vm->max_vcpus = kvm_caps_max_vcpus(caps);
    vm->mce_cap = caps->mce_cap;
    ret = kvm_ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, NULL, err, errlen,
                    "KVM_GET_VCPU_MMAP_SIZE");
    if (ret < 0)
        goto fail;
    if (ret == 0) {
        ret = log_fail(err, errlen, -EINVAL, "kvm: KVM_GET_VCPU_MMAP_SIZE: %s",
                       strerror(EINVAL));
        goto fail;
    }
    vm->run_mmap_size = ret;
    ret = kvm_get_cpuid(vm, caps, err, errlen);
    if (ret)
        goto fail;

    ret = kvm_ioctl(vm->kvm_fd, KVM_CREATE_VM, NULL, err, errlen, "KVM_CREATE_VM");
    if (ret < 0)
        goto fail;
    vm->vm_fd = ret;
    if ((ret = kvm_ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (void *)(uintptr_t)KVM_TSS_ADDR,
                         err, errlen, "KVM_SET_TSS_ADDR 0x%llx", KVM_TSS_ADDR)) < 0 ||
        (ret = kvm_ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity, err, errlen,
                         "KVM_SET_IDENTITY_MAP_ADDR")) < 0 ||
        (ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, NULL, err, errlen,
                         "KVM_CREATE_IRQCHIP")) < 0 ||
        (ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit, err, errlen,
                         "KVM_CREATE_PIT2")) < 0)
        goto fail;

    vm->routes = calloc(1, sizeof(*vm->routes) +
                        KVM_MAX_GSI_ROUTES * sizeof(vm->routes->entries[0]));
    if (!vm->routes) {
        ret = log_fail(err, errlen, -ENOMEM, "kvm: out of memory for GSI routes");
        goto fail;
    }
    pthread_mutex_init(&vm->routes_lock, NULL);
    kvm_default_routes(vm->routes);
    vm->next_msi_gsi = KVM_FIRST_MSI_GSI;
    /* kvm_commit_routes logs the failure with its entry count; err gets the
     * shorter message it always had. */
    ret = kvm_commit_routes(vm);
    if (ret) {
        log_fail(err, errlen, ret, "kvm: KVM_SET_GSI_ROUTING: %s", strerror(-ret));
        goto fail;
    }
    vm->vmif = (struct vmif){
        .opaque = vm,
        .ioeventfd = kvm_if_ioeventfd,
        .msi_route = kvm_if_msi_route,
        .msi_release = kvm_if_msi_release,
        .irqfd = kvm_if_irqfd,
        .irq_line = kvm_if_irq_line,
    };
    return 0;
fail:
    kvm_vm_destroy(vm);
    return ret;
}

void kvm_vm_destroy(struct kvm_vm *vm)
{
    if (vm->routes) {
        pthread_mutex_destroy(&vm->routes_lock);
        free(vm->routes);
        vm->routes = NULL;
    }
    free(vm->cpuid);
    vm->cpuid = NULL;
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    vm->vm_fd = vm->kvm_fd = -1;
}

int kvm_vm_map_memory(struct kvm_vm *vm, const struct guest_mem *gm)
{
    for (unsigned i = 0; i < gm->layout.nr; i++) {
        const struct gm_region *r = &gm->layout.r[i];
        struct kvm_userspace_memory_region slot = {
            .slot = i,
            .guest_phys_addr = r->gpa,
            .memory_size = r->size,
            .userspace_addr = (uint64_t)(uintptr_t)r->hva,
        };

        int ret = kvm_ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot, NULL, 0,
                            "memslot %u GPA 0x%llx size 0x%llx HVA %p", i,
                            (unsigned long long)r->gpa, (unsigned long long)r->size,
                            (void *)r->hva);

        if (ret < 0)
            return ret;
    }
    return 0;
}

int kvm_vm_reset_irqchip(struct kvm_vm *vm)
{
    struct kvm_pit_state2 pit = { 0 };
    struct kvm_irqchip chip;
    int ret;

    for (unsigned id = KVM_IRQCHIP_PIC_MASTER; id <= KVM_IRQCHIP_IOAPIC; id++) {
        memset(&chip, 0, sizeof(chip));
        chip.chip_id = id;
        if (id == KVM_IRQCHIP_IOAPIC) {
            chip.chip.ioapic.base_address = 0xfec00000;
            /* Power-on: every redirection entry masked. */
            for (unsigned p = 0; p < KVM_IOAPIC_NUM_PINS; p++)
                chip.chip.ioapic.redirtbl[p].fields.mask = 1;
        } else {
            chip.chip.pic.elcr_mask = id == KVM_IRQCHIP_PIC_MASTER ? 0xf8 : 0xde;
        }
        ret = kvm_ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip, NULL, 0, "KVM_SET_IRQCHIP %u", id);
        if (ret < 0)
            return ret;
    }
    ret = kvm_ioctl(vm->vm_fd, KVM_SET_PIT2, &pit, NULL, 0, "KVM_SET_PIT2");
    return ret < 0 ? ret : 0;
}
