/* The KVM VM object: /dev/kvm, the VM fd, memslots, the in-kernel irqchip
 * and PIT, GSI routing, and the struct vmif that devices use.  Modelled on
 * the KVM selftests' thin wrappers: every ioctl is checked and its failure is
 * returned as -errno with a message naming the ioctl. */
#ifndef DVMM_KVM_H
#define DVMM_KVM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest-mem/gm.h"
#include "vmm/kvm_caps.h"
#include "vmm/vmif.h"

#define KVM_IOAPIC_PINS 24
#define KVM_MAX_GSI_ROUTES 1024

struct kvm_vm {
    int kvm_fd;
    int vm_fd;
    int run_mmap_size;
    unsigned max_vcpus;
    uint64_t mce_cap;                   /* supported MCG_CAP flags | KVM_CAP_MCE banks; 0 if none */
    struct kvm_cpuid2 *cpuid;           /* KVM_GET_SUPPORTED_CPUID */
    pthread_mutex_t routes_lock;        /* the routing table is replaced whole */
    struct kvm_irq_routing *routes;
    uint32_t next_msi_gsi;
    struct vmif vmif;
};

/* /dev/kvm, opened and asked for its capabilities once per run: main needs
 * the vCPU limit to check the config, kvm_vm_create the rest.  A failure is
 * kept (err: -errno of the open or of KVM_GET_API_VERSION) rather than
 * reported, so that kvm_vm_create reports it at the point of the start-up
 * where it always has. */
struct kvm_dev {
    int fd;                             /* -1 when the open failed or was taken */
    int err;                            /* 0, or -errno */
    bool probe_failed;                  /* err is KVM_GET_API_VERSION's */
    struct kvm_cap_set caps;            /* valid when err == 0 */
};

void kvm_dev_open(struct kvm_dev *d);
void kvm_dev_close(struct kvm_dev *d);

/* Takes dev's fd (closed again by kvm_vm_destroy, or here on failure). */
int kvm_vm_create(struct kvm_vm *vm, struct kvm_dev *dev, char *err, size_t errlen);
void kvm_vm_destroy(struct kvm_vm *vm);
/* One memslot per guest-RAM region of the layout. */
int kvm_vm_map_memory(struct kvm_vm *vm, const struct guest_mem *gm);
/* Reset the PIC, IOAPIC and PIT to power-on state (guest reboot). */
int kvm_vm_reset_irqchip(struct kvm_vm *vm);

#endif
