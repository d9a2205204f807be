/* dmemfs-probe: exercises a dmemfs mount the way a VMM uses it, for
 * tests/integration/dmemfs.t.  Each check prints one line, "PASS what" or
 * "FAIL what: why", and the exit status is the number of failures.
 *
 *   dmemfs-probe map DIR        one dpage: size, fault, zeroed, freed
 *   dmemfs-probe refuse DIR     what would corrupt a huge pfn mapping
 *   dmemfs-probe poison DIR     dmem/inject: AO at inject, AR on access
 *
 * DMEMFS_DEBUGFS (default /sys/kernel/debug/dmem) is where the counters
 * are.  Runs as root in the nested KVM host. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

static int failures;
static const char *debugfs = "/sys/kernel/debug/dmem";

static void result(int ok, const char *what, const char *fmt, ...)
{
    va_list ap;

    printf("%s %s", ok ? "PASS" : "FAIL", what);
    if (!ok && fmt) {
        printf(": ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
    }
    printf("\n");
    fflush(stdout);
    failures += !ok;
}

static long long counter(const char *name)
{
    char path[512];
    long long v = -1;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", debugfs, name);
    f = fopen(path, "r");
    if (!f)
        return -1;
    if (fscanf(f, "%lld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

/* A new file of `dpages` dpages in dir, unlinked at once; returns the fd. */
static int dpage_file(const char *dir, long dsize, int dpages, char *name, size_t len)
{
    int fd;

    snprintf(name, len, "%s/probe-XXXXXX", dir);
    fd = mkstemp(name);
    if (fd < 0) {
        result(0, "create a file", "mkstemp in %s: %s", dir, strerror(errno));
        exit(1);
    }
    if (ftruncate(fd, (off_t)dsize * dpages)) {
        result(0, "ftruncate to whole dpages", "%s", strerror(errno));
        exit(1);
    }
    return fd;
}

static long dpage_size(const char *dir)
{
    struct statfs sf;

    if (statfs(dir, &sf)) {
        printf("FAIL statfs %s: %s\n", dir, strerror(errno));
        exit(1);
    }
    return sf.f_bsize;
}

/* Every byte of the range is zero (word-wise: this runs under TCG). */
static int all_zero(const void *p, size_t len)
{
    const uint64_t *w = p;

    for (size_t i = 0; i < len / 8; i++)
        if (w[i])
            return 0;
    return 1;
}

static int cmd_map(const char *dir)
{
    long dsize = dpage_size(dir);
    long long free0 = counter("free_dpages"), pud0 = counter("faults_pud");
    long long pmd0 = counter("faults_pmd"), pte0 = counter("faults_pte");
    char name[4096];
    int fd = dpage_file(dir, dsize, 1, name, sizeof(name));
    uint8_t *p;

    p = mmap(NULL, dsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        result(0, "mmap MAP_SHARED one dpage", "%s", strerror(errno));
        return 1;
    }
    result(((uintptr_t)p & (dsize - 1)) == 0, "the mapping starts on a dpage boundary",
           "%p", (void *)p);
    result(all_zero(p, dsize), "a new dpage reads as zero", NULL);
    result(counter("free_dpages") == free0 - 1, "free_dpages drops by one on first touch",
           "%lld -> %lld", free0, counter("free_dpages"));
    if (dsize == 1L << 30)
        result(counter("faults_pud") > pud0 && counter("faults_pmd") == pmd0 &&
               counter("faults_pte") == pte0,
               "1 GiB dpage mapped by a PUD fault, no PMD or PTE faults",
               "pud %lld->%lld pmd %lld->%lld pte %lld->%lld", pud0, counter("faults_pud"),
               pmd0, counter("faults_pmd"), pte0, counter("faults_pte"));
    /* Dirty it, free it, and allocate again: the next owner sees zeros. */
    memset(p, 0xa5, dsize);
    munmap(p, dsize);
    if (ftruncate(fd, 0) || ftruncate(fd, dsize)) {
        result(0, "truncate to 0 and back", "%s", strerror(errno));
        return 1;
    }
    result(counter("free_dpages") == free0, "truncate to 0 gives the dpage back",
           "free_dpages %lld, want %lld", counter("free_dpages"), free0);
    p = mmap(NULL, dsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        result(0, "mmap again", "%s", strerror(errno));
        return 1;
    }
    result(all_zero(p, dsize), "a reused dpage is zeroed before its next use",
           "old 0xa5 bytes still there");
    munmap(p, dsize);
    unlink(name);
    close(fd);
    result(counter("free_dpages") == free0, "unlink and close give the dpage back",
           "free_dpages %lld, want %lld", counter("free_dpages"), free0);
    return failures;
}

static void expect_errno(int ret, int want, const char *what)
{
    result(ret == -1 && errno == want, what, "returned %d, errno %d (%s), want %s",
           ret, ret == -1 ? errno : 0, ret == -1 ? strerror(errno) : "-", strerror(want));
}

static int cmd_refuse(const char *dir)
{
    long dsize = dpage_size(dir);
    char name[4096];
    int fd = dpage_file(dir, dsize, 1, name, sizeof(name));
    uint8_t *p, *q;
    char c;

    unlink(name);
    q = mmap(NULL, dsize, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    result(q == MAP_FAILED && errno == EINVAL, "MAP_PRIVATE is refused (EINVAL)",
           "%s", q == MAP_FAILED ? strerror(errno) : "mapped");
    expect_errno(ftruncate(fd, dsize + 4096), EINVAL, "ftruncate to a partial dpage is refused");
    expect_errno((int)read(fd, &c, 1), EINVAL, "read() is refused");

    p = mmap(NULL, dsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        result(0, "mmap MAP_SHARED", "%s", strerror(errno));
        return 1;
    }
    p[0] = 1;
    expect_errno(mprotect(p, dsize, PROT_READ), EACCES, "mprotect is refused (EACCES)");
    if (dsize > 2L << 20)
        expect_errno(munmap(p + dsize / 2, 2 << 20), EINVAL,
                     "a partial munmap inside the dpage is refused (EINVAL)");
    q = mremap(p, dsize, dsize, MREMAP_MAYMOVE | MREMAP_FIXED, p + 2 * dsize);
    result(q == MAP_FAILED && errno == EINVAL, "mremap is refused (EINVAL)",
           "%s", q == MAP_FAILED ? strerror(errno) : "moved");
    result(p[0] == 1, "the mapping still holds its data afterwards", NULL);
    munmap(p, dsize);
    close(fd);
    return failures;
}

static sigjmp_buf poison_jmp;
static volatile sig_atomic_t got_code, got_lsb;
static void *volatile got_addr;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    got_code = si->si_code;
    got_addr = si->si_addr;
    got_lsb = si->si_addr_lsb;
    if (si->si_code == BUS_MCEERR_AR)
        siglongjmp(poison_jmp, 1);
}

/* The physical address of file dpage `index` of inode `ino`, from the
 * module's dmem/dpages list. */
static unsigned long long dpage_phys(unsigned long ino, unsigned long index)
{
    char path[512], line[256];
    unsigned long long nr, phys, lino, lidx;
    FILE *f;

    snprintf(path, sizeof(path), "%s/dpages", debugfs);
    f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "dpage %llu phys %llx ino %llu index %llu", &nr, &phys, &lino, &lidx) == 4 &&
            lino == ino && lidx == index) {
            fclose(f);
            return phys;
        }
    fclose(f);
    return 0;
}

static int cmd_poison(const char *dir)
{
    long dsize = dpage_size(dir);
    long long err0 = counter("error_dpages"), free0 = counter("free_dpages");
    struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
    char name[4096], buf[64];
    int fd = dpage_file(dir, dsize, 2, name, sizeof(name)), inj;
    unsigned long long phys;
    struct stat st;
    uint8_t *p;

    fstat(fd, &st);
    unlink(name);
    sigaction(SIGBUS, &sa, NULL);
    if (prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0))
        result(0, "prctl(PR_MCE_KILL_EARLY)", "%s", strerror(errno));
    p = mmap(NULL, 2 * dsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        result(0, "mmap two dpages", "%s", strerror(errno));
        return 1;
    }
    p[0] = 1;
    p[dsize + 4096] = 2;
    phys = dpage_phys(st.st_ino, 1);
    result(phys != 0, "dmem/dpages names the second dpage of the file", "ino %lu not listed",
           (unsigned long)st.st_ino);
    if (!phys)
        return failures;

    /* A failure 12 KiB into the second dpage: the whole dpage goes. */
    snprintf(buf, sizeof(buf), "0x%llx\n", phys + 3 * 4096);
    {
        char path[512];

        snprintf(path, sizeof(path), "%s/inject", debugfs);
        inj = open(path, O_WRONLY);
    }
    if (inj < 0 || write(inj, buf, strlen(buf)) != (ssize_t)strlen(buf)) {
        result(0, "write the address to dmem/inject", "%s", strerror(errno));
        return 1;
    }
    close(inj);
    result(got_code == BUS_MCEERR_AO && got_addr == p + dsize && got_lsb == 12,
           "inject: SIGBUS BUS_MCEERR_AO at the dpage start, si_addr_lsb 12",
           "si_code %d addr %p (dpage at %p) lsb %d", (int)got_code, got_addr,
           (void *)(p + dsize), (int)got_lsb);
    result(counter("error_dpages") == err0 + 1, "error_dpages counts the retired dpage",
           "%lld -> %lld", err0, counter("error_dpages"));

    got_code = 0;
    if (sigsetjmp(poison_jmp, 1) == 0) {
        volatile uint8_t v = p[dsize + 4096];
        (void)v;
        result(0, "touching the retired dpage raises SIGBUS", "the read returned");
    } else {
        result(got_code == BUS_MCEERR_AR && got_addr == p + dsize && got_lsb == 12,
               "touching it again: SIGBUS BUS_MCEERR_AR at the dpage start, lsb 12",
               "si_code %d addr %p lsb %d", (int)got_code, got_addr, (int)got_lsb);
    }
    result(p[0] == 1, "the other dpage of the file is untouched", NULL);
    munmap(p, 2 * dsize);
    close(fd);
    result(counter("free_dpages") == free0 - 1 && counter("error_dpages") == err0 + 1,
           "after close the good dpage is free again, the retired one is not",
           "free %lld (was %lld), error %lld", counter("free_dpages"), free0,
           counter("error_dpages"));
    return failures;
}

int main(int argc, char **argv)
{
    if (getenv("DMEMFS_DEBUGFS"))
        debugfs = getenv("DMEMFS_DEBUGFS");
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: dmemfs-probe map|refuse|poison DIR\n");
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: dmemfs-probe map|refuse|poison DIR\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(argv[1], "map"))
        return cmd_map(argv[2]);
    if (!strcmp(argv[1], "refuse"))
        return cmd_refuse(argv[2]);
    if (!strcmp(argv[1], "poison"))
        return cmd_poison(argv[2]);
    fprintf(stderr, "dmemfs-probe: unknown command '%s'\n", argv[1]);
    return 2;
}
