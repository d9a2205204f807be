/* The VM: config, guest memory, KVM, buses, devices and vCPUs, and the
 * lifecycle that joins them.  vCPUs see only their vcpu_env and report
 * through its ops (vmm/vcpu.h); devices and the control socket end the
 * VM with vm_request_*.  The main thread waits on vm->event_fd and acts,
 * so every teardown happens on the main thread. */
#ifndef DVMM_VM_H
#define DVMM_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "guest-mem/gm.h"
#include "virtio/blk.h"
#include "virtio/net.h"
#include "vmm/bus.h"
#include "vmm/config.h"
#include "vmm/debug_exit.h"
#include "vmm/fail.h"
#include "vmm/i8042.h"
#include "vmm/control.h"
#include "vmm/kvm.h"
#include "vmm/park.h"
#include "vmm/pci.h"
#include "vmm/rtc.h"
#include "vmm/serial.h"
#include "vmm/vcpu.h"
#include "vmm/vm_mce.h"
#include "vmm/x86_boot.h"

enum vm_outcome {
    VM_OUT_NONE,
    VM_OUT_DEBUG_EXIT,          /* status = debug_exit_status(value) */
    VM_OUT_RESET,               /* guest reset with on_reset = exit */
    VM_OUT_SIGNAL,              /* SIGINT/SIGTERM on the host */
    VM_OUT_CRASH,               /* triple fault, emulation failure... */
    VM_OUT_MCE_SHUTDOWN,        /* machine check while MCIP was set */
    VM_OUT_ERROR,               /* a host-side failure */
};

/* Start-up stages for --trace-startup: the one table that names them, in
 * the order they are printed.  A stage runs from the end of the stage
 * before it on the same thread to its own mark.  The loader's stages run
 * on their own thread, alongside KVM set-up (x86_boot_load needs guest RAM,
 * not the VM), from VM_T_MEMORY on; "loader join" is how long main then
 * still waited for it.  KVM_CREATE_VM runs on a thread of its own from
 * VM_T_KVM_QUERY on (vm_prepare), alongside the config; "kvm join" is
 * main's wait for it.  tests/bench/startup.sh reads whatever names this
 * prints.  X(id, name, thread: VM_TH_*, what the mark means) */
enum vm_thread { VM_TH_MAIN, VM_TH_LOADER, VM_TH_KVM, VM_TH_NR };
#define VM_STAGES(X)                                                                       \
    X(START, "start", VM_TH_MAIN, "main() entered (about exec)")                           \
    X(KVM_QUERY, "kvm query", VM_TH_MAIN, "/dev/kvm opened, capabilities read")            \
    X(KVM_VM, "KVM_CREATE_VM", VM_TH_KVM, "VM, irqchip, PIT, routes (its own thread)")     \
    X(CFG_PARSE, "config parse", VM_TH_MAIN, "file read, linted, parsed; --set applied")   \
    X(CFG_CHECK, "config check", VM_TH_MAIN, "every key validated, named files checked")   \
    X(SANDBOX, "sandbox", VM_TH_MAIN, "build-time filters picked, SIGSYS handler")         \
    X(MEMORY, "memory", VM_TH_MAIN, "guest RAM mapped")                                    \
    X(LOAD_BEGIN, "loader spawn", VM_TH_MAIN, "kernel loader thread created")              \
    X(KVM_JOIN, "kvm join", VM_TH_MAIN, "main has the VM (caps checked)")                  \
    X(MEMSLOTS, "memslots", VM_TH_MAIN, "guest RAM registered with KVM")                   \
    X(DEVICES, "devices", VM_TH_MAIN, "console, legacy devices, PCI, disks, NICs")         \
    X(VCPU_CREATE, "vcpu create", VM_TH_MAIN, "KVM_CREATE_VCPU and kvm_run, every vCPU")   \
    X(KERNEL, "loader: kernel", VM_TH_LOADER, "kernel checked and read into guest RAM")    \
    X(INITRD, "loader: initrd", VM_TH_LOADER, "initrd read into guest RAM")                \
    X(BOOT_TABLES, "loader: tables", VM_TH_LOADER, "zero page, e820, cmdline, paging, MP") \
    X(LOAD_JOIN, "loader join", VM_TH_MAIN, "main has the loader's result")                \
    X(VCPU_CPUID, "vcpu cpuid", VM_TH_MAIN, "KVM_SET_CPUID2, every vCPU")                  \
    X(VCPU_RESET, "vcpu reset", VM_TH_MAIN, "MSRs, FPU, LAPIC, registers, every vCPU")     \
    X(RUN_SETUP, "run setup", VM_TH_MAIN, "signalfd, epoll, handlers, control, console")   \
    X(FIRST_RUN, "first KVM_RUN", VM_TH_MAIN, "vCPU threads made, vCPU 0 in KVM_RUN")      \
    X(EXIT, "guest ran", VM_TH_MAIN, "the guest's end seen by main")                       \
    X(DONE, "teardown", VM_TH_MAIN, "vCPUs joined, disks synced")

/* CLOCK_MONOTONIC ns per stage, 0 = not reached. */
enum vm_stage {
#define VM_STAGE_ENUM(id, name, thread, what) VM_T_##id,
    VM_STAGES(VM_STAGE_ENUM)
#undef VM_STAGE_ENUM
    VM_T_NR
};

struct vm_options {
    bool memstat;               /* print the overhead report */
    bool trace_startup;
    uint64_t t[VM_T_NR];        /* the stages main timed before vm_create */
};

/* A start-up step on a thread of its own (the kernel loader, KVM set-up). */
struct vm_side {
    pthread_t thread;
    bool started;
};

/* One line per stage with its duration, to stderr. */
void vm_print_trace(const uint64_t *t);

struct vm {
    const struct dvmm_config *cfg;
    struct vm_options opt;
    struct kvm_vm kvm;
    /* vm_prepare's thread: KVM_CREATE_VM while main reads the config. */
    struct kvm_dev kvm_dev;
    struct vm_side kvm_side;
    bool prepared;
    int kvm_ret;
    char kvm_err[512];
    uint64_t t_kvm_vm;
    struct guest_mem gm;
    bool gm_open;
    struct bus pio, mmio;
    struct serial serial;
    struct i8042 i8042;
    struct rtc rtc;
    struct debug_exit dbg;
    struct pci pci;
    bool pci_ready;
    struct blk *disks;          /* cfg->ndisks virtio-blk devices */
    unsigned ndisks;            /* how many were initialised */
    struct net *nets;           /* cfg->nnets virtio-net devices */
    unsigned nnets;             /* how many were initialised */
    struct x86_boot boot;
    struct vcpu_env vcpu_env;   /* what the vCPUs see of all this */
    struct vcpu *vcpus;
    unsigned nvcpus;
    struct park park;           /* pause, reboot, start gate, stop */
    bool park_ready;
    struct vm_mce mce;
    int console_fd;             /* where guest serial output goes */
    int event_fd;               /* vCPU -> main thread wake-up */
    uint64_t t[VM_T_NR];        /* start-up trace */
    struct ctl_server ctl;
    struct ctl_handlers ctl_h;
    bool ctl_open;
    unsigned reboots;           /* main thread only */

    pthread_mutex_t lock;       /* protects the outcome */
    enum vm_outcome outcome;
    int status;                 /* process exit status for the outcome */
};

/* Zero the VM and start creating the KVM VM (KVM_CREATE_VM, irqchip,
 * PIT, GSI routes: nothing there depends on the config) on a thread of
 * its own, taking over kd's fd: in a nested host KVM_CREATE_VM is the
 * longest single step of a start, and it overlaps the config's parse and
 * checks this way.  Failures wait for vm_create, so a config error is
 * still reported first.  A VM that vm_create never gets must go to
 * vm_destroy. */
void vm_prepare(struct vm *vm, struct kvm_dev *kd);
/* Build everything from cfg (no vCPU runs yet); vm_prepare first, or
 * vm_create does it (opening /dev/kvm).  On error, f says what and whose
 * it is, and the VM is torn down. */
int vm_create(struct vm *vm, const struct dvmm_config *cfg,
              const struct vm_options *opt, struct fail *f);
/* Start the vCPUs and run the main event loop until the VM ends; returns the
 * process exit status.  ctl: the control socket's handlers, used when the
 * config enables the socket (vm_control_handlers makes them). */
int vm_run(struct vm *vm, const struct ctl_handlers *ctl);
void vm_destroy(struct vm *vm);
/* The end of a run that is over for good: only what must happen before
 * the process exits (disks drained and synced, TAPs given back); the rest
 * is left to the kernel's exit.  Use vm_destroy for a VM that lives on. */
void vm_finish(struct vm *vm);

/* Any thread.  The first outcome wins. */
void vm_request_exit(struct vm *vm, enum vm_outcome out, int status);
void vm_request_reset(struct vm *vm);

#endif
