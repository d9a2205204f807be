/* The smallest proof that a /dev/kvm works: one VM, one memslot, one vCPU in
 * real mode running "mov $0x2a,%al; out %al,$0x10; hlt".  It must stop first
 * with KVM_EXIT_IO carrying 0x2a on port 0x10, then with KVM_EXIT_HLT.
 * Independent of dvmm on purpose: when this fails, the harness is at fault,
 * not the VMM.  Exit 0 on success; each step prints one line. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define SLOT_GPA 0x0000UL
#define SLOT_SIZE 0x10000UL
#define CODE_GPA 0x1000UL
#define SMOKE_PORT 0x10
#define SMOKE_VALUE 0x2a

static int fail(const char *what)
{
    fprintf(stderr, "kvm-smoke: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(void)
{
    static const uint8_t code[] = {
        0xb0, SMOKE_VALUE,  /* mov $0x2a, %al */
        0xe6, SMOKE_PORT,   /* out %al, $0x10 */
        0xf4,               /* hlt */
    };
    struct kvm_userspace_memory_region region;
    struct kvm_sregs sregs;
    struct kvm_regs regs;
    struct kvm_run *run;
    int kvm, vm, vcpu, api, mmap_size;
    uint8_t *mem;

    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        return fail("open /dev/kvm");
    api = ioctl(kvm, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) {
        fprintf(stderr, "kvm-smoke: KVM API version %d, want %d\n", api, KVM_API_VERSION);
        return 1;
    }
    printf("kvm-smoke: KVM API version %d\n", api);

    vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        return fail("KVM_CREATE_VM");
    mem = mmap(NULL, SLOT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return fail("mmap guest memory");
    memcpy(mem + CODE_GPA, code, sizeof(code));
    region = (struct kvm_userspace_memory_region){
        .slot = 0,
        .guest_phys_addr = SLOT_GPA,
        .memory_size = SLOT_SIZE,
        .userspace_addr = (uintptr_t)mem,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        return fail("KVM_SET_USER_MEMORY_REGION");

    vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        return fail("KVM_CREATE_VCPU");
    mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size < (int)sizeof(*run))
        return fail("KVM_GET_VCPU_MMAP_SIZE");
    run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        return fail("mmap kvm_run");

    /* Reset state is real mode with CS based at 0xffff0000; flatten CS so
     * RIP is the physical address of the code. */
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
        return fail("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
        return fail("KVM_SET_SREGS");
    memset(&regs, 0, sizeof(regs));
    regs.rip = CODE_GPA;
    regs.rflags = 0x2;
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
        return fail("KVM_SET_REGS");

    if (ioctl(vcpu, KVM_RUN, 0) < 0)
        return fail("KVM_RUN (1)");
    if (run->exit_reason != KVM_EXIT_IO) {
        fprintf(stderr, "kvm-smoke: first exit reason %u, want KVM_EXIT_IO (%u)\n",
                run->exit_reason, KVM_EXIT_IO);
        return 1;
    }
    {
        uint8_t value = *((uint8_t *)run + run->io.data_offset);

        printf("kvm-smoke: exit_io direction=%s port=0x%x size=%u count=%u value=0x%x\n",
               run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in", run->io.port,
               run->io.size, run->io.count, value);
        if (run->io.direction != KVM_EXIT_IO_OUT || run->io.port != SMOKE_PORT ||
            run->io.size != 1 || run->io.count != 1 || value != SMOKE_VALUE) {
            fprintf(stderr, "kvm-smoke: want out port=0x%x size=1 count=1 value=0x%x\n",
                    SMOKE_PORT, SMOKE_VALUE);
            return 1;
        }
    }

    if (ioctl(vcpu, KVM_RUN, 0) < 0)
        return fail("KVM_RUN (2)");
    if (run->exit_reason != KVM_EXIT_HLT) {
        fprintf(stderr, "kvm-smoke: second exit reason %u, want KVM_EXIT_HLT (%u)\n",
                run->exit_reason, KVM_EXIT_HLT);
        return 1;
    }
    printf("kvm-smoke: exit_hlt\n");
    return 0;
}
