/* kvm-keeper: hold one KVM VM open for the life of the nested KVM host.
 *
 * The nested host's kernel runs under QEMU TCG, which can keep executing a
 * stale translation of kernel code that another vCPU has just patched.  KVM
 * flips two static keys whenever the number of VMs (or of vCPUs whose APIC
 * is software-disabled) goes between zero and one: preempt_notifier_key,
 * whose jump sites are in __schedule() and finish_task_switch(), and
 * apic_sw_disabled.  Each flip rewrites those sites with text_poke_bp()'s
 * INT3 protocol; a CPU left running a translation that still holds the INT3
 * after the byte was restored takes the trap forever (kprobe_int3_handler
 * sees no INT3 in memory and rewinds RIP onto it), with interrupts off and
 * its runqueue lock held, and the whole nested host stops.
 *
 * With this VM (an in-kernel irqchip and one vCPU that never runs, so its
 * APIC stays software-disabled) alive, both counts stay above zero and the
 * VMs the tests create and destroy patch no kernel text.  Started by
 * tests/lib/nested-init; built static into the initramfs by nested.sh. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void)
{
    int kvm, vm, vcpu;

    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        fprintf(stderr, "kvm-keeper: /dev/kvm: %s\n", strerror(errno));
        return 1;
    }
    vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        fprintf(stderr, "kvm-keeper: KVM_CREATE_VM: %s\n", strerror(errno));
        return 1;
    }
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) {
        fprintf(stderr, "kvm-keeper: KVM_CREATE_IRQCHIP: %s\n", strerror(errno));
        return 1;
    }
    vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) {
        fprintf(stderr, "kvm-keeper: KVM_CREATE_VCPU: %s\n", strerror(errno));
        return 1;
    }
    printf("kvm-keeper: holding a VM (fd %d) with one vCPU (fd %d)\n", vm, vcpu);
    fflush(stdout);
    for (;;)
        pause();
}
