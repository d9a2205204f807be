/* INI config: iniparser does the lexing, this file owns every rule.
 *
 * Keys (defaults in brackets; the README copies this table):
 *
 * [vm]
 *   name       1..63 chars of A-Z a-z 0-9 . _ -   [file basename minus ".ini"]
 *   vcpus      1..KVM_CAP_MAX_VCPUS                [1]
 *   memory     size (see below); >= 16M, <= host RAM, multiple of 4K  [256M]
 *   kernel     readable regular file               (required)
 *   initrd     readable regular file               [none]
 *   cmdline    at most 2047 bytes                  [""]
 *   on_reset   reboot | exit                       [reboot]
 * [console]
 *   enabled    bool                                [yes]
 *   output     stdout | a file path                [stdout]
 *   input      bool: guest reads our stdin         [yes]
 * [debug-exit]
 *   enabled    bool                                [yes]
 *   port       0..0xffff, decimal or 0x hex        [0xf4]
 *   size       1 | 2 | 4                           [4]
 * [memory]
 *   backend    anon | memfd | hugetlbfs | dmemfs   [anon]
 *   path       mount point or file; required for hugetlbfs/dmemfs,
 *              rejected for anon/memfd
 *   prealloc   bool (dmemfs always prefaults)      [no]
 *   thp        bool; anon/memfd only               [no]
 *   host_node  NUMA node 0..1023                   [none]
 * [disk.N]     N = 0..7, decimal without leading zeros; disks are kept sorted by N
 *   path       regular file or block device        (required); two
 *              disks may share a file only if both are readonly
 *   readonly   bool                                [no]
 *   queues     1..; more than vcpus is clamped to vcpus with a warning [vcpus]
 *   queue_size power of two, 2..256                [256]
 *   serial     at most 20 bytes of printable ASCII [""]
 *   cache      writeback | none                    [writeback]
 *   engine     io_uring | threads                  [io_uring when available]
 * [net.N]      N = 0..7, as for disks; virtio-net over a TAP interface
 *   tap        interface name, 1..15 bytes, no '/', ':' or space (required);
 *              an existing TAP is used, a missing one is created (and goes
 *              away when dvmm exits); two NICs never share one
 *   mac        xx:xx:xx:xx:xx:xx, unicast, not all zeros
 *              [02:xx:xx:xx:xx:xx from a hash of vm.name and N]
 *   queues     queue pairs, 1..31; more than vcpus is clamped to vcpus with a
 *              warning [min(vcpus, 31)]
 *   queue_size power of two, 2..256                [256]
 *   mtu        68..65535                           [1500]
 *   vhost      no | yes | auto                     [no]
 * [mce]
 *   log        path of the JSON event log          [stderr]
 * [control]
 *   enabled    bool                                [yes]
 *   socket     unix socket path, at most 107 bytes
 *              [$XDG_RUNTIME_DIR/dvmm-NAME.sock, else /run/dvmm/NAME.sock]
 * [sandbox]
 *   seccomp    yes | log | no: per-thread seccomp filters (vmm/sandbox.h);
 *              log lets forbidden calls through and the kernel logs them [yes]
 *   user       user name: once /dev/kvm, memory, disks, TAPs and the control
 *              socket are open, dvmm becomes this user and its group, with
 *              no capabilities                      [none: stay who we are]
 *   chroot     directory (may be empty) dvmm enters once everything is
 *              open, before the user change; needs on_reset = exit  [none]
 *
 * Booleans: yes/no, true/false, on/off, 1/0; these and other word values
 * (backend, cache, engine, on_reset) are case-insensitive.
 * Sizes: decimal digits with an optional K, M, G or T suffix (any case,
 * powers of 1024).  Hex, fractions, "MB"/"MiB" and spaces are rejected:
 * a size is never guessed.  Integers other than sizes take decimal or 0x hex.
 *
 * iniparser lowercases section and key names, strips quotes and cuts values
 * at ';' or '#' (quote a value that contains them), and limits a line to
 * 1024 bytes; a longer kernel command line has to come from --set. */
#include "vmm/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <iniparser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/log.h"

#define CFG_NAME_MAX 64               /* section or key name from --set */
#define CFG_FILE_MAX (1 << 20)        /* a VM description is never this big */
#define CFG_SOCKET_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define CFG_SHOW_MAX 80               /* bytes of a bad value quoted back */

struct cfg_set {
    char sec[CFG_NAME_MAX];
    char key[CFG_NAME_MAX];
    const char *val;
    bool made_section;                /* the section exists only through this --set */
};

struct cfg_ctx {
    const char *file;
    dictionary *d;
    struct cfg_set *sets;
    unsigned nsets;
    bool disk_seen[CFG_MAX_DISKS];
    bool net_seen[CFG_MAX_NETS];
    char *err;
    size_t errlen;
};

/* ---- error text ---------------------------------------------------- */

static int cfg_vfail(struct cfg_ctx *c, const char *src, const char *fmt,
                     va_list ap)
{
    char why[512];

    vsnprintf(why, sizeof(why), fmt, ap);
    if (c->err && c->errlen)
        snprintf(c->err, c->errlen, "%s: %s", src, why);
    return -EINVAL;
}

static int cfg_fail(struct cfg_ctx *c, const char *src, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cfg_fail(struct cfg_ctx *c, const char *src, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = cfg_vfail(c, src, fmt, ap);
    va_end(ap);
    return rc;
}

/* The last --set that wrote sec.key, or NULL when the value is the file's. */
static const struct cfg_set *cfg_set_for(const struct cfg_ctx *c,
                                         const char *sec, const char *key)
{
    for (unsigned i = c->nsets; i-- > 0;)
        if (!strcmp(c->sets[i].sec, sec) && !strcmp(c->sets[i].key, key))
            return &c->sets[i];
    return NULL;
}

/* Errors name the origin of the value: "--set sec.key" or the file. */
static void cfg_src(const struct cfg_ctx *c, const char *sec, const char *key,
                    char *buf, size_t len)
{
    const struct cfg_set *s = cfg_set_for(c, sec, key);

    if (s)
        snprintf(buf, len, "--set %s.%s", s->sec, s->key);
    else
        snprintf(buf, len, "%s", c->file);
}

/* A value quoted back to the user: cut to a readable length, and control
 * bytes shown as '?' so a hostile file cannot drive the terminal. */
static void cfg_show(const char *val, char *buf, size_t len)
{
    size_t n = 0, i;

    for (i = 0; val[i] && n + 4 < len && i < CFG_SHOW_MAX; i++)
        buf[n++] = isprint((unsigned char)val[i]) ? val[i] : '?';
    if (val[i] && n + 4 < len) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
}

static int cfg_bad(struct cfg_ctx *c, const char *sec, const char *key,
                   const char *val, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int cfg_bad(struct cfg_ctx *c, const char *sec, const char *key,
                   const char *val, const char *fmt, ...)
{
    char src[PATH_MAX + 2 * CFG_NAME_MAX], shown[CFG_SHOW_MAX + 8], why[384];
    va_list ap;

    cfg_src(c, sec, key, src, sizeof(src));
    cfg_show(val, shown, sizeof(shown));
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return cfg_fail(c, src, "%s.%s = '%s': %s", sec, key, shown, why);
}

/* A section's origin: the --set that created it, or the file. */
static void cfg_sec_src(const struct cfg_ctx *c, const char *sec, char *buf,
                        size_t len)
{
    for (unsigned i = 0; i < c->nsets; i++) {
        if (c->sets[i].made_section && !strcmp(c->sets[i].sec, sec)) {
            snprintf(buf, len, "--set %s.%s", c->sets[i].sec, c->sets[i].key);
            return;
        }
    }
    snprintf(buf, len, "%s", c->file);
}

static int cfg_missing(struct cfg_ctx *c, const char *sec, const char *key,
                       const char *why)
{
    char src[PATH_MAX + 2 * CFG_NAME_MAX];

    cfg_sec_src(c, sec, src, sizeof(src));
    return cfg_fail(c, src, "%s.%s: missing (%s)", sec, key, why);
}

/* ---- scalar parsers: NULL on success, else the reason ---------------- */

static const char *cfg_size_why(const char *s, uint64_t *out, int *rc)
{
    uint64_t v = 0;
    unsigned shift = 0;
    const char *p = s;

    *rc = -EINVAL;
    if (!*s)
        return "empty";
    if (!isdigit((unsigned char)*s))
        return "not a size (decimal digits with an optional K, M, G or T)";
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');

        if (v > (UINT64_MAX - d) / 10) {
            *rc = -ERANGE;
            return "too large";
        }
        v = v * 10 + d;
    }
    if (*p) {
        static const char suffixes[] = "kmgt";
        const char *sfx = strchr(suffixes, tolower((unsigned char)*p));

        if (sfx && p[1] == '\0') {
            shift = 10 * (unsigned)(sfx - suffixes + 1);
        } else {
            for (const char *q = p; *q; q++)
                if (!isalpha((unsigned char)*q))
                    return "not a size (decimal digits with an optional K, M, G or T)";
            return "bad size suffix (use K, M, G or T)";
        }
    }
    if (shift && v > (UINT64_MAX >> shift)) {
        *rc = -ERANGE;
        return "too large";
    }
    *out = v << shift;
    *rc = 0;
    return NULL;
}

int cfg_parse_size(const char *s, uint64_t *out)
{
    int rc;

    if (!s || !out)
        return -EINVAL;
    cfg_size_why(s, out, &rc);
    return rc;
}

/* Decimal or 0x hex, no sign, no spaces. */
static const char *cfg_uint_why(const char *s, uint64_t *out)
{
    unsigned base = 10;
    uint64_t v = 0;
    const char *p = s;

    if (!*s)
        return "empty";
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
        if (!*p)
            return "not a number";
    }
    for (; *p; p++) {
        unsigned d;

        if (isdigit((unsigned char)*p))
            d = (unsigned)(*p - '0');
        else if (base == 16 && isxdigit((unsigned char)*p))
            d = (unsigned)(tolower((unsigned char)*p) - 'a' + 10);
        else
            return "not a number";
        if (v > (UINT64_MAX - d) / base)
            return "too large";
        v = v * base + d;
    }
    *out = v;
    return NULL;
}

/* ---- typed getters ---------------------------------------------------- */

static const char *cfg_get(const struct cfg_ctx *c, const char *sec,
                           const char *key)
{
    char entry[2 * CFG_NAME_MAX + 2];

    snprintf(entry, sizeof(entry), "%s:%s", sec, key);
    return iniparser_getstring(c->d, entry, NULL);
}

static int cfg_get_bool(struct cfg_ctx *c, const char *sec, const char *key,
                        bool def, bool *out)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };
    const char *v = cfg_get(c, sec, key);

    *out = def;
    if (!v)
        return 0;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (!strcasecmp(v, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcasecmp(v, no[i])) {
            *out = false;
            return 0;
        }
    }
    return cfg_bad(c, sec, key, v, "not a boolean (use yes/no, true/false, on/off or 1/0)");
}

static int cfg_get_uint(struct cfg_ctx *c, const char *sec, const char *key,
                        uint64_t min, uint64_t max, uint64_t def, uint64_t *out)
{
    const char *v = cfg_get(c, sec, key);
    const char *why;

    *out = def;
    if (!v)
        return 0;
    why = cfg_uint_why(v, out);
    if (why)
        return cfg_bad(c, sec, key, v, "%s", why);
    if (*out < min || *out > max)
        return cfg_bad(c, sec, key, v, "out of range (use %llu..%llu)",
                       (unsigned long long)min, (unsigned long long)max);
    return 0;
}

/* One of names[0..n), written as "a, b or c" in the error. */
static int cfg_get_enum(struct cfg_ctx *c, const char *sec, const char *key,
                        const char *const *names, unsigned n, unsigned def,
                        unsigned *out)
{
    const char *v = cfg_get(c, sec, key);
    char list[128] = "";
    size_t len = 0;

    *out = def;
    if (!v)
        return 0;
    for (unsigned i = 0; i < n; i++) {
        if (!strcasecmp(v, names[i])) {
            *out = i;
            return 0;
        }
    }
    for (unsigned i = 0; i < n && len < sizeof(list); i++)
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
                                i == 0 ? "" : i + 1 == n ? " or " : ", ", names[i]);
    return cfg_bad(c, sec, key, v, "unknown value (use %s)", list);
}

static int cfg_copy(struct cfg_ctx *c, const char *sec, const char *key,
                    const char *v, char *dst, size_t dstsz)
{
    size_t n = strlen(v);

    if (n >= dstsz)
        return cfg_bad(c, sec, key, v, "longer than %zu bytes", dstsz - 1);
    memcpy(dst, v, n + 1);
    return 0;
}

/* A path from the file is relative to the file's directory, so a config
 * works from any cwd; a path from --set is relative to the cwd, as on any
 * command line. */
static int cfg_copy_path(struct cfg_ctx *c, const char *sec, const char *key,
                         const char *v, char *dst, size_t dstsz)
{
    const char *slash = strrchr(c->file, '/');
    int n;

    if (v[0] == '/' || !v[0] || !slash || cfg_set_for(c, sec, key))
        return cfg_copy(c, sec, key, v, dst, dstsz);
    n = snprintf(dst, dstsz, "%.*s/%s", (int)(slash - c->file), c->file, v);
    if (n < 0 || (size_t)n >= dstsz)
        return cfg_bad(c, sec, key, v, "longer than %zu bytes with the config's directory",
                       dstsz - 1);
    return 0;
}

static int cfg_get_str(struct cfg_ctx *c, const char *sec, const char *key,
                       const char *def, char *dst, size_t dstsz)
{
    const char *v = cfg_get(c, sec, key);

    return cfg_copy(c, sec, key, v ? v : def, dst, dstsz);
}

/* A file the VMM will open: exists, right type, readable (and writable).
 * With fd: opened read-only for the caller instead of access(R_OK), which
 * the open's own check replaces with the same message; the stat before it
 * still keeps a device node from ever being opened. */
static int cfg_check_file_fd(struct cfg_ctx *c, const char *sec, const char *key,
                             const char *path, bool blk_ok, bool need_write, int *fd)
{
    struct stat st;

    if (!*path)
        return cfg_bad(c, sec, key, path, "empty path");
    if (stat(path, &st) < 0)
        return cfg_bad(c, sec, key, path, "%s", strerror(errno));
    if (!S_ISREG(st.st_mode) && !(blk_ok && S_ISBLK(st.st_mode)))
        return cfg_bad(c, sec, key, path, blk_ok ?
                       "not a regular file or block device" : "not a regular file");
    if (fd) {
        *fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (*fd < 0)
            return cfg_bad(c, sec, key, path, "not readable: %s", strerror(errno));
    } else if (access(path, R_OK) < 0) {
        return cfg_bad(c, sec, key, path, "not readable: %s", strerror(errno));
    }
    if (need_write && access(path, W_OK) < 0)
        return cfg_bad(c, sec, key, path, "not writable: %s (or set readonly = yes)",
                       strerror(errno));
    return 0;
}

static int cfg_check_file(struct cfg_ctx *c, const char *sec, const char *key,
                          const char *path, bool blk_ok, bool need_write)
{
    return cfg_check_file_fd(c, sec, key, path, blk_ok, need_write, NULL);
}

/* ---- structure: sections and keys ------------------------------------- */

enum cfg_sec { SEC_VM, SEC_CONSOLE, SEC_DEBUG_EXIT, SEC_MEMORY, SEC_DISK,
               SEC_NET, SEC_MCE, SEC_CONTROL, SEC_SANDBOX, SEC_NR };

static const char *const cfg_sec_names[SEC_NR] = {
    "vm", "console", "debug-exit", "memory", "disk.N", "net.N", "mce", "control",
    "sandbox",
};

static const char *const cfg_sec_keys[SEC_NR][8] = {
    [SEC_VM] = { "name", "vcpus", "memory", "kernel", "initrd", "cmdline", "on_reset" },
    [SEC_CONSOLE] = { "enabled", "output", "input" },
    [SEC_DEBUG_EXIT] = { "enabled", "port", "size" },
    [SEC_MEMORY] = { "backend", "path", "prealloc", "thp", "host_node" },
    [SEC_DISK] = { "path", "readonly", "queues", "queue_size", "serial", "cache", "engine" },
    [SEC_NET] = { "tap", "mac", "queues", "queue_size", "mtu", "vhost" },
    [SEC_MCE] = { "log" },
    [SEC_CONTROL] = { "enabled", "socket" },
    [SEC_SANDBOX] = { "seccomp", "user", "chroot" },
};

/* Section name -> kind; for [disk.N] and [net.N] also the index.  NULL or
 * the reason. */
static const char *cfg_sec_kind(const char *name, enum cfg_sec *kind,
                                unsigned *index)
{
    const char *n;

    if (!strncmp(name, "disk.", 5)) {
        n = name + 5;
        *kind = SEC_DISK;
        if (!*n || strspn(n, "0123456789") != strlen(n) || (n[0] == '0' && n[1]))
            return "bad disk section (use disk.0 .. disk.7)";
        if (strlen(n) > 1 || (unsigned)(n[0] - '0') >= CFG_MAX_DISKS)
            return "disk index out of range (use disk.0 .. disk.7)";
        *index = (unsigned)(n[0] - '0');
        return NULL;
    }
    if (!strncmp(name, "net.", 4)) {
        n = name + 4;
        *kind = SEC_NET;
        if (!*n || strspn(n, "0123456789") != strlen(n) || (n[0] == '0' && n[1]))
            return "bad net section (use net.0 .. net.7)";
        if (strlen(n) > 1 || (unsigned)(n[0] - '0') >= CFG_MAX_NETS)
            return "net index out of range (use net.0 .. net.7)";
        *index = (unsigned)(n[0] - '0');
        return NULL;
    }
    for (int i = 0; i < SEC_NR; i++) {
        if (i != SEC_DISK && i != SEC_NET && !strcmp(name, cfg_sec_names[i])) {
            *kind = (enum cfg_sec)i;
            return NULL;
        }
    }
    if (!strcmp(name, "disk"))
        return "unknown section (disks are [disk.0] .. [disk.7])";
    if (!strcmp(name, "net"))
        return "unknown section (NICs are [net.0] .. [net.7])";
    return "unknown section";
}

static int cfg_sec_fail(struct cfg_ctx *c, const char *sec, const char *why)
{
    char src[PATH_MAX + 2 * CFG_NAME_MAX];

    cfg_sec_src(c, sec, src, sizeof(src));
    return cfg_fail(c, src, "[%s]: %s", sec, why);
}

/* Every entry of the dictionary is either a known section or a known key of
 * one: typos and stray keys are errors, never silently ignored. */
static int cfg_check_names(struct cfg_ctx *c)
{
    const dictionary *d = c->d;

    for (ssize_t i = 0; i < d->size; i++) {
        const char *k = d->key[i];
        enum cfg_sec kind;
        unsigned index = 0;
        const char *why;

        if (!k || strchr(k, ':'))
            continue;
        why = cfg_sec_kind(k, &kind, &index);
        if (why)
            return cfg_sec_fail(c, k, why);
        if (kind == SEC_DISK)
            c->disk_seen[index] = true;
        if (kind == SEC_NET)
            c->net_seen[index] = true;
    }
    for (ssize_t i = 0; i < d->size; i++) {
        const char *k = d->key[i], *colon, *key;
        char sec[CFG_NAME_MAX];
        enum cfg_sec kind;
        unsigned index;
        bool known = false;

        if (!k || !(colon = strchr(k, ':')))
            continue;
        key = colon + 1;
        if (colon == k)
            return cfg_fail(c, c->file, "%s = '%s': key outside any section",
                            key, d->val[i] ? d->val[i] : "");
        if ((size_t)(colon - k) >= sizeof(sec))
            return cfg_fail(c, c->file, "[%.*s]: unknown section", (int)(colon - k), k);
        memcpy(sec, k, (size_t)(colon - k));
        sec[colon - k] = '\0';
        if (cfg_sec_kind(sec, &kind, &index))
            return cfg_sec_fail(c, sec, "unknown section");
        for (unsigned j = 0; j < 8 && cfg_sec_keys[kind][j]; j++)
            known |= !strcmp(key, cfg_sec_keys[kind][j]);
        if (!known)
            return cfg_bad(c, sec, key, d->val[i] ? d->val[i] : "", "unknown key");
    }
    return 0;
}

/* ---- --set ------------------------------------------------------------ */

static int cfg_apply_sets(struct cfg_ctx *c, char *const *sets, unsigned nsets)
{
    for (unsigned i = 0; i < nsets; i++) {
        struct cfg_set *s = &c->sets[i];
        const char *arg = sets[i], *eq = strchr(arg, '='), *dot;
        char entry[2 * CFG_NAME_MAX + 2], shown[CFG_SHOW_MAX + 8];
        size_t seclen, keylen;

        cfg_show(arg, shown, sizeof(shown));
        if (!eq)
            return cfg_fail(c, "--set", "'%s': expected section.key=value", shown);
        for (dot = eq; dot > arg && dot[-1] != '.'; dot--)
            ;
        if (dot == arg)
            return cfg_fail(c, "--set", "'%s': expected section.key=value", shown);
        seclen = (size_t)(dot - 1 - arg);
        keylen = (size_t)(eq - dot);
        if (!seclen || !keylen)
            return cfg_fail(c, "--set", "'%s': expected section.key=value", shown);
        if (seclen >= CFG_NAME_MAX || keylen >= CFG_NAME_MAX)
            return cfg_fail(c, "--set", "'%s': name too long", shown);
        for (const char *p = arg; p < eq; p++)
            if (!isgraph((unsigned char)*p) || *p == ':' || *p == '[' || *p == ']')
                return cfg_fail(c, "--set", "'%s': bad character in the name", shown);
        /* iniparser lowercases names from the file, so --set does too. */
        for (size_t j = 0; j < seclen; j++)
            s->sec[j] = (char)tolower((unsigned char)arg[j]);
        for (size_t j = 0; j < keylen; j++)
            s->key[j] = (char)tolower((unsigned char)dot[j]);
        s->val = eq + 1;

        if (!iniparser_find_entry(c->d, s->sec)) {
            if (iniparser_set(c->d, s->sec, NULL) < 0)
                return cfg_fail(c, "--set", "'%s': %s", shown, strerror(ENOMEM));
            s->made_section = true;
        }
        snprintf(entry, sizeof(entry), "%s:%s", s->sec, s->key);
        if (iniparser_set(c->d, entry, s->val) < 0)
            return cfg_fail(c, "--set", "'%s': %s", shown, strerror(ENOMEM));
    }
    return 0;
}

/* ---- sections ----------------------------------------------------------- */

static int cfg_name_ok(const char *name)
{
    size_t n = strlen(name);

    return n >= 1 && n < sizeof(((struct dvmm_config *)0)->vm.name) &&
           strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789._-") == n;
}

static int cfg_vm(struct cfg_ctx *c, const struct cfg_limits *lim,
                  struct dvmm_config *out)
{
    static const char *const resets[] = { "reboot", "exit" };
    const char *v, *why;
    uint64_t u;
    unsigned e;
    int rc;

    v = cfg_get(c, "vm", "name");
    if (v) {
        if (!cfg_name_ok(v))
            return cfg_bad(c, "vm", "name", v,
                           "use 1..63 characters of A-Z a-z 0-9 . _ -");
        strcpy(out->vm.name, v);
    } else {
        const char *base = strrchr(c->file, '/');
        char name[PATH_MAX];
        size_t n;

        base = base ? base + 1 : c->file;
        n = strlen(base);
        if (n > 4 && !strcmp(base + n - 4, ".ini"))
            n -= 4;
        snprintf(name, sizeof(name), "%.*s", (int)n, base);
        if (!cfg_name_ok(name))
            return cfg_fail(c, c->file, "vm.name = '%.63s' (from the file name): "
                            "use 1..63 characters of A-Z a-z 0-9 . _ -, or set vm.name",
                            name);
        strcpy(out->vm.name, name);
    }

    if ((rc = cfg_get_uint(c, "vm", "vcpus", 0, UINT64_MAX, 1, &u)))
        return rc;
    v = cfg_get(c, "vm", "vcpus");
    if (u == 0)
        return cfg_bad(c, "vm", "vcpus", v, "must be at least 1");
    if (u > lim->max_vcpus)
        return cfg_bad(c, "vm", "vcpus", v, "more than the host's KVM limit of %u",
                       lim->max_vcpus);
    out->vm.vcpus = (unsigned)u;

    out->vm.memory = 256 * GM_MiB;
    v = cfg_get(c, "vm", "memory");
    if (v) {
        why = cfg_size_why(v, &out->vm.memory, &rc);
        if (why)
            return cfg_bad(c, "vm", "memory", v, "%s", why);
        if (out->vm.memory < CFG_MIN_MEMORY)
            return cfg_bad(c, "vm", "memory", v, "less than the minimum of %lluM",
                           CFG_MIN_MEMORY >> 20);
        if (out->vm.memory > lim->host_memory)
            return cfg_bad(c, "vm", "memory", v, "more than the host's %lluM of RAM",
                           (unsigned long long)(lim->host_memory >> 20));
        if (out->vm.memory % GM_PAGE_SIZE)
            return cfg_bad(c, "vm", "memory", v, "not a multiple of 4K");
    } else if (out->vm.memory > lim->host_memory) {
        return cfg_fail(c, c->file, "vm.memory: the default 256M is more than the "
                        "host's %lluM of RAM",
                        (unsigned long long)(lim->host_memory >> 20));
    }

    v = cfg_get(c, "vm", "kernel");
    if (!v)
        return cfg_missing(c, "vm", "kernel", "required");
    if ((rc = cfg_copy_path(c, "vm", "kernel", v, out->vm.kernel, sizeof(out->vm.kernel))) ||
        (rc = cfg_check_file_fd(c, "vm", "kernel", out->vm.kernel, false, false,
                                lim->open_kernel ? &out->vm.kernel_fd : NULL)))
        return rc;
    out->vm.kernel_open = lim->open_kernel;

    v = cfg_get(c, "vm", "initrd");
    if (v && *v) {
        if ((rc = cfg_copy_path(c, "vm", "initrd", v, out->vm.initrd, sizeof(out->vm.initrd))) ||
            (rc = cfg_check_file(c, "vm", "initrd", out->vm.initrd, false, false)))
            return rc;
    }

    if ((rc = cfg_get_str(c, "vm", "cmdline", "", out->vm.cmdline,
                          sizeof(out->vm.cmdline))))
        return rc;

    if ((rc = cfg_get_enum(c, "vm", "on_reset", resets, 2, CFG_RESET_REBOOT, &e)))
        return rc;
    out->vm.on_reset = (enum cfg_on_reset)e;
    return 0;
}

static int cfg_console(struct cfg_ctx *c, struct dvmm_config *out)
{
    int rc;

    if ((rc = cfg_get_bool(c, "console", "enabled", true, &out->console.enabled)) ||
        (rc = cfg_get_bool(c, "console", "input", true, &out->console.input)) ||
        (rc = cfg_get_str(c, "console", "output", "stdout", out->console.output,
                          sizeof(out->console.output))))
        return rc;
    if (!out->console.output[0])
        return cfg_bad(c, "console", "output", "", "empty (use stdout or a file path)");
    if (strcmp(out->console.output, "stdout")) {
        char raw[sizeof(out->console.output)];

        memcpy(raw, out->console.output, sizeof(raw));
        return cfg_copy_path(c, "console", "output", raw, out->console.output,
                             sizeof(out->console.output));
    }
    return 0;
}

static int cfg_debug_exit(struct cfg_ctx *c, struct dvmm_config *out)
{
    uint64_t port, size;
    int rc;

    if ((rc = cfg_get_bool(c, "debug-exit", "enabled", true, &out->debug_exit.enabled)) ||
        (rc = cfg_get_uint(c, "debug-exit", "port", 0, 0xffff, 0xf4, &port)) ||
        (rc = cfg_get_uint(c, "debug-exit", "size", 0, UINT64_MAX, 4, &size)))
        return rc;
    if (size != 1 && size != 2 && size != 4)
        return cfg_bad(c, "debug-exit", "size", cfg_get(c, "debug-exit", "size"),
                       "not an I/O width (use 1, 2 or 4)");
    out->debug_exit.port = (uint16_t)port;
    out->debug_exit.size = (unsigned)size;
    return 0;
}

static const char *const cfg_backends[] = { "anon", "memfd", "hugetlbfs", "dmemfs" };

static int cfg_memory(struct cfg_ctx *c, struct dvmm_config *out)
{
    struct gm_config *m = &out->memory;
    const char *path, *bname;
    unsigned b;
    uint64_t node;
    bool file_backed;
    int rc;

    if ((rc = cfg_get_enum(c, "memory", "backend", cfg_backends, 4, GM_ANON, &b)))
        return rc;
    m->backend = (enum gm_backend)b;
    bname = cfg_backends[b];
    file_backed = m->backend == GM_HUGETLBFS || m->backend == GM_DMEMFS;

    path = cfg_get(c, "memory", "path");
    if (file_backed) {
        char why[64];

        snprintf(why, sizeof(why), "required for backend %s", bname);
        if (!path || !*path)
            return cfg_missing(c, "memory", "path", why);
        if ((rc = cfg_copy_path(c, "memory", "path", path, m->path, sizeof(m->path))))
            return rc;
    } else if (path) {
        return cfg_bad(c, "memory", "path", path,
                       "only for backend hugetlbfs or dmemfs (backend is %s)", bname);
    }

    if ((rc = cfg_get_bool(c, "memory", "prealloc", false, &m->prealloc)) ||
        (rc = cfg_get_bool(c, "memory", "thp", false, &m->thp)))
        return rc;
    if (m->thp && file_backed)
        return cfg_bad(c, "memory", "thp", cfg_get(c, "memory", "thp"),
                       "only for backend anon or memfd (backend is %s)", bname);

    if ((rc = cfg_get_uint(c, "memory", "host_node", 0, 1023, 0, &node)))
        return rc;
    m->host_node = cfg_get(c, "memory", "host_node") ? (int)node : -1;
    return 0;
}

static int cfg_disk(struct cfg_ctx *c, unsigned index, unsigned vcpus,
                    struct blk_config *disk)
{
    static const char *const caches[] = { "writeback", "none" };
    static const char *const engines[] = { "io_uring", "threads" };
    char sec[16];
    const char *v;
    uint64_t u;
    unsigned e;
    int rc;

    snprintf(sec, sizeof(sec), "disk.%u", index);
    disk->index = index;

    v = cfg_get(c, sec, "path");
    if (!v)
        return cfg_missing(c, sec, "path", "required");
    if ((rc = cfg_get_bool(c, sec, "readonly", false, &disk->readonly)) ||
        (rc = cfg_copy_path(c, sec, "path", v, disk->path, sizeof(disk->path))) ||
        (rc = cfg_check_file(c, sec, "path", disk->path, true, !disk->readonly)))
        return rc;

    if ((rc = cfg_get_uint(c, sec, "queues", 0, UINT32_MAX, 0, &u)))
        return rc;
    v = cfg_get(c, sec, "queues");
    if (v && u == 0)
        return cfg_bad(c, sec, "queues", v, "must be at least 1");
    disk->queues_requested = (unsigned)u;
    disk->queues = v ? (unsigned)u : vcpus;
    if (disk->queues > vcpus) {
        char src[PATH_MAX + 2 * CFG_NAME_MAX];

        cfg_src(c, sec, "queues", src, sizeof(src));
        log_warn("%s: %s.queues = %u is more than the %u vCPUs; using %u queues",
                 src, sec, disk->queues, vcpus, vcpus);
        disk->queues = vcpus;
    }

    if ((rc = cfg_get_uint(c, sec, "queue_size", 2, 256, 256, &u)))
        return rc;
    if (u & (u - 1))
        return cfg_bad(c, sec, "queue_size", cfg_get(c, sec, "queue_size"),
                       "not a power of two");
    disk->queue_size = (unsigned)u;

    v = cfg_get(c, sec, "serial");
    if (v) {
        if ((rc = cfg_copy(c, sec, "serial", v, disk->serial, sizeof(disk->serial))))
            return rc;
        for (const char *p = v; *p; p++)
            if (*p < 0x20 || *p > 0x7e)
                return cfg_bad(c, sec, "serial", v, "only printable ASCII allowed");
    }

    if ((rc = cfg_get_enum(c, sec, "cache", caches, 2, 0, &e)))
        return rc;
    disk->cache = e == 0 ? BLK_CACHE_WRITEBACK : BLK_CACHE_NONE;
    if ((rc = cfg_get_enum(c, sec, "engine", engines, 2, 2, &e)))
        return rc;
    disk->engine = e == 0 ? BLK_ENGINE_IO_URING :
                   e == 1 ? BLK_ENGINE_THREADS : BLK_ENGINE_DEFAULT;
    return 0;
}

/* Two disks on one file, with either writable, would let the guest corrupt
 * its own data through two caches; sharing is only safe read-only. */
static int cfg_disk_shared(struct cfg_ctx *c, const struct dvmm_config *out,
                           unsigned n)
{
    const struct blk_config *d = &out->disk[n];
    struct stat a, b;
    char sec[16];

    if (stat(d->path, &a) < 0)
        return 0;   /* cfg_disk just checked it; a race is gm/blk's problem */
    for (unsigned i = 0; i < n; i++) {
        const struct blk_config *o = &out->disk[i];

        if (stat(o->path, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
            continue;
        if (d->readonly && o->readonly)
            continue;
        snprintf(sec, sizeof(sec), "disk.%u", d->index);
        return cfg_bad(c, sec, "path", d->path, "same file as disk.%u; "
                       "a shared file must be readonly on both", o->index);
    }
    return 0;
}

/* ---- [net.N] ------------------------------------------------------------ */

void cfg_net_default_mac(const char *name, unsigned index, uint8_t mac[6])
{
    /* FNV-1a over "name/N": the same VM gets the same MAC on every run,
     * two NICs of one VM differ, and so (almost always) do two VMs. */
    uint64_t h = 0xcbf29ce484222325ULL;
    char key[96];
    int n = snprintf(key, sizeof(key), "%s/%u", name, index);

    for (int i = 0; i < n && i < (int)sizeof(key); i++) {
        h ^= (uint8_t)key[i];
        h *= 0x100000001b3ULL;
    }
    mac[0] = 0x02;                  /* locally administered, unicast */
    for (int i = 1; i < 6; i++)
        mac[i] = (uint8_t)(h >> (8 * (i - 1)));
}

/* Linux's dev_valid_name: 1..15 bytes, not "." or "..", no '/', ':' or
 * white space. */
static const char *cfg_ifname_why(const char *v)
{
    size_t n = strlen(v);

    if (!n)
        return "empty";
    if (n >= CFG_IFNAMSIZ)
        return "longer than 15 bytes (IFNAMSIZ)";
    if (!strcmp(v, ".") || !strcmp(v, ".."))
        return "not an interface name";
    for (const char *p = v; *p; p++)
        if (*p == '/' || *p == ':' || isspace((unsigned char)*p) || !isprint((unsigned char)*p))
            return "interface names cannot hold '/', ':', white space or control bytes";
    return NULL;
}

static const char *cfg_mac_why(const char *v, uint8_t mac[6])
{
    unsigned b[6];
    char end;

    if (strlen(v) != 17 ||
        sscanf(v, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
               &end) != 6)
        return "not a MAC address (use xx:xx:xx:xx:xx:xx, hex)";
    for (unsigned i = 0; i < 17; i++)
        if ((i % 3 == 2) != (v[i] == ':') || (i % 3 != 2 && !isxdigit((unsigned char)v[i])))
            return "not a MAC address (use xx:xx:xx:xx:xx:xx, hex)";
    for (unsigned i = 0; i < 6; i++)
        mac[i] = (uint8_t)b[i];
    if (mac[0] & 1)
        return "a multicast address (the low bit of the first byte must be 0)";
    if (!(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]))
        return "all zeros";
    return NULL;
}

static int cfg_net(struct cfg_ctx *c, unsigned index, const struct dvmm_config *cfg,
                   struct cfg_net *net)
{
    static const char *const vhosts[] = { "no", "yes", "auto" };
    unsigned vcpus = cfg->vm.vcpus;
    char sec[16];
    const char *v, *why;
    uint64_t u;
    unsigned e;
    int rc;

    snprintf(sec, sizeof(sec), "net.%u", index);
    net->index = index;

    v = cfg_get(c, sec, "tap");
    if (!v)
        return cfg_missing(c, sec, "tap", "required: a TAP interface to use or create");
    if ((why = cfg_ifname_why(v)))
        return cfg_bad(c, sec, "tap", v, "%s", why);
    strcpy(net->tap, v);

    v = cfg_get(c, sec, "mac");
    if (v) {
        if ((why = cfg_mac_why(v, net->mac)))
            return cfg_bad(c, sec, "mac", v, "%s", why);
        net->mac_given = true;
    } else {
        cfg_net_default_mac(cfg->vm.name, index, net->mac);
    }

    if ((rc = cfg_get_uint(c, sec, "queues", 0, UINT32_MAX, 0, &u)))
        return rc;
    v = cfg_get(c, sec, "queues");
    if (v && u == 0)
        return cfg_bad(c, sec, "queues", v, "must be at least 1");
    if (v && u > CFG_NET_MAX_PAIRS)
        return cfg_bad(c, sec, "queues", v, "out of range (use 1..%u queue pairs)",
                       CFG_NET_MAX_PAIRS);
    net->queues_requested = (unsigned)u;
    net->queues = v ? (unsigned)u : vcpus < CFG_NET_MAX_PAIRS ? vcpus : CFG_NET_MAX_PAIRS;
    if (net->queues > vcpus) {
        char src[PATH_MAX + 2 * CFG_NAME_MAX];

        cfg_src(c, sec, "queues", src, sizeof(src));
        log_warn("%s: %s.queues = %u is more than the %u vCPUs; using %u queue pairs",
                 src, sec, net->queues, vcpus, vcpus);
        net->queues = vcpus;
    }

    if ((rc = cfg_get_uint(c, sec, "queue_size", 2, 256, 256, &u)))
        return rc;
    if (u & (u - 1))
        return cfg_bad(c, sec, "queue_size", cfg_get(c, sec, "queue_size"),
                       "not a power of two");
    net->queue_size = (unsigned)u;

    if ((rc = cfg_get_uint(c, sec, "mtu", CFG_NET_MIN_MTU, CFG_NET_MAX_MTU, 1500, &u)))
        return rc;
    net->mtu = (unsigned)u;

    if ((rc = cfg_get_enum(c, sec, "vhost", vhosts, 3, CFG_VHOST_NO, &e)))
        return rc;
    net->vhost = (enum cfg_vhost)e;
    return 0;
}

/* Two NICs on one TAP would attach their queues to the same interface and
 * steal each other's frames. */
static int cfg_net_shared(struct cfg_ctx *c, const struct dvmm_config *out, unsigned n)
{
    const struct cfg_net *d = &out->net[n];
    char sec[16];

    for (unsigned i = 0; i < n; i++) {
        if (strcmp(out->net[i].tap, d->tap))
            continue;
        snprintf(sec, sizeof(sec), "net.%u", d->index);
        return cfg_bad(c, sec, "tap", d->tap, "same TAP interface as net.%u",
                       out->net[i].index);
    }
    return 0;
}

static int cfg_control(struct cfg_ctx *c, struct dvmm_config *out)
{
    const char *v, *xdg;
    char def[PATH_MAX];
    int rc;

    if ((rc = cfg_get_bool(c, "control", "enabled", true, &out->control.enabled)))
        return rc;
    v = cfg_get(c, "control", "socket");
    if (v) {
        if (!*v)
            return cfg_bad(c, "control", "socket", v, "empty path");
        if (strlen(v) > CFG_SOCKET_MAX)
            return cfg_bad(c, "control", "socket", v,
                           "longer than %zu bytes, the limit of a unix socket path",
                           CFG_SOCKET_MAX);
        strcpy(out->control.socket, v);
        return 0;
    }
    xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg && *xdg)
        snprintf(def, sizeof(def), "%s/dvmm-%s.sock", xdg, out->vm.name);
    else
        snprintf(def, sizeof(def), "/run/dvmm/%s.sock", out->vm.name);
    if (strlen(def) > CFG_SOCKET_MAX) {
        /* Only an error when the socket is wanted; a disabled control
         * socket must not make a long $XDG_RUNTIME_DIR fatal. */
        if (out->control.enabled)
            return cfg_fail(c, c->file, "control.socket: the default '%.80s...' is "
                            "longer than %zu bytes, the limit of a unix socket path; "
                            "set control.socket", def, CFG_SOCKET_MAX);
        return 0;
    }
    strcpy(out->control.socket, def);
    return 0;
}

static int cfg_sandbox(struct cfg_ctx *c, struct dvmm_config *out)
{
    static const char *const modes[] = { "yes", "log", "no" };
    const char *v;
    unsigned e;
    int rc;

    if ((rc = cfg_get_enum(c, "sandbox", "seccomp", modes, 3, CFG_SECCOMP_YES, &e)))
        return rc;
    out->sandbox.seccomp = (enum cfg_seccomp)e;
    v = cfg_get(c, "sandbox", "user");
    if (v) {
        struct passwd *pw;

        if (!*v || strlen(v) >= sizeof(out->sandbox.user))
            return cfg_bad(c, "sandbox", "user", v, "use a user name of 1..63 bytes");
        errno = 0;
        pw = getpwnam(v);
        if (!pw) {
            bool why = errno && errno != ENOENT && errno != ESRCH;

            return cfg_bad(c, "sandbox", "user", v, "no such user%s%s", why ? ": " : "",
                           why ? strerror(errno) : "");
        }
        strcpy(out->sandbox.user, v);
        out->sandbox.uid = (unsigned)pw->pw_uid;
        out->sandbox.gid = (unsigned)pw->pw_gid;
    }
    v = cfg_get(c, "sandbox", "chroot");
    if (v) {
        struct stat st;

        if ((rc = cfg_copy_path(c, "sandbox", "chroot", v, out->sandbox.chroot,
                                sizeof(out->sandbox.chroot))))
            return rc;
        if (stat(out->sandbox.chroot, &st) < 0)
            return cfg_bad(c, "sandbox", "chroot", v, "%s", strerror(errno));
        if (!S_ISDIR(st.st_mode))
            return cfg_bad(c, "sandbox", "chroot", v, "not a directory");
        /* A reboot loads vm.kernel again by its path, which is outside. */
        if (out->vm.on_reset == CFG_RESET_REBOOT)
            return cfg_bad(c, "sandbox", "chroot", v, "needs vm.on_reset = exit: a guest "
                           "reboot loads vm.kernel again by a path outside the chroot");
    }
    return 0;
}

/* ---- file reading ------------------------------------------------------ */

/* iniparser's error callback takes no context pointer, so the message it
 * reports has to travel through thread-local storage; cfg_load is the only
 * caller of iniparser_load and copies it out before returning. */
static __thread char cfg_ini_msg[512];

static int cfg_ini_errback(const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(cfg_ini_msg, sizeof(cfg_ini_msg), fmt, ap);
    va_end(ap);
    return n;
}

/* Turn iniparser's multi-line messages into our one-line form. */
static int cfg_ini_fail(struct cfg_ctx *c)
{
    char *m = cfg_ini_msg, *tail, *open;
    long line;

    if (!strncmp(m, "iniparser: ", 11))
        m += 11;
    tail = strstr(m, "):\n-> ");
    if (!strncmp(m, "syntax error in ", 16) && tail) {
        char *text = tail + 6;

        text[strcspn(text, "\n")] = '\0';
        *tail = '\0';
        open = strrchr(m, '(');
        line = open ? strtol(open + 1, NULL, 10) : 0;
        return cfg_fail(c, c->file, "line %ld: syntax error: '%s' "
                        "(expected [section], key = value or a comment)", line, text);
    }
    if (!strncmp(m, "input line too long in ", 23) && (open = strrchr(m, '('))) {
        line = strtol(open + 1, NULL, 10);
        return cfg_fail(c, c->file, "line %ld: longer than 1024 bytes, "
                        "iniparser's limit (use --set for long values)", line);
    }
    for (char *p = m; *p; p++)
        if (*p == '\n')
            *p = ' ';
    return cfg_fail(c, c->file, "%s", *m ? m : "cannot parse");
}

/* Lines iniparser accepts but silently mangles: "[vm]x]" becomes [vm],
 * "[]" vanishes, and a value with an unterminated quote or junk after the
 * closing quote loses the rest.  Continuation lines (ending in a backslash) are left
 * to iniparser. */
static int cfg_lint_line(struct cfg_ctx *c, long lineno, const char *line,
                         size_t len)
{
    char shown[CFG_SHOW_MAX + 8], copy[CFG_SHOW_MAX + 8];
    const char *eq, *v, *close;

    while (len && isspace((unsigned char)*line)) {
        line++;
        len--;
    }
    while (len && isspace((unsigned char)line[len - 1]))
        len--;
    if (!len || *line == ';' || *line == '#')
        return 0;
    snprintf(copy, sizeof(copy), "%.*s", (int)(len < CFG_SHOW_MAX ? len : CFG_SHOW_MAX), line);
    cfg_show(copy, shown, sizeof(shown));
    if (*line == '[') {
        const char *p = line + 1, *end = line + len - 1;

        if (!memchr(line, ']', len))
            return cfg_fail(c, c->file, "line %ld: '%s': missing ']'", lineno, shown);
        if (*end != ']')
            return cfg_fail(c, c->file, "line %ld: '%s': junk after the section header "
                            "(comments go on their own line)", lineno, shown);
        while (p < end && isspace((unsigned char)*p))
            p++;
        if (p == end || memchr(p, '[', (size_t)(end - p)) || memchr(p, ']', (size_t)(end - p)))
            return cfg_fail(c, c->file, "line %ld: '%s': bad section header",
                            lineno, shown);
        return 0;
    }
    eq = memchr(line, '=', len);
    if (!eq)
        return 0;   /* iniparser reports it as a syntax error, with the line */
    for (v = eq + 1; v < line + len && isspace((unsigned char)*v); v++)
        ;
    if (v < line + len && (*v == '"' || *v == '\'')) {
        close = memchr(v + 1, *v, (size_t)(line + len - v - 1));
        if (!close)
            return cfg_fail(c, c->file, "line %ld: '%s': unterminated quote", lineno, shown);
        for (close++; close < line + len && isspace((unsigned char)*close); close++)
            ;
        if (close < line + len && *close != ';' && *close != '#')
            return cfg_fail(c, c->file, "line %ld: '%s': junk after the quoted value",
                            lineno, shown);
    }
    return 0;
}

static int cfg_lint(struct cfg_ctx *c, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    bool continued = false;
    long lineno = 0;
    int rc;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = (size_t)((nl ? nl : end) - p);
        size_t t = l;

        lineno++;
        while (t && isspace((unsigned char)p[t - 1]))
            t--;
        if (!continued && !(t && p[t - 1] == '\\') &&
            (rc = cfg_lint_line(c, lineno, p, l)))
            return rc;
        continued = t && p[t - 1] == '\\';
        p += l + 1;
    }
    return 0;
}

/* Checks iniparser does not make: the file must be a readable regular file
 * of text (iniparser stops at a NUL byte without complaint), and its lines
 * must survive cfg_lint.  On success *textp is the file (*lenp bytes), for
 * cfg_ini_load; the caller frees it. */
static int cfg_precheck(struct cfg_ctx *c, char **textp, size_t *lenp)
{
    struct stat st;
    char *text = NULL;
    size_t total = 0;
    ssize_t n;
    int fd, rc = 0;

    fd = open(c->file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        cfg_fail(c, c->file, "cannot read: %s", strerror(errno));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        cfg_fail(c, c->file, "cannot read: %s", strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        cfg_fail(c, c->file, "cannot read: %s", S_ISDIR(st.st_mode) ?
                 strerror(EISDIR) : "not a regular file");
    } else if (!(text = malloc(CFG_FILE_MAX + 1))) {
        rc = -ENOMEM;
        cfg_fail(c, c->file, "cannot read: %s", strerror(ENOMEM));
    }
    /* Read one byte past the limit so an oversized file is noticed. */
    while (!rc && total <= CFG_FILE_MAX &&
           (n = read(fd, text + total, CFG_FILE_MAX + 1 - total)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            cfg_fail(c, c->file, "cannot read: %s", strerror(errno));
            break;
        }
        total += (size_t)n;
    }
    close(fd);
    if (!rc && total > CFG_FILE_MAX)
        rc = cfg_fail(c, c->file, "larger than %d bytes; not a VM config", CFG_FILE_MAX);
    if (!rc) {
        const char *nul = memchr(text, '\0', total);

        if (nul)
            rc = cfg_fail(c, c->file, "not a text file (NUL byte at offset %zu)",
                          (size_t)(nul - text));
        else
            rc = cfg_lint(c, text, total);
    }
    if (rc) {
        free(text);
        return rc;
    }
    *textp = text;
    *lenp = total;
    return 0;
}

/* iniparser 4.1 reads only a named file.  Reading the config a second time
 * costs another open and read on its file system (a shared folder in the
 * nested host), so iniparser gets the bytes cfg_precheck already has,
 * through a memfd's /proc/self/fd name.  Where that cannot be made (no
 * memfd, no /proc) it reads the file itself, as it always did; its messages
 * name the file either way (cfg_ini_fail uses c->file). */
static dictionary *cfg_ini_load(struct cfg_ctx *c, const char *text, size_t len)
{
    char path[40];
    dictionary *d = NULL;
    size_t off = 0;
    int fd;

    fd = memfd_create("dvmm-config", MFD_CLOEXEC);
    while (fd >= 0 && off < len) {
        ssize_t n = write(fd, text + off, len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    if (fd >= 0 && off == len) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        d = iniparser_load(path);
        /* Only "cannot open" means the name did not work; any other
         * failure is the text's and stands. */
        if (!d && strncmp(cfg_ini_msg, "iniparser: cannot open ", 23)) {
            close(fd);
            return NULL;
        }
    }
    if (fd >= 0)
        close(fd);
    if (!d) {
        cfg_ini_msg[0] = '\0';
        d = iniparser_load(c->file);
    }
    return d;
}

/* ---- entry point -------------------------------------------------------- */

int cfg_load(const char *file, char *const *sets, unsigned nsets,
             const struct cfg_limits *lim, struct dvmm_config *out,
             char *err, size_t errlen)
{
    struct cfg_ctx c = { .file = file, .err = err, .errlen = errlen };
    char *text = NULL;
    size_t len = 0;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (!file || !lim || !out || (nsets && !sets))
        return cfg_fail(&c, file ? file : "config", "cfg_load: missing argument");
    memset(out, 0, sizeof(*out));
    out->vm.kernel_fd = -1;
    if (strlen(file) >= sizeof(out->file))
        return cfg_fail(&c, "config", "file name longer than %zu bytes",
                        sizeof(out->file) - 1);
    strcpy(out->file, file);

    if ((rc = cfg_precheck(&c, &text, &len)))
        return rc;
    cfg_ini_msg[0] = '\0';
    iniparser_set_error_callback(cfg_ini_errback);
    c.d = cfg_ini_load(&c, text, len);
    free(text);
    if (!c.d)
        return cfg_ini_fail(&c);

    c.sets = calloc(nsets ? nsets : 1, sizeof(*c.sets));
    if (!c.sets) {
        rc = cfg_fail(&c, file, "%s", strerror(ENOMEM));
        goto out;
    }
    c.nsets = nsets;
    if ((rc = cfg_apply_sets(&c, sets, nsets)))
        goto out;
    {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        out->t_parsed = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
    }
    if ((rc = cfg_check_names(&c)) ||
        (rc = cfg_vm(&c, lim, out)) ||
        (rc = cfg_console(&c, out)) ||
        (rc = cfg_debug_exit(&c, out)) ||
        (rc = cfg_memory(&c, out)))
        goto out;
    for (unsigned i = 0; i < CFG_MAX_DISKS; i++) {
        if (!c.disk_seen[i])
            continue;
        if ((rc = cfg_disk(&c, i, out->vm.vcpus, &out->disk[out->ndisks])) ||
            (rc = cfg_disk_shared(&c, out, out->ndisks)))
            goto out;
        out->ndisks++;
    }
    for (unsigned i = 0; i < CFG_MAX_NETS; i++) {
        if (!c.net_seen[i])
            continue;
        if ((rc = cfg_net(&c, i, out, &out->net[out->nnets])) ||
            (rc = cfg_net_shared(&c, out, out->nnets)))
            goto out;
        out->nnets++;
    }
    if ((rc = cfg_get_str(&c, "mce", "log", "", out->mce.log, sizeof(out->mce.log))))
        goto out;
    if (out->mce.log[0]) {
        char raw[sizeof(out->mce.log)];

        memcpy(raw, out->mce.log, sizeof(raw));
        if ((rc = cfg_copy_path(&c, "mce", "log", raw, out->mce.log, sizeof(out->mce.log))))
            goto out;
    }
    if ((rc = cfg_control(&c, out)) || (rc = cfg_sandbox(&c, out)))
        goto out;
out:
    if (rc && out->vm.kernel_open) {
        close(out->vm.kernel_fd);
        out->vm.kernel_fd = -1;
        out->vm.kernel_open = false;
    }
    free(c.sets);
    iniparser_freedict(c.d);
    return rc;
}
