#include "vmm/ctl_proto.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a request's keys parse into; each command's call picks its part. */
struct ctl_args {
    uint64_t gpa;
    enum mce_kind kind;
    int vcpu;
    bool user_mode;
    bool has_wait;
    unsigned wait_ms;
    unsigned net;
    bool up;
};

/* Where a value goes and how it is checked.  The message names the key, so
 * one type serves every key of its shape. */
enum ctl_arg_type {
    CTL_ARG_GPA,     /* -> gpa: integer or "0x.."/decimal string, < CTL_GPA_LIMIT */
    CTL_ARG_KIND,    /* -> kind: "ar" | "ao", any case */
    CTL_ARG_INDEX,   /* -> vcpu: integer in [min, max], "a non-negative integer" */
    CTL_ARG_MODE,    /* -> user_mode: "user" */
    CTL_ARG_RANGE,   /* -> wait_ms, has_wait: integer in [min, max] */
    CTL_ARG_DEV,     /* -> net: "net.0" .. "net.7" */
    CTL_ARG_STATE,   /* -> up: "up" | "down" */
};

/* One key of a command's argument schema. */
struct ctl_key {
    const char *name;
    enum ctl_arg_type type;
    bool required;
    int64_t min, max;    /* CTL_ARG_INDEX and CTL_ARG_RANGE only */
};

/* Validation writes its complaint here; the reply object is built once. */
struct ctl_msg {
    char text[256];
};

/* A command: its name, its argument schema, an optional check across keys
 * (after each key passed its own) and the call into its handler, which
 * answers -EOPNOTSUPP when the VM has none. */
struct ctl_cmd {
    const char *name;
    const struct ctl_key *keys;
    unsigned nkeys;
    int (*check)(const struct ctl_cmd *cmd, struct ctl_args *a, struct ctl_msg *m);
    int (*call)(const struct ctl_handlers *h, const struct ctl_args *a, uint64_t token,
                json_object *reply);
};

/* ---- replies ------------------------------------------------------------ */

json_object *ctl_reply_error(const char *fmt, ...)
{
    char msg[256];
    json_object *o;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    o = json_object_new_object();
    if (!o)
        return NULL;
    json_object_object_add(o, "ok", json_object_new_boolean(false));
    json_object_object_add(o, "error", json_object_new_string(msg));
    return o;
}

/* ---- validation against the schema -------------------------------------- */

int ctl_parse_gpa(const char *s, uint64_t *out)
{
    unsigned long long v;
    char *end;
    int base = 10;

    /* strtoull would accept leading blanks and a sign; a gpa has neither. */
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        if (!isxdigit((unsigned char)s[2]))
            return -EINVAL;
    } else if (!isdigit((unsigned char)s[0])) {
        return -EINVAL;
    }
    errno = 0;
    v = strtoull(s, &end, base);
    if (*end)
        return -EINVAL;
    if (errno == ERANGE || v >= CTL_GPA_LIMIT)
        return -ERANGE;
    *out = v;
    return 0;
}

/* A JSON string that is a C string: "\u0000" inside would let "ar\u0000x"
 * pass as "ar". */
static const char *ctl_clean_string(json_object *v)
{
    const char *s;

    if (!json_object_is_type(v, json_type_string))
        return NULL;
    s = json_object_get_string(v);
    if (strlen(s) != (size_t)json_object_get_string_len(v))
        return NULL;
    return s;
}

static int ctl_bad(struct ctl_msg *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int ctl_bad(struct ctl_msg *m, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(m->text, sizeof(m->text), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int ctl_parse_arg(const struct ctl_cmd *cmd, const struct ctl_key *k,
                         json_object *v, struct ctl_args *a, struct ctl_msg *m)
{
    const char *s;
    int64_t i;
    int ret;

    switch (k->type) {
    case CTL_ARG_GPA:
        if (json_object_is_type(v, json_type_int)) {
            /* json-c saturates out-of-range numbers at INT64_MIN/UINT64_MAX;
             * both land outside [0, 2^52) and are refused. */
            i = json_object_get_int64(v);
            if (i < 0)
                return ctl_bad(m, "%s: %s must not be negative", cmd->name, k->name);
            if (json_object_get_uint64(v) >= CTL_GPA_LIMIT)
                return ctl_bad(m, "%s: %s is beyond the 52-bit physical address space",
                               cmd->name, k->name);
            a->gpa = json_object_get_uint64(v);
            return 0;
        }
        s = ctl_clean_string(v);
        if (!s)
            return ctl_bad(m, "%s: %s must be an integer or a string like \"0x1000\"",
                           cmd->name, k->name);
        ret = ctl_parse_gpa(s, &a->gpa);
        if (ret == -ERANGE)
            return ctl_bad(m, "%s: %s \"%.40s\" is beyond the 52-bit physical address space",
                           cmd->name, k->name, s);
        if (ret)
            return ctl_bad(m, "%s: %s \"%.40s\" is not a number (use 0x hex or decimal)",
                           cmd->name, k->name, s);
        return 0;
    case CTL_ARG_KIND:
        s = ctl_clean_string(v);
        if (s && !strcasecmp(s, "ar"))
            a->kind = MCE_AR;
        else if (s && !strcasecmp(s, "ao"))
            a->kind = MCE_AO;
        else
            return ctl_bad(m, "%s: %s must be \"ar\" or \"ao\"", cmd->name, k->name);
        return 0;
    case CTL_ARG_INDEX:
        if (!json_object_is_type(v, json_type_int))
            return ctl_bad(m, "%s: %s must be a non-negative integer", cmd->name, k->name);
        i = json_object_get_int64(v);
        if (i < k->min || i > k->max)
            return ctl_bad(m, "%s: %s must be a non-negative integer", cmd->name, k->name);
        a->vcpu = (int)i;
        return 0;
    case CTL_ARG_MODE:
        /* The unconditional injection has no name: it is what no mode means. */
        s = ctl_clean_string(v);
        if (!s || strcmp(s, "user"))
            return ctl_bad(m, "%s: %s must be \"user\" (or left out: inject at once, "
                           "wherever the vCPU is)", cmd->name, k->name);
        a->user_mode = true;
        return 0;
    case CTL_ARG_RANGE:
        if (!json_object_is_type(v, json_type_int))
            return ctl_bad(m, "%s: %s must be an integer", cmd->name, k->name);
        i = json_object_get_int64(v);
        if (i < k->min || i > k->max)
            return ctl_bad(m, "%s: %s must be %lld..%lld", cmd->name, k->name,
                           (long long)k->min, (long long)k->max);
        a->wait_ms = (unsigned)i;
        a->has_wait = true;
        return 0;
    case CTL_ARG_DEV:
        s = ctl_clean_string(v);
        if (!s || strncmp(s, "net.", 4) || s[4] < '0' || s[4] > '7' || s[5])
            return ctl_bad(m, "%s: %s must be \"net.0\" .. \"net.7\"", cmd->name, k->name);
        a->net = (unsigned)(s[4] - '0');
        return 0;
    case CTL_ARG_STATE:
        s = ctl_clean_string(v);
        if (s && !strcmp(s, "up"))
            a->up = true;
        else if (s && !strcmp(s, "down"))
            a->up = false;
        else
            return ctl_bad(m, "%s: %s must be \"up\" or \"down\"", cmd->name, k->name);
        return 0;
    }
    return ctl_bad(m, "%s: internal error: bad argument type", cmd->name);
}

/* ---- the commands ------------------------------------------------------- */

/* mce-inject's keys that only go together. */
static int ctl_check_mce(const struct ctl_cmd *cmd, struct ctl_args *a, struct ctl_msg *m)
{
    if (a->user_mode && a->kind != MCE_AR)
        return ctl_bad(m, "%s: mode=user applies to kind=ar (an AO is not raised "
                       "where the guest runs)", cmd->name);
    if (a->has_wait && !a->user_mode)
        return ctl_bad(m, "%s: wait_ms applies to mode=user only", cmd->name);
    if (a->user_mode && !a->has_wait)
        a->wait_ms = CTL_USER_WAIT_DEFAULT_MS;
    return 0;
}

static int ctl_call_mce_inject(const struct ctl_handlers *h, const struct ctl_args *a,
                               uint64_t token, json_object *reply)
{
    struct ctl_mce_req req = {
        .gpa = a->gpa, .kind = a->kind, .vcpu = a->vcpu,
        .user_mode = a->user_mode, .wait_ms = a->wait_ms, .token = token,
    };

    if (!h->mce_inject)
        return -EOPNOTSUPP;
    return h->mce_inject(h->opaque, &req, reply);
}

static int ctl_call_hwpoison(const struct ctl_handlers *h, const struct ctl_args *a,
                             uint64_t token, json_object *reply)
{
    (void)token;
    if (!h->hwpoison)
        return -EOPNOTSUPP;
    return h->hwpoison(h->opaque, a->gpa, reply);
}

static int ctl_call_link(const struct ctl_handlers *h, const struct ctl_args *a,
                         uint64_t token, json_object *reply)
{
    (void)token;
    if (!h->link)
        return -EOPNOTSUPP;
    return h->link(h->opaque, a->net, a->up, reply);
}

static int ctl_call_vcpu_state(const struct ctl_handlers *h, const struct ctl_args *a,
                               uint64_t token, json_object *reply)
{
    (void)token;
    if (!h->vcpu_state)
        return -EOPNOTSUPP;
    return h->vcpu_state(h->opaque, (unsigned)a->vcpu, reply);
}

/* The calls of the commands without arguments: the handler and the reply. */
#define CTL_CALL_PLAIN(member)                                                  \
    static int ctl_call_##member(const struct ctl_handlers *h,                  \
                                 const struct ctl_args *a, uint64_t token,      \
                                 json_object *reply)                            \
    {                                                                           \
        (void)a;                                                                \
        (void)token;                                                            \
        if (!h->member)                                                         \
            return -EOPNOTSUPP;                                                 \
        return h->member(h->opaque, reply);                                     \
    }
CTL_CALL_PLAIN(status)
CTL_CALL_PLAIN(memstat)
CTL_CALL_PLAIN(poisoned)
CTL_CALL_PLAIN(pause)
CTL_CALL_PLAIN(resume)
CTL_CALL_PLAIN(quit)

static const struct ctl_key ctl_mce_keys[] = {
    { "gpa", CTL_ARG_GPA, true, 0, 0 },
    { "kind", CTL_ARG_KIND, true, 0, 0 },
    { "vcpu", CTL_ARG_INDEX, false, 0, INT_MAX },
    { "mode", CTL_ARG_MODE, false, 0, 0 },
    { "wait_ms", CTL_ARG_RANGE, false, 1, CTL_USER_WAIT_MAX_MS },
};
static const struct ctl_key ctl_gpa_keys[] = {
    { "gpa", CTL_ARG_GPA, true, 0, 0 },
};
/* vcpu is required: the state is one vCPU's, and no router picks it. */
static const struct ctl_key ctl_vcpu_keys[] = {
    { "vcpu", CTL_ARG_INDEX, true, 0, INT_MAX },
};
static const struct ctl_key ctl_link_keys[] = {
    { "dev", CTL_ARG_DEV, true, 0, 0 },
    { "state", CTL_ARG_STATE, true, 0, 0 },
};

#define CTL_KEYS(k) k, sizeof(k) / sizeof((k)[0])
#define CTL_NOKEYS  NULL, 0
static const struct ctl_cmd ctl_cmds[] = {
    { "status", CTL_NOKEYS, NULL, ctl_call_status },
    { "memstat", CTL_NOKEYS, NULL, ctl_call_memstat },
    { "mce-inject", CTL_KEYS(ctl_mce_keys), ctl_check_mce, ctl_call_mce_inject },
    { "hwpoison", CTL_KEYS(ctl_gpa_keys), NULL, ctl_call_hwpoison },
    { "poisoned", CTL_NOKEYS, NULL, ctl_call_poisoned },
    { "pause", CTL_NOKEYS, NULL, ctl_call_pause },
    { "resume", CTL_NOKEYS, NULL, ctl_call_resume },
    { "quit", CTL_NOKEYS, NULL, ctl_call_quit },
    { "link", CTL_KEYS(ctl_link_keys), NULL, ctl_call_link },
    { "vcpu-state", CTL_KEYS(ctl_vcpu_keys), NULL, ctl_call_vcpu_state },
};

/* ---- one request -------------------------------------------------------- */

/* Checks keys, types and values before any handler runs. */
static int ctl_validate(json_object *req, const struct ctl_cmd **cmdp,
                        struct ctl_args *a, struct ctl_msg *m)
{
    const struct ctl_cmd *cmd = NULL;
    const char *name;
    json_object *v;
    unsigned i;
    int ret;

    if (!json_object_is_type(req, json_type_object))
        return ctl_bad(m, "request must be a JSON object");
    if (!json_object_object_get_ex(req, "cmd", &v))
        return ctl_bad(m, "missing key \"cmd\"");
    name = ctl_clean_string(v);
    if (!name)
        return ctl_bad(m, "\"cmd\" must be a string");
    for (i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
        if (!strcmp(ctl_cmds[i].name, name))
            cmd = &ctl_cmds[i];
    if (!cmd)
        return ctl_bad(m, "unknown command \"%.64s\"", name);

    json_object_object_foreach(req, key, val) {
        bool known = !strcmp(key, "cmd");

        (void)val;
        for (i = 0; !known && i < cmd->nkeys; i++)
            known = !strcmp(key, cmd->keys[i].name);
        if (!known)
            return ctl_bad(m, "%s: unknown key \"%.64s\"", cmd->name, key);
    }

    a->vcpu = -1;
    for (i = 0; i < cmd->nkeys; i++) {
        const struct ctl_key *k = &cmd->keys[i];

        if (!json_object_object_get_ex(req, k->name, &v)) {
            if (k->required)
                return ctl_bad(m, "%s: missing key \"%s\"", cmd->name, k->name);
            continue;
        }
        ret = ctl_parse_arg(cmd, k, v, a, m);
        if (ret)
            return ret;
    }
    if (cmd->check) {
        ret = cmd->check(cmd, a, m);
        if (ret)
            return ret;
    }
    *cmdp = cmd;
    return 0;
}

json_object *ctl_reply_finish(const struct ctl_cmd *cmd, int ret, json_object *reply)
{
    struct ctl_msg m;
    json_object *e;

    if (ret >= 0)
        return reply;
    if (ret == -EOPNOTSUPP)
        snprintf(m.text, sizeof(m.text), "%s: not supported by this VM", cmd->name);
    else if (json_object_object_get_ex(reply, "error", &e) &&
             json_object_is_type(e, json_type_string))
        snprintf(m.text, sizeof(m.text), "%s", json_object_get_string(e));
    else
        snprintf(m.text, sizeof(m.text), "%s: %s", cmd->name, strerror(-ret));
    json_object_put(reply);
    return ctl_reply_error("%s", m.text);
}

/* *later is set when the handler answers with ctl_server_resolve: the
 * returned object is then the reply so far, and *cmdp its command. */
static json_object *ctl_run(const struct ctl_handlers *h, json_object *req, uint64_t token,
                            bool *later, const struct ctl_cmd **cmdp)
{
    const struct ctl_cmd *cmd = NULL;
    struct ctl_args a = { 0 };
    struct ctl_msg m;
    json_object *reply;
    int ret;

    if (ctl_validate(req, &cmd, &a, &m))
        return ctl_reply_error("%s", m.text);
    reply = json_object_new_object();
    if (!reply)
        return NULL;
    json_object_object_add(reply, "ok", json_object_new_boolean(true));
    ret = cmd->call(h, &a, token, reply);
    if (ret == CTL_LATER) {
        if (token) {
            *later = true;
            *cmdp = cmd;
            return reply;
        }
        json_object_put(reply);
        return ctl_reply_error("%s: cannot wait for the guest outside the control socket",
                               cmd->name);
    }
    return ctl_reply_finish(cmd, ret, reply);
}

json_object *ctl_handle_request(const struct ctl_handlers *h, const char *line, size_t len,
                                uint64_t token, bool *later, const struct ctl_cmd **cmdp)
{
    enum json_tokener_error jerr;
    json_object *req, *reply;
    json_tokener *tok;
    size_t end;

    if (memchr(line, '\0', len))
        return ctl_reply_error("request contains a NUL byte");
    if (len && line[len - 1] == '\r')    /* telnet and friends */
        len--;
    if (len > CTL_LINE_MAX)
        return ctl_reply_error("request longer than %d bytes", CTL_LINE_MAX);
    for (end = 0; end < len && isspace((unsigned char)line[end]); end++)
        ;
    if (end == len)
        return ctl_reply_error("empty request");

    tok = json_tokener_new_ex(CTL_MAX_DEPTH);
    if (!tok)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    req = json_tokener_parse_ex(tok, line, (int)len);
    jerr = json_tokener_get_error(tok);
    end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);

    if (jerr == json_tokener_continue)
        return ctl_reply_error("incomplete JSON");
    if (jerr != json_tokener_success) {
        json_object_put(req);
        return ctl_reply_error("invalid JSON at byte %zu: %s", end,
                               json_tokener_error_desc(jerr));
    }
    for (; end < len; end++) {
        if (!isspace((unsigned char)line[end])) {
            json_object_put(req);
            return ctl_reply_error("trailing data after the JSON object at byte %zu", end);
        }
    }
    reply = ctl_run(h, req, token, later, cmdp);
    json_object_put(req);
    return reply;
}

json_object *ctl_handle_line(const struct ctl_handlers *h, const char *line,
                             size_t len)
{
    const struct ctl_cmd *cmd;
    bool later = false;

    return ctl_handle_request(h, line, len, 0, &later, &cmd);
}
