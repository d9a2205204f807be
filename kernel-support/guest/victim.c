/* The guest-side victim for machine-check tests: it owns one page of
 * anonymous memory, tells the host its guest-physical address (from
 * /proc/self/pagemap, so it must run as root) and the CPU it is pinned to
 * (0), and keeps reading the page from user mode.  When the host poisons that
 * GPA and dvmm injects the #MC, the guest kernel's memory-failure handling
 * must kill us with SIGBUS BUS_MCEERR_AR: we print that line and
 * "RECOVERED" and exit 0, so the console proves recovery end to end.  An
 * action-optional SIGBUS (only with early kill) is reported and the loop
 * goes on: the next read of the unmapped page must then raise the AR.
 *
 * usage: victim [SECONDS [ROUND [early]]]
 *   SECONDS  give up and exit 1 after that long (default 60)
 *   ROUND    a name for this run, echoed in VICTIM-READY (default "mce")
 *   early    ask for early kill (PR_MCE_KILL_EARLY): a failure the kernel
 *            finds without us touching the page (an AO, e.g. AMD's
 *            deferred error) reaches us as BUS_MCEERR_AO at once */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define PM_PRESENT (1ULL << 63)
#define PM_PFN_MASK ((1ULL << 55) - 1)

static const char *round_name = "mce";

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    char line[200];
    int n, ar = si->si_code == BUS_MCEERR_AR, ao = si->si_code == BUS_MCEERR_AO;

    (void)sig;
    (void)uc;
    /* Only async-signal-safe calls here (snprintf of these formats is). */
    n = snprintf(line, sizeof(line), "VICTIM-SIGBUS round=%s code=%s addr=%p lsb=%d\n%s%s%s",
                 round_name, ar ? "BUS_MCEERR_AR" : ao ? "BUS_MCEERR_AO" : "other",
                 si->si_addr, (int)si->si_addr_lsb, ar ? "RECOVERED round=" : "",
                 ar ? round_name : "", ar ? "\n" : "");
    if (n > 0)
        (void)!write(STDOUT_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    if (!ao)
        _exit(ar ? 0 : 2);
}

int main(int argc, char **argv)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned seconds = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 60;
    const char *round = argc > 2 ? argv[2] : round_name;
    int early = argc > 3 && !strcmp(argv[3], "early");
    struct sigaction sa;
    volatile uint64_t *mem;
    uint64_t entry, sum = 0;
    struct timespec now;
    cpu_set_t cpus;
    time_t end;
    int fd, cpu;

    round_name = round;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    if (sigaction(SIGBUS, &sa, NULL) < 0) {
        perror("victim: sigaction");
        return 1;
    }
    if (early && prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0) < 0) {
        perror("victim: prctl(PR_MCE_KILL_EARLY)");
        return 1;
    }
    /* Run on CPU 0: dvmm routes an action-optional event (the host's early
     * kill) to vCPU 0, and a synthetic AR goes to the vCPU the host names.
     * A machine check that interrupts the guest kernel (the idle loop)
     * instead of us is fatal to guests that grade it without MCG_SER_P
     * (AMD), so be the one running there, in user mode. */
    cpu = 0;
    CPU_ZERO(&cpus);
    CPU_SET(cpu, &cpus);
    if (sched_setaffinity(0, sizeof(cpus), &cpus) < 0) {
        perror("victim: pinning to CPU 0");
        return 1;
    }
    mem = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) {
        perror("victim: mmap");
        return 1;
    }
    /* Keep the page resident and its translation fixed. */
    if (mlock((void *)mem, (size_t)page) < 0)
        perror("victim: mlock (going on)");
    for (long i = 0; i < page / 8; i++)
        mem[i] = 0x5a5a5a5a00000000ULL | (uint64_t)i;

    fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0 || pread(fd, &entry, sizeof(entry),
                        (off_t)((uintptr_t)mem / (uintptr_t)page * sizeof(entry))) !=
                      (ssize_t)sizeof(entry)) {
        perror("victim: /proc/self/pagemap");
        return 1;
    }
    close(fd);
    if (!(entry & PM_PRESENT) || !(entry & PM_PFN_MASK)) {
        fprintf(stderr, "victim: page not present or PFN hidden (not root?): 0x%llx\n",
                (unsigned long long)entry);
        return 1;
    }
    printf("VICTIM-READY round=%s gpa=0x%llx va=%p pid=%d cpu=%d%s\n", round,
           (unsigned long long)((entry & PM_PFN_MASK) * (uint64_t)page), (void *)mem,
           (int)getpid(), cpu, early ? " early-kill" : "");
    fflush(stdout);

    /* Spin in user mode (clock_gettime is the vDSO): an action-required
     * #MC that lands while we run is attributed to us, one that lands in
     * the idle loop would be a kernel-context error (panic). */
    clock_gettime(CLOCK_MONOTONIC, &now);
    end = now.tv_sec + (time_t)seconds;
    while (now.tv_sec < end) {
        for (long i = 0; i < page / 8; i++)
            sum += mem[i];
        clock_gettime(CLOCK_MONOTONIC, &now);
    }
    printf("VICTIM-TIMEOUT no SIGBUS after %u s (sum 0x%llx)\n", seconds,
           (unsigned long long)sum);
    return 1;
}
