/* README.md's table of INI keys, printed from the schema (cfg_keys): the
 * values column is made from each row's type and limits where they say it,
 * so the README cannot promise a range or a word the loader rejects. */
#include "vmm/config_schema.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *cfg_enum_name(enum cfg_sec sec, const char *key, int value)
{
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const struct cfg_key *k = &cfg_keys[i];

        if (k->sec != sec || k->type != CFG_T_ENUM || strcmp(k->key, key))
            continue;
        for (const struct cfg_name *n = k->names; n->name; n++)
            if (n->value == value)
                return n->name;
    }
    return NULL;
}

const char *cfg_enum_word(enum cfg_sec sec, const char *key, int value)
{
    const char *n = cfg_enum_name(sec, key, value);

    return n ? n : "?";
}

static void cfg_md_values(FILE *f, const struct cfg_key *k)
{
    unsigned long long min = k->min, max = cfg_key_max(k);

    if (k->values) {
        fputs(k->values, f);
    } else {
        switch (k->type) {
        case CFG_T_BOOL:
            fputs("bool", f);
            break;
        case CFG_T_UINT:
            if (k->flags & CFG_F_POW2)
                fputs("power of two, ", f);
            if ((k->flags & CFG_F_ATLEAST) && !k->max)
                fprintf(f, "≥ %llu", min);
            else if (k->flags & CFG_F_HEX)
                fprintf(f, min ? "0x%llx..0x%llx" : "%llu..0x%llx", min, max);
            else
                fprintf(f, "%llu..%llu", min, max);
            fputs(k->unit ? k->unit : "", f);
            break;
        case CFG_T_SIZE:
            fprintf(f, "size: digits + optional `K`/`M`/`G`/`T`; ≥ %lluM", min >> 20);
            break;
        case CFG_T_ENUM:
            for (const struct cfg_name *n = k->names; n->name; n++) {
                fprintf(f, "%s`%s`", n == k->names ? "" : " \\| ", n->name);
                if (n->note)
                    fprintf(f, " (%s)", n->note);
            }
            break;
        case CFG_T_STR:
            fprintf(f, "≤ %zu bytes", k->size - 1);
            break;
        case CFG_T_PATH:
        case CFG_T_CUSTOM:
            fputs("path", f);
            break;
        }
    }
    fputs(k->note ? k->note : "", f);
}

static void cfg_md_default(FILE *f, const struct cfg_key *k)
{
    if (k->req)
        fputs("required", f);
    else if (k->def_doc)
        fputs(k->def_doc, f);
    else if (k->def)
        fputs(*k->def ? k->def : "\"\"", f);
    else
        fputs("none", f);
}

int cfg_schema_markdown(FILE *f)
{
    fputs("| key | values | default |\n| --- | --- | --- |\n", f);
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        const struct cfg_section *s = &cfg_sections[k->sec];

        fprintf(f, "| `[%s%s] %s` | ", s->name, s->count ? ".N" : "", k->key);
        cfg_md_values(f, k);
        fputs(" | ", f);
        cfg_md_default(f, k);
        fputs(" |\n", f);
    }
    if (fflush(f) == EOF || ferror(f))
        return -EIO;
    return 0;
}
