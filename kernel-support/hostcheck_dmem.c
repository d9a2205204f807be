/* hostcheck's memory-failure and dmemfs lines: see hostcheck_dmem.h. */
#include "kernel-support/hostcheck_dmem.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>

#include "guest-mem/host.h"
#include "kernel-support/hostcheck_root.h"

/* A dmem range: [start, end) in physical addresses. */
struct hc_dmem_range { uint64_t start, end; };

#define HC_DMEM_MAX_RANGES 16

/* What /proc/cmdline reserves for dmem.  Tencent's series reserves with its
 * own dmem= parameter; the project's module (kernel-support/dmemfs/) takes
 * memory the kernel set aside with memmap=SIZE$ADDR, an e820 "reserved"
 * entry (memmap= may list several entries, comma-separated).  SIZE and ADDR
 * are memparse numbers: 4G, 0x100000000, 4096M. */
struct hc_dmem_cmdline {
    char dmem[256];                /* the dmem= words */
    char memmap[256];              /* memmap= words with a SIZE$ADDR entry */
    char escaped[256];             /* memmap= words with a literal "\$" */
    struct hc_dmem_range at[HC_DMEM_MAX_RANGES];     /* dmem=SIZE@ADDR */
    unsigned nat;
    struct hc_dmem_range resv[HC_DMEM_MAX_RANGES];   /* memmap=SIZE$ADDR */
    unsigned nresv;
};

/* Append n bytes of s to the string in buf, after sep unless buf is empty; a
 * piece that does not fit is left out whole.  false then. */
static bool hc_dmem_append(char *buf, size_t len, const char *sep, const char *s, size_t n)
{
    size_t used = strlen(buf);
    int w = snprintf(buf + used, len - used, "%s%.*s", used ? sep : "", (int)n, s);
    if (w < 0 || (size_t)w >= len - used) {
        buf[used] = '\0';
        return false;
    }
    return true;
}

static void hc_dmem_parse_cmdline(const char *cmdline, struct hc_dmem_cmdline *d)
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
            hc_dmem_append(d->dmem, sizeof(d->dmem), " ", word, strlen(word));
            /* only dmem=SIZE@ADDR[:ALIGN] names a range by itself */
            if (!hc_root_memparse(word + 5, &size, &e) && *e == '@' &&
                !hc_root_memparse(e + 1, &addr, &e) && size && addr + size > addr &&
                d->nat < HC_DMEM_MAX_RANGES)
                d->at[d->nat++] = (struct hc_dmem_range){ addr, addr + size };
            continue;
        }
        if (strncmp(word, "memmap=", 7))
            continue;
        bool resv = false, esc = false;
        char *save = NULL;
        for (char *ent = strtok_r(word + 7, ",", &save); ent; ent = strtok_r(NULL, ",", &save)) {
            if (hc_root_memparse(ent, &size, &e))
                continue;         /* exactmap, or not a memparse number */
            if (e[0] == '$' && !hc_root_memparse(e + 1, &addr, &e) && !*e && size &&
                addr + size > addr) {
                resv = true;
                if (d->nresv < HC_DMEM_MAX_RANGES)
                    d->resv[d->nresv++] = (struct hc_dmem_range){ addr, addr + size };
            } else if (e[0] == '\\' && e[1] == '$') {
                esc = true;
            }
            /* SIZE@ADDR, SIZE#ADDR, SIZE!ADDR, SIZE%... and a bare SIZE
             * (a RAM limit) reserve nothing for dmem */
        }
        /* strtok_r cut the word at its commas: take it again from cmdline */
        if (resv)
            hc_dmem_append(d->memmap, sizeof(d->memmap), " ", w - n, n);
        if (esc)
            hc_dmem_append(d->escaped, sizeof(d->escaped), " ", w - n, n);
    }
}

/* Ranges of the "dmem: register region [A - B] on node N." kernel-log lines.
 * Tencent's series prints B exclusive (start + size: dmem_region_register()
 * counts pfn(B) - pfn(A)); a module that prints B inclusive, as
 * /sys/firmware/memmap does, is read the same way: regions are page-aligned,
 * so a B ending in 0xfff can only be the last byte, and B + 1 is the end. */
static unsigned hc_dmem_log_ranges(const struct hc_ctx *x, struct hc_dmem_range *r, unsigned max)
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
static void hc_dmem_fmt_range(struct hc_dmem_range rg, char *buf, size_t len)
{
    char sz[32];
    gm_fmt_size(rg.end - rg.start, sz, sizeof(sz));
    snprintf(buf, len, "[0x%" PRIx64 "-0x%" PRIx64 ") %s", rg.start, rg.end, sz);
}

static bool hc_dmem_range_is_ram(const struct hc_ctx *x, struct hc_dmem_range rg)
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
            if (hc_root_read_u64(x, p, &s))
                break;
            snprintf(p, sizeof(p), "/sys/firmware/memmap/%u/end", i);
            if (hc_root_read_u64(x, p, &e))
                continue;
            snprintf(p, sizeof(p), "/sys/firmware/memmap/%u/type", i);
            if (hc_root_read_line(x, p, type, sizeof(type)) || strcmp(type, "System RAM"))
                continue;
            if (s <= covered_to && e + 1 > covered_to) {
                covered_to = e + 1;
                progress = true;
            }
        }
    }
    return covered_to >= rg.end;
}

static void hc_dmem_check_dmemfs(struct hc_ctx *x, const char *cmdline)
{
    char *fs = hc_root_slurp(x, "/proc/filesystems");
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
    hc_dmem_parse_cmdline(cmdline, &d);
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
            hc_dmem_append(what, sizeof(what), "; ", part, strlen(part));
        }
        if (d.memmap[0]) {
            snprintf(part, sizeof(part), "%s (memmap= reservation, as the project's dmemfs module uses)", d.memmap);
            hc_dmem_append(what, sizeof(what), "; ", part, strlen(part));
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
    struct hc_root_mount m;
    char list[HC_TEXT_MAX] = "";
    size_t ll = 0;
    unsigned nmounts = 0;
    uint64_t first_size = 0;
    bool mixed = false, bad_magic = false;
    while (x->mounts && hc_root_next_mount(x->mounts, &pos, &m)) {
        if (strcmp(m.type, "dmemfs"))
            continue;
        uint64_t ps = hc_root_mount_pagesize(&m);
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
    int r = hc_root_read_u64(x, "/sys/kernel/debug/dmem/total_dpages", &total);
    if (r) {
        c = hc_add(x, "dmem-pages", HC_WARN, "debugfs dmem/ unreadable (%s)", strerror(-r));
        hc_advise(c, "mount -t debugfs none /sys/kernel/debug (as root); dmem capacity is only in debugfs");
    } else {
        hc_root_read_u64(x, "/sys/kernel/debug/dmem/free_dpages", &freep);
        hc_root_read_u64(x, "/sys/kernel/debug/dmem/dpage_shift", &shift);
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
    struct hc_dmem_range rg[HC_DMEM_MAX_RANGES];
    char src[192];
    unsigned nr = hc_dmem_log_ranges(x, rg, HC_DMEM_MAX_RANGES);
    if (nr) {
        snprintf(src, sizeof(src), "the kernel log's \"dmem: register region\" lines");
    } else {
        for (unsigned i = 0; i < d.nat && nr < HC_DMEM_MAX_RANGES; i++)
            rg[nr++] = d.at[i];
        for (unsigned i = 0; i < d.nresv && nr < HC_DMEM_MAX_RANGES; i++)
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
        hc_dmem_fmt_range(rg[i], one, sizeof(one));
        if (hc_dmem_range_is_ram(x, rg[i])) {
            if (!hc_dmem_append(good, sizeof(good), ", ", one, strlen(one)))
                good_left++;
        } else {
            nbad++;
            if (!hc_dmem_append(bad, sizeof(bad), ", ", one, strlen(one)))
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

static void hc_dmem_check_memory_failure(struct hc_ctx *x)
{
    uint64_t rec = 0, early = 0;
    int r1 = hc_root_read_u64(x, "/proc/sys/vm/memory_failure_recovery", &rec);
    int r2 = hc_root_read_u64(x, "/proc/sys/vm/memory_failure_early_kill", &early);
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
        if (x->dmemfs && hc_root_exists(x, "/sys/kernel/debug/dmem/inject"))
            hc_advise(c, "the project's dmemfs module signals a dpage failure from dmem/inject (AO, then AR on access); a hardware #MC on a dmem pfn is not signalled on this kernel (kernel-support/README.md)");
        else if (x->dmemfs)
            hc_advise(c, "dmemfs sends SIGBUS only when the kernel sets MF_MUST_KILL; other dpage errors are not signalled");
    }
}


void hc_dmem_check(struct hc_ctx *x, const char *cmdline)
{
    hc_dmem_check_dmemfs(x, cmdline);  /* before memory-failure: it adds a dmemfs caveat */
    hc_dmem_check_memory_failure(x);
}
