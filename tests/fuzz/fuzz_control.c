/* Fuzz target for the control-socket request parser (ctl_handle_line) and
 * the gpa string parser.
 *
 * Built two ways by tests/fuzz/control.mk:
 *  - with clang -fsanitize=fuzzer: a libFuzzer binary for `make fuzz`;
 *  - with -DFUZZ_TAP_MAIN and gcc's ASan/UBSan: a short deterministic run
 *    for `make test` -- the built-in seeds, each with its expected verdict,
 *    then a fixed-seed stream of mutations of them, then every input of
 *    the committed corpus (FUZZ_CORPUS_DIR, tests/fuzz/corpus/control: what
 *    libFuzzer kept, replayed here so a regression on any of them fails
 *    make test).  `--seeds DIR` writes the seeds as a starting corpus for
 *    libFuzzer. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "vmm/ctl_proto.h"
#include "vmm/log.h"

/* Handlers that behave like a VM but keep no state: a fuzz target must
 * give the same answer for the same input. */
static int f_status(void *o, json_object *r)
{
    (void)o;
    json_object_object_add(r, "state", json_object_new_string("running"));
    return 0;
}

static int f_fail(void *o, json_object *r)
{
    (void)o;
    json_object_object_add(r, "error", json_object_new_string("memstat: backend gone"));
    return -EIO;
}

static int f_mce(void *o, const struct ctl_mce_req *q, json_object *r)
{
    (void)o;
    if (q->gpa >= CTL_GPA_LIMIT || (q->kind != MCE_AR && q->kind != MCE_AO) || q->vcpu < -1 ||
        (q->user_mode && (q->kind != MCE_AR || q->wait_ms < 1 ||
                          q->wait_ms > CTL_USER_WAIT_MAX_MS)) ||
        (!q->user_mode && q->wait_ms) || q->token)
        abort();   /* validation let something through */
    json_object_object_add(r, "vcpu", json_object_new_int(q->vcpu < 0 ? 0 : q->vcpu));
    return 0;
}

static int f_hwpoison(void *o, uint64_t gpa, json_object *r)
{
    (void)o;
    (void)r;
    if (gpa >= CTL_GPA_LIMIT)
        abort();
    return gpa & 1 ? -EFAULT : 0;
}

static int f_link(void *o, unsigned net, bool up, json_object *r)
{
    (void)o;
    (void)r;
    if (net > 7)
        abort();   /* validation let something through */
    return up || net ? 0 : -ENODEV;
}

static int f_vcpu_state(void *o, unsigned vcpu, json_object *r)
{
    (void)o;
    if (vcpu > INT_MAX)
        abort();   /* validation let something through */
    json_object_object_add(r, "rip", json_object_new_string("0x1000"));
    return vcpu < 4 ? 0 : -ENODEV;
}

static const struct ctl_handlers fuzz_handlers = {
    .status = f_status, .memstat = f_fail, .mce_inject = f_mce,
    .hwpoison = f_hwpoison, .poisoned = f_status, .pause = NULL,
    .resume = f_status, .quit = f_status, .link = f_link,
    .vcpu_state = f_vcpu_state,
};

/* -1: the reply was malformed (a bug); else 1 for ok, 0 for an error. */
static int fuzz_one(const uint8_t *data, size_t size)
{
    json_object *r = ctl_handle_line(&fuzz_handlers, (const char *)data, size), *v;
    int verdict = -1;
    char gpa[64];

    if (!r)
        abort();   /* only out of memory may return NULL */
    if (json_object_object_get_ex(r, "ok", &v) && json_object_is_type(v, json_type_boolean)) {
        verdict = json_object_get_boolean(v);
        if (!verdict && !(json_object_object_get_ex(r, "error", &v) &&
                          json_object_is_type(v, json_type_string)))
            verdict = -1;
    }
    /* Serialising the reply must always work: it goes on the wire. */
    if (!json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN))
        verdict = -1;
    json_object_put(r);

    if (size < sizeof(gpa)) {
        uint64_t g;

        memcpy(gpa, data, size);
        gpa[size] = '\0';
        if (ctl_parse_gpa(gpa, &g) == 0 && g >= CTL_GPA_LIMIT)
            verdict = -1;
    }
    return verdict;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_one(data, size) < 0)
        abort();
    return 0;
}

#ifdef FUZZ_TAP_MAIN
#include <dirent.h>
#include <sys/stat.h>

struct seed {
    const char *s;
    int ok;   /* expected verdict */
};

static const struct seed seeds[] = {
    { "{\"cmd\":\"status\"}", 1 },
    { "{\"cmd\":\"memstat\"}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":\"0x1000\",\"kind\":\"ar\",\"vcpu\":1}", 1 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ao\"}", 1 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":\"0x2000\"}", 1 },
    { "{\"cmd\":\"hwpoison\",\"gpa\":\"0x2001\"}", 0 },
    { "{\"cmd\":\"poisoned\"}", 1 },
    { "{\"cmd\":\"pause\"}", 0 },
    { "{\"cmd\":\"resume\"}", 1 },
    { "{\"cmd\":\"quit\"}", 1 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":\"0xZZ\",\"kind\":\"ar\"}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"xx\"}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":4096,\"kind\":\"ar\",\"vcpu\":-1}", 0 },
    { "{\"cmd\":\"status\",\"extra\":[1,{\"a\":null}]}", 0 },
    { "[{\"cmd\":\"status\"}]", 0 },
    { "{\"cmd\":\"status\"} {\"cmd\":\"quit\"}", 0 },
    { "{\"cmd\":\"st\\u00e9tus\"}", 0 },
    { "", 0 },
    { "{\"cmd\":\"link\",\"dev\":\"net.1\",\"state\":\"down\"}", 1 },
    { "{\"cmd\":\"link\",\"dev\":\"net.0\",\"state\":\"down\"}", 0 },
    { "{\"cmd\":\"link\",\"dev\":\"net.8\",\"state\":\"up\"}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":\"0x1000\",\"kind\":\"ar\",\"mode\":\"user\",\"wait_ms\":50}", 1 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":\"0x1000\",\"kind\":\"ao\",\"mode\":\"user\"}", 0 },
    { "{\"cmd\":\"mce-inject\",\"gpa\":\"0x1000\",\"kind\":\"ar\",\"wait_ms\":5}", 0 },
    { "{\"cmd\":\"vcpu-state\",\"vcpu\":0}", 1 },
    { "{\"cmd\":\"vcpu-state\",\"vcpu\":4}", 0 },
    { "{\"cmd\":\"vcpu-state\"}", 0 },
    { "{\"cmd\":\"vcpu-state\",\"vcpu\":\"0\"}", 0 },
};
#define NSEEDS (sizeof(seeds) / sizeof(seeds[0]))

/* Splice material: the tokens the grammar is made of. */
static const char *const tokens[] = {
    "{", "}", "[", "]", ":", ",", "\"", "\\", "\\u0000", "\\ud800", "null",
    "true", "-", "0x", "1e999", "18446744073709551616", "\"cmd\"", "\"gpa\"",
    "\"kind\"", "\"vcpu\"", "\"ar\"", "\"ao\"", "\r", "\0", "\xff", "\xc3\xa9",
    "9223372036854775807", "-9223372036854775808", "4503599627370496",
};

static uint64_t rng(uint64_t *s)
{
    /* xorshift64*: fixed seed, so a failure reproduces run after run. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static size_t mutate(uint64_t *st, uint8_t *buf, size_t len, size_t cap)
{
    unsigned k, n = 1 + rng(st) % 4;

    for (k = 0; k < n; k++) {
        size_t pos = len ? rng(st) % (len + 1) : 0;

        switch (rng(st) % 5) {
        case 0:   /* flip a byte */
            if (len)
                buf[pos % len] ^= (uint8_t)(1u << (rng(st) % 8));
            break;
        case 1:   /* random byte */
            if (len)
                buf[pos % len] = (uint8_t)rng(st);
            break;
        case 2: { /* delete a run */
            size_t del = len ? rng(st) % (len - pos + 1) % 8 : 0;

            memmove(buf + pos, buf + pos + del, len - pos - del);
            len -= del;
            break;
        }
        case 3: { /* insert a token */
            const char *t = tokens[rng(st) % (sizeof(tokens) / sizeof(tokens[0]))];
            size_t tl = t[0] ? strlen(t) : 1;

            if (len + tl <= cap) {
                memmove(buf + pos + tl, buf + pos, len - pos);
                memcpy(buf + pos, t, tl);
                len += tl;
            }
            break;
        }
        case 4: { /* duplicate a run: nesting and repetition */
            size_t dl = len ? 1 + rng(st) % 16 : 0;

            if (pos + dl <= len && len + dl <= cap) {
                memmove(buf + pos + dl, buf + pos, len - pos);
                len += dl;
            }
            break;
        }
        }
    }
    return len;
}

static int write_seeds(const char *dir)
{
    unsigned i;

    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "fuzz_control: mkdir %s: %s\n", dir, strerror(errno));
        return 1;
    }
    for (i = 0; i < NSEEDS; i++) {
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/seed-%02u", dir, i);
        f = fopen(path, "w");
        if (!f || fwrite(seeds[i].s, 1, strlen(seeds[i].s), f) != strlen(seeds[i].s) ||
            fclose(f) != 0) {
            fprintf(stderr, "fuzz_control: writing %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    return 0;
}

/* Replays every regular file in dir; returns how many, -1 when the
 * directory cannot be read.  *bad counts malformed replies. */
static int replay_corpus(const char *dir, unsigned *bad)
{
    static uint8_t buf[1 << 16];
    struct dirent *de;
    DIR *d = opendir(dir);
    int n = 0;

    if (!d)
        return -1;
    while ((de = readdir(d))) {
        char path[4096];
        FILE *f;
        size_t len;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (!(f = fopen(path, "rb")))
            continue;
        len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        if (fuzz_one(buf, len) < 0) {
            printf("# corpus input %s gave a malformed reply\n", path);
            (*bad)++;
        }
        n++;
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    enum { ITER = 50000, CAP = 4096 };
    uint8_t buf[CAP];
    uint64_t st = 0x9e3779b97f4a7c15ULL;
    unsigned i, bad = 0, accepted = 0;

    if (argc == 3 && !strcmp(argv[1], "--seeds"))
        return write_seeds(argv[2]);
    log_set_level(LOG_ERR);
    printf("1..3\n");
    for (i = 0; i < NSEEDS; i++) {
        int v = fuzz_one((const uint8_t *)seeds[i].s, strlen(seeds[i].s));

        if (v != seeds[i].ok) {
            printf("# seed %u \"%s\": verdict %d, expected %d\n", i, seeds[i].s, v,
                   seeds[i].ok);
            bad++;
        }
    }
    printf("%sok 1 - %zu seed requests get their expected verdict\n", bad ? "not " : "",
           NSEEDS);

    bad = 0;
    for (i = 0; i < ITER; i++) {
        const struct seed *s = &seeds[rng(&st) % NSEEDS];
        size_t len = strlen(s->s);
        int v;

        memcpy(buf, s->s, len);
        len = mutate(&st, buf, len, CAP);
        v = fuzz_one(buf, len);
        if (v < 0) {
            printf("# mutation %u gave a malformed reply\n", i);
            bad++;
        }
        accepted += v == 1;
    }
    printf("%sok 2 - %d mutated requests answered with a well-formed reply "
           "(%u accepted)\n", bad ? "not " : "", ITER, accepted);

    unsigned cbad = 0;
    int n = replay_corpus(FUZZ_CORPUS_DIR, &cbad);
    if (n <= 0)
        printf("not ok 3 - corpus %s: %s\n", FUZZ_CORPUS_DIR,
               n < 0 ? strerror(errno) : "empty");
    else
        printf("%sok 3 - %d inputs of %s answered with a well-formed reply\n",
               cbad ? "not " : "", n, FUZZ_CORPUS_DIR);
    return bad || cbad || n <= 0 ? 1 : 0;
}
#endif
