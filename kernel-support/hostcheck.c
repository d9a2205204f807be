/* dvmm hostcheck: see hostcheck.h.  Each hc_check_* function adds one or a
 * few lines to the report; none of them changes anything on the host. */
#include "kernel-support/hostcheck.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <unistd.h>

#include <json-c/json.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <liburing.h>

#include "guest-mem/gm.h"
#include "guest-mem/host.h"
#include "virtio/tap.h"
#include "virtio/vhost_net.h"
#include "vmm/config.h"
#include "vmm/kvm_caps.h"
#include "vmm/log.h"
#include "vmm/mce.h"

struct hc_ctx {
    const char *root;
    bool real;                     /* root is "/": ioctls and syscalls allowed */
    /* The root as guest-mem's host: its reads and the backend checks go
     * through it, with statfs answered from the root's mount table when
     * the root is fake. */
    struct gm_host host;
    struct hc_report *rep;
    char *dmesg;                   /* kernel log, NULL when unreadable */
    char *mounts;                  /* /proc/mounts, NULL when unreadable */
    bool kvm_dev;                  /* /dev/kvm usable */
    bool caps_known;               /* caps came from /dev/kvm or .kvm-caps */
    struct kvm_cap_set caps;
    bool dmemfs;                   /* registered in /proc/filesystems */
    uint64_t dpage_size;           /* from debugfs or the mount; 0 unknown */
    uint64_t free_dpages;
    bool have_free_dpages;
    struct hc_check overflow;      /* sink once the report is full */
};

/* ---- small helpers ---------------------------------------------------- */

static void hc_path(const struct hc_ctx *x, const char *abs, char *buf, size_t len)
{
    if (gm_host_path(&x->host, abs, buf, len))
        buf[0] = '\0';            /* too long: no such file */
}

static char *hc_slurp(const struct hc_ctx *x, const char *abs)
{
    return gm_host_slurp(&x->host, abs);
}

/* First line of a small file, trailing whitespace trimmed.  -errno. */
static int hc_read_line(const struct hc_ctx *x, const char *abs, char *out, size_t len)
{
    char buf[512];
    long r = gm_host_read(&x->host, abs, buf, sizeof(buf));
    if (r < 0)
        return (int)r;
    size_t n = strcspn(buf, "\n");
    while (n && isspace((unsigned char)buf[n - 1]))
        n--;
    snprintf(out, len, "%.*s", (int)n, buf);
    return 0;
}

/* A number in C syntax (sysfs prints firmware-map addresses in hex). */
static int hc_read_u64(const struct hc_ctx *x, const char *abs, uint64_t *v)
{
    char line[128], *end;
    int r = hc_read_line(x, abs, line, sizeof(line));
    if (r)
        return r;
    errno = 0;
    unsigned long long u = strtoull(line, &end, 0);
    if (errno || end == line)
        return -EINVAL;
    *v = u;
    return 0;
}

static bool hc_exists(const struct hc_ctx *x, const char *abs)
{
    char p[PATH_MAX + 64];
    struct stat st;
    hc_path(x, abs, p, sizeof(p));
    return stat(p, &st) == 0;
}

/* Kernel memparse syntax (dmem=, memmap=, pagesize=): a number (0x hex, 0
 * octal, as strtoull base 0) with an optional K/M/G/T suffix. */
static int hc_parse_size(const char *s, uint64_t *out, const char **end)
{
    char *e;
    errno = 0;
    unsigned long long v = strtoull(s, &e, 0);
    if (errno || e == s)
        return -EINVAL;
    unsigned shift = 0;
    switch (*e) {
    case 'T': case 't': shift = 40; e++; break;
    case 'G': case 'g': shift = 30; e++; break;
    case 'M': case 'm': shift = 20; e++; break;
    case 'K': case 'k': shift = 10; e++; break;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    if (end)
        *end = e;
    return 0;
}

static struct hc_check *hc_add(struct hc_ctx *x, const char *name, enum hc_status st,
                               const char *vfmt, ...) __attribute__((format(printf, 4, 5)));
static struct hc_check *hc_add(struct hc_ctx *x, const char *name, enum hc_status st,
                               const char *vfmt, ...)
{
    struct hc_check *c = &x->overflow;
    if (x->rep->n < HC_MAX_CHECKS)
        c = &x->rep->c[x->rep->n++];
    else
        log_warn("hostcheck: report full, dropping check %s", name);
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->status = st;
    va_list ap;
    va_start(ap, vfmt);
    vsnprintf(c->value, sizeof(c->value), vfmt, ap);
    va_end(ap);
    return c;
}

static void hc_advise(struct hc_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hc_advise(struct hc_check *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->advice, sizeof(c->advice), fmt, ap);
    va_end(ap);
}

/* Is `word` one of the whitespace-separated words of the "flags" line? */
static bool hc_cpu_flag(const char *cpuinfo, const char *word)
{
    if (!cpuinfo)
        return false;
    const char *f = strstr(cpuinfo, "\nflags");
    if (!f)
        return false;
    f = strchr(f, ':');
    if (!f)
        return false;
    size_t wl = strlen(word);
    for (const char *p = f + 1; *p && *p != '\n';) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, " \t\n");
        if (n == wl && !strncmp(p, word, wl))
            return true;
        p += n;
    }
    return false;
}

/* Last kernel-log line containing one of the strings of `any` (NULL-ended)
 * and, unless NULL, b; copied without the "<6>" level and the
 * "[   0.241188] " timestamp.  false when none or no log. */
static bool hc_dmesg_find(const struct hc_ctx *x, const char *const *any, const char *b,
                          char *out, size_t len)
{
    bool found = false;
    if (!x->dmesg)
        return false;
    for (const char *l = x->dmesg; *l;) {
        size_t n = strcspn(l, "\n");
        bool hit = false;
        char line[1024];
        size_t m = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
        memcpy(line, l, m);
        line[m] = '\0';
        for (const char *const *a = any; *a && !hit; a++)
            hit = strstr(line, *a) != NULL;
        if (hit && (!b || strstr(line, b))) {
            const char *s = line;
            if (*s == '<')                       /* klogctl keeps "<6>" */
                s = strchr(s, '>') ? strchr(s, '>') + 1 : s;
            if (*s == '[' && strchr(s, ']'))
                s = strchr(s, ']') + 1;
            while (*s == ' ')
                s++;
            snprintf(out, len, "%s", s);
            found = true;
        }
        l += n;
        if (*l)
            l++;
    }
    return found;
}

/* ---- KVM -------------------------------------------------------------- */

/* A fake root's KVM facts: <root>/.kvm-caps in kvm_caps_parse's format. */
static void hc_caps_from_fixture(struct hc_ctx *x)
{
    char *t = hc_slurp(x, "/.kvm-caps");
    if (!t)
        return;
    kvm_caps_parse(t, &x->caps);
    x->caps_known = true;
    free(t);
}

static void hc_caps_from_kvm(struct hc_ctx *x, int fd)
{
    int r = kvm_caps_probe(fd, &x->caps);
    if (r)
        log_debug("hostcheck: KVM_GET_API_VERSION: %s", strerror(-r));
    x->caps_known = r == 0;
}

/* kvm-pvm explains itself in one line: "(needs A=0 B=1; has A=1 B=1)".
 * Return the items that differ, e.g. "PTI=0 (has PTI=1)". */
static void hc_pvm_mismatch(const char *line, char *out, size_t len, bool *pti, bool *ibt)
{
    out[0] = '\0';
    const char *n = strstr(line, "needs "), *h = strstr(line, "has ");
    if (!n || !h)
        return;
    n += 6;
    h += 4;
    size_t used = 0;
    while (*n && *n != ';' && *n != ')') {
        while (*n == ' ')
            n++;
        size_t tl = strcspn(n, " ;)");
        const char *eq = memchr(n, '=', tl);
        if (eq && tl) {
            size_t kl = (size_t)(eq - n) + 1;   /* "PTI=" */
            char key[32];
            snprintf(key, sizeof(key), "%.*s", (int)kl, n);
            const char *hv = strstr(h, key);
            size_t hl = hv ? strcspn(hv, " ;)") : 0;
            if (hv && (hl != tl || strncmp(hv, n, tl))) {
                int w = snprintf(out + used, len - used, "%s%.*s (has %.*s)",
                                 used ? ", " : "", (int)tl, n, (int)hl, hv);
                if (w > 0 && (size_t)w < len - used)
                    used += (size_t)w;
                if (!strncmp(key, "PTI=", 4))
                    *pti = true;
                if (!strncmp(key, "IBT=", 4))
                    *ibt = true;
            }
        }
        n += tl;
    }
}

static void hc_check_kvm(struct hc_ctx *x, const char *cpuinfo)
{
    bool pvm = hc_exists(x, "/sys/module/kvm_pvm");
    bool intel = hc_exists(x, "/sys/module/kvm_intel");
    bool amd = hc_exists(x, "/sys/module/kvm_amd");
    bool vmx = hc_cpu_flag(cpuinfo, "vmx"), svm = hc_cpu_flag(cpuinfo, "svm");
    struct hc_check *c;

    /* /dev/kvm itself */
    char dev[PATH_MAX + 64];
    hc_path(x, "/dev/kvm", dev, sizeof(dev));
    int fd = -1, err = 0;
    if (x->real) {
        fd = open(dev, O_RDWR | O_CLOEXEC);
        err = fd < 0 ? errno : 0;
    } else {
        err = access(dev, R_OK | W_OK) ? errno : 0;
    }
    if (!err) {
        x->kvm_dev = true;
        if (x->real)
            hc_caps_from_kvm(x, fd);
        else
            hc_caps_from_fixture(x);
        if (x->caps_known && x->caps.api_version != KVM_API_VERSION) {
            c = hc_add(x, "kvm-device", HC_FAIL, "/dev/kvm API version %ld, dvmm needs %d",
                       x->caps.api_version, KVM_API_VERSION);
            hc_advise(c, "this KVM speaks another API; use a mainline-compatible host kernel");
        } else if (x->caps_known) {
            hc_add(x, "kvm-device", HC_OK, "/dev/kvm read-write, API version %ld",
                   x->caps.api_version);
        } else {
            c = hc_add(x, "kvm-device", HC_OK, "/dev/kvm read-write (API version unknown)");
            hc_advise(c, "a fake root gives KVM facts in %s/.kvm-caps", x->root);
        }
        if (fd >= 0)
            close(fd);
    } else if (err == ENOENT) {
        char line[1024], miss[512];
        bool pti = false, ibt = false;
        /* Its lines start "kvm-pvm:" on the kernels seen so far; a prefix
         * built from KBUILD_MODNAME would read "kvm_pvm:", so both match.
         * The reason varies by kernel and host (a settings mismatch, "this
         * kernel is itself a kvm-pvm guest", ...): the line is quoted
         * whole, and only a "needs ...; has ..." list is taken apart. */
        static const char *const pvm_names[] = { "kvm-pvm", "kvm_pvm", NULL };
        if (pvm && hc_dmesg_find(x, pvm_names, "not binding", line, sizeof(line))) {
            hc_pvm_mismatch(line, miss, sizeof(miss), &pti, &ibt);
            if (miss[0])
                c = hc_add(x, "kvm-device", HC_FAIL,
                           "/dev/kvm missing: kvm_pvm is loaded but refused to bind, it needs %s; kernel log: \"%s\"",
                           miss, line);
            else
                c = hc_add(x, "kvm-device", HC_FAIL,
                           "/dev/kvm missing: kvm_pvm is loaded but refused to bind; kernel log: \"%s\"", line);
            if (miss[0])
                hc_advise(c, "reboot the host with %s%s%sor use a VT-x/AMD-V host; meanwhile KVM tests run in the nested QEMU harness (tests/lib)",
                          pti ? "pti=off " : "", ibt ? "ibt=off " : "",
                          (pti || ibt) ? "(what kvm-pvm needs) " : "the settings kvm-pvm needs ");
            else
                hc_advise(c, "the quoted line is kvm-pvm's reason; use a VT-x/AMD-V host or a host kernel kvm-pvm binds on; meanwhile KVM tests run in the nested QEMU harness (tests/lib)");
        } else if (pvm) {
            c = hc_add(x, "kvm-device", HC_FAIL,
                       "/dev/kvm missing although kvm_pvm is loaded (the module did not bind; kernel log %s)",
                       x->dmesg ? "has no kvm-pvm \"not binding\" line" : "unreadable");
            hc_advise(c, "run `dmesg | grep -E 'kvm[-_]pvm'` as root for the reason (PVM needs PTI=0 among others)");
        } else if (intel || amd) {
            c = hc_add(x, "kvm-device", HC_FAIL, "/dev/kvm missing although %s is loaded",
                       intel ? "kvm_intel" : "kvm_amd");
            hc_advise(c, "virtualisation may be disabled in the firmware; see `dmesg | grep kvm`");
        } else {
            c = hc_add(x, "kvm-device", HC_FAIL, "/dev/kvm missing: no KVM vendor module loaded");
            hc_advise(c, "%s", vmx ? "modprobe kvm_intel" : svm ? "modprobe kvm_amd"
                      : "this CPU has no VT-x/AMD-V; a PVM host kernel (kvm_pvm) is the only option");
        }
    } else {
        c = hc_add(x, "kvm-device", HC_FAIL, "/dev/kvm: %s", strerror(err));
        hc_advise(c, "%s", err == EACCES ? "add your user to the group that owns /dev/kvm (usually kvm), then log in again"
                                         : "check `ls -l /dev/kvm`");
    }

    /* flavour */
    if (pvm) {
        c = hc_add(x, "kvm-flavour", HC_WARN, "PVM (kvm_pvm loaded%s)",
                   vmx ? "; CPU also has VT-x" : svm ? "; CPU also has AMD-V"
                   : hc_cpu_flag(cpuinfo, "hypervisor") ? "; no VT-x/AMD-V, running under a hypervisor"
                   : "; no VT-x/AMD-V");
        hc_advise(c, "only PVM-enabled guest kernels run at full speed; other guests run in KVM's instruction emulator (~3M instructions/s)");
    } else if (intel || amd) {
        hc_add(x, "kvm-flavour", HC_OK, "%s (%s loaded)", intel ? "VT-x" : "AMD-V",
               intel ? "kvm_intel" : "kvm_amd");
    } else if (vmx || svm) {
        c = hc_add(x, "kvm-flavour", x->kvm_dev ? HC_OK : HC_WARN,
                   "%s in the CPU, no vendor module in /sys/module", vmx ? "VT-x" : "AMD-V");
        if (!x->kvm_dev)
            hc_advise(c, "modprobe %s", vmx ? "kvm_intel" : "kvm_amd");
    } else {
        c = hc_add(x, "kvm-flavour", HC_FAIL, "none: no VT-x, no AMD-V, no kvm_pvm");
        hc_advise(c, "run on a host with hardware virtualisation or a PVM host kernel");
    }

    /* capabilities dvmm needs */
    if (!x->caps_known) {
        c = hc_add(x, "kvm-caps", HC_WARN, "unknown: %s",
                   !x->kvm_dev ? "/dev/kvm is not usable"
                   : "fake root without .kvm-caps");
        hc_advise(c, "%s", !x->kvm_dev ? "fix kvm-device first" : "add key=value lines to <root>/.kvm-caps");
        return;
    }
    /* Every required row of the table `dvmm run` checks, one line each. */
    const struct kvm_cap_set *k = &x->caps;
    for (unsigned i = 0; i < KC_COUNT; i++) {
        const struct kvm_cap_info *ci = &kvm_caps[i];
        if (!ci->required)
            continue;
        char name[HC_NAME_MAX];
        snprintf(name, sizeof(name), "kvm-%s", ci->key);
        for (char *p = name; *p; p++)
            if (*p == '_')
                *p = '-';
        if (k->val[i] > 1)
            c = hc_add(x, name, HC_OK, "%s yes (%ld)", ci->name, k->val[i]);
        else
            c = hc_add(x, name, k->val[i] > 0 ? HC_OK : HC_FAIL, "%s %s", ci->name,
                       k->val[i] > 0 ? "yes" : "no");
        if (k->val[i] <= 0)
            hc_advise(c, "%s; `dvmm run` refuses this host", ci->use);
    }
    if (!k->mce_cap) {
        c = hc_add(x, "kvm-mce", HC_FAIL, "KVM_X86_GET_MCE_CAP_SUPPORTED unavailable");
        hc_advise(c, "%s", kvm_caps[KC_MCE].use);
    } else {
        unsigned banks = (unsigned)(k->mce_cap & MCE_MCG_CAP_COUNT_MASK);
        bool ser = k->mce_cap & MCE_MCG_SER_P;
        /* mce_mcg_cap is what the vCPUs hand KVM: 0 means no bank 9. */
        enum hc_status st = !mce_mcg_cap(k->mce_cap) ? HC_FAIL : !ser ? HC_WARN : HC_OK;
        c = hc_add(x, "kvm-mce", st, "%u MCE banks, MCG_SER_P %s (mcg_cap 0x%" PRIx64 ")",
                   banks, ser ? "yes" : "no", k->mce_cap);
        if (st == HC_FAIL)
            hc_advise(c, "dvmm injects memory errors in bank %d and needs at least %d banks",
                      MCE_BANK, MCE_NR_BANKS);
        else if (st == HC_WARN)
            hc_advise(c, "without software error recovery (SER) the guest cannot recover from AR/AO events");
    }
    bool given = k->val[KC_MAX_VCPUS] > 0 || k->val[KC_NR_VCPUS] > 0;
    c = hc_add(x, "kvm-max-vcpus", given ? HC_OK : HC_WARN,
               "max %u vCPUs per VM (recommended %ld); dvmm allows %u",
               kvm_caps_max_vcpus(k), k->val[KC_NR_VCPUS], kvm_caps_vcpu_limit(k));
    if (!given)
        hc_advise(c, "KVM reported no vCPU limit; dvmm assumes 4, as the KVM API says");
}

/* ---- memory ----------------------------------------------------------- */

static void hc_check_memory_failure(struct hc_ctx *x)
{
    uint64_t rec = 0, early = 0;
    int r1 = hc_read_u64(x, "/proc/sys/vm/memory_failure_recovery", &rec);
    int r2 = hc_read_u64(x, "/proc/sys/vm/memory_failure_early_kill", &early);
    struct hc_check *c;
    if (r1 == -ENOENT && r2 == -ENOENT) {
        c = hc_add(x, "memory-failure", HC_WARN,
                   "absent: no /proc/sys/vm/memory_failure_{recovery,early_kill}, kernel built without CONFIG_MEMORY_FAILURE");
        hc_advise(c, "real memory errors cannot reach the guest (MADV_HWPOISON is EINVAL); MCE tests use synthetic SIGBUS only");
    } else if (r1 || r2) {
        c = hc_add(x, "memory-failure", HC_WARN, "unreadable: %s",
                   strerror(-(r1 ? r1 : r2)));
        hc_advise(c, "run hostcheck as root");
    } else if (!rec) {
        c = hc_add(x, "memory-failure", HC_WARN, "recovery=0 early_kill=%" PRIu64 ": the kernel panics on memory errors", early);
        hc_advise(c, "echo 1 > /proc/sys/vm/memory_failure_recovery");
    } else {
        c = hc_add(x, "memory-failure", HC_OK, "recovery=1 early_kill=%" PRIu64 "%s", early,
                   early ? "" : " (dvmm asks for early kill itself with PR_MCE_KILL_EARLY)");
        /* The project's module (kernel-support/dmemfs/) has dmem/inject;
         * Tencent's series does not. */
        if (x->dmemfs && hc_exists(x, "/sys/kernel/debug/dmem/inject"))
            hc_advise(c, "the project's dmemfs module signals a dpage failure from dmem/inject (AO, then AR on access); a hardware #MC on a dmem pfn is not signalled on this kernel (kernel-support/README.md)");
        else if (x->dmemfs)
            hc_advise(c, "dmemfs sends SIGBUS only when the kernel sets MF_MUST_KILL; other dpage errors are not signalled");
    }
}

static void hc_check_thp(struct hc_ctx *x)
{
    char line[256];
    struct hc_check *c;
    if (hc_read_line(x, "/sys/kernel/mm/transparent_hugepage/enabled", line, sizeof(line))) {
        c = hc_add(x, "thp", HC_WARN, "absent: kernel without transparent huge pages");
        hc_advise(c, "dmemfs and THP-backed RAM fall back to 4 KiB mappings");
        return;
    }
    const char *b = strchr(line, '['), *e = b ? strchr(b, ']') : NULL;
    char mode[32] = "?";
    if (b && e && e - b - 1 < (long)sizeof(mode))
        snprintf(mode, sizeof(mode), "%.*s", (int)(e - b - 1), b + 1);
    bool on = !strcmp(mode, "always") || !strcmp(mode, "madvise");
    c = hc_add(x, "thp", on ? HC_OK : HC_WARN, "%s", mode);
    if (!on)
        hc_advise(c, "dmemfs huge (2 MiB/1 GiB) faults need THP for the VMA: echo madvise > /sys/kernel/mm/transparent_hugepage/enabled");
}

struct hc_hpool { bool present; uint64_t total, free, resv; };

static struct hc_hpool hc_hugetlb_pool(const struct hc_ctx *x, uint64_t size)
{
    struct hc_hpool p = { 0 };
    char base[128], f[192];
    snprintf(base, sizeof(base), "/sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB", size >> 10);
    snprintf(f, sizeof(f), "%s/nr_hugepages", base);
    if (hc_read_u64(x, f, &p.total))
        return p;
    p.present = true;
    snprintf(f, sizeof(f), "%s/free_hugepages", base);
    hc_read_u64(x, f, &p.free);
    snprintf(f, sizeof(f), "%s/resv_hugepages", base);
    hc_read_u64(x, f, &p.resv);
    if (p.resv > p.free)
        p.resv = p.free;
    return p;
}

static void hc_check_hugetlb(struct hc_ctx *x, const char *cpuinfo)
{
    static const struct { uint64_t size; const char *name; } pools[] = {
        { 2 * GM_MiB, "hugetlb-2M" }, { GM_GiB, "hugetlb-1G" },
    };
    for (unsigned i = 0; i < 2; i++) {
        struct hc_hpool p = hc_hugetlb_pool(x, pools[i].size);
        struct hc_check *c;
        char sz[32];
        if (!p.present) {
            c = hc_add(x, pools[i].name, HC_WARN, "no pool (no /sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB)",
                       pools[i].size >> 10);
            hc_advise(c, "%s", pools[i].size == GM_GiB && !hc_cpu_flag(cpuinfo, "pdpe1gb")
                      ? "the CPU lacks pdpe1gb: no 1 GiB pages on this host"
                      : "kernel without CONFIG_HUGETLBFS, or this size is unsupported");
            continue;
        }
        gm_fmt_size((p.free - p.resv) * pools[i].size, sz, sizeof(sz));
        c = hc_add(x, pools[i].name, HC_OK, "total %" PRIu64 ", free %" PRIu64 ", reserved %" PRIu64 " (%s available)",
                   p.total, p.free, p.resv, sz);
        if (!p.total)
            hc_advise(c, "reserve pages for [memory] backend=hugetlbfs: echo N > /sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB/nr_hugepages",
                      pools[i].size >> 10);
    }

    uint64_t hvo;
    struct hc_check *c;
    int r = hc_read_u64(x, "/proc/sys/vm/hugetlb_optimize_vmemmap", &hvo);
    if (r) {
        c = hc_add(x, "hugetlb-vmemmap", HC_WARN, "absent: kernel without CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP");
        hc_advise(c, "every huge page keeps its full struct page array (16 MiB per 1 GiB page)");
    } else if (!hvo) {
        c = hc_add(x, "hugetlb-vmemmap", HC_WARN, "off (hugetlb_optimize_vmemmap=0)");
        hc_advise(c, "echo 1 > /proc/sys/vm/hugetlb_optimize_vmemmap before reserving pages: frees most of the struct page memory of each huge page");
    } else {
        hc_add(x, "hugetlb-vmemmap", HC_OK, "on (hugetlb_optimize_vmemmap=%" PRIu64 ")", hvo);
    }
}

/* One /proc/mounts entry; the mount point has its octal escapes undone. */
struct hc_mount { char dir[PATH_MAX]; char type[64]; char opts[512]; };

static void hc_unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

/* Iterate mounts: returns the next entry after *pos, false at the end. */
static bool hc_next_mount(const char *mounts, const char **pos, struct hc_mount *m)
{
    const char *l = *pos ? *pos : mounts;
    while (l && *l) {
        size_t n = strcspn(l, "\n");
        char line[PATH_MAX + 1024], dev[256];
        size_t k = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
        memcpy(line, l, k);
        line[k] = '\0';
        l += n;
        if (*l)
            l++;
        if (sscanf(line, "%255s %4095s %63s %511s", dev, m->dir, m->type, m->opts) == 4) {
            hc_unescape(m->dir);
            *pos = l;
            return true;
        }
    }
    *pos = l;
    return false;
}

/* Value of "key=" in a comma-separated mount option string. */
static bool hc_mount_opt(const char *opts, const char *key, char *out, size_t len)
{
    size_t kl = strlen(key);
    for (const char *p = opts; *p;) {
        size_t n = strcspn(p, ",");
        if (n > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            snprintf(out, len, "%.*s", (int)(n - kl - 1), p + kl + 1);
            return true;
        }
        p += n;
        if (*p)
            p++;
    }
    return false;
}

/* Page size of a hugetlbfs or dmemfs mount.  hugetlbfs prints pagesize=2M;
 * dmemfs prints its dpage size in bare hex (seq_printf "%lx"). */
static uint64_t hc_mount_pagesize(const struct hc_mount *m)
{
    char v[64];
    uint64_t sz = 0;
    if (!hc_mount_opt(m->opts, "pagesize", v, sizeof(v)))
        return 0;
    if (!strcmp(m->type, "dmemfs")) {
        char *e;
        sz = strtoull(v, &e, 16);
        return *e ? 0 : sz;
    }
    const char *e;
    return hc_parse_size(v, &sz, &e) || *e ? 0 : sz;
}

/* The mount holding `path` (longest matching mount point) in the mount
 * table `mounts`, of `type` unless type is NULL. */
static bool hc_find_mount(const char *mounts, const char *path, const char *type,
                          struct hc_mount *out)
{
    const char *pos = NULL;
    struct hc_mount m;
    size_t best = 0;
    bool found = false;
    if (!mounts)
        return false;
    while (hc_next_mount(mounts, &pos, &m)) {
        if (type && strcmp(m.type, type))
            continue;
        size_t dl = strlen(m.dir);
        if (strncmp(path, m.dir, dl) || (path[dl] && path[dl] != '/' && strcmp(m.dir, "/")))
            continue;
        if (dl >= best) {
            best = dl;
            *out = m;
            found = true;
        }
    }
    return found;
}

/* `Key:  N kB` of <root>/proc/meminfo in bytes; 0 when absent. */
static uint64_t hc_meminfo(const struct gm_host *h, const char *key)
{
    char *t = gm_host_slurp(h, "/proc/meminfo");
    int64_t kb = 0;
    if (!t || gm_parse_kb(t, key, &kb))
        kb = 0;
    free(t);
    return (uint64_t)kb << 10;
}

/* gm_host.statfs of a fake root, so that gm_backend_check judges its
 * [memory] paths as `dvmm run` would on that host: the mount of
 * <root>/proc/mounts holding the path, with the magic of its type and its
 * page size as f_bsize (hugetlbfs without pagesize=: the default huge page
 * size of meminfo).  Every path on a mount is taken to exist. */
static int hc_fake_statfs(const struct gm_host *h, const char *path, struct statfs *st)
{
    static const struct { const char *type; uint64_t magic; } magic[] = {
        { "hugetlbfs", HUGETLBFS_MAGIC }, { "dmemfs", GM_DMEMFS_MAGIC },
        { "tmpfs", TMPFS_MAGIC }, { "ext4", EXT4_SUPER_MAGIC },
    };
    char *mounts = gm_host_slurp(h, "/proc/mounts");
    struct hc_mount m;
    bool found = hc_find_mount(mounts, path, NULL, &m);
    free(mounts);
    if (!found)
        return -ENOENT;
    memset(st, 0, sizeof(*st));
    st->f_bsize = GM_PAGE_SIZE;
    for (size_t i = 0; i < sizeof(magic) / sizeof(magic[0]); i++)
        if (!strcmp(m.type, magic[i].type))
            st->f_type = (__fsword_t)magic[i].magic;
    uint64_t ps = hc_mount_pagesize(&m);
    if (!ps && !strcmp(m.type, "hugetlbfs"))
        ps = hc_meminfo(h, "Hugepagesize");
    if (ps)
        st->f_bsize = (__fsword_t)ps;
    return 0;
}

/* ---- dmem reservations ---------------------------------------------- */

/* A dmem range: [start, end) in physical addresses. */
struct hc_range { uint64_t start, end; };

#define HC_MAX_RANGES 16

/* What /proc/cmdline reserves for dmem.  Tencent's series reserves with its
 * own dmem= parameter; the project's module (kernel-support/dmemfs/) takes
 * memory the kernel set aside with memmap=SIZE$ADDR, an e820 "reserved"
 * entry (memmap= may list several entries, comma-separated).  SIZE and ADDR
 * are memparse numbers: 4G, 0x100000000, 4096M. */
struct hc_dmem_cmdline {
    char dmem[256];                /* the dmem= words */
    char memmap[256];              /* memmap= words with a SIZE$ADDR entry */
    char escaped[256];             /* memmap= words with a literal "\$" */
    struct hc_range at[HC_MAX_RANGES];     /* dmem=SIZE@ADDR */
    unsigned nat;
    struct hc_range resv[HC_MAX_RANGES];   /* memmap=SIZE$ADDR */
    unsigned nresv;
};

/* Append n bytes of s to the string in buf, after sep unless buf is empty; a
 * piece that does not fit is left out whole.  false then. */
static bool hc_append(char *buf, size_t len, const char *sep, const char *s, size_t n)
{
    size_t used = strlen(buf);
    int w = snprintf(buf + used, len - used, "%s%.*s", used ? sep : "", (int)n, s);
    if (w < 0 || (size_t)w >= len - used) {
        buf[used] = '\0';
        return false;
    }
    return true;
}

static void hc_parse_cmdline(const char *cmdline, struct hc_dmem_cmdline *d)
{
    memset(d, 0, sizeof(*d));
    for (const char *w = cmdline; w && *w;) {
        w += strspn(w, " \t\n");
        size_t n = strcspn(w, " \t\n");
        if (!n)
            break;
        char word[256];
        snprintf(word, sizeof(word), "%.*s", (int)(n < sizeof(word) ? n : sizeof(word) - 1), w);
        w += n;
        uint64_t size, addr;
        const char *e;
        if (!strncmp(word, "dmem=", 5)) {
            hc_append(d->dmem, sizeof(d->dmem), " ", word, strlen(word));
            /* only dmem=SIZE@ADDR[:ALIGN] names a range by itself */
            if (!hc_parse_size(word + 5, &size, &e) && *e == '@' &&
                !hc_parse_size(e + 1, &addr, &e) && size && addr + size > addr &&
                d->nat < HC_MAX_RANGES)
                d->at[d->nat++] = (struct hc_range){ addr, addr + size };
            continue;
        }
        if (strncmp(word, "memmap=", 7))
            continue;
        bool resv = false, esc = false;
        char *save = NULL;
        for (char *ent = strtok_r(word + 7, ",", &save); ent; ent = strtok_r(NULL, ",", &save)) {
            if (hc_parse_size(ent, &size, &e))
                continue;         /* exactmap, or not a memparse number */
            if (e[0] == '$' && !hc_parse_size(e + 1, &addr, &e) && !*e && size &&
                addr + size > addr) {
                resv = true;
                if (d->nresv < HC_MAX_RANGES)
                    d->resv[d->nresv++] = (struct hc_range){ addr, addr + size };
            } else if (e[0] == '\\' && e[1] == '$') {
                esc = true;
            }
            /* SIZE@ADDR, SIZE#ADDR, SIZE!ADDR, SIZE%... and a bare SIZE
             * (a RAM limit) reserve nothing for dmem */
        }
        /* strtok_r cut the word at its commas: take it again from cmdline */
        if (resv)
            hc_append(d->memmap, sizeof(d->memmap), " ", w - n, n);
        if (esc)
            hc_append(d->escaped, sizeof(d->escaped), " ", w - n, n);
    }
}

/* Ranges of the "dmem: register region [A - B] on node N." kernel-log lines.
 * Tencent's series prints B exclusive (start + size: dmem_region_register()
 * counts pfn(B) - pfn(A)); a module that prints B inclusive, as
 * /sys/firmware/memmap does, is read the same way: regions are page-aligned,
 * so a B ending in 0xfff can only be the last byte, and B + 1 is the end. */
static unsigned hc_dmem_log_ranges(const struct hc_ctx *x, struct hc_range *r, unsigned max)
{
    unsigned n = 0;
    for (const char *l = x->dmesg; l && *l && n < max;) {
        const char *s = strstr(l, "dmem: register region [");
        if (!s)
            break;
        unsigned long long a, b;
        if (sscanf(s, "dmem: register region [%llx - %llx]", &a, &b) == 2) {
            bool seen = false;

            if ((b & 0xfff) == 0xfff && b != ULLONG_MAX)
                b++;
            /* A module loaded again logs its regions again. */
            for (unsigned i = 0; i < n; i++)
                seen |= r[i].start == a && r[i].end == b;
            if (b > a && !seen) {
                r[n].start = a;
                r[n].end = b;
                n++;
            }
        }
        l = s + 1;
    }
    return n;
}

/* "[0x100000000-0x200000000) 4 GiB" */
static void hc_fmt_range(struct hc_range rg, char *buf, size_t len)
{
    char sz[32];
    gm_fmt_size(rg.end - rg.start, sz, sizeof(sz));
    snprintf(buf, len, "[0x%" PRIx64 "-0x%" PRIx64 ") %s", rg.start, rg.end, sz);
}

static bool hc_range_is_ram(const struct hc_ctx *x, struct hc_range rg)
{
    /* /sys/firmware/memmap/N/{start,end,type}: end is inclusive.  Walk until
     * the first missing index; entries are not sorted, so check each. */
    uint64_t covered_to = rg.start;
    bool progress = true;
    while (progress && covered_to < rg.end) {
        progress = false;
        for (unsigned i = 0; i < 1024; i++) {
            char p[96], type[64];
            uint64_t s, e;
            snprintf(p, sizeof(p), "/sys/firmware/memmap/%u/start", i);
            if (hc_read_u64(x, p, &s))
                break;
            snprintf(p, sizeof(p), "/sys/firmware/memmap/%u/end", i);
            if (hc_read_u64(x, p, &e))
                continue;
            snprintf(p, sizeof(p), "/sys/firmware/memmap/%u/type", i);
            if (hc_read_line(x, p, type, sizeof(type)) || strcmp(type, "System RAM"))
                continue;
            if (s <= covered_to && e + 1 > covered_to) {
                covered_to = e + 1;
                progress = true;
            }
        }
    }
    return covered_to >= rg.end;
}

static void hc_check_dmem(struct hc_ctx *x, const char *cmdline)
{
    char *fs = hc_slurp(x, "/proc/filesystems");
    struct hc_check *c;
    x->dmemfs = false;
    for (const char *l = fs; l && *l;) {
        size_t n = strcspn(l, "\n");
        const char *w = memchr(l, '\t', n);
        w = w ? w + 1 : l;
        if ((size_t)(l + n - w) == 6 && !strncmp(w, "dmemfs", 6))
            x->dmemfs = true;
        l += n;
        if (*l)
            l++;
    }
    free(fs);

    /* what the kernel command line reserves */
    struct hc_dmem_cmdline d;
    hc_parse_cmdline(cmdline, &d);
    bool reserved = d.dmem[0] || d.memmap[0];

    if (x->dmemfs) {
        hc_add(x, "dmemfs", HC_OK, "registered in /proc/filesystems");
    } else {
        c = hc_add(x, "dmemfs", HC_WARN,
                   "not registered in /proc/filesystems: no dmemfs in this kernel, neither built in nor loaded as a module");
        hc_advise(c, "use [memory] backend=hugetlbfs, or a kernel with the dmemfs series (kernel-support/README.md)");
        if (!reserved && !d.escaped[0])
            return;     /* nothing dmem-related on this host */
    }
    if (d.escaped[0]) {
        c = hc_add(x, "dmem-cmdline", HC_WARN,
                   "/proc/cmdline: %s: the backslash reached the kernel, which reads SIZE\\$ADDR as a RAM limit (like mem=SIZE), not a reservation",
                   d.escaped);
        hc_advise(c, "fix the boot loader's quoting of $ so that /proc/cmdline shows memmap=SIZE$ADDR");
    } else if (reserved) {
        char what[HC_TEXT_MAX] = "";
        char part[HC_TEXT_MAX];
        if (d.dmem[0]) {
            snprintf(part, sizeof(part), "%s (dmem= reservation, as Tencent's dmemfs series uses)", d.dmem);
            hc_append(what, sizeof(what), "; ", part, strlen(part));
        }
        if (d.memmap[0]) {
            snprintf(part, sizeof(part), "%s (memmap= reservation, as the project's dmemfs module uses)", d.memmap);
            hc_append(what, sizeof(what), "; ", part, strlen(part));
        }
        c = hc_add(x, "dmem-cmdline", x->dmemfs ? HC_OK : HC_WARN, "/proc/cmdline: %s", what);
        if (!x->dmemfs)
            hc_advise(c, "%s", d.dmem[0]
                      ? "memory is reserved for dmem but no dmemfs can hand it out"
                      : "memory is reserved with memmap= but no dmemfs hands it out: load the project's dmemfs module (kernel-support/dmemfs/), unless memmap= reserves it for something else");
    } else {
        c = hc_add(x, "dmem-cmdline", HC_WARN,
                   "no dmem= and no memmap=SIZE$ADDR on /proc/cmdline: dmemfs has no memory");
        hc_advise(c, "reserve memory at boot: memmap=SIZE$ADDR for the project's dmemfs module (e.g. memmap=4G$0x100000000, 1 GiB-aligned, inside System RAM of /sys/firmware/memmap), or dmem=SIZE[:ALIGN] with the dmemfs series (e.g. dmem=16G:1G)");
    }

    /* mounts */
    const char *pos = NULL;
    struct hc_mount m;
    char list[HC_TEXT_MAX] = "";
    size_t ll = 0;
    unsigned nmounts = 0;
    uint64_t first_size = 0;
    bool mixed = false, bad_magic = false;
    while (x->mounts && hc_next_mount(x->mounts, &pos, &m)) {
        if (strcmp(m.type, "dmemfs"))
            continue;
        uint64_t ps = hc_mount_pagesize(&m);
        if (x->real) {
            struct statfs sf;
            if (statfs(m.dir, &sf) == 0) {
                if ((uint64_t)(uint32_t)sf.f_type != GM_DMEMFS_MAGIC)
                    bad_magic = true;
                ps = (uint64_t)sf.f_bsize;
            }
        }
        char sz[32];
        gm_fmt_size(ps, sz, sizeof(sz));
        int w = snprintf(list + ll, sizeof(list) - ll, "%s%s (%s)", ll ? ", " : "", m.dir, sz);
        if (w > 0 && (size_t)w < sizeof(list) - ll)
            ll += (size_t)w;
        if (nmounts++ && ps != first_size)
            mixed = true;
        if (nmounts == 1)
            first_size = ps;
    }
    if (!nmounts) {
        c = hc_add(x, "dmemfs-mounts", HC_WARN, "none in /proc/mounts");
        hc_advise(c, "kernel-support/dmemfs-setup -o pagesize=1G /mnt/dmem");
    } else {
        c = hc_add(x, "dmemfs-mounts", mixed || bad_magic ? HC_WARN : HC_OK, "%s", list);
        if (mixed)
            hc_advise(c, "mounts disagree on the dpage size; only one size is allowed system-wide");
        else if (bad_magic)
            hc_advise(c, "statfs magic is not 0x2ace90c6 on a dmemfs mount");
        if (!x->dpage_size)
            x->dpage_size = first_size;
    }

    /* capacity, debugfs only */
    uint64_t shift = 0, total = 0, freep = 0;
    int r = hc_read_u64(x, "/sys/kernel/debug/dmem/total_dpages", &total);
    if (r) {
        c = hc_add(x, "dmem-pages", HC_WARN, "debugfs dmem/ unreadable (%s)", strerror(-r));
        hc_advise(c, "mount -t debugfs none /sys/kernel/debug (as root); dmem capacity is only in debugfs");
    } else {
        hc_read_u64(x, "/sys/kernel/debug/dmem/free_dpages", &freep);
        hc_read_u64(x, "/sys/kernel/debug/dmem/dpage_shift", &shift);
        if (shift && shift < 64)
            x->dpage_size = 1ULL << shift;
        x->free_dpages = freep;
        x->have_free_dpages = shift != 0;
        char ds[32], fr[32];
        gm_fmt_size(x->dpage_size, ds, sizeof(ds));
        gm_fmt_size(freep * x->dpage_size, fr, sizeof(fr));
        /* the allocator is set up at mount: before that shift and counts are 0 */
        if (!shift) {
            c = hc_add(x, "dmem-pages", HC_WARN, "dpage_shift=0: allocator not set up (no dmemfs mounted yet)");
            hc_advise(c, "mount dmemfs first: kernel-support/dmemfs-setup");
        } else {
            c = hc_add(x, "dmem-pages", freep ? HC_OK : HC_WARN,
                       "%s dpages: total %" PRIu64 ", free %" PRIu64 " (%s free)", ds, total, freep, fr);
            if (!freep)
                hc_advise(c, "no free dpages: stop VMs or reserve more (dmem=, or memmap=SIZE$ADDR for the project's module)");
        }
    }

    /* every dmem range must still be System RAM in the firmware map.  The
     * kernel log names the ranges the allocator registered; before that
     * (the module not loaded yet, or the log unreadable) /proc/cmdline's
     * dmem=SIZE@ADDR and memmap=SIZE$ADDR name the ones reserved. */
    struct hc_range rg[HC_MAX_RANGES];
    char src[192];
    unsigned nr = hc_dmem_log_ranges(x, rg, HC_MAX_RANGES);
    if (nr) {
        snprintf(src, sizeof(src), "the kernel log's \"dmem: register region\" lines");
    } else {
        for (unsigned i = 0; i < d.nat && nr < HC_MAX_RANGES; i++)
            rg[nr++] = d.at[i];
        for (unsigned i = 0; i < d.nresv && nr < HC_MAX_RANGES; i++)
            rg[nr++] = d.resv[i];
        snprintf(src, sizeof(src), "/proc/cmdline's %s%s%s (%s)",
                 d.nat ? "dmem=SIZE@ADDR" : "", d.nat && d.nresv ? " and " : "",
                 d.nresv ? "memmap=SIZE$ADDR" : "",
                 x->dmesg ? "no \"dmem: register region\" line in the kernel log" : "kernel log unreadable");
    }
    if (!nr) {
        c = hc_add(x, "dmem-memmap", HC_WARN,
                   "dmem ranges unknown (%s; /proc/cmdline has no dmem=SIZE@ADDR or memmap=SIZE$ADDR)",
                   x->dmesg ? "no \"dmem: register region\" line in the kernel log" : "kernel log unreadable");
        hc_advise(c, "run as root; check that /sys/firmware/memmap lists the dmem ranges as System RAM");
        return;
    }
    char good[320] = "", bad[320] = "", one[96];
    unsigned nbad = 0, good_left = 0, bad_left = 0;
    for (unsigned i = 0; i < nr; i++) {
        hc_fmt_range(rg[i], one, sizeof(one));
        if (hc_range_is_ram(x, rg[i])) {
            if (!hc_append(good, sizeof(good), ", ", one, strlen(one)))
                good_left++;
        } else {
            nbad++;
            if (!hc_append(bad, sizeof(bad), ", ", one, strlen(one)))
                bad_left++;
        }
    }
    char more[32] = "", also[HC_TEXT_MAX] = "";
    if (nbad) {
        if (bad_left)
            snprintf(more, sizeof(more), " and %u more", bad_left);
        if (good[0])
            snprintf(also, sizeof(also), "; System RAM: %s%s", good, good_left ? " and more" : "");
        c = hc_add(x, "dmem-memmap", HC_WARN,
                   "%u of %u dmem ranges from %s not System RAM in /sys/firmware/memmap: %s%s%s",
                   nbad, nr, src, bad, more, also);
        if (d.memmap[0] && !d.dmem[0])
            hc_advise(c, "the firmware does not list (all of) that memmap=SIZE$ADDR range as RAM: KVM would treat those pfns as MMIO (uncached); reserve a range inside one System RAM entry of /sys/firmware/memmap");
        else
            hc_advise(c, "KVM would treat those pfns as MMIO (uncached); the host kernel carries a non-standard dmem patch");
    } else {
        if (good_left)
            snprintf(more, sizeof(more), " and %u more", good_left);
        hc_add(x, "dmem-memmap", HC_OK,
               "%u dmem range%s from %s: %s%s; %sSystem RAM in /sys/firmware/memmap (KVM maps %s write-back)",
               nr, nr == 1 ? "" : "s", src, good, more, nr == 1 ? "" : "all ", nr == 1 ? "it" : "them");
    }
}

/* ---- I/O -------------------------------------------------------------- */

/* virtio-net: what TUNGETFEATURES says (multi-queue TAPs, vnet headers) and
 * whether vhost-net is there.  Under a fake root the features come from
 * <root>/.tun-features (hex), vhost from <root>/dev/vhost-net. */
static void hc_check_net(struct hc_ctx *x)
{
    struct hc_check *c;
    unsigned feat = 0;
    int perr = 0;
    char src[48] = "TUNGETFEATURES";
    bool probed = true;

    if (x->real) {
        perr = -tap_probe("/dev/net/tun", &feat);
    } else {
        char v[64];
        if (!hc_read_line(x, "/.tun-features", v, sizeof(v))) {
            feat = (unsigned)strtoul(v, NULL, 16);
            snprintf(src, sizeof(src), "TUNGETFEATURES (fixture)");
        } else {
            probed = false;
        }
    }
    if (!probed) {
        hc_add(x, "tun-multiqueue", HC_OK, "not probed under a fake root");
    } else if (perr) {
        c = hc_add(x, "tun-multiqueue", HC_WARN, "cannot probe /dev/net/tun: %s", strerror(perr));
        hc_advise(c, "virtio-net ([net.N]) needs a TAP: modprobe tun");
    } else if ((feat & (IFF_MULTI_QUEUE | IFF_VNET_HDR)) == (IFF_MULTI_QUEUE | IFF_VNET_HDR)) {
        hc_add(x, "tun-multiqueue", HC_OK, "%s 0x%x: IFF_MULTI_QUEUE and IFF_VNET_HDR", src, feat);
    } else {
        c = hc_add(x, "tun-multiqueue", HC_WARN, "%s 0x%x: IFF_MULTI_QUEUE %s, IFF_VNET_HDR %s",
                   src, feat, feat & IFF_MULTI_QUEUE ? "yes" : "no",
                   feat & IFF_VNET_HDR ? "yes" : "no");
        hc_advise(c, feat & IFF_VNET_HDR ? "net.N.queues > 1 needs multi-queue TAPs (Linux >= 3.8)"
                                         : "virtio-net needs vnet headers on the TAP");
    }

    char vh[PATH_MAX + 64];
    struct stat st;
    hc_path(x, VHOST_NET_DEV, vh, sizeof(vh));
    if (stat(vh, &st)) {
        c = hc_add(x, "vhost-net", HC_WARN, "%s: %s", VHOST_NET_DEV, strerror(errno));
        hc_advise(c, "net.N.vhost = yes needs it (modprobe vhost_net); vhost = auto and no use "
                     "the user-space datapath");
    } else if (x->real) {
        int fd = open(vh, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            c = hc_add(x, "vhost-net", HC_WARN, "%s: %s", VHOST_NET_DEV, strerror(errno));
            hc_advise(c, "net.N.vhost = yes needs read-write access to it");
        } else {
            close(fd);
            hc_add(x, "vhost-net", HC_OK, "%s opens read-write", VHOST_NET_DEV);
        }
    } else {
        hc_add(x, "vhost-net", HC_OK, "%s present", VHOST_NET_DEV);
    }
}


static void hc_check_io(struct hc_ctx *x)
{
    uint64_t dis = 0;
    struct hc_check *c;
    int r = hc_read_u64(x, "/proc/sys/kernel/io_uring_disabled", &dis);
    char probe[128] = "";
    int perr = 0;
    if (x->real) {
        struct io_uring ring;
        int q = io_uring_queue_init(2, &ring, 0);
        if (q == 0) {
            io_uring_queue_exit(&ring);
            snprintf(probe, sizeof(probe), "io_uring_setup probe ok");
        } else {
            perr = -q;
            snprintf(probe, sizeof(probe), "io_uring_setup probe: %s", strerror(perr));
        }
    } else {
        char v[64];
        if (!hc_read_line(x, "/.io_uring", v, sizeof(v))) {
            if (strcmp(v, "ok")) {
                perr = isdigit((unsigned char)v[0]) ? atoi(v) : EPERM;
                snprintf(probe, sizeof(probe), "io_uring_setup probe: %s (fixture)", v);
            } else {
                snprintf(probe, sizeof(probe), "io_uring_setup probe ok (fixture)");
            }
        } else {
            snprintf(probe, sizeof(probe), "no probe under a fake root");
        }
    }
    char sysctl[64];
    if (r)
        snprintf(sysctl, sizeof(sysctl), "no io_uring_disabled sysctl");
    else
        snprintf(sysctl, sizeof(sysctl), "io_uring_disabled=%" PRIu64, dis);
    c = hc_add(x, "io-uring", dis || perr ? HC_WARN : HC_OK, "%s; %s", sysctl, probe);
    if (dis == 2 || perr)
        hc_advise(c, "virtio-blk falls back to engine=threads");
    else if (dis == 1)
        hc_advise(c, "only members of kernel.io_uring_group may use io_uring; others get engine=threads");

    char tun[PATH_MAX + 64];
    hc_path(x, "/dev/net/tun", tun, sizeof(tun));
    struct stat st;
    if (stat(tun, &st)) {
        c = hc_add(x, "tun", HC_WARN, "/dev/net/tun: %s", strerror(errno));
        hc_advise(c, "virtio-net (planned) needs it: modprobe tun");
    } else if (x->real && !S_ISCHR(st.st_mode)) {
        c = hc_add(x, "tun", HC_WARN, "/dev/net/tun is not a character device");
        hc_advise(c, "recreate it: mknod /dev/net/tun c 10 200");
    } else {
        c = hc_add(x, "tun", access(tun, R_OK | W_OK) ? HC_WARN : HC_OK, "/dev/net/tun %s",
                   access(tun, R_OK | W_OK) ? "present, not read-write for this user" : "present");
    }
    hc_check_net(x);
}

/* ---- --config: can this VM start now? --------------------------------- */

static void hc_check_config_memory(struct hc_ctx *x, const struct dvmm_config *cfg)
{
    char need_s[32], have_s[32], err[512] = "";
    struct hc_check *c;
    uint64_t ram = cfg->vm.memory, psz = 0;
    const char *bname = gm_backend_name(cfg->memory.backend);
    bool dmem = cfg->memory.backend == GM_DMEMFS;
    const char *type = dmem ? "dmemfs" : "hugetlbfs";
    struct hc_mount m;

    /* What `dvmm run` (and `dvmm check`) decide about this host's memory,
     * by the same function, over this root. */
    int r = gm_backend_check(&x->host, &cfg->memory, ram, &psz, err, sizeof(err));
    if (r) {
        c = hc_add(x, "config-memory", HC_FAIL, "%s", err);
        if (r == -ENOMEM)
            hc_advise(c, "%s", dmem ? "free dpages (stop other VMs) or reserve more (dmem=, or memmap=SIZE$ADDR for the project's module)"
                                   : "reserve more: echo N > /sys/kernel/mm/hugepages/hugepages-<size>kB/nr_hugepages");
        else if (cfg->memory.backend != GM_ANON && cfg->memory.backend != GM_MEMFD &&
                 !hc_find_mount(x->mounts, cfg->memory.path, type, &m))
            hc_advise(c, "%s", dmem ? "mount one: kernel-support/dmemfs-setup -o pagesize=1G DIR"
                                   : "mount one: mount -t hugetlbfs -o pagesize=2M none DIR");
        else
            hc_advise(c, "`dvmm run` refuses this [memory] section on this host");
        return;
    }

    if (cfg->memory.backend == GM_ANON || cfg->memory.backend == GM_MEMFD) {
        uint64_t avail = hc_meminfo(&x->host, "MemAvailable");
        gm_fmt_size(ram, need_s, sizeof(need_s));
        gm_fmt_size(avail, have_s, sizeof(have_s));
        c = hc_add(x, "config-memory", avail >= ram ? HC_OK : HC_WARN,
                   "backend=%s needs %s, MemAvailable %s", bname, need_s, have_s);
        if (avail < ram)
            hc_advise(c, "the guest may be OOM-killed once it touches all its memory; lower vm.memory");
        return;
    }
    const char *where = hc_find_mount(x->mounts, cfg->memory.path, type, &m) ? m.dir
                                                                            : cfg->memory.path;
    /* gm_backend_check made vm.memory a multiple of the page size */
    uint64_t need = ram / psz, have;
    bool known = true;
    if (dmem) {
        known = x->have_free_dpages;
        have = x->free_dpages;
    } else {
        struct hc_hpool p = hc_hugetlb_pool(x, psz);
        known = p.present;
        have = p.free - p.resv;
    }
    gm_fmt_size(psz, have_s, sizeof(have_s));
    if (!known) {
        c = hc_add(x, "config-memory", HC_WARN, "backend=%s needs %" PRIu64 " x %s pages; free count unknown",
                   bname, need, have_s);
        hc_advise(c, "%s", dmem ? "mount debugfs to read dmem/free_dpages" : "no hugetlb pool of that size");
        return;
    }
    hc_add(x, "config-memory", HC_OK, "backend=%s at %s needs %" PRIu64 " x %s pages, %" PRIu64 " free",
           bname, where, need, have_s, have);
}

static void hc_check_config(struct hc_ctx *x, const char *file)
{
    struct hc_check *c;
    struct dvmm_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        hc_add(x, "config", HC_FAIL, "%s: out of memory", file);
        return;
    }
    struct cfg_limits lim = {
        /* no limit here: the vCPU limit gets its own line below */
        .max_vcpus = UINT_MAX,
        .host_memory = hc_meminfo(&x->host, "MemTotal"),
    };
    char err[512] = "";
    int r = cfg_load(file, NULL, 0, &lim, cfg, err, sizeof(err));
    if (r) {
        c = hc_add(x, "config", HC_FAIL, "%s", err[0] ? err : strerror(-r));
        hc_advise(c, "fix the config file; `dvmm run` would refuse it too");
        free(cfg);
        return;
    }
    char ms[32];
    gm_fmt_size(cfg->vm.memory, ms, sizeof(ms));
    hc_add(x, "config", HC_OK, "%s: vm %s, %u vCPUs, %s, backend=%s, %u disk%s", file,
           cfg->vm.name[0] ? cfg->vm.name : "(unnamed)", cfg->vm.vcpus, ms,
           gm_backend_name(cfg->memory.backend), cfg->ndisks, cfg->ndisks == 1 ? "" : "s");

    hc_check_config_memory(x, cfg);

    for (unsigned i = 0; i < cfg->ndisks; i++) {
        const struct cfg_disk *d = &cfg->disk[i];
        char name[HC_NAME_MAX];
        snprintf(name, sizeof(name), "config-disk.%u", d->index);
        int mode = d->readonly ? R_OK : R_OK | W_OK;
        if (access(d->path, mode)) {
            c = hc_add(x, name, HC_FAIL, "%s: %s%s", d->path, strerror(errno),
                       errno == EACCES ? (d->readonly ? " (read)" : " (read-write)") : "");
            hc_advise(c, "%s", errno == ENOENT ? "create it (truncate -s SIZE FILE) or fix disk.N.path"
                                               : "fix its permissions, or set readonly=yes");
        } else {
            hc_add(x, name, HC_OK, "%s %s", d->path, d->readonly ? "readable" : "read-write");
        }
    }

    if (!x->caps_known) {
        c = hc_add(x, "config-vcpus", HC_WARN, "%u vCPUs; KVM limit unknown", cfg->vm.vcpus);
        hc_advise(c, "fix kvm-device first");
    } else {
        /* the limit `dvmm run` applies: KVM's, at most KVM_CAPS_VCPU_LIMIT */
        unsigned lim = kvm_caps_vcpu_limit(&x->caps);
        bool ok = cfg->vm.vcpus <= lim;
        c = hc_add(x, "config-vcpus", ok ? HC_OK : HC_FAIL, "%u vCPUs, dvmm allows %u (KVM %u)",
                   cfg->vm.vcpus, lim, kvm_caps_max_vcpus(&x->caps));
        if (!ok)
            hc_advise(c, "lower vm.vcpus to %u or less", lim);
    }
    free(cfg);
}

/* ---- driver ----------------------------------------------------------- */

static char *hc_kernel_log(const struct hc_ctx *x)
{
    if (!x->real)
        return hc_slurp(x, "/.dmesg");
    int size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
    if (size <= 0)
        return NULL;
    char *buf = malloc((size_t)size + 1);
    if (!buf)
        return NULL;
    int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, size);
    if (n < 0) {
        log_debug("hostcheck: klogctl: %s", strerror(errno));
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int hostcheck_run(const char *root, const char *config, struct hc_report *rep)
{
    struct hc_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    memset(rep, 0, sizeof(*rep));
    char real[PATH_MAX];
    if (!realpath(root ? root : "/", real)) {
        int e = errno;
        log_err("hostcheck: root %s: %s", root, strerror(e));
        free(x);
        return -e;
    }
    snprintf(rep->root, sizeof(rep->root), "%s", real);
    x->root = rep->root;
    x->real = !strcmp(real, "/");
    x->host = x->real ? *gm_host_default()
                      : (struct gm_host){ .statfs = hc_fake_statfs, .sysroot = x->root };
    x->rep = rep;
    x->dmesg = hc_kernel_log(x);
    x->mounts = hc_slurp(x, "/proc/mounts");
    char *cpuinfo = hc_slurp(x, "/proc/cpuinfo");
    char *cmdline = hc_slurp(x, "/proc/cmdline");

    hc_check_kvm(x, cpuinfo);
    hc_check_dmem(x, cmdline);      /* before memory-failure: it adds a dmemfs caveat */
    hc_check_memory_failure(x);
    hc_check_thp(x);
    hc_check_hugetlb(x, cpuinfo);
    hc_check_io(x);
    if (config)
        hc_check_config(x, config);

    free(cpuinfo);
    free(cmdline);
    free(x->mounts);
    free(x->dmesg);
    free(x);
    return 0;
}

const char *hc_status_name(enum hc_status st)
{
    switch (st) {
    case HC_OK: return "OK";
    case HC_WARN: return "WARN";
    case HC_FAIL: return "FAIL";
    }
    return "?";
}

const struct hc_check *hc_report_find(const struct hc_report *rep, const char *name)
{
    for (unsigned i = 0; i < rep->n; i++)
        if (!strcmp(rep->c[i].name, name))
            return &rep->c[i];
    return NULL;
}

unsigned hc_report_count(const struct hc_report *rep, enum hc_status st)
{
    unsigned n = 0;
    for (unsigned i = 0; i < rep->n; i++)
        n += rep->c[i].status == st;
    return n;
}

int hc_report_print(const struct hc_report *rep, FILE *out)
{
    for (unsigned i = 0; i < rep->n; i++) {
        const struct hc_check *c = &rep->c[i];
        if (fprintf(out, "%-4s  %-18s %s%s%s\n", hc_status_name(c->status), c->name, c->value,
                    c->advice[0] ? "  => " : "", c->advice) < 0)
            return -EIO;
    }
    if (fprintf(out, "%u OK, %u WARN, %u FAIL\n", hc_report_count(rep, HC_OK),
                hc_report_count(rep, HC_WARN), hc_report_count(rep, HC_FAIL)) < 0)
        return -EIO;
    return fflush(out) ? -errno : 0;
}

char *hc_report_json(const struct hc_report *rep)
{
    json_object *o = json_object_new_object(), *arr = json_object_new_array();
    if (!o || !arr) {
        json_object_put(o);
        json_object_put(arr);
        return NULL;
    }
    for (unsigned i = 0; i < rep->n; i++) {
        const struct hc_check *c = &rep->c[i];
        json_object *e = json_object_new_object();
        if (!e)
            break;
        json_object_object_add(e, "name", json_object_new_string(c->name));
        json_object_object_add(e, "status", json_object_new_string(hc_status_name(c->status)));
        json_object_object_add(e, "value", json_object_new_string(c->value));
        json_object_object_add(e, "advice", json_object_new_string(c->advice));
        json_object_array_add(arr, e);
    }
    json_object_object_add(o, "root", json_object_new_string(rep->root));
    json_object_object_add(o, "checks", arr);
    json_object_object_add(o, "ok", json_object_new_int((int)hc_report_count(rep, HC_OK)));
    json_object_object_add(o, "warn", json_object_new_int((int)hc_report_count(rep, HC_WARN)));
    json_object_object_add(o, "fail", json_object_new_int((int)hc_report_count(rep, HC_FAIL)));
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *dup = s ? strdup(s) : NULL;
    json_object_put(o);
    return dup;
}

static void hc_usage(FILE *f)
{
    fprintf(f,
            "usage: dvmm hostcheck [--config FILE] [--json] [--root DIR] [--help]\n"
            "  Check that this host can run dvmm: one line per check, OK/WARN/FAIL,\n"
            "  the value found and advice.  Reads /proc, /sys, debugfs and /dev/kvm only.\n"
            "  --config FILE  also check that the VM in FILE can start now\n"
            "  --json         print one JSON object instead of text\n"
            "  --root DIR     read a fake /proc and /sys tree under DIR (tests); KVM\n"
            "                 facts then come from DIR/.kvm-caps, the kernel log from\n"
            "                 DIR/.dmesg, the io_uring probe from DIR/.io_uring\n"
            "Exit status: 0 no FAIL, 1 some FAIL, 2 usage error.\n");
}

int hostcheck_main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "json", no_argument, NULL, 'j' },
        { "root", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *config = NULL, *root = "/";
    bool json = false;
    int o;
    optind = 1;    /* main may have run getopt on the global options already */
    opterr = 0;
    while ((o = getopt_long(argc, argv, "+c:jr:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': config = optarg; break;
        case 'j': json = true; break;
        case 'r': root = optarg; break;
        case 'h': hc_usage(stdout); return 0;
        default:
            fprintf(stderr, "dvmm hostcheck: bad option '%s'\n", argv[optind - 1]);
            hc_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dvmm hostcheck: unexpected argument '%s'\n", argv[optind]);
        hc_usage(stderr);
        return 2;
    }
    struct hc_report *rep = malloc(sizeof(*rep));
    if (!rep) {
        fprintf(stderr, "dvmm hostcheck: out of memory\n");
        return 1;
    }
    int r = hostcheck_run(root, config, rep);
    if (r) {
        fprintf(stderr, "dvmm hostcheck: --root %s: %s\n", root, strerror(-r));
        free(rep);
        return 2;
    }
    if (json) {
        char *s = hc_report_json(rep);
        if (!s || printf("%s\n", s) < 0) {
            free(s);
            free(rep);
            return 1;
        }
        free(s);
        fflush(stdout);
    } else {
        hc_report_print(rep, stdout);
    }
    int fail = hc_report_count(rep, HC_FAIL) ? 1 : 0;
    free(rep);
    return fail;
}
