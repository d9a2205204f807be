#include "vmm/kvm.h"

#include <errno.h>
#include <fcntl.h>
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

#define errf(...) snprintf(err, errlen, __VA_ARGS__)

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
        errf("/dev/kvm: KVM_GET_API_VERSION: %s", strerror(-d->err));
    else if (d->err == -ENOENT)
        errf("/dev/kvm: no such device: this host has no usable KVM "
             "(see `dvmm hostcheck`)");
    else
        errf("/dev/kvm: %s", strerror(-d->err));
    return d->err;
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
    if (ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, vm->routes) < 0) {
        int e = errno;

        log_err("kvm: KVM_SET_GSI_ROUTING (%u entries): %s", vm->routes->nr,
                strerror(e));
        return -e;
    }
    return 0;
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

    if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0) {
        int e = errno;

        log_err("kvm: KVM_IOEVENTFD %s 0x%llx len %u: %s",
                mmio ? "mmio" : "pio", (unsigned long long)addr, len, strerror(e));
        return -e;
    }
    return 0;
}

static int kvm_if_irqfd(void *opaque, unsigned gsi, int fd, int resample_fd,
                        bool assign)
{
    struct kvm_vm *vm = opaque;
    struct kvm_irqfd irqfd = { .fd = (uint32_t)fd, .gsi = gsi };

    if (!assign)
        irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
    else if (resample_fd >= 0) {
        irqfd.flags = KVM_IRQFD_FLAG_RESAMPLE;
        irqfd.resamplefd = (uint32_t)resample_fd;
    }
    if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
        int e = errno;

        log_err("kvm: KVM_IRQFD gsi %u: %s", gsi, strerror(e));
        return -e;
    }
    return 0;
}

static int kvm_if_irq_line(void *opaque, unsigned irq, int level)
{
    struct kvm_vm *vm = opaque;
    struct kvm_irq_level l = { .irq = irq, .level = (uint32_t)level };

    if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0) {
        int e = errno;

        log_err("kvm: KVM_IRQ_LINE irq %u level %d: %s", irq, level, strerror(e));
        return -e;
    }
    return 0;
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
    for (unsigned n = 128; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

        if (!c)
            return -ENOMEM;
        c->nent = n;
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            kvm_cpuid_add_tsc_deadline(caps, c);
            vm->cpuid = c;
            return 0;
        }
        free(c);
        if (errno != E2BIG) {
            int e = errno;

            errf("kvm: KVM_GET_SUPPORTED_CPUID: %s", strerror(e));
            return -e;
        }
    }
    errf("kvm: KVM_GET_SUPPORTED_CPUID: too many entries");
    return -E2BIG;
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
    vm->run_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm->run_mmap_size <= 0) {
        ret = -errno;
        errf("kvm: KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
        goto fail;
    }
    ret = kvm_get_cpuid(vm, caps, err, errlen);
    if (ret)
        goto fail;

    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0) {
        ret = -errno;
        errf("kvm: KVM_CREATE_VM: %s", strerror(errno));
        goto fail;
    }
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0) {
        ret = -errno;
        errf("kvm: KVM_SET_TSS_ADDR 0x%llx: %s", KVM_TSS_ADDR, strerror(errno));
        goto fail;
    }
    if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0) {
        ret = -errno;
        errf("kvm: KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
        goto fail;
    }
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        ret = -errno;
        errf("kvm: KVM_CREATE_IRQCHIP: %s", strerror(errno));
        goto fail;
    }
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        ret = -errno;
        errf("kvm: KVM_CREATE_PIT2: %s", strerror(errno));
        goto fail;
    }

    vm->routes = calloc(1, sizeof(*vm->routes) +
                        KVM_MAX_GSI_ROUTES * sizeof(vm->routes->entries[0]));
    if (!vm->routes) {
        ret = -ENOMEM;
        errf("kvm: out of memory for GSI routes");
        goto fail;
    }
    pthread_mutex_init(&vm->routes_lock, NULL);
    kvm_default_routes(vm->routes);
    vm->next_msi_gsi = KVM_FIRST_MSI_GSI;
    ret = kvm_commit_routes(vm);
    if (ret) {
        errf("kvm: KVM_SET_GSI_ROUTING: %s", strerror(-ret));
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

        if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
            int e = errno;

            log_err("kvm: memslot %u GPA 0x%llx size 0x%llx HVA %p: %s", i,
                    (unsigned long long)r->gpa, (unsigned long long)r->size,
                    (void *)r->hva, strerror(e));
            return -e;
        }
    }
    return 0;
}

int kvm_vm_reset_irqchip(struct kvm_vm *vm)
{
    struct kvm_pit_state2 pit = { 0 };
    struct kvm_irqchip chip;

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
        if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0) {
            int e = errno;

            log_err("kvm: KVM_SET_IRQCHIP %u: %s", id, strerror(e));
            return -e;
        }
    }
    if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0) {
        int e = errno;

        log_err("kvm: KVM_SET_PIT2: %s", strerror(e));
        return -e;
    }
    return 0;
}
