/* fuzz_beta.c: libFuzzer target checking gh_beta_header against a naive reference of its rules. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gh.h"
#include "beta.h"
#include "jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts on a broken invariant; assert() would vanish under NDEBUG. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* The auto-added betas in the order gh_beta_header appends them. */
static const char *const names[] = {
    GH_BETA_COMPUTER_USE_2501, GH_BETA_COMPUTER_USE_2511,  GH_BETA_STRUCTURED_OUTPUTS,
    GH_BETA_ADVANCED_TOOL_USE, GH_BETA_MCP_CLIENT,         GH_BETA_PROMPT_CACHING_SCOPE,
    GH_BETA_COMPACT,           GH_BETA_CONTEXT_MANAGEMENT, GH_BETA_FILES_API,
    GH_BETA_FAST_MODE,
};
enum { CU1, CU2, SO, ATU, MCP, SCOPE, COMPACT, CM, FILES, FAST, NBETAS };

static const char *const strip_set[] = {GH_BETA_FAST_MODE, " a ", NULL};
static const char *const add_set[] = {"a", " b ", GH_BETA_FILES_API, "", NULL, "b"};

/* A token of a comma-separated list, trimmed of spaces and tabs. */
typedef struct {
    const char *p;
    size_t len;
} tok_t;

/* Splits s[0..n) at commas into trimmed, non-empty tokens; returns how many (at most max). */
static size_t split(const char *s, size_t n, tok_t *toks, size_t max)
{
    size_t count = 0, i = 0;
    while (i <= n) {
        size_t e = i;
        while (e < n && s[e] != ',')
            e++;
        size_t a = i, b = e;
        while (a < b && (s[a] == ' ' || s[a] == '\t'))
            a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
            b--;
        if (b > a) {
            CHECK(count < max);
            toks[count].p = s + a;
            toks[count].len = b - a;
            count++;
        }
        i = e + 1;
    }
    return count;
}

/* True when tok is one of toks[0..n). */
static int tok_in(tok_t tok, const tok_t *toks, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (toks[k].len == tok.len && memcmp(toks[k].p, tok.p, tok.len) == 0)
            return 1;
    }
    return 0;
}

/* A naive recursive reading of an already validated JSON text. */
typedef struct {
    const char *s;
    size_t n;
} doc_t;

/* Skips white space from i. */
static size_t ws(const doc_t *d, size_t i)
{
    while (i < d->n && (d->s[i] == ' ' || d->s[i] == '\t' || d->s[i] == '\n' || d->s[i] == '\r'))
        i++;
    return i;
}

/* Returns the end of the string starting at i, escapes stepped over one by one. */
static size_t str_end(const doc_t *d, size_t i)
{
    i++;
    while (i < d->n && d->s[i] != '"')
        i += d->s[i] == '\\' ? 2 : 1;
    return i + 1;
}

/* Returns the end of the value starting at i, recursively. */
static size_t val_end(const doc_t *d, size_t i)
{
    if (d->s[i] == '"')
        return str_end(d, i);
    if (d->s[i] == '{' || d->s[i] == '[') {
        char close = d->s[i] == '{' ? '}' : ']';
        i = ws(d, i + 1);
        while (d->s[i] != close) {
            if (close == '}') {
                i = ws(d, str_end(d, i));
                i = ws(d, i + 1); /* the colon */
            }
            i = ws(d, val_end(d, i));
            if (d->s[i] == ',')
                i = ws(d, i + 1);
        }
        return i + 1;
    }
    while (i < d->n && strchr(",]} \t\r\n", d->s[i]) == NULL)
        i++;
    return i;
}

/* True when the string value at [a, b) decodes to lit (exactly, or as a prefix). */
static int str_eq(const doc_t *d, size_t a, size_t b, const char *lit, int prefix)
{
    gh_jspan_t sp = {GH_JSON_STRING, a, b - a, a, b - a};
    size_t l = strlen(lit);
    char *buf;
    long m;
    int eq;

    if (d->s[a] != '"')
        return 0;
    buf = malloc(b - a); /* the decoded text is never longer than the raw one */
    CHECK(buf != NULL);
    m = gh_jscan_string(d->s, &sp, buf, b - a);
    CHECK(m >= 0);
    eq = prefix ? (size_t)m >= l && memcmp(buf, lit, l) == 0
                : (size_t)m == l && memcmp(buf, lit, l) == 0;
    free(buf);
    return eq;
}

/* Calls fn for each member of the object at i: key [k0,k1), value [v0,v1). */
typedef void (*member_fn)(const doc_t *d, size_t k0, size_t k1, size_t v0, size_t v1, void *ctx);

/* Iterates the members of the object at i. */
static void members(const doc_t *d, size_t i, member_fn fn, void *ctx)
{
    i = ws(d, i + 1);
    while (d->s[i] != '}') {
        size_t k0 = i, k1 = str_end(d, i);
        size_t v0 = ws(d, ws(d, k1) + 1), v1 = val_end(d, v0);
        fn(d, k0, k1, v0, v1, ctx);
        i = ws(d, v1);
        if (d->s[i] == ',')
            i = ws(d, i + 1);
    }
}

/* Calls fn for each element of the array at i. */
static void elements(const doc_t *d, size_t i, void (*fn)(const doc_t *, size_t, size_t, void *),
                     void *ctx)
{
    i = ws(d, i + 1);
    while (d->s[i] != ']') {
        size_t e = val_end(d, i);
        fn(d, i, e, ctx);
        i = ws(d, e);
        if (d->s[i] == ',')
            i = ws(d, i + 1);
    }
}

/* The state of the reference detection. */
typedef struct {
    unsigned need;
    int blocks_files; /* files count inside the blocks being walked (messages, not system) */
    int parent;       /* 0 other, 1 cache_control, 2 source */
} ref_t;

/* Sets SCOPE when a cache_control object member has a non-null scope. */
static void ref_scope_member(const doc_t *d, size_t k0, size_t k1, size_t v0, size_t v1, void *ctx)
{
    GH_UNUSED(v1);
    if (str_eq(d, k0, k1, "scope", 0) && d->s[v0] != 'n')
        ((ref_t *)ctx)->need |= 1u << SCOPE;
}

/* Looks at one member of a tool definition. */
static void ref_tool_member(const doc_t *d, size_t k0, size_t k1, size_t v0, size_t v1, void *ctx)
{
    ref_t *r = ctx;
    if (str_eq(d, k0, k1, "type", 0)) {
        if (str_eq(d, v0, v1, "computer_20250124", 0))
            r->need |= 1u << CU1;
        if (str_eq(d, v0, v1, "computer_20251124", 0))
            r->need |= 1u << CU2;
    } else if (str_eq(d, k0, k1, "strict", 0)) {
        if (d->s[v0] == 't')
            r->need |= 1u << SO;
    } else if (str_eq(d, k0, k1, "defer_loading", 0) || str_eq(d, k0, k1, "input_examples", 0) ||
               str_eq(d, k0, k1, "allowed_callers", 0)) {
        if (d->s[v0] != 'n')
            r->need |= 1u << ATU;
    } else if (str_eq(d, k0, k1, "cache_control", 0) && d->s[v0] == '{') {
        members(d, v0, ref_scope_member, r);
    }
}

/* Looks at one tool. */
static void ref_tool(const doc_t *d, size_t a, size_t b, void *ctx)
{
    GH_UNUSED(b);
    if (d->s[a] == '{')
        members(d, a, ref_tool_member, ctx);
}

static void ref_block_value(const doc_t *d, size_t a, size_t b, void *ctx);

/* Looks at one member of an object inside system or messages. */
static void ref_block_member(const doc_t *d, size_t k0, size_t k1, size_t v0, size_t v1, void *ctx)
{
    ref_t *r = ctx;
    int parent = r->parent, child = 0;
    if (str_eq(d, k0, k1, "input", 0))
        return;
    if (str_eq(d, k0, k1, "cache_control", 0))
        child = 1;
    else if (str_eq(d, k0, k1, "source", 0))
        child = 2;
    else if (str_eq(d, k0, k1, "scope", 0) && parent == 1 && d->s[v0] != 'n')
        r->need |= 1u << SCOPE;
    else if (str_eq(d, k0, k1, "file_id", 0) && r->blocks_files && d->s[v0] != 'n')
        r->need |= 1u << FILES;
    else if (str_eq(d, k0, k1, "type", 0) && parent == 2 && r->blocks_files &&
             str_eq(d, v0, v1, "file", 0))
        r->need |= 1u << FILES;
    r->parent = child;
    ref_block_value(d, v0, v1, r);
    r->parent = parent;
}

/* Walks any value inside system or messages. */
static void ref_block_value(const doc_t *d, size_t a, size_t b, void *ctx)
{
    ref_t *r = ctx;
    GH_UNUSED(b);
    if (d->s[a] == '{') {
        members(d, a, ref_block_member, r);
    } else if (d->s[a] == '[') {
        int parent = r->parent;
        r->parent = 0;
        elements(d, a, ref_block_value, r);
        r->parent = parent;
    }
}

/* Looks at one context_management edit. */
static void ref_edit(const doc_t *d, size_t a, size_t b, void *ctx)
{
    static const char *const k[] = {"type"};
    gh_jspan_t t;
    ref_t *r = ctx;
    if (d->s[a] != '{' || gh_jscan_object(d->s + a, b - a, k, 1, &t, NULL) != GH_OK ||
        t.type != GH_JSON_STRING)
        return;
    doc_t e = {d->s + a, b - a};
    if (str_eq(&e, t.off, t.off + t.len, "compact", 1))
        r->need |= 1u << COMPACT;
    else if (str_eq(&e, t.off, t.off + t.len, "clear_", 1))
        r->need |= 1u << CM;
}

/* The betas the valid JSON object body needs, by the rules of beta.h read naively. */
static unsigned reference(const char *body, size_t len)
{
    static const char *const keys[] = {
        "tools", "output_format", "mcp_servers", "context_management",
        "speed", "messages",      "system",      "cache_control"};
    gh_jspan_t sp[8];
    doc_t d = {body, len};
    ref_t r = {0, 0, 0};

    CHECK(gh_jscan_object(body, len, keys, 8, sp, NULL) == GH_OK);
    if (sp[0].type == GH_JSON_ARRAY)
        elements(&d, sp[0].off, ref_tool, &r);
    if (sp[1].type != GH_JSON_ABSENT && sp[1].type != GH_JSON_NULL)
        r.need |= 1u << SO;
    if (sp[2].type != GH_JSON_ABSENT && sp[2].type != GH_JSON_NULL)
        r.need |= 1u << MCP;
    if (sp[3].type == GH_JSON_OBJECT) {
        static const char *const k[] = {"edits"};
        gh_jspan_t ed;
        doc_t cm = {body + sp[3].off, sp[3].len};
        CHECK(gh_jscan_object(cm.s, cm.n, k, 1, &ed, NULL) == GH_OK);
        if (ed.type == GH_JSON_ARRAY)
            elements(&cm, ed.off, ref_edit, &r);
    }
    if (sp[4].type == GH_JSON_STRING && str_eq(&d, sp[4].off, sp[4].off + sp[4].len, "fast", 0))
        r.need |= 1u << FAST;
    if (sp[5].type == GH_JSON_ARRAY) {
        r.blocks_files = 1;
        ref_block_value(&d, sp[5].off, sp[5].off + sp[5].len, &r);
        r.blocks_files = 0;
    }
    if (sp[6].type == GH_JSON_ARRAY)
        ref_block_value(&d, sp[6].off, sp[6].off + sp[6].len, &r);
    if (sp[7].type == GH_JSON_OBJECT)
        members(&d, sp[7].off, ref_scope_member, &r);
    return r.need;
}

/* Byte 0 picks the options (1 files endpoint, 2 strip, 4 add, 8 NULL client); the client header
 * runs to the first newline (cut at a NUL) and the body is the rest. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum { MAXTOK = 4096 };
    static tok_t ctoks[MAXTOK], otoks[MAXTOK], want[64], strip_toks[8];
    unsigned opt = size > 0 ? data[0] : 0;
    const uint8_t *rest = size > 0 ? data + 1 : data;
    size_t rlen = size > 0 ? size - 1 : 0;
    const uint8_t *nl = memchr(rest, '\n', rlen);
    size_t hlen = nl != NULL ? (size_t)(nl - rest) : rlen;
    size_t blen = nl != NULL ? rlen - hlen - 1 : 0;
    char *client = malloc(hlen + 1), *body = malloc(blen ? blen : 1), *out;
    const char *const *strip = (opt & 2) ? strip_set : NULL;
    const char *const *add = (opt & 4) ? add_set : NULL;
    size_t nstrip = (opt & 2) ? GH_ARRAY_LEN(strip_set) : 0;
    size_t nadd = (opt & 4) ? GH_ARRAY_LEN(add_set) : 0;
    unsigned flags = (opt & 1) ? GH_BETA_FILES_ENDPOINT : 0;
    size_t outsz, olen, nc, no, nw = 0, ns = 0;
    int changed = -1, valid, plain;

    CHECK(client != NULL && body != NULL);
    memcpy(client, rest, hlen);
    client[hlen] = '\0';
    if (blen)
        memcpy(body, nl + 1, blen);
    const char *cl = (opt & 8) ? NULL : client;
    const char *cv = cl != NULL ? cl : "";
    size_t clen = strlen(cv);

    outsz = clen + 512;
    out = malloc(outsz);
    CHECK(out != NULL);
    CHECK(gh_beta_header(cl, blen ? body : NULL, blen, flags, add, nadd, strip, nstrip, out, outsz,
                         &changed) == GH_OK);
    olen = strlen(out);
    CHECK(olen < outsz);
    CHECK(changed == (strcmp(out, cv) != 0));

    /* Exactly enough room works and gives the same value; one byte less fails. */
    {
        char *again = malloc(olen + 1);
        int ch2 = -1;
        CHECK(again != NULL);
        CHECK(gh_beta_header(cl, blen ? body : NULL, blen, flags, add, nadd, strip, nstrip, again,
                             olen + 1, &ch2) == GH_OK);
        CHECK(strcmp(again, out) == 0 && ch2 == changed);
        if (olen > 0)
            CHECK(gh_beta_header(cl, blen ? body : NULL, blen, flags, add, nadd, strip, nstrip,
                                 again, olen, &ch2) == GH_ERR);
        free(again);
    }

    /* The pre-scanned entry point agrees whenever the body is a valid object. */
    {
        gh_jspan_t spans[GH_BETA_NKEYS];
        if (blen &&
            gh_jscan_object(body, blen, gh_beta_keys, GH_BETA_NKEYS, spans, NULL) == GH_OK) {
            char *again = malloc(outsz);
            int ch2 = -1;
            CHECK(again != NULL);
            CHECK(gh_beta_header_scanned(cl, body, spans, flags, add, nadd, strip, nstrip, again,
                                         outsz, &ch2) == GH_OK);
            CHECK(strcmp(again, out) == 0 && ch2 == changed);
            free(again);
        }
    }

    valid = blen == 0 || (flags & GH_BETA_FILES_ENDPOINT) ||
            gh_jscan_object(body, blen, NULL, 0, NULL, NULL) == GH_OK;
    if (!valid) {
        CHECK(strcmp(out, cv) == 0 && changed == 0);
        goto done;
    }

    /* The client's tokens come first and in order, minus the stripped ones; verbatim when none
     * is stripped. */
    nc = split(cv, clen, ctoks, MAXTOK);
    no = split(out, olen, otoks, MAXTOK);
    if (strip != NULL) {
        for (size_t k = 0; k < nstrip; k++) {
            if (strip[k] != NULL)
                ns += split(strip[k], strlen(strip[k]), strip_toks + ns, 8 - ns);
        }
    }
    {
        size_t kept = 0;
        int any_stripped = 0;
        for (size_t k = 0; k < nc; k++) {
            if (tok_in(ctoks[k], strip_toks, ns)) {
                any_stripped = 1;
                continue;
            }
            CHECK(kept < no && otoks[kept].len == ctoks[k].len &&
                  memcmp(otoks[kept].p, ctoks[k].p, ctoks[k].len) == 0);
            kept++;
        }
        if (!any_stripped) {
            size_t pre = clen;
            if (no > kept)
                while (pre > 0 && strchr(" \t,", cv[pre - 1]) != NULL)
                    pre--;
            CHECK(olen >= pre && memcmp(out, cv, pre) == 0);
        }

        /* Then exactly the needed and added betas the client lacks, each once, none stripped. */
        unsigned need = (flags & GH_BETA_FILES_ENDPOINT) ? 1u << FILES : 0;
        /* Needles are matched as written: the reference only applies to bodies without \u. */
        plain = 1;
        for (size_t k = 0; k + 1 < blen; k++)
            plain = plain && !(body[k] == '\\' && body[k + 1] == 'u');
        if (blen && !(flags & GH_BETA_FILES_ENDPOINT))
            need |= reference(body, blen);
        for (size_t b = 0; b < NBETAS; b++) {
            if (need & (1u << b)) {
                want[nw].p = names[b];
                want[nw].len = strlen(names[b]);
                nw++;
            }
        }
        for (size_t k = 0; k < nadd; k++) {
            if (add[k] != NULL)
                nw += split(add[k], strlen(add[k]), want + nw, 64 - nw);
        }
        size_t o = kept;
        for (size_t k = 0; k < nw; k++) {
            if (tok_in(want[k], ctoks, nc) || tok_in(want[k], strip_toks, ns) ||
                tok_in(want[k], otoks + kept, o - kept))
                continue;
            if (plain) {
                CHECK(o < no && otoks[o].len == want[k].len &&
                      memcmp(otoks[o].p, want[k].p, want[k].len) == 0);
                o++;
            } else if (o < no && otoks[o].len == want[k].len &&
                       memcmp(otoks[o].p, want[k].p, want[k].len) == 0) {
                o++;
            }
        }
        CHECK(o == no);
    }
done:
    free(out);
    free(client);
    free(body);
    return 0;
}
