/* hostcheck's KVM lines: kvm-device (with kvm-pvm's reason when it refused
 * to bind), kvm-flavour, one line per required row of vmm/kvm_caps.c's
 * table, kvm-mce, kvm-max-vcpus; and config-vcpus for --config.  Sets
 * hc_ctx.kvm_dev, caps_known and caps. */
#ifndef DVMM_HOSTCHECK_KVM_H
#define DVMM_HOSTCHECK_KVM_H

#include "kernel-support/hostcheck_ctx.h"
#include "vmm/config.h"

void hc_kvm_check(struct hc_ctx *x, const char *cpuinfo);
/* vm.vcpus against the limit dvmm run applies (kvm_caps_vcpu_limit). */
void hc_kvm_check_config(struct hc_ctx *x, const struct dvmm_config *cfg);

#endif
