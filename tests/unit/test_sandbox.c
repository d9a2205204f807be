/* Sandbox: [sandbox] config parsing, the system call name table (against
 * libseccomp's), the SIGSYS line, every kind's filter run through the
 * kernel in a child process (allowed calls pass, a forbidden call, an
 * ioctl request outside the list and an executable mapping raise SIGSYS),
 * and the programs compiled in at build time against sandbox_build's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/config.h"
#include "vmm/sandbox.h"

static const struct cfg_limits limits = { .max_vcpus = 4, .host_memory = 4ULL << 30 };

/* Test-only fixture: a temp dir with a "kernel" file, made per group. */
static char tmpdir[64];

static int group_setup(void **state)
{
    char path[128];
    int fd;

    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_sandbox.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(path, sizeof(path), "%s/vmlinuz", tmpdir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "k", 1) != 1)
        return -1;
    close(fd);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[160];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Load an INI whose [sandbox] section is `sandbox` (NULL: none). */
static int load(const char *sandbox, struct dvmm_config *cfg, char *err, size_t errlen)
{
    char path[128], text[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/vm.ini", tmpdir);
    snprintf(text, sizeof(text), "[vm]\nkernel = vmlinuz\n[control]\nenabled = no\n%s%s",
             sandbox ? "[sandbox]\n" : "", sandbox ? sandbox : "");
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    memset(cfg, 0, sizeof(*cfg));
    return cfg_load(path, NULL, 0, &limits, cfg, err, errlen);
}

static void test_config_modes(void **state)
{
    struct dvmm_config *cfg = calloc(1, sizeof(*cfg));
    char err[512] = "";

    (void)state;
    assert_non_null(cfg);
    assert_int_equal(load(NULL, cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->sandbox.seccomp, CFG_SECCOMP_YES);
    assert_int_equal(load("seccomp = log\n", cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->sandbox.seccomp, CFG_SECCOMP_LOG);
    assert_int_equal(load("seccomp = no\n", cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->sandbox.seccomp, CFG_SECCOMP_NO);
    assert_int_equal(load("seccomp = YES\n", cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->sandbox.seccomp, CFG_SECCOMP_YES);
    free(cfg);
}

static void test_config_errors(void **state)
{
    struct dvmm_config *cfg = calloc(1, sizeof(*cfg));
    char err[512] = "";

    (void)state;
    assert_non_null(cfg);
    assert_int_equal(load("seccomp = maybe\n", cfg, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "vm.ini"));
    assert_non_null(strstr(err, "sandbox.seccomp"));
    assert_non_null(strstr(err, "'maybe'"));
    assert_non_null(strstr(err, "yes, log or no"));
    err[0] = 0;
    assert_int_equal(load("secomp = yes\n", cfg, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "secomp"));
    err[0] = 0;
    assert_int_equal(load("user = no-such-user-dvmm\n", cfg, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "sandbox.user = 'no-such-user-dvmm': no such user"));
    err[0] = 0;
    assert_int_equal(load("user =\n", cfg, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "sandbox.user"));
    /* chroot: a directory, relative to the file, and never with reboot */
    err[0] = 0;
    assert_int_equal(load("chroot = no-such-dir\n", cfg, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "sandbox.chroot = 'no-such-dir'"));
    err[0] = 0;
    assert_int_equal(load("chroot = vmlinuz\n", cfg, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not a directory"));
    err[0] = 0;
    assert_int_equal(load("chroot = .\n", cfg, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "needs vm.on_reset = exit"));
    free(cfg);
}

/* root exists everywhere: the ids come from the user database. */
static void test_config_user(void **state)
{
    struct dvmm_config *cfg = calloc(1, sizeof(*cfg));
    char err[512] = "";

    (void)state;
    assert_non_null(cfg);
    assert_int_equal(load(NULL, cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->sandbox.user, "");
    assert_int_equal(load("user = root\n", cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->sandbox.user, "root");
    assert_int_equal(cfg->sandbox.uid, 0);
    assert_int_equal(cfg->sandbox.gid, 0);
    assert_int_equal(load("chroot = .\n[vm]\non_reset = exit\n", cfg, err, sizeof(err)), 0);
    assert_non_null(strstr(cfg->sandbox.chroot, "test_sandbox."));
    free(cfg);
}

/* The const table must say what libseccomp says, number for number. */
static void test_name_table(void **state)
{
    unsigned named = 0;

    (void)state;
    for (long nr = 0; nr < 512; nr++) {
        char *ref = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86_64, (int)nr);
        const char *ours = sandbox_syscall_name(nr);

        if (ref && ours) {
            if (strcmp(ref, ours))
                fail_msg("system call %ld: ours '%s', libseccomp '%s'", nr, ours, ref);
            named++;
        } else if (ours && !ref) {
            fail_msg("system call %ld: ours '%s', libseccomp has none", nr, ours);
        }
        free(ref);
    }
    assert_true(named > 300);
    assert_string_equal(sandbox_syscall_name(SYS_uname), "uname");
    assert_string_equal(sandbox_syscall_name(SYS_ioctl), "ioctl");
    assert_null(sandbox_syscall_name(-1));
    assert_null(sandbox_syscall_name(100000));
}

static void test_violation_line(void **state)
{
    char buf[160];
    size_t n;

    (void)state;
    n = sandbox_format_violation(buf, sizeof(buf), "blk0-q0", SYS_uname);
    assert_string_equal(buf, "dvmm: sandbox: blk0-q0 made forbidden system call uname "
                             "(63); exiting\n");
    assert_int_equal(n, strlen(buf));
    sandbox_format_violation(buf, sizeof(buf), "", 99999);
    assert_string_equal(buf, "dvmm: sandbox: unnamed thread made forbidden system call "
                             "unknown (99999); exiting\n");
    /* Cut, never overrun. */
    n = sandbox_format_violation(buf, 10, "vcpu0", 0);
    assert_int_equal(n, 9);
    assert_int_equal(strlen(buf), 9);
}

static void test_kind_names(void **state)
{
    (void)state;
    for (int k = 0; k < SBX_NKINDS; k++)
        assert_int_equal(sandbox_kind_parse(sandbox_kind_name((enum sandbox_kind)k)), k);
    assert_int_equal(sandbox_kind_parse("vcpu"), SBX_VCPU);
    assert_int_equal(sandbox_kind_parse("blk0"), -EINVAL);
    assert_null(sandbox_kind_name(SBX_NKINDS));
}

/* What no list may have, and what every list must. */
static void test_list_contents(void **state)
{
    static const long never[] = { SYS_execve, SYS_execveat, SYS_ptrace, SYS_uname,
                                  SYS_socket, SYS_connect, SYS_bind, SYS_mount,
                                  SYS_setuid, SYS_kexec_load, SYS_init_module,
                                  SYS_process_vm_writev, SYS_bpf, SYS_memfd_create };
    static const long always[] = { SYS_write, SYS_exit, SYS_exit_group, SYS_rt_sigreturn,
                                   SYS_futex };

    (void)state;
    for (int k = 0; k < SBX_NKINDS; k++) {
        for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
            if (sandbox_list_allows((enum sandbox_kind)k, never[i]))
                fail_msg("%s allows %s", sandbox_kind_name((enum sandbox_kind)k),
                         sandbox_syscall_name(never[i]));
        for (size_t i = 0; i < sizeof(always) / sizeof(always[0]); i++)
            assert_true(sandbox_list_allows((enum sandbox_kind)k, always[i]));
        assert_true(sandbox_list_size((enum sandbox_kind)k) > 10);
    }
    /* Only the spawner creates threads; only main opens files. */
    for (int k = 0; k < SBX_NKINDS; k++) {
        assert_int_equal(sandbox_list_allows((enum sandbox_kind)k, SYS_clone3),
                         k == SBX_SPAWNER);
        assert_int_equal(sandbox_list_allows((enum sandbox_kind)k, SYS_openat),
                         k == SBX_MAIN);
    }
    /* The spawner's children narrow its list: it must hold theirs. */
    for (long nr = 0; nr < 512; nr++)
        if (sandbox_list_allows(SBX_BLK, nr) || sandbox_list_allows(SBX_NET, nr) ||
            sandbox_list_allows(SBX_PREFAULT, nr))
            assert_true(sandbox_list_allows(SBX_SPAWNER, nr));
    assert_true(sandbox_list_allows(SBX_VCPU, SYS_ioctl));
    assert_false(sandbox_list_allows(SBX_BLK, SYS_ioctl));
}

/* In a child: load kind's enforcing filter, then run `probe`.  Returns the
 * child's wait status.  Raw syscalls only after the load (ASan's
 * interceptors make calls of their own). */
static int run_filtered(enum sandbox_kind kind, int probe)
{
    struct sock_filter *insns;
    unsigned short n;
    int status;
    pid_t pid;

    assert_int_equal(sandbox_build(kind, SANDBOX_ENFORCE, &insns, &n), 0);
    assert_true(n > 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sock_fprog prog = { .len = n, .filter = insns };
        struct utsname u;
        void *p;

        signal(SIGSYS, SIG_DFL);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
            syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
            syscall(SYS_exit_group, 100);
        switch (probe) {
        case 0:         /* allowed everywhere */
            syscall(SYS_getpid);
            syscall(SYS_write, -1, "", 0);
            break;
        case 1:         /* forbidden everywhere */
            syscall(SYS_uname, &u);
            break;
        case 2:         /* a KVM request on a bad fd: EBADF when allowed */
            syscall(SYS_ioctl, -1, KVM_RUN, 0);
            break;
        case 3:         /* a request no list has */
            syscall(SYS_ioctl, -1, TIOCSTI, 0);
            break;
        case 4:         /* executable memory */
            p = (void *)syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_EXEC,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            (void)p;
            break;
        case 5:         /* writable memory */
            p = (void *)syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED)
                syscall(SYS_exit_group, 101);
            break;
        }
        syscall(SYS_exit_group, 0);
    }
    free(insns);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void assert_sigsys(int status)
{
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSYS);
}

static void assert_ok(int status)
{
    if (!WIFEXITED(status) || WEXITSTATUS(status))
        fail_msg("child: status 0x%x", status);
}

static void test_filters_in_kernel(void **state)
{
    (void)state;
    for (int k = 0; k < SBX_NKINDS; k++) {
        enum sandbox_kind kind = (enum sandbox_kind)k;

        assert_ok(run_filtered(kind, 0));
        assert_sigsys(run_filtered(kind, 1));
        assert_sigsys(run_filtered(kind, 3));
        assert_sigsys(run_filtered(kind, 4));
        assert_ok(run_filtered(kind, 5));
    }
    assert_ok(run_filtered(SBX_VCPU, 2));
    assert_sigsys(run_filtered(SBX_MAIN, 2));   /* main never runs a vCPU */
    assert_sigsys(run_filtered(SBX_BLK, 2));
    assert_sigsys(run_filtered(SBX_NET, 2));
}

/* The whole path in one process, in a child: init, main's filter (which
 * starts the spawner), then a filtered thread asking for a blk worker:
 * the worker runs under its own list (pread64 fine, uname ends the
 * process from the SIGSYS handler with exit 1). */
static void *worker_ok(void *arg)
{
    char c;

    (void)arg;
    syscall(SYS_pread64, -1, &c, 1, 0);
    return NULL;
}

static void *worker_bad(void *arg)
{
    struct utsname u;

    (void)arg;
    syscall(SYS_uname, &u);
    return NULL;
}

static int run_spawned(void *(*fn)(void *), int errfd)
{
    int status;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        char err[256];
        pthread_t t;

        dup2(errfd, STDERR_FILENO);
        if (sandbox_init(SANDBOX_ENFORCE, err, sizeof(err)) < 0 ||
            sandbox_enter(SBX_MAIN, "main") < 0)
            _exit(100);
        /* main is filtered now: this goes through the spawner */
        if (sandbox_thread_create(&t, SBX_BLK, "blk7-q3", fn, NULL) < 0)
            _exit(101);
        pthread_join(t, NULL);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void test_spawned_worker(void **state)
{
    char path[128], buf[512] = "";
    int fd, status;
    ssize_t n;

    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip();     /* ASan's own thread and allocator calls are not in the lists */
#endif
    snprintf(path, sizeof(path), "%s/spawn.err", tmpdir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    status = run_spawned(worker_ok, fd);
    if (!WIFEXITED(status) || WEXITSTATUS(status))
        fail_msg("allowed worker: status 0x%x", status);
    status = run_spawned(worker_bad, fd);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    n = pread(fd, buf, sizeof(buf) - 1, 0);
    assert_true(n > 0);
    buf[n] = 0;
    assert_non_null(strstr(buf, "dvmm: sandbox: blk7-q3 made forbidden system call "
                                "uname (63); exiting\n"));
    close(fd);
}

static void test_log_mode_builds(void **state)
{
    (void)state;
    for (int k = 0; k < SBX_NKINDS; k++) {
        struct sock_filter *insns = NULL;
        unsigned short n = 0;

        assert_int_equal(sandbox_build((enum sandbox_kind)k, SANDBOX_LOG, &insns, &n), 0);
        assert_true(n > 0 && n < BPF_MAXINSNS);
        free(insns);
    }
    assert_int_equal(sandbox_build(SBX_VCPU, SANDBOX_OFF, NULL, NULL), -EINVAL);
    assert_int_equal(sandbox_build(SBX_NKINDS, SANDBOX_LOG, NULL, NULL), -EINVAL);
}

/* dvmm loads the programs compiled at build time (sandbox_bpf.c): they must
 * be, byte for byte, what sandbox_build makes from the lists now, so that
 * a stale generated header (or a libseccomp that compiles differently)
 * fails here rather than loading other filters than the lists say. */
static void test_prebuilt_matches_build(void **state)
{
    static const enum sandbox_mode modes[] = { SANDBOX_LOG, SANDBOX_ENFORCE };
    const struct sock_filter *pre;
    unsigned short npre;

    (void)state;
    for (int k = 0; k < SBX_NKINDS; k++) {
        for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
            const char *kind = sandbox_kind_name((enum sandbox_kind)k);
            const char *mode = modes[m] == SANDBOX_LOG ? "log" : "enforce";
            struct sock_filter *insns = NULL;
            unsigned short n = 0;

            assert_int_equal(sandbox_build((enum sandbox_kind)k, modes[m], &insns, &n), 0);
            assert_int_equal(sandbox_prebuilt((enum sandbox_kind)k, modes[m], &pre, &npre),
                             0);
            if (npre != n || memcmp(pre, insns, n * sizeof(*insns)))
                fail_msg("%s filter, %s: the compiled-in program (%u instructions) is "
                         "not what sandbox_build makes now (%u): stale sandbox_bpf.h?",
                         kind, mode, npre, n);
            free(insns);
        }
    }
    /* The two modes differ in the default action only. */
    assert_int_equal(sandbox_prebuilt(SBX_VCPU, SANDBOX_LOG, &pre, &npre), 0);
    {
        const struct sock_filter *enf;
        unsigned short nenf, differ = 0;

        assert_int_equal(sandbox_prebuilt(SBX_VCPU, SANDBOX_ENFORCE, &enf, &nenf), 0);
        assert_int_equal(nenf, npre);
        for (unsigned i = 0; i < npre; i++)
            if (memcmp(&pre[i], &enf[i], sizeof(pre[i]))) {
                assert_int_equal(pre[i].code, BPF_RET | BPF_K);
                assert_int_equal(pre[i].k, SECCOMP_RET_LOG);
                assert_int_equal(enf[i].k, SECCOMP_RET_TRAP);
                differ++;
            }
        assert_true(differ > 0);
    }
    assert_int_equal(sandbox_prebuilt(SBX_VCPU, SANDBOX_OFF, &pre, &npre), -EINVAL);
    assert_int_equal(sandbox_prebuilt(SBX_NKINDS, SANDBOX_LOG, &pre, &npre), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_modes),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_user),
        cmocka_unit_test(test_name_table),
        cmocka_unit_test(test_violation_line),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_list_contents),
        cmocka_unit_test(test_filters_in_kernel),
        cmocka_unit_test(test_spawned_worker),
        cmocka_unit_test(test_log_mode_builds),
        cmocka_unit_test(test_prebuilt_matches_build),
    };

    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
