/* mce-latency: how long a memory failure takes to become a machine check
 * the guest runs.  dvmm boots the test guest's `mcebench` check, whose #MC
 * hook clears the bank and MCIP and at once writes one byte (0x06) to the
 * UART.  For each of N injections (`mce-inject kind=ar vcpu=0` over the
 * control socket) three CLOCK_MONOTONIC stamps are compared:
 *   sent  dvmm's vCPU thread, just before rt_tgsigqueueinfo (MCE log sent_ns)
 *   set   the same thread, just after KVM_X86_SET_MCE       (MCE log done_ns)
 *   port  this program, when the guest's byte comes out of dvmm's console
 *         pipe: the port write plus the UART's write(2) and our wake-up.
 * The reference, measured in the same run, is the control-socket round trip
 * of the request itself (request written to reply read).  After the last
 * acknowledgement the guest must report that it counted all N; a machine
 * check the guest lost fails the run rather than skewing the figures.
 *
 * Usage: mce-latency [-n N] DVMM GUEST_ELF WORKDIR   (needs /dev/kvm) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "vmm/ctl_client.h"

#define VICTIM_GPA   "0x2000000"
#define ACK_BYTE     0x06
#define READY_TEXT   "# mcebench: ready"
#define DONE_TEXT    "# mcebench: "
#define WAIT_MS      120000     /* MCE_LATENCY_WAIT_S overrides (seconds) */

struct bench {
    const char *dvmm, *guest, *dir;
    unsigned n;
    int wait_ms;
    char sock[256], log[512], ini[512];
    pid_t pid;
    int con;                    /* dvmm's stdout = the guest console */
    uint64_t *rtt, *port, *sent, *set;
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of n sorted values. */
static double pct_us(const uint64_t *v, unsigned n, unsigned p)
{
    unsigned rank = (p * n + 99) / 100;

    return v[rank ? rank - 1 : 0] / 1000.0;
}

/* Read the console until `want` (a byte), or when want < 0 a line holding
 * `text`, which is copied to `got` (got_len bytes).  0, or -ETIMEDOUT /
 * -EPIPE.  Guest failures on the way are passed on to stderr. */
static int con_wait(struct bench *b, int want, const char *text, char *got, size_t got_len)
{
    static char line[4096];
    static size_t used;
    struct pollfd p = { .fd = b->con, .events = POLLIN };

    for (;;) {
        char c;
        ssize_t r;

        int pr = poll(&p, 1, b->wait_ms);

        if (pr == 0)
            return -ETIMEDOUT;
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        r = read(b->con, &c, 1);
        if (r <= 0)
            return -EPIPE;
        if (want >= 0 && (unsigned char)c == want)
            return 0;
        if (c == '\n' || used == sizeof(line) - 1) {
            line[used] = '\0';
            used = 0;
            if (!strncmp(line, "not ok", 6) || !strncmp(line, "# exception", 11))
                fprintf(stderr, "mce-latency: guest: %s\n", line);
            if (want < 0 && strstr(line, text)) {
                if (got)
                    snprintf(got, got_len, "%s", line);
                return 0;
            }
        } else if ((unsigned char)c != ACK_BYTE) {
            line[used++] = c;
        }
    }
}

/* The guest's own count, from its closing line: a machine check that
 * reached KVM but not the guest's handler shows up here, not as a missing
 * acknowledgement (the next injection's acknowledgement covers it). */
static int bench_check_count(struct bench *b)
{
    char line[4096];
    unsigned long handled;
    int ret = con_wait(b, -1, DONE_TEXT, line, sizeof(line));

    while (ret == 0 && strstr(line, "ready"))
        ret = con_wait(b, -1, DONE_TEXT, line, sizeof(line));
    if (ret < 0) {
        fprintf(stderr, "mce-latency: no closing line from the guest: %s\n", strerror(-ret));
        return ret;
    }
    if (sscanf(strstr(line, DONE_TEXT) + strlen(DONE_TEXT), "%lu machine checks handled",
               &handled) != 1 || handled != b->n) {
        fprintf(stderr, "mce-latency: guest counted a different number of machine checks "
                        "than %u injected and acknowledged: %s\n", b->n, line);
        return -EPROTO;
    }
    return 0;
}

static int bench_start(struct bench *b)
{
    int fds[2];
    FILE *f;

    snprintf(b->sock, sizeof(b->sock), "%s/mce-latency.sock", b->dir);
    snprintf(b->log, sizeof(b->log), "%s/mce-latency.jsonl", b->dir);
    snprintf(b->ini, sizeof(b->ini), "%s/mce-latency.ini", b->dir);
    unlink(b->log);
    f = fopen(b->ini, "w");
    if (!f)
        return -errno;
    fprintf(f, "[vm]\nname = mce-latency\nvcpus = 1\nmemory = 128M\nkernel = %s\n"
               "cmdline = dvmmtest=mcebench mcebench_n=%u mce_timeout=60\n"
               "on_reset = exit\n[console]\noutput = stdout\ninput = no\n"
               "[control]\nsocket = %s\n[mce]\nlog = %s\n",
            b->guest, b->n, b->sock, b->log);
    if (fclose(f))
        return -errno;
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    b->pid = fork();
    if (b->pid < 0)
        return -errno;
    if (b->pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        execl(b->dvmm, b->dvmm, "run", b->ini, (char *)NULL);
        perror("mce-latency: exec dvmm");
        _exit(127);
    }
    close(fds[1]);
    b->con = fds[0];
    return con_wait(b, -1, READY_TEXT, NULL, 0);
}

/* After a lost acknowledgement, before dvmm is stopped: is the vCPU still
 * running the guest?  Twice, 2 s apart, to stderr: the vCPUs' exit counts
 * (from `status`) and each dvmm thread's scheduler state and CPU time.  A
 * vCPU thread in R whose time grows with no new exits is a guest spinning
 * in place; one whose time stands still did not run at all. */
static void bench_diagnose(const struct bench *b)
{
    for (int k = 0; k < 2; k++) {
        char err[256], path[64];
        int e = 0;
        json_object *req = ctl_client_request("status", 0, NULL, err, sizeof(err));
        json_object *rep = req ? ctl_client_call(b->sock, req, &e, err, sizeof(err)) : NULL;
        json_object *v;
        DIR *d;
        struct dirent *de;

        if (rep && json_object_object_get_ex(rep, "vcpus", &v))
            fprintf(stderr, "mce-latency: diagnose %d: vcpus %s\n", k,
                    json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
        else
            fprintf(stderr, "mce-latency: diagnose %d: status: %s\n", k, rep ? "no vcpus" : err);
        json_object_put(rep);
        json_object_put(req);
        snprintf(path, sizeof(path), "/proc/%d/task", (int)b->pid);
        if ((d = opendir(path))) {
            while ((de = readdir(d))) {
                char f[384], line[512];
                FILE *fp;

                if (de->d_name[0] == '.')
                    continue;
                snprintf(f, sizeof(f), "%s/%s/stat", path, de->d_name);
                if (!(fp = fopen(f, "r")))
                    continue;
                if (fgets(line, sizeof(line), fp)) {
                    /* comm, then state; utime and stime are fields 14-15. */
                    char *r = strrchr(line, ')');
                    char st = r && r[1] ? r[2] : '?';
                    unsigned long ut = 0, stime = 0;

                    if (r)
                        sscanf(r + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                               &ut, &stime);
                    fprintf(stderr, "mce-latency: diagnose %d: thread %s %.*s state %c "
                            "utime %lu stime %lu\n", k, de->d_name,
                            r ? (int)(r - strchr(line, '(') - 1) : 0,
                            r ? strchr(line, '(') + 1 : "", st, ut, stime);
                }
                fclose(fp);
            }
            closedir(d);
        }
        if (!k)
            sleep(2);
    }
    /* Then where the #MC is: KVM's view of vCPU 0 (rip, pending or
     * injected events, MCG_STATUS.MCIP, bank 9), twice 1 s apart to see
     * whether anything moves.  After the thread sample above, since
     * vcpu-state pauses the VM and its kick is an exit of its own. */
    for (int k = 0; k < 2; k++) {
        char *args[] = { "vcpu=0" };
        char err[256];
        int e = 0;
        json_object *req = ctl_client_request("vcpu-state", 1, args, err, sizeof(err));
        json_object *rep = req ? ctl_client_call(b->sock, req, &e, err, sizeof(err)) : NULL;

        fprintf(stderr, "mce-latency: diagnose vcpu-state %d: %s\n", k,
                rep ? json_object_to_json_string_ext(rep, JSON_C_TO_STRING_PLAIN) : err);
        json_object_put(rep);
        json_object_put(req);
        if (!k)
            sleep(1);
    }
}

static int bench_inject(struct bench *b, unsigned i)
{
    char *args[] = { "gpa=" VICTIM_GPA, "kind=ar", "vcpu=0" };
    char err[512];
    json_object *req, *rep, *ok;
    uint64_t t0;
    int e = 0, ret;

    req = ctl_client_request("mce-inject", 3, args, err, sizeof(err));
    if (!req) {
        fprintf(stderr, "mce-latency: %s\n", err);
        return -EINVAL;
    }
    t0 = now_ns();
    rep = ctl_client_call(b->sock, req, &e, err, sizeof(err));
    b->rtt[i] = now_ns() - t0;
    json_object_put(req);
    if (!rep) {
        fprintf(stderr, "mce-latency: %s\n", err);
        return e ? e : -EIO;
    }
    ok = json_object_object_get(rep, "ok");
    if (!json_object_get_boolean(ok)) {
        fprintf(stderr, "mce-latency: injection %u refused: %s\n", i,
                json_object_to_json_string(rep));
        json_object_put(rep);
        return -EIO;
    }
    json_object_put(rep);
    ret = con_wait(b, ACK_BYTE, NULL, NULL, 0);
    b->port[i] = now_ns();
    if (ret < 0) {
        fprintf(stderr, "mce-latency: no acknowledgement for injection %u: %s\n", i,
                strerror(-ret));
        bench_diagnose(b);
    }
    return ret;
}

/* sent_ns / done_ns of each event, in log order. */
static int bench_read_log(struct bench *b)
{
    FILE *f = fopen(b->log, "r");
    char line[2048];
    unsigned i = 0;

    if (!f)
        return -errno;
    while (i < b->n && fgets(line, sizeof(line), f)) {
        json_object *o = json_tokener_parse(line), *s, *d;

        if (!o || !json_object_object_get_ex(o, "sent_ns", &s) ||
            !json_object_object_get_ex(o, "done_ns", &d)) {
            fprintf(stderr, "mce-latency: log line %u lacks sent_ns/done_ns: %s", i + 1, line);
            json_object_put(o);
            fclose(f);
            return -EINVAL;
        }
        b->sent[i] = (uint64_t)json_object_get_int64(s);
        b->set[i] = (uint64_t)json_object_get_int64(d);
        json_object_put(o);
        i++;
    }
    fclose(f);
    if (i != b->n) {
        fprintf(stderr, "mce-latency: %u log lines for %u injections\n", i, b->n);
        return -EINVAL;
    }
    return 0;
}

static void report(const char *what, uint64_t *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    printf("%-44s p50 %9.1f us   p99 %9.1f us   max %9.1f us\n", what,
           pct_us(v, n, 50), pct_us(v, n, 99), v[n - 1] / 1000.0);
}

int main(int argc, char **argv)
{
    struct bench b = { .n = 1000, .con = -1, .pid = -1, .wait_ms = WAIT_MS };
    uint64_t *to_set, *to_port;
    double ref;
    int opt, ret = 0, status;

    while ((opt = getopt(argc, argv, "n:")) != -1) {
        if (opt == 'n' && atoi(optarg) > 0) {
            b.n = (unsigned)atoi(optarg);
        } else {
            fprintf(stderr, "usage: %s [-n N] DVMM GUEST_ELF WORKDIR\n", argv[0]);
            return 2;
        }
    }
    if (argc - optind != 3) {
        fprintf(stderr, "usage: %s [-n N] DVMM GUEST_ELF WORKDIR\n", argv[0]);
        return 2;
    }
    /* Absolute: dvmm resolves INI paths against the INI's directory. */
    b.dvmm = realpath(argv[optind], NULL);
    b.guest = realpath(argv[optind + 1], NULL);
    b.dir = argv[optind + 2];
    if (!b.dvmm || !b.guest) {
        fprintf(stderr, "mce-latency: %s: %s\n", b.dvmm ? argv[optind + 1] : argv[optind],
                strerror(errno));
        return 2;
    }
    b.rtt = calloc(b.n, sizeof(uint64_t));
    b.port = calloc(b.n, sizeof(uint64_t));
    b.sent = calloc(b.n, sizeof(uint64_t));
    b.set = calloc(b.n, sizeof(uint64_t));
    to_set = calloc(b.n, sizeof(uint64_t));
    to_port = calloc(b.n, sizeof(uint64_t));
    if (!b.rtt || !b.port || !b.sent || !b.set || !to_set || !to_port) {
        fprintf(stderr, "mce-latency: out of memory\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (getenv("MCE_LATENCY_WAIT_S") && atoi(getenv("MCE_LATENCY_WAIT_S")) > 0)
        b.wait_ms = atoi(getenv("MCE_LATENCY_WAIT_S")) * 1000;

    ret = bench_start(&b);
    if (ret < 0) {
        fprintf(stderr, "mce-latency: starting dvmm: %s\n", strerror(-ret));
    } else {
        for (unsigned i = 0; i < b.n && ret == 0; i++)
            ret = bench_inject(&b, i);
        if (ret == 0)
            ret = bench_check_count(&b);
    }
    if (b.pid > 0) {
        if (ret < 0)
            kill(b.pid, SIGTERM);
        while (waitpid(b.pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    if (ret < 0)
        return 1;
    if (bench_read_log(&b) < 0)
        return 1;
    for (unsigned i = 0; i < b.n; i++) {
        if (b.set[i] < b.sent[i] || b.port[i] < b.sent[i]) {
            fprintf(stderr, "mce-latency: event %u: stamps out of order\n", i);
            return 1;
        }
        to_set[i] = b.set[i] - b.sent[i];
        to_port[i] = b.port[i] - b.sent[i];
    }
    printf("mce-latency: %u AR injections on vCPU 0, 4 KiB anon guest RAM\n", b.n);
    report("SIGBUS sent -> KVM_X86_SET_MCE done", to_set, b.n);
    report("SIGBUS sent -> guest #MC hook's port write", to_port, b.n);
    report("reference: control-socket round trip", b.rtt, b.n);
    ref = pct_us(b.rtt, b.n, 50);
    printf("ratio (p50 / reference p50): set %.3f  port %.3f\n",
           pct_us(to_set, b.n, 50) / ref, pct_us(to_port, b.n, 50) / ref);
    return 0;
}
