/* The INI schema, once: one row per key (cfg_keys in vmm/config.c) with its
 * section, type, limits, default, the field it fills and the words the
 * README shows.  cfg_load validates from the rows; cfg_schema_markdown
 * prints README.md's key table from them, and tests/integration/
 * config-readme.t fails when the README's copy differs. */
#ifndef DVMM_CONFIG_SCHEMA_H
#define DVMM_CONFIG_SCHEMA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* In the order cfg_load checks them: a later section's rules may read an
 * earlier one's values (net.N's default MAC needs vm.name). */
enum cfg_sec { CFG_SEC_VM, CFG_SEC_CONSOLE, CFG_SEC_DEBUG_EXIT, CFG_SEC_MEMORY,
               CFG_SEC_DISK, CFG_SEC_NET, CFG_SEC_MCE, CFG_SEC_CONTROL,
               CFG_SEC_SANDBOX, CFG_SEC_NR };

struct cfg_section {
    const char *name;
    unsigned count;          /* 0: [name]; else [name.N] with N < count */
    const char *what;        /* [name.N]: what one section is, plural */
};

enum cfg_type {
    CFG_T_BOOL,              /* yes/no, true/false, on/off, 1/0 */
    CFG_T_UINT,              /* decimal or 0x hex, min..max */
    CFG_T_SIZE,              /* digits + optional K/M/G/T, >= min */
    CFG_T_ENUM,              /* one of names, case-insensitive */
    CFG_T_STR,               /* at most size - 1 bytes */
    CFG_T_PATH,              /* a STR relative to the file's directory */
    CFG_T_CUSTOM,            /* the hook parses and stores it */
};

#define CFG_F_ATLEAST 1u     /* below min: "must be at least MIN" */
#define CFG_F_POW2    2u     /* a power of two */
#define CFG_F_HEX     4u     /* the README writes the range in hex */

struct cfg_name {
    const char *name;
    int value;               /* stored in the field (an enum) */
    const char *note;        /* README, in brackets after the name */
};

struct cfg_ctx;
struct cfg_key;
/* Runs after the row's generic parse and store (instead of them for
 * CFG_T_CUSTOM); v is the value as written, NULL when absent. */
typedef int cfg_hook(struct cfg_ctx *c, const struct cfg_key *k, const char *v);

struct cfg_key {
    enum cfg_sec sec;
    const char *key;
    enum cfg_type type;
    /* The field, in struct dvmm_config for a plain section and in the
     * section's own struct (blk_config, cfg_net) for [disk.N], [net.N]. */
    size_t off, size;
    uint64_t min, max;       /* UINT; SIZE uses min.  max 0: the field's width */
    unsigned flags;          /* CFG_F_* */
    const char *unit;        /* after a UINT range, in messages and README */
    const struct cfg_name *names;   /* ENUM: ends with a NULL name */
    const char *def;         /* default, written as in the file; NULL: none,
                              * or the hook computes it */
    const char *req;         /* required; why, in the "missing" message */
    cfg_hook *hook;
    /* README: `values` replaces the text made from type and limits, `note`
     * follows it, `def_doc` replaces the default column. */
    const char *values, *note, *def_doc;
};

/* A row's upper limit: its own, or what its field can hold. */
static inline uint64_t cfg_key_max(const struct cfg_key *k)
{
    if (k->max)
        return k->max;
    return k->size >= 8 ? UINT64_MAX : (1ULL << (8 * k->size)) - 1;
}

extern const struct cfg_section cfg_sections[CFG_SEC_NR];
extern const struct cfg_key cfg_keys[];
extern const size_t cfg_nkeys;

/* The word for an ENUM row's value (on_reset, vhost, ...), for printing a
 * loaded config; NULL when sec.key is no ENUM row or value none of its. */
const char *cfg_enum_name(enum cfg_sec sec, const char *key, int value);
/* The same for messages and printouts: "?" where cfg_enum_name has none. */
const char *cfg_enum_word(enum cfg_sec sec, const char *key, int value);

/* README.md's table: header, separator and one row per key, in table
 * order.  0, or -EIO when f could not take it. */
int cfg_schema_markdown(FILE *f);

#endif
