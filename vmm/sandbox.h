/* The sandbox: one seccomp allow-list per thread kind, compiled to BPF with
 * libseccomp at build time (tools/sandbox_gen.c), not at every start.
 *
 * Each thread installs its own filter, after its set-up and before it does
 * the work that untrusted input reaches: a vCPU before its first KVM_RUN,
 * a virtio worker before it pops its first descriptor, main after every
 * file, socket and thread it needs exists and before the vCPUs run.  A
 * list is the system calls that kind of thread really makes (measured with
 * `[sandbox] seccomp = log`), with ioctl request numbers and mmap/mprotect
 * protections (never PROT_EXEC) constrained.  PR_SET_NO_NEW_PRIVS always.
 *
 * A seccomp filter is inherited by every thread created after it, and
 * stacked filters only narrow.  Workers that a vCPU or main starts once
 * they are filtered (a driver setting DRIVER_OK, a guest reboot) would get
 * the creator's list on top of their own, so sandbox_thread_create hands
 * them to a spawner thread: started before any filter exists, it runs
 * under the union of the lists of the kinds it creates (plus thread
 * creation itself), and each child then narrows that to its own.
 *
 * With seccomp = yes a forbidden call raises SIGSYS, whose handler writes
 * one line naming the thread, the call and its number, then _exit(1).
 * With seccomp = log the kernel logs the call (dmesg, audit type 1326,
 * comm = the thread name) and lets it proceed; seccomp = no installs
 * nothing.
 *
 * Test hook (tests/integration/sandbox.t only): DVMM_SANDBOX_SELFTEST=KIND
 * makes the first thread of that kind (main, vcpu, blk, net, prefault)
 * call uname(2), which no list allows, right after its filter is in. */
#ifndef DVMM_SANDBOX_H
#define DVMM_SANDBOX_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

enum sandbox_mode { SANDBOX_OFF, SANDBOX_LOG, SANDBOX_ENFORCE };

enum sandbox_kind {
    SBX_MAIN,           /* event loop, control socket, reboot, teardown */
    SBX_VCPU,           /* KVM_RUN and the device emulation it calls */
    SBX_BLK,            /* virtio-blk queue worker */
    SBX_NET,            /* virtio-net queue-pair worker */
    SBX_PREFAULT,       /* guest RAM prefault/zeroing helper */
    SBX_SPAWNER,        /* creates threads for filtered threads */
    SBX_NKINDS
};

/* Once, on the main thread, before any thread that enters a sandbox
 * exists (vm_prepare's KVM set-up thread may run; it never does): pick every
 * kind's filter for `mode` (BPF compiled at build time, ready to load
 * with one system call; no libseccomp at run time), install the
 * SIGSYS handler and read the test hook; main's sandbox_enter starts the
 * spawner.  no_new_privs is set even for SANDBOX_OFF.  0 or -errno with one line in err. */
int sandbox_init(enum sandbox_mode mode, char *err, size_t errlen);

/* The calling thread: remember `name` (for the SIGSYS line; at most 15
 * bytes are kept), set no_new_privs and load its kind's filter.  Threads
 * other than main are also named (comm) so that log mode's kernel lines
 * say which one called.  0, or -errno (logged).  A no-op when the sandbox
 * is off. */
int sandbox_enter(enum sandbox_kind kind, const char *name);

/* Become user uid/gid for good (setgroups, setresgid, setresuid), with an
 * empty capability bounding set.  On main, while it is dvmm's only
 * thread (glibc applies the ids to every thread with a signal, which a
 * filtered thread could not take).  0 or -errno with one line in err. */
int sandbox_drop_user(const char *user, uid_t uid, gid_t gid, char *err, size_t errlen);

/* pthread_create for a thread of `kind` named `name`, which starts with
 * every signal blocked and enters its sandbox before fn runs.  A filtered
 * caller's request goes through the spawner.  0 or -errno. */
int sandbox_thread_create(pthread_t *thread, enum sandbox_kind kind, const char *name,
                          void *(*fn)(void *), void *arg);

/* "vcpu", "blk"...; NULL out of range. */
const char *sandbox_kind_name(enum sandbox_kind kind);
/* The kind named s (one of sandbox_kind_name's), or -EINVAL. */
int sandbox_kind_parse(const char *s);
/* x86-64 system call number -> name; NULL when unknown. */
const char *sandbox_syscall_name(long nr);

/* How many system calls kind's list allows (the union for the spawner),
 * for the README and the unit tests. */
unsigned sandbox_list_size(enum sandbox_kind kind);
/* Whether kind's list allows system call nr at all (with or without
 * argument constraints). */
int sandbox_list_allows(enum sandbox_kind kind, long nr);

/* Build kind's filter with default action `mode` (LOG or ENFORCE) into a
 * malloc'd BPF program with libseccomp: *insns, *ninsns.  0 or -errno.
 * For the build-time generator and the unit tests (which run the programs
 * through the kernel in a child); dvmm itself does not call it, and its
 * link pulls in no libseccomp (sandbox_build.c). */
struct sock_filter;
int sandbox_build(enum sandbox_kind kind, enum sandbox_mode mode,
                  struct sock_filter **insns, unsigned short *ninsns);

/* kind's filter for `mode` (LOG or ENFORCE) as compiled at build time
 * (sandbox_bpf.c): what sandbox_build made then, in read-only memory.
 * 0 or -EINVAL. */
int sandbox_prebuilt(enum sandbox_kind kind, enum sandbox_mode mode,
                     const struct sock_filter **insns, unsigned short *ninsns);

/* Format the SIGSYS report into buf (async-signal-safe: no allocation, no
 * locale): "dvmm: sandbox: NAME made forbidden system call CALL (NR);
 * exiting\n".  Returns the length. */
size_t sandbox_format_violation(char *buf, size_t len, const char *thread, long nr);

#endif
