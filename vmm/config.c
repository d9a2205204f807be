/* INI config: iniparser does the lexing, this file owns every rule.
 *
 * The keys, their types, limits, defaults and README words are the rows
 * of cfg_keys below (the types in vmm/config_schema.h); README.md's table
 * is printed from them.  A row's hook holds what a type cannot say, and
 * the rules between keys (memory.path for hugetlbfs/dmemfs, chroot and
 * on_reset, shared disks and TAPs).
 *
 * Booleans: yes/no, true/false, on/off, 1/0; these and other word values
 * are case-insensitive.  Sizes: decimal digits with an optional K, M, G or
 * T suffix (any case, powers of 1024); hex, fractions, "MB"/"MiB" and
 * spaces are rejected: a size is never guessed.  Other integers take
 * decimal or 0x hex.
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
#include <unistd.h>

#include "vmm/config_schema.h"
#include "vmm/log.h"
#include "vmm/mono.h"

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
    /* The section being loaded, for the rows and their hooks. */
    const struct cfg_limits *lim;
    struct dvmm_config *out;
    char sec[16];                     /* "vm", "disk.3" */
    void *base;                       /* what the rows' offsets are into */
    uint64_t u;                       /* a UINT or SIZE row's value as parsed */
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

/* ---- values ---------------------------------------------------------- */

static const char *cfg_get(const struct cfg_ctx *c, const char *sec,
                           const char *key)
{
    char entry[2 * CFG_NAME_MAX + 2];

    snprintf(entry, sizeof(entry), "%s:%s", sec, key);
    return iniparser_getstring(c->d, entry, NULL);
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

/* ---- one row: parse, check, store --------------------------------------- */

static const struct cfg_key *cfg_key_find(enum cfg_sec sec, const char *key)
{
    for (size_t i = 0; i < cfg_nkeys; i++)
        if (cfg_keys[i].sec == sec && !strcmp(cfg_keys[i].key, key))
            return &cfg_keys[i];
    return NULL;
}

/* Unsigned fields of any width (bool, uint16_t, unsigned, an enum, int). */
static void cfg_store(void *dst, size_t size, uint64_t v)
{
    uint8_t u8 = (uint8_t)v;
    uint16_t u16 = (uint16_t)v;
    uint32_t u32 = (uint32_t)v;

    switch (size) {
    case 1: memcpy(dst, &u8, 1); break;
    case 2: memcpy(dst, &u16, 2); break;
    case 4: memcpy(dst, &u32, 4); break;
    default: memcpy(dst, &v, sizeof(v)); break;
    }
}

static int cfg_load_bool(struct cfg_ctx *c, const struct cfg_key *k,
                         const char *v, void *dst)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (!strcasecmp(v, yes[i]) || !strcasecmp(v, no[i])) {
            *(bool *)dst = !strcasecmp(v, yes[i]);
            return 0;
        }
    }
    return cfg_bad(c, c->sec, k->key, v,
                   "not a boolean (use yes/no, true/false, on/off or 1/0)");
}

static int cfg_load_uint(struct cfg_ctx *c, const struct cfg_key *k,
                         const char *v, void *dst)
{
    const char *why = cfg_uint_why(v, &c->u);
    uint64_t max = cfg_key_max(k);

    if (why)
        return cfg_bad(c, c->sec, k->key, v, "%s", why);
    if (c->u < k->min && (k->flags & CFG_F_ATLEAST))
        return cfg_bad(c, c->sec, k->key, v, "must be at least %llu",
                       (unsigned long long)k->min);
    if (c->u < k->min || c->u > max)
        return cfg_bad(c, c->sec, k->key, v, "out of range (use %llu..%llu%s)",
                       (unsigned long long)k->min, (unsigned long long)max,
                       k->unit ? k->unit : "");
    if ((k->flags & CFG_F_POW2) && (c->u & (c->u - 1)))
        return cfg_bad(c, c->sec, k->key, v, "not a power of two");
    cfg_store(dst, k->size, c->u);
    return 0;
}

static int cfg_load_size(struct cfg_ctx *c, const struct cfg_key *k,
                         const char *v, void *dst)
{
    const char *why;
    int rc;

    why = cfg_size_why(v, &c->u, &rc);
    if (why)
        return cfg_bad(c, c->sec, k->key, v, "%s", why);
    if (c->u < k->min)
        return cfg_bad(c, c->sec, k->key, v, "less than the minimum of %lluM",
                       (unsigned long long)(k->min >> 20));
    cfg_store(dst, k->size, c->u);
    return 0;
}

/* One of the row's names, written as "a, b or c" in the error. */
static int cfg_load_enum(struct cfg_ctx *c, const struct cfg_key *k,
                         const char *v, void *dst)
{
    const struct cfg_name *n;
    char list[128] = "";
    size_t len = 0;

    for (n = k->names; n->name; n++) {
        if (!strcasecmp(v, n->name)) {
            cfg_store(dst, k->size, (uint64_t)(unsigned)n->value);
            return 0;
        }
    }
    for (n = k->names; n->name && len < sizeof(list); n++)
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
                                n == k->names ? "" : n[1].name ? ", " : " or ",
                                n->name);
    return cfg_bad(c, c->sec, k->key, v, "unknown value (use %s)", list);
}

/* The row's value (or default) parsed by its type into its field, then its
 * hook.  A row without a value or default leaves the field as cfg_load
 * zeroed it, for the hook to fill. */
static int cfg_key_load(struct cfg_ctx *c, const struct cfg_key *k)
{
    const char *v = cfg_get(c, c->sec, k->key), *s = v ? v : k->def;
    char *dst = (char *)c->base + k->off;
    int rc = 0;

    if (!v && k->req)
        return cfg_missing(c, c->sec, k->key, k->req);
    if (s) {
        switch (k->type) {
        case CFG_T_BOOL: rc = cfg_load_bool(c, k, s, dst); break;
        case CFG_T_UINT: rc = cfg_load_uint(c, k, s, dst); break;
        case CFG_T_SIZE: rc = cfg_load_size(c, k, s, dst); break;
        case CFG_T_ENUM: rc = cfg_load_enum(c, k, s, dst); break;
        case CFG_T_STR: rc = cfg_copy(c, c->sec, k->key, s, dst, k->size); break;
        case CFG_T_PATH: rc = cfg_copy_path(c, c->sec, k->key, s, dst, k->size); break;
        case CFG_T_CUSTOM: break;
        }
    }
    if (rc || !k->hook)
        return rc;
    return k->hook(c, k, v);
}

/* Every row of section kind `sec`, in table order, into base. */
static int cfg_section_load(struct cfg_ctx *c, enum cfg_sec sec, unsigned index,
                            void *base)
{
    int rc;

    if (cfg_sections[sec].count)
        snprintf(c->sec, sizeof(c->sec), "%s.%u", cfg_sections[sec].name, index);
    else
        snprintf(c->sec, sizeof(c->sec), "%s", cfg_sections[sec].name);
    c->base = base;
    for (size_t i = 0; i < cfg_nkeys; i++)
        if (cfg_keys[i].sec == sec && (rc = cfg_key_load(c, &cfg_keys[i])))
            return rc;
    return 0;
}

/* ---- structure: sections and keys ------------------------------------- */

/* Section name -> kind; for [disk.N] and [net.N] also the index.  NULL or
 * the reason, in buf. */
static const char *cfg_sec_kind(const char *name, enum cfg_sec *kind,
                                unsigned *index, char *buf, size_t len)
{
    for (int i = 0; i < CFG_SEC_NR; i++) {
        const struct cfg_section *s = &cfg_sections[i];
        size_t l = strlen(s->name);
        const char *n;

        if (!s->count) {
            if (strcmp(name, s->name))
                continue;
            *kind = (enum cfg_sec)i;
            return NULL;
        }
        if (!strcmp(name, s->name)) {
            snprintf(buf, len, "unknown section (%s are [%s.0] .. [%s.%u])",
                     s->what, s->name, s->name, s->count - 1);
            return buf;
        }
        if (strncmp(name, s->name, l) || name[l] != '.')
            continue;
        *kind = (enum cfg_sec)i;
        n = name + l + 1;
        /* N as written, never "01": one section has one name. */
        if (!*n || strspn(n, "0123456789") != strlen(n) || (n[0] == '0' && n[1]))
            snprintf(buf, len, "bad %s section (use %s.0 .. %s.%u)", s->name,
                     s->name, s->name, s->count - 1);
        else if (strlen(n) > 3 || (*index = (unsigned)atoi(n)) >= s->count)
            snprintf(buf, len, "%s index out of range (use %s.0 .. %s.%u)", s->name,
                     s->name, s->name, s->count - 1);
        else
            return NULL;
        return buf;
    }
    snprintf(buf, len, "unknown section");
    return buf;
}

static int cfg_sec_fail(struct cfg_ctx *c, const char *sec, const char *why)
{
    char src[PATH_MAX + 2 * CFG_NAME_MAX];

    cfg_sec_src(c, sec, src, sizeof(src));
    return cfg_fail(c, src, "[%s]: %s", sec, why);
}

/* Every entry of the dictionary is either a known section or a key of one
 * in cfg_keys: typos and stray keys are errors, never silently ignored. */
static int cfg_check_names(struct cfg_ctx *c)
{
    const dictionary *d = c->d;

    for (ssize_t i = 0; i < d->size; i++) {
        const char *k = d->key[i];
        enum cfg_sec kind;
        unsigned index = 0;
        const char *why;
        char buf[96];

        if (!k || strchr(k, ':'))
            continue;
        why = cfg_sec_kind(k, &kind, &index, buf, sizeof(buf));
        if (why)
            return cfg_sec_fail(c, k, why);
        if (kind == CFG_SEC_DISK)
            c->disk_seen[index] = true;
        if (kind == CFG_SEC_NET)
            c->net_seen[index] = true;
    }
    for (ssize_t i = 0; i < d->size; i++) {
        const char *k = d->key[i], *colon, *key;
        char sec[CFG_NAME_MAX], buf[96];
        enum cfg_sec kind;
        unsigned index;

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
        if (cfg_sec_kind(sec, &kind, &index, buf, sizeof(buf)))
            return cfg_sec_fail(c, sec, "unknown section");
        if (!cfg_key_find(kind, key))
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

/* ---- [disk.N], [net.N]: MACs, names, sharing ---------------------------- */

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

/* ---- hooks: what a row's type cannot say ------------------------------- */

static void *cfg_field(const struct cfg_ctx *c, const struct cfg_key *k)
{
    return (char *)c->base + k->off;
}

static int cfg_name_ok(const char *name)
{
    size_t n = strlen(name);

    return n >= 1 && n < sizeof(((struct dvmm_config *)0)->vm.name) &&
           strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789._-") == n;
}

/* Without vm.name the VM is named after its file, so vm1.ini is "vm1". */
static int cfg_hook_vm_name(struct cfg_ctx *c, const struct cfg_key *k, const char *v)
{
    const char *base = strrchr(c->file, '/');
    char name[PATH_MAX];
    size_t n;

    if (v) {
        if (!cfg_name_ok(v))
            return cfg_bad(c, c->sec, k->key, v,
                           "use 1..63 characters of A-Z a-z 0-9 . _ -");
        strcpy(c->out->vm.name, v);
        return 0;
    }
    base = base ? base + 1 : c->file;
    n = strlen(base);
    if (n > 4 && !strcmp(base + n - 4, ".ini"))
        n -= 4;
    snprintf(name, sizeof(name), "%.*s", (int)n, base);
    if (!cfg_name_ok(name))
        return cfg_fail(c, c->file, "vm.name = '%.63s' (from the file name): "
                        "use 1..63 characters of A-Z a-z 0-9 . _ -, or set vm.name",
                        name);
    strcpy(c->out->vm.name, name);
    return 0;
}

/* The host's limit is known only at load time. */
static int cfg_hook_vm_vcpus(struct cfg_ctx *c, const struct cfg_key *k, const char *v)
{
    if (c->u > c->lim->max_vcpus)
        return cfg_bad(c, c->sec, k->key, v ? v : k->def,
                       "more than the host's KVM limit of %u", c->lim->max_vcpus);
    return 0;
}

static int cfg_hook_vm_memory(struct cfg_ctx *c, const struct cfg_key *k, const char *v)
{
    unsigned long long host = c->lim->host_memory >> 20;

    if (c->u > c->lim->host_memory) {
        if (!v)
            return cfg_fail(c, c->file, "vm.memory: the default %s is more than "
                            "the host's %lluM of RAM", k->def, host);
        return cfg_bad(c, c->sec, k->key, v, "more than the host's %lluM of RAM", host);
    }
    if (c->u % GM_PAGE_SIZE)
        return cfg_bad(c, c->sec, k->key, v, "not a multiple of 4K");
    return 0;
}

/* With cfg_limits.open_kernel the check's open is the loader's. */
static int cfg_hook_vm_kernel(struct cfg_ctx *c, const struct cfg_key *k, const char *v)
{
    struct dvmm_config *out = c->out;
    int rc;

    (void)v;
    rc = cfg_check_file_fd(c, c->sec, k->key, out->vm.kernel, false, false,
                           c->lim->open_kernel ? &out->vm.kernel_fd : NULL);
    if (rc)
        return rc;
    out->vm.kernel_open = c->lim->open_kernel;
    return 0;
}

/* An empty initrd is none. */
static int cfg_hook_vm_initrd(struct cfg_ctx *c, const struct cfg_key *k, const char *v)
{
    if (!v || !*v)
        return 0;
    return cfg_check_file(c, c->sec, k->key, cfg_field(c, k), false, false);
}

/* "stdout" is a word, anything else a path relative to the file. */
static int cfg_hook_console_output(struct cfg_ctx *c, const struct cfg_key *k,
                                   const char *v)
{
    char *dst = cfg_field(c, k), raw[PATH_MAX];

    (void)v;
    if (!dst[0])
        return cfg_bad(c, c->sec, k->key, "", "empty (use stdout or a file path)");
    if (!strcmp(dst, "stdout"))
        return 0;
    snprintf(raw, sizeof(raw), "%s", dst);
    return cfg_copy_path(c, c->sec, k->key, raw, dst, k->size);
}

static int cfg_hook_debug_exit_size(struct cfg_ctx *c, const struct cfg_key *k,
                                    const char *v)
{
    if (c->u != 1 && c->u != 2 && c->u != 4)
        return cfg_bad(c, c->sec, k->key, v ? v : k->def,
                       "not an I/O width (use 1, 2 or 4)");
    return 0;
}

static bool cfg_file_backed(const struct gm_config *m)
{
    return m->backend == GM_HUGETLBFS || m->backend == GM_DMEMFS;
}

static const char *cfg_backend_name(const struct gm_config *m)
{
    return cfg_enum_word(CFG_SEC_MEMORY, "backend", (int)m->backend);
}

/* A path only where the backend has a file system, and there always. */
static int cfg_hook_memory_path(struct cfg_ctx *c, const struct cfg_key *k, const char *v)
{
    struct gm_config *m = &c->out->memory;
    const char *bname = cfg_backend_name(m);
    char why[64];

    if (!cfg_file_backed(m)) {
        if (v)
            return cfg_bad(c, c->sec, k->key, v, "only for backend hugetlbfs or dmemfs "
                           "(backend is %s)", bname);
        return 0;
    }
    snprintf(why, sizeof(why), "required for backend %s", bname);
    if (!v || !*v)
        return cfg_missing(c, c->sec, k->key, why);
    return cfg_copy_path(c, c->sec, k->key, v, m->path, sizeof(m->path));
}

/* Huge pages from hugetlbfs/dmemfs leave THP nothing to do. */
static int cfg_hook_memory_thp(struct cfg_ctx *c, const struct cfg_key *k, const char *v)
{
    const struct gm_config *m = &c->out->memory;

    if (m->thp && cfg_file_backed(m))
        return cfg_bad(c, c->sec, k->key, v, "only for backend anon or memfd (backend is %s)",
                       cfg_backend_name(m));
    return 0;
}

static int cfg_hook_memory_host_node(struct cfg_ctx *c, const struct cfg_key *k,
                                     const char *v)
{
    (void)k;
    if (!v)
        c->out->memory.host_node = -1;
    return 0;
}

/* readonly decides whether the file must be writable, so it is read here,
 * before the file is checked; its own row reads it again, to the same end. */
static int cfg_hook_disk_path(struct cfg_ctx *c, const struct cfg_key *k, const char *v)
{
    const struct cfg_key *ro = cfg_key_find(CFG_SEC_DISK, "readonly");
    struct blk_config *d = c->base;
    int rc;

    (void)v;
    if (!ro)
        return cfg_fail(c, c->file, "%s.readonly: not in the schema", c->sec);
    if ((rc = cfg_key_load(c, ro)))
        return rc;
    return cfg_check_file(c, c->sec, k->key, d->path, true, !d->readonly);
}

/* queues_requested holds the row's value; queues what the device gets. */
static int cfg_hook_disk_queues(struct cfg_ctx *c, const struct cfg_key *k, const char *v)
{
    struct blk_config *d = c->base;
    unsigned vcpus = c->out->vm.vcpus;

    d->queues = v ? d->queues_requested : vcpus;
    if (d->queues > vcpus) {
        char src[PATH_MAX + 2 * CFG_NAME_MAX];

        cfg_src(c, c->sec, k->key, src, sizeof(src));
        log_warn("%s: %s.queues = %u is more than the %u vCPUs; using %u queues",
                 src, c->sec, d->queues, vcpus, vcpus);
        d->queues = vcpus;
    }
    return 0;
}

static int cfg_hook_disk_serial(struct cfg_ctx *c, const struct cfg_key *k, const char *v)
{
    for (const char *p = v ? v : ""; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return cfg_bad(c, c->sec, k->key, v, "only printable ASCII allowed");
    return 0;
}

static int cfg_hook_net_tap(struct cfg_ctx *c, const struct cfg_key *k, const char *v)
{
    const char *why = cfg_ifname_why(v);

    if (why)
        return cfg_bad(c, c->sec, k->key, v, "%s", why);
    strcpy(cfg_field(c, k), v);
    return 0;
}

static int cfg_hook_net_mac(struct cfg_ctx *c, const struct cfg_key *k, const char *v)
{
    struct cfg_net *n = c->base;
    const char *why;

    if (!v) {
        cfg_net_default_mac(c->out->vm.name, n->index, n->mac);
        return 0;
    }
    if ((why = cfg_mac_why(v, n->mac)))
        return cfg_bad(c, c->sec, k->key, v, "%s", why);
    n->mac_given = true;
    return 0;
}

static int cfg_hook_net_queues(struct cfg_ctx *c, const struct cfg_key *k, const char *v)
{
    struct cfg_net *n = c->base;
    unsigned vcpus = c->out->vm.vcpus;

    n->queues = v ? n->queues_requested :
                vcpus < CFG_NET_MAX_PAIRS ? vcpus : CFG_NET_MAX_PAIRS;
    if (n->queues > vcpus) {
        char src[PATH_MAX + 2 * CFG_NAME_MAX];

        cfg_src(c, c->sec, k->key, src, sizeof(src));
        log_warn("%s: %s.queues = %u is more than the %u vCPUs; using %u queue pairs",
                 src, c->sec, n->queues, vcpus, vcpus);
        n->queues = vcpus;
    }
    return 0;
}

/* Not relative to the file: the socket is for whoever runs dvmm ctl. */
static int cfg_hook_control_socket(struct cfg_ctx *c, const struct cfg_key *k,
                                   const char *v)
{
    struct dvmm_config *out = c->out;
    const char *xdg;
    char def[PATH_MAX];

    if (v) {
        if (!*v)
            return cfg_bad(c, c->sec, k->key, v, "empty path");
        if (strlen(v) > CFG_SOCKET_MAX)
            return cfg_bad(c, c->sec, k->key, v,
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

/* Looked up now, while NSS is still reachable: the switch comes after the
 * chroot. */
static int cfg_hook_sandbox_user(struct cfg_ctx *c, const struct cfg_key *k,
                                 const char *v)
{
    struct dvmm_config *out = c->out;
    struct passwd *pw;

    if (!v)
        return 0;
    if (!*v || strlen(v) >= sizeof(out->sandbox.user))
        return cfg_bad(c, c->sec, k->key, v, "use a user name of 1..63 bytes");
    errno = 0;
    pw = getpwnam(v);
    if (!pw) {
        bool why = errno && errno != ENOENT && errno != ESRCH;

        return cfg_bad(c, c->sec, k->key, v, "no such user%s%s", why ? ": " : "",
                       why ? strerror(errno) : "");
    }
    strcpy(out->sandbox.user, v);
    out->sandbox.uid = (unsigned)pw->pw_uid;
    out->sandbox.gid = (unsigned)pw->pw_gid;
    return 0;
}

static int cfg_hook_sandbox_chroot(struct cfg_ctx *c, const struct cfg_key *k,
                                   const char *v)
{
    struct stat st;

    if (!v)
        return 0;
    if (stat(cfg_field(c, k), &st) < 0)
        return cfg_bad(c, c->sec, k->key, v, "%s", strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return cfg_bad(c, c->sec, k->key, v, "not a directory");
    /* A reboot loads vm.kernel again by its path, which is outside. */
    if (c->out->vm.on_reset == CFG_RESET_REBOOT)
        return cfg_bad(c, c->sec, k->key, v, "needs vm.on_reset = exit: a guest "
                       "reboot loads vm.kernel again by a path outside the chroot");
    return 0;
}

/* ---- the schema --------------------------------------------------------- */

const struct cfg_section cfg_sections[CFG_SEC_NR] = {
    [CFG_SEC_VM] = { "vm", 0, NULL },
    [CFG_SEC_CONSOLE] = { "console", 0, NULL },
    [CFG_SEC_DEBUG_EXIT] = { "debug-exit", 0, NULL },
    [CFG_SEC_MEMORY] = { "memory", 0, NULL },
    [CFG_SEC_DISK] = { "disk", CFG_MAX_DISKS, "disks" },
    [CFG_SEC_NET] = { "net", CFG_MAX_NETS, "NICs" },
    [CFG_SEC_MCE] = { "mce", 0, NULL },
    [CFG_SEC_CONTROL] = { "control", 0, NULL },
    [CFG_SEC_SANDBOX] = { "sandbox", 0, NULL },
};

#define CFG_IN(T, f) .off = offsetof(T, f), .size = sizeof(((T *)0)->f)
#define CFG_AT(f) CFG_IN(struct dvmm_config, f)
#define CFG_DISK(f) CFG_IN(struct blk_config, f)
#define CFG_NET(f) CFG_IN(struct cfg_net, f)

static const struct cfg_name cfg_backends[] = {
    { "anon", GM_ANON, NULL }, { "memfd", GM_MEMFD, NULL },
    { "hugetlbfs", GM_HUGETLBFS, NULL }, { "dmemfs", GM_DMEMFS, NULL },
    { NULL, 0, NULL },
};

static const struct cfg_name cfg_resets[] = {
    { "reboot", CFG_RESET_REBOOT, "re-run the boot path, same memory" },
    { "exit", CFG_RESET_EXIT, NULL },
    { NULL, 0, NULL },
};
static const struct cfg_name cfg_caches[] = {
    { "writeback", BLK_CACHE_WRITEBACK, NULL },
    { "none", BLK_CACHE_NONE, "O_DIRECT" },
    { NULL, 0, NULL },
};
/* Absent, the field stays BLK_ENGINE_DEFAULT: io_uring when the host has it. */
static const struct cfg_name cfg_engines[] = {
    { "io_uring", BLK_ENGINE_IO_URING, NULL },
    { "threads", BLK_ENGINE_THREADS, NULL },
    { NULL, 0, NULL },
};
static const struct cfg_name cfg_vhosts[] = {
    { "no", CFG_VHOST_NO, NULL },
    { "yes", CFG_VHOST_YES, "error if /dev/vhost-net is missing" },
    { "auto", CFG_VHOST_AUTO, "falls back, says so once" },
    { NULL, 0, NULL },
};
static const struct cfg_name cfg_seccomps[] = {
    { "yes", CFG_SECCOMP_YES, "a forbidden system call ends dvmm" },
    { "log", CFG_SECCOMP_LOG, "the kernel logs it, the call goes on" },
    { "no", CFG_SECCOMP_NO, NULL },
    { NULL, 0, NULL },
};

/* Rows of a section are checked in this order, and a hook may read the
 * rows above it (memory.path reads memory.backend). */
const struct cfg_key cfg_keys[] = {
    { .sec = CFG_SEC_VM, .key = "name", .type = CFG_T_CUSTOM, CFG_AT(vm.name),
      .hook = cfg_hook_vm_name,
      .values = "1..63 chars of `A-Z a-z 0-9 . _ -`", .def_doc = "file name without `.ini`" },
    { .sec = CFG_SEC_VM, .key = "vcpus", .type = CFG_T_UINT, CFG_AT(vm.vcpus),
      .min = 1, .max = UINT64_MAX, .flags = CFG_F_ATLEAST, .def = "1",
      .hook = cfg_hook_vm_vcpus, .values = "1..min(KVM_CAP_MAX_VCPUS, 255)" },
    { .sec = CFG_SEC_VM, .key = "memory", .type = CFG_T_SIZE, CFG_AT(vm.memory),
      .min = CFG_MIN_MEMORY, .def = "256M", .hook = cfg_hook_vm_memory,
      .note = ", ≤ host RAM, multiple of 4K" },
    { .sec = CFG_SEC_VM, .key = "kernel", .type = CFG_T_PATH, CFG_AT(vm.kernel),
      .req = "required", .hook = cfg_hook_vm_kernel,
      .values = "bzImage, ELF64 vmlinux, or the test guest" },
    { .sec = CFG_SEC_VM, .key = "initrd", .type = CFG_T_PATH, CFG_AT(vm.initrd),
      .hook = cfg_hook_vm_initrd, .values = "file", .def_doc = "none" },
    { .sec = CFG_SEC_VM, .key = "cmdline", .type = CFG_T_STR, CFG_AT(vm.cmdline),
      .def = "" },
    { .sec = CFG_SEC_VM, .key = "on_reset", .type = CFG_T_ENUM, CFG_AT(vm.on_reset),
      .names = cfg_resets, .def = "reboot" },

    { .sec = CFG_SEC_CONSOLE, .key = "enabled", .type = CFG_T_BOOL,
      CFG_AT(console.enabled), .def = "yes" },
    { .sec = CFG_SEC_CONSOLE, .key = "input", .type = CFG_T_BOOL, CFG_AT(console.input),
      .def = "yes", .note = ": the guest reads dvmm's stdin" },
    { .sec = CFG_SEC_CONSOLE, .key = "output", .type = CFG_T_STR, CFG_AT(console.output),
      .def = "stdout", .hook = cfg_hook_console_output, .values = "`stdout` or a file" },

    { .sec = CFG_SEC_DEBUG_EXIT, .key = "enabled", .type = CFG_T_BOOL,
      CFG_AT(debug_exit.enabled), .def = "yes" },
    { .sec = CFG_SEC_DEBUG_EXIT, .key = "port", .type = CFG_T_UINT, CFG_AT(debug_exit.port),
      .max = 0xffff, .flags = CFG_F_HEX, .def = "0xf4" },
    { .sec = CFG_SEC_DEBUG_EXIT, .key = "size", .type = CFG_T_UINT, CFG_AT(debug_exit.size),
      .max = UINT64_MAX, .def = "4", .hook = cfg_hook_debug_exit_size,
      .values = "1, 2, 4 (the I/O width)" },

    { .sec = CFG_SEC_MEMORY, .key = "backend", .type = CFG_T_ENUM, CFG_AT(memory.backend),
      .names = cfg_backends, .def = "anon" },
    { .sec = CFG_SEC_MEMORY, .key = "path", .type = CFG_T_CUSTOM, CFG_AT(memory.path),
      .hook = cfg_hook_memory_path, .values = "hugetlbfs/dmemfs mount point or file in one",
      .def_doc = "required for hugetlbfs/dmemfs" },
    { .sec = CFG_SEC_MEMORY, .key = "prealloc", .type = CFG_T_BOOL, CFG_AT(memory.prealloc),
      .def = "no", .note = " (dmemfs always prefaults and zeroes)" },
    { .sec = CFG_SEC_MEMORY, .key = "thp", .type = CFG_T_BOOL, CFG_AT(memory.thp),
      .def = "no", .hook = cfg_hook_memory_thp, .note = ", anon/memfd only" },
    { .sec = CFG_SEC_MEMORY, .key = "host_node", .type = CFG_T_UINT,
      CFG_AT(memory.host_node), .max = 1023, .hook = cfg_hook_memory_host_node,
      .note = ": NUMA node for `mbind`", .def_doc = "none" },

    { .sec = CFG_SEC_DISK, .key = "path", .type = CFG_T_PATH, CFG_DISK(path),
      .req = "required", .hook = cfg_hook_disk_path,
      .values = "raw image or block device (N = 0..7); two disks share a file only "
                "if both are readonly" },
    { .sec = CFG_SEC_DISK, .key = "readonly", .type = CFG_T_BOOL, CFG_DISK(readonly),
      .def = "no" },
    { .sec = CFG_SEC_DISK, .key = "queues", .type = CFG_T_UINT, CFG_DISK(queues_requested),
      .min = 1, .flags = CFG_F_ATLEAST, .hook = cfg_hook_disk_queues,
      .note = "; more than `vcpus` is clamped with a warning", .def_doc = "vcpus" },
    { .sec = CFG_SEC_DISK, .key = "queue_size", .type = CFG_T_UINT, CFG_DISK(queue_size),
      .min = 2, .max = 256, .flags = CFG_F_POW2, .def = "256" },
    { .sec = CFG_SEC_DISK, .key = "serial", .type = CFG_T_STR, CFG_DISK(serial),
      .def = "", .hook = cfg_hook_disk_serial, .note = " of printable ASCII (GET_ID)" },
    { .sec = CFG_SEC_DISK, .key = "cache", .type = CFG_T_ENUM, CFG_DISK(cache),
      .names = cfg_caches, .def = "writeback" },
    { .sec = CFG_SEC_DISK, .key = "engine", .type = CFG_T_ENUM, CFG_DISK(engine),
      .names = cfg_engines, .def_doc = "io_uring when available" },

    { .sec = CFG_SEC_NET, .key = "tap", .type = CFG_T_CUSTOM, CFG_NET(tap),
      .req = "required: a TAP interface to use or create", .hook = cfg_hook_net_tap,
      .values = "TAP interface (N = 0..7): used if it exists, else created (up, with "
                "`mtu`) and removed at exit; 1..15 bytes, no `/`, `:` or space; two NICs "
                "never share one" },
    { .sec = CFG_SEC_NET, .key = "mac", .type = CFG_T_CUSTOM, CFG_NET(mac),
      .hook = cfg_hook_net_mac, .values = "`xx:xx:xx:xx:xx:xx`, unicast, not all zeros",
      .def_doc = "`02:…` derived from vm.name and N (stable)" },
    { .sec = CFG_SEC_NET, .key = "queues", .type = CFG_T_UINT, CFG_NET(queues_requested),
      .min = 1, .max = CFG_NET_MAX_PAIRS, .flags = CFG_F_ATLEAST, .unit = " queue pairs",
      .hook = cfg_hook_net_queues, .note = "; more than `vcpus` is clamped with a warning",
      .def_doc = "vcpus (at most 31)" },
    { .sec = CFG_SEC_NET, .key = "queue_size", .type = CFG_T_UINT, CFG_NET(queue_size),
      .min = 2, .max = 256, .flags = CFG_F_POW2, .def = "256" },
    { .sec = CFG_SEC_NET, .key = "mtu", .type = CFG_T_UINT, CFG_NET(mtu),
      .min = CFG_NET_MIN_MTU, .max = CFG_NET_MAX_MTU, .def = "1500",
      .note = " (offered with VIRTIO_NET_F_MTU)" },
    { .sec = CFG_SEC_NET, .key = "vhost", .type = CFG_T_ENUM, CFG_NET(vhost),
      .names = cfg_vhosts, .def = "no" },

    { .sec = CFG_SEC_MCE, .key = "log", .type = CFG_T_PATH, CFG_AT(mce.log),
      .values = "file for the JSON event log", .def_doc = "stderr" },

    { .sec = CFG_SEC_CONTROL, .key = "enabled", .type = CFG_T_BOOL,
      CFG_AT(control.enabled), .def = "yes" },
    { .sec = CFG_SEC_CONTROL, .key = "socket", .type = CFG_T_CUSTOM, CFG_AT(control.socket),
      .hook = cfg_hook_control_socket, .values = "path (≤ 107 bytes)",
      .def_doc = "`$XDG_RUNTIME_DIR/dvmm-NAME.sock`, else `/run/dvmm/NAME.sock`" },

    { .sec = CFG_SEC_SANDBOX, .key = "seccomp", .type = CFG_T_ENUM, CFG_AT(sandbox.seccomp),
      .names = cfg_seccomps, .def = "yes" },
    { .sec = CFG_SEC_SANDBOX, .key = "user", .type = CFG_T_CUSTOM, CFG_AT(sandbox.user),
      .hook = cfg_hook_sandbox_user, .def_doc = "none",
      .values = "user name: dvmm becomes it (and its group, no capabilities) once "
                "everything is open; needs root" },
    { .sec = CFG_SEC_SANDBOX, .key = "chroot", .type = CFG_T_PATH, CFG_AT(sandbox.chroot),
      .hook = cfg_hook_sandbox_chroot, .def_doc = "none",
      .values = "directory (may be empty) dvmm enters once everything is open; needs "
                "`on_reset = exit` and root" },
};
const size_t cfg_nkeys = sizeof(cfg_keys) / sizeof(cfg_keys[0]);

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

/* Disks are kept sorted by N, whatever the order of their sections. */
static int cfg_disks(struct cfg_ctx *c)
{
    struct dvmm_config *out = c->out;
    int rc;

    for (unsigned i = 0; i < CFG_MAX_DISKS; i++) {
        struct blk_config *d = &out->disk[out->ndisks];

        if (!c->disk_seen[i])
            continue;
        d->index = i;
        if ((rc = cfg_section_load(c, CFG_SEC_DISK, i, d)) ||
            (rc = cfg_disk_shared(c, out, out->ndisks)))
            return rc;
        out->ndisks++;
    }
    return 0;
}

static int cfg_nets(struct cfg_ctx *c)
{
    struct dvmm_config *out = c->out;
    int rc;

    for (unsigned i = 0; i < CFG_MAX_NETS; i++) {
        struct cfg_net *n = &out->net[out->nnets];

        if (!c->net_seen[i])
            continue;
        n->index = i;
        if ((rc = cfg_section_load(c, CFG_SEC_NET, i, n)) ||
            (rc = cfg_net_shared(c, out, out->nnets)))
            return rc;
        out->nnets++;
    }
    return 0;
}

int cfg_load(const char *file, char *const *sets, unsigned nsets,
             const struct cfg_limits *lim, struct dvmm_config *out,
             char *err, size_t errlen)
{
    struct cfg_ctx c = { .file = file, .err = err, .errlen = errlen, .lim = lim,
                         .out = out };
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
    out->t_parsed = mono_ns();
    if ((rc = cfg_check_names(&c)))
        goto out;
    for (int s = 0; s < CFG_SEC_NR && !rc; s++) {
        if (s == CFG_SEC_DISK)
            rc = cfg_disks(&c);
        else if (s == CFG_SEC_NET)
            rc = cfg_nets(&c);
        else
            rc = cfg_section_load(&c, (enum cfg_sec)s, 0, out);
    }
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
