/* beta.c: adds the anthropic-beta values a request body needs and applies provider policy. */
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "gh.h"
#include "beta.h"
#include "jscan.h"

/* The auto-added betas, in the order they are appended. */
enum {
    B_COMPUTER_USE_2501,
    B_COMPUTER_USE_2511,
    B_STRUCTURED_OUTPUTS,
    B_ADVANCED_TOOL_USE,
    B_MCP_CLIENT,
    B_PROMPT_CACHING_SCOPE,
    B_COMPACT,
    B_CONTEXT_MANAGEMENT,
    B_FILES_API,
    B_FAST_MODE,
    B_COUNT
};

#define BIT(b) (1u << (b))

static const char *const beta_names[B_COUNT] = {
    GH_BETA_COMPUTER_USE_2501, GH_BETA_COMPUTER_USE_2511,  GH_BETA_STRUCTURED_OUTPUTS,
    GH_BETA_ADVANCED_TOOL_USE, GH_BETA_MCP_CLIENT,         GH_BETA_PROMPT_CACHING_SCOPE,
    GH_BETA_COMPACT,           GH_BETA_CONTEXT_MANAGEMENT, GH_BETA_FILES_API,
    GH_BETA_FAST_MODE,
};

/* The top-level members of a Messages request that can need a beta, in gh_beta_keys order. */
enum {
    T_TOOLS,
    T_OUTPUT_FORMAT,
    T_MCP_SERVERS,
    T_CONTEXT_MANAGEMENT,
    T_SPEED,
    T_MESSAGES,
    T_SYSTEM,
    T_CACHE_CONTROL,
    T_COUNT
};

const char *const gh_beta_keys[GH_BETA_NKEYS] = {
    "tools", "output_format", "mcp_servers", "context_management",
    "speed", "messages",      "system",      "cache_control",
};

_Static_assert(T_COUNT == GH_BETA_NKEYS, "gh_beta_keys and the T_ indices disagree");

/* The kind of object met while walking content blocks, for keys whose meaning depends on it. */
enum { P_OTHER, P_CACHE_CONTROL, P_SOURCE };

/* True for JSON white space. */
static inline int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Returns the index of the first non-white-space byte in s[i..n), or n. */
static inline size_t skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && is_ws(s[i]))
        i++;
    return i;
}

/* With s[i] an opening quote, returns the index just past the closing quote (n when there is
 * none). memchr does the scanning, so long prompt text costs little; a quote preceded by an odd
 * run of backslashes is escaped and skipped. */
static size_t skip_string(const char *s, size_t i, size_t n)
{
    size_t j = i + 1;
    while (j < n) {
        const char *q = memchr(s + j, '"', n - j);
        size_t k, bs = 0;
        if (q == NULL)
            return n;
        k = (size_t)(q - s);
        while (k - bs > i + 1 && s[k - bs - 1] == '\\')
            bs++;
        if (bs % 2 == 0)
            return k + 1;
        j = k + 1;
    }
    return n;
}

/* With s[i] the first byte of a value, returns the index just past it (n when malformed). The
 * input has already been validated by gh_jscan_object; bounds are still checked everywhere. */
static size_t skip_value(const char *s, size_t i, size_t n)
{
    size_t depth = 0;
    if (i >= n)
        return n;
    if (s[i] == '"')
        return skip_string(s, i, n);
    if (s[i] != '{' && s[i] != '[') {
        while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && !is_ws(s[i]))
            i++;
        return i;
    }
    while (i < n) {
        char c = s[i];
        if (c == '"') {
            i = skip_string(s, i, n);
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0)
                return i + 1;
        }
        i++;
    }
    return n;
}

/* Steps through the items of an object or array. With first set, *i is at the opening bracket;
 * otherwise just past the previous item. Returns 1 with *i at the next item's first byte, or 0
 * with *i just past the closing bracket (n when malformed). */
static int next_item(const char *s, size_t n, size_t *i, int first)
{
    size_t j = skip_ws(s, first ? *i + 1 : *i, n);
    if (j >= n) {
        *i = n;
        return 0;
    }
    if (s[j] == '}' || s[j] == ']') {
        *i = j + 1;
        return 0;
    }
    if (!first) {
        if (s[j] != ',') {
            *i = n;
            return 0;
        }
        j = skip_ws(s, j + 1, n);
        if (j >= n) {
            *i = n;
            return 0;
        }
    }
    *i = j;
    return 1;
}

/* With *i at a member's key, sets [*k0, *k1) to the key with its quotes and moves *i to the
 * value's first byte. Returns GH_ERR when the member is malformed. */
static int read_key(const char *s, size_t n, size_t *i, size_t *k0, size_t *k1)
{
    size_t e, j;
    if (*i >= n || s[*i] != '"')
        return GH_ERR;
    e = skip_string(s, *i, n);
    j = skip_ws(s, e, n);
    if (j >= n || s[j] != ':')
        return GH_ERR;
    j = skip_ws(s, j + 1, n);
    if (j >= n)
        return GH_ERR;
    *k0 = *i;
    *k1 = e;
    *i = j;
    return GH_OK;
}

/* Returns the value of the hex digit c, or -1. */
static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* True when the JSON string s[off..end) (quotes included) decodes to exactly the lit_len bytes of
 * the ASCII literal lit; or, with prefix set, starts with them. Escapes are decoded on the fly and
 * only as far as the comparison goes, so long values cost nothing and need no buffer; an escape
 * for a non-ASCII character never matches. */
static int str_match(const char *s, size_t off, size_t end, const char *lit, size_t lit_len,
                     int prefix)
{
    size_t i = off + 1, k = 0;

    if (end - off < 2 || s[off] != '"' || s[end - 1] != '"')
        return 0;
    end--; /* the closing quote */
    while (i < end) {
        unsigned c = (unsigned char)s[i++];
        if (c == '\\') {
            if (i >= end)
                return 0;
            c = (unsigned char)s[i++];
            switch (c) {
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'n':
                c = '\n';
                break;
            case 'r':
                c = '\r';
                break;
            case 't':
                c = '\t';
                break;
            case 'u':
                if (end - i < 4)
                    return 0;
                c = 0;
                for (int d = 0; d < 4; d++) {
                    int h = hexval(s[i++]);
                    if (h < 0)
                        return 0;
                    c = c * 16 + (unsigned)h;
                }
                break;
            default: /* '"', '\\' and '/' stand for themselves */
                break;
            }
        }
        if (k == lit_len)
            return prefix;
        if (c != (unsigned char)lit[k])
            return 0;
        k++;
    }
    return k == lit_len;
}

/* True when the string s[off..end) is exactly the literal lit. */
#define STR_IS(s, off, end, lit) str_match((s), (off), (end), (lit), sizeof(lit) - 1, 0)

/* True when the string s[off..end) starts with the literal lit. */
#define STR_HAS_PREFIX(s, off, end, lit) str_match((s), (off), (end), (lit), sizeof(lit) - 1, 1)

/* True when the value at s[v] is JSON null (a missing key and null mean the same to the API). */
static inline int is_null(const char *s, size_t v, size_t n)
{
    return n - v >= 4 && memcmp(s + v, "null", 4) == 0;
}

/* A byte string whose presence in a member's raw text makes a structural look worthwhile, and the
 * betas it can reveal. Every needle starts with a quote, so text inside a JSON string, where quotes
 * are escaped, only matches when a whole string equals the needle. */
typedef struct {
    const char *text;
    size_t len;
    unsigned bits;
} needle_t;

#define NEEDLE(lit, bits)                                                                          \
    {                                                                                              \
        (lit), sizeof(lit) - 1, (bits)                                                             \
    }
#define MAX_NEEDLES 8

static const needle_t tool_needles[] = {
    NEEDLE("\"computer_2025", BIT(B_COMPUTER_USE_2501) | BIT(B_COMPUTER_USE_2511)),
    NEEDLE("\"strict\"", BIT(B_STRUCTURED_OUTPUTS)),
    NEEDLE("\"defer_loading\"", BIT(B_ADVANCED_TOOL_USE)),
    NEEDLE("\"input_examples\"", BIT(B_ADVANCED_TOOL_USE)),
    NEEDLE("\"allowed_callers\"", BIT(B_ADVANCED_TOOL_USE)),
    NEEDLE("\"scope\"", BIT(B_PROMPT_CACHING_SCOPE)),
};

static const needle_t block_needles[] = {
    NEEDLE("\"scope\"", BIT(B_PROMPT_CACHING_SCOPE)),
    NEEDLE("\"file_id\"", BIT(B_FILES_API)),
    NEEDLE("\"file\"", BIT(B_FILES_API)),
};

/* True when one of the needles that can reveal a bit of want occurs in s[i..end). This is the
 * cheap pass over large members (prompt text, tool results): with SSE2 it tests 16 positions at
 * a time for the needle's first, second and last bytes and compares only those candidates. */
static int mentions(const char *s, size_t i, size_t end, const needle_t *all, size_t nall,
                    unsigned want)
{
    const needle_t *nd[MAX_NEEDLES];
    size_t count = 0, maxlen = 0;

    for (size_t k = 0; k < nall && count < MAX_NEEDLES; k++) {
        if (all[k].bits & want) {
            nd[count++] = &all[k];
            if (all[k].len > maxlen)
                maxlen = all[k].len;
        }
    }
    if (count == 0)
        return 0;
#if defined(__SSE2__)
    {
        const __m128i quote = _mm_set1_epi8('"');
        __m128i second[MAX_NEEDLES], last[MAX_NEEDLES];
        for (size_t k = 0; k < count; k++) {
            second[k] = _mm_set1_epi8(nd[k]->text[1]);
            last[k] = _mm_set1_epi8(nd[k]->text[nd[k]->len - 1]);
        }
        while (end - i >= maxlen + 16) {
            const char *p = s + i;
            unsigned q = (unsigned)_mm_movemask_epi8(
                _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)p), quote));
            if (q != 0) {
                __m128i v1 = _mm_loadu_si128((const __m128i *)(const void *)(p + 1));
                for (size_t k = 0; k < count; k++) {
                    __m128i vl =
                        _mm_loadu_si128((const __m128i *)(const void *)(p + nd[k]->len - 1));
                    unsigned m =
                        q & (unsigned)_mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(v1, second[k]),
                                                                      _mm_cmpeq_epi8(vl, last[k])));
                    while (m != 0) {
                        unsigned b = (unsigned)__builtin_ctz(m);
                        if (memcmp(p + b, nd[k]->text, nd[k]->len) == 0)
                            return 1;
                        m &= m - 1;
                    }
                }
            }
            i += 16;
        }
    }
#endif
    while (i < end) {
        const char *q = memchr(s + i, '"', end - i);
        if (q == NULL)
            return 0;
        i = (size_t)(q - s);
        for (size_t k = 0; k < count; k++) {
            if (end - i >= nd[k]->len && memcmp(s + i, nd[k]->text, nd[k]->len) == 0)
                return 1;
        }
        i++;
    }
    return 0;
}

/* True when the object at s[i] has a non-null member named "scope". */
static int has_scope(const char *s, size_t n, size_t i)
{
    size_t k0, k1;
    int first = 1;
    while (next_item(s, n, &i, first)) {
        size_t v;
        first = 0;
        if (read_key(s, n, &i, &k0, &k1) != GH_OK)
            return 0;
        v = i;
        i = skip_value(s, v, n);
        if (STR_IS(s, k0, k1, "scope") && !is_null(s, v, n))
            return 1;
    }
    return 0;
}

/* Looks at the members of one tool definition, the object at s[i], and returns the index just past
 * it. Only the tool's own members count: parameter names inside input_schema never match. */
static size_t scan_tool(const char *s, size_t n, size_t i, unsigned *need)
{
    size_t k0, k1;
    int first = 1;
    while (next_item(s, n, &i, first)) {
        size_t v;
        first = 0;
        if (read_key(s, n, &i, &k0, &k1) != GH_OK)
            return n;
        v = i;
        i = skip_value(s, v, n);
        if (STR_IS(s, k0, k1, "type")) {
            if (STR_IS(s, v, i, "computer_20250124"))
                *need |= BIT(B_COMPUTER_USE_2501);
            else if (STR_IS(s, v, i, "computer_20251124"))
                *need |= BIT(B_COMPUTER_USE_2511);
        } else if (STR_IS(s, k0, k1, "strict")) {
            if (i - v == 4 && memcmp(s + v, "true", 4) == 0)
                *need |= BIT(B_STRUCTURED_OUTPUTS);
        } else if (STR_IS(s, k0, k1, "defer_loading") || STR_IS(s, k0, k1, "input_examples") ||
                   STR_IS(s, k0, k1, "allowed_callers")) {
            if (!is_null(s, v, n))
                *need |= BIT(B_ADVANCED_TOOL_USE);
        } else if (STR_IS(s, k0, k1, "cache_control")) {
            if (s[v] == '{' && has_scope(s, i, v))
                *need |= BIT(B_PROMPT_CACHING_SCOPE);
        }
    }
    return i;
}

/* Scans the tools array s[off..end) tool by tool. */
static void scan_tools(const char *s, size_t off, size_t end, unsigned *need)
{
    size_t i = off;
    int first = 1;
    while (next_item(s, end, &i, first)) {
        first = 0;
        if (s[i] == '{')
            i = scan_tool(s, end, i, need);
        else
            i = skip_value(s, i, end);
    }
}

/* Walks the value at s[i], a part of messages or system, whose parent object is of kind parent,
 * and returns the index just past it. Sets the prompt-caching-scope bit for a cache_control object
 * with a scope and, when want has it, the files bit for a file_id or a {"type":"file"} source.
 * tool_use inputs are arbitrary JSON and are skipped. Returns n once every wanted bit is set, which
 * ends all enclosing loops. */
static size_t walk(const char *s, size_t n, size_t i, int parent, unsigned depth, unsigned want,
                   unsigned *need)
{
    size_t k0, k1;
    int first = 1;

    if (i >= n)
        return n;
    if ((s[i] != '{' && s[i] != '[') || depth > GH_JSCAN_MAX_DEPTH)
        return skip_value(s, i, n);
    if (s[i] == '[') {
        while (next_item(s, n, &i, first)) {
            first = 0;
            i = walk(s, n, i, P_OTHER, depth + 1, want, need);
        }
        return i;
    }
    while (next_item(s, n, &i, first)) {
        size_t v;
        int child = P_OTHER;
        first = 0;
        if (read_key(s, n, &i, &k0, &k1) != GH_OK)
            return n;
        v = i;
        if (STR_IS(s, k0, k1, "input")) {
            i = skip_value(s, v, n);
            continue;
        } else if (STR_IS(s, k0, k1, "cache_control")) {
            child = P_CACHE_CONTROL;
        } else if (STR_IS(s, k0, k1, "source")) {
            child = P_SOURCE;
        } else if (STR_IS(s, k0, k1, "scope")) {
            if (parent == P_CACHE_CONTROL && !is_null(s, v, n))
                *need |= BIT(B_PROMPT_CACHING_SCOPE);
        } else if (STR_IS(s, k0, k1, "file_id")) {
            if ((want & BIT(B_FILES_API)) && !is_null(s, v, n))
                *need |= BIT(B_FILES_API);
        } else if (STR_IS(s, k0, k1, "type") && parent == P_SOURCE && s[v] == '"') {
            i = skip_string(s, v, n);
            if ((want & BIT(B_FILES_API)) && STR_IS(s, v, i, "file"))
                *need |= BIT(B_FILES_API);
            continue;
        }
        if ((*need & want) == want)
            return n;
        i = walk(s, n, v, child, depth + 1, want, need);
    }
    return i;
}

/* Sets the compaction / context-management bits for the edit types in context_management, the
 * object s[off..off+len) (a small member, scanned with the validating scanner). */
static void scan_context_management(const char *s, size_t off, size_t len, unsigned *need)
{
    static const char *const cm_keys[] = {"edits"};
    static const char *const type_keys[] = {"type"};
    const char *cm = s + off;
    gh_jspan_t edits, type;
    size_t i, n;
    int first = 1;

    if (gh_jscan_object(cm, len, cm_keys, 1, &edits, NULL) != GH_OK || edits.type != GH_JSON_ARRAY)
        return;
    i = edits.off;
    n = edits.off + edits.len;
    while (next_item(cm, n, &i, first)) {
        size_t v = i;
        first = 0;
        i = skip_value(cm, v, n);
        if (cm[v] != '{' || gh_jscan_object(cm + v, i - v, type_keys, 1, &type, NULL) != GH_OK ||
            type.type != GH_JSON_STRING)
            continue;
        if (STR_HAS_PREFIX(cm + v, type.off, type.off + type.len, "compact"))
            *need |= BIT(B_COMPACT);
        else if (STR_HAS_PREFIX(cm + v, type.off, type.off + type.len, "clear_"))
            *need |= BIT(B_CONTEXT_MANAGEMENT);
    }
}

/* Sets in *need the betas of want the request body uses, given the spans of its gh_beta_keys
 * members. The small members are looked at directly; tools, system and messages only get a
 * structural walk when their raw text mentions a wanted key. */
static void detect(const char *body, const gh_jspan_t *sp, unsigned want, unsigned *need)
{
    const gh_jspan_t *t;
    unsigned w;

    if (sp[T_OUTPUT_FORMAT].type != GH_JSON_ABSENT && sp[T_OUTPUT_FORMAT].type != GH_JSON_NULL)
        *need |= BIT(B_STRUCTURED_OUTPUTS);
    if (sp[T_MCP_SERVERS].type != GH_JSON_ABSENT && sp[T_MCP_SERVERS].type != GH_JSON_NULL)
        *need |= BIT(B_MCP_CLIENT);
    t = &sp[T_SPEED];
    if (t->type == GH_JSON_STRING && STR_IS(body, t->off, t->off + t->len, "fast"))
        *need |= BIT(B_FAST_MODE);
    t = &sp[T_CONTEXT_MANAGEMENT];
    if (t->type == GH_JSON_OBJECT && (want & (BIT(B_COMPACT) | BIT(B_CONTEXT_MANAGEMENT))))
        scan_context_management(body, t->off, t->len, need);
    t = &sp[T_CACHE_CONTROL];
    if (t->type == GH_JSON_OBJECT && has_scope(body, t->off + t->len, t->off))
        *need |= BIT(B_PROMPT_CACHING_SCOPE);

    w = want & ~*need;
    t = &sp[T_TOOLS];
    if (t->type == GH_JSON_ARRAY &&
        mentions(body, t->off, t->off + t->len, tool_needles, GH_ARRAY_LEN(tool_needles), w))
        scan_tools(body, t->off, t->off + t->len, need);

    w = want & ~*need & BIT(B_PROMPT_CACHING_SCOPE);
    t = &sp[T_SYSTEM];
    if (t->type == GH_JSON_ARRAY &&
        mentions(body, t->off, t->off + t->len, block_needles, GH_ARRAY_LEN(block_needles), w))
        walk(body, t->off + t->len, t->off, P_OTHER, 1, w, need);

    w = want & ~*need & (BIT(B_PROMPT_CACHING_SCOPE) | BIT(B_FILES_API));
    t = &sp[T_MESSAGES];
    if (t->type == GH_JSON_ARRAY &&
        mentions(body, t->off, t->off + t->len, block_needles, GH_ARRAY_LEN(block_needles), w))
        walk(body, t->off + t->len, t->off, P_OTHER, 1, w, need);
}

/* Trims spaces and tabs from both ends of the token *p[0..*len). */
static void trim(const char **p, size_t *len)
{
    while (*len > 0 && (**p == ' ' || **p == '\t')) {
        (*p)++;
        (*len)--;
    }
    while (*len > 0 && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t'))
        (*len)--;
}

/* True when the comma-separated list[0..list_len) holds the token tok[0..tok_len) (trimmed). */
static int list_has(const char *list, size_t list_len, const char *tok, size_t tok_len)
{
    size_t i = 0;
    while (i <= list_len) {
        const char *c = memchr(list + i, ',', list_len - i);
        size_t end = c != NULL ? (size_t)(c - list) : list_len;
        const char *p = list + i;
        size_t len = end - i;
        trim(&p, &len);
        if (len == tok_len && len > 0 && memcmp(p, tok, len) == 0)
            return 1;
        i = end + 1;
    }
    return 0;
}

/* True when tok[0..tok_len) equals one of the nset (trimmed) policy entries. */
static int set_has(const char *const *set, size_t nset, const char *tok, size_t tok_len)
{
    for (size_t k = 0; k < nset; k++) {
        if (set[k] != NULL && list_has(set[k], strlen(set[k]), tok, tok_len))
            return 1;
    }
    return 0;
}

/* An output buffer that remembers when something did not fit. */
typedef struct {
    char *out;
    size_t cap; /* bytes usable for text, the NUL excluded */
    size_t len;
    int overflow;
} wbuf_t;

/* Appends p[0..len) to w. */
static void wput(wbuf_t *w, const char *p, size_t len)
{
    if (w->overflow || w->cap - w->len < len) {
        w->overflow = 1;
        return;
    }
    memcpy(w->out + w->len, p, len);
    w->len += len;
}

/* Appends the beta tok[0..tok_len) unless it is empty, in the client's list, stripped or already
 * appended (after w->out[added_from]); counts it in *added. */
static void add_beta(wbuf_t *w, size_t added_from, int *added, const char *client, size_t clen,
                     const char *tok, size_t tok_len, const char *const *strip, size_t nstrip)
{
    trim(&tok, &tok_len);
    if (tok_len == 0 || list_has(client, clen, tok, tok_len) ||
        set_has(strip, nstrip, tok, tok_len) ||
        list_has(w->out + added_from, w->len - added_from, tok, tok_len))
        return;
    if (w->len > 0)
        wput(w, ",", 1);
    wput(w, tok, tok_len);
    (*added)++;
}

/* Returns the bits of the betas neither in the client's list nor stripped: only those are worth
 * detecting. */
static unsigned wanted(const char *client, size_t clen, const char *const *strip, size_t nstrip)
{
    unsigned want = 0;
    for (unsigned b = 0; b < B_COUNT; b++) {
        size_t blen = strlen(beta_names[b]);
        if (!list_has(client, clen, beta_names[b], blen) &&
            !set_has(strip, nstrip, beta_names[b], blen))
            want |= BIT(b);
    }
    return want;
}

/* Writes the client's list (verbatim, or without its stripped betas) followed by the betas of
 * need and add it lacks into out; see gh_beta_header. */
static int compose(const char *client, size_t clen, unsigned need, const char *const *add,
                   size_t nadd, const char *const *strip, size_t nstrip, char *out, size_t outsz,
                   int *changed)
{
    size_t core = 0, added_from;
    int stripped = 0, added = 0;
    wbuf_t w = {out, outsz - 1, 0, 0};

    for (size_t i = 0; i <= clen && !stripped;) {
        const char *c = memchr(client + i, ',', clen - i);
        size_t end = c != NULL ? (size_t)(c - client) : clen;
        const char *p = client + i;
        size_t len = end - i;
        trim(&p, &len);
        stripped = len > 0 && set_has(strip, nstrip, p, len);
        i = end + 1;
    }
    if (!stripped) {
        /* Verbatim; trailing separators are only written back when nothing is appended. */
        core = clen;
        while (core > 0 &&
               (client[core - 1] == ' ' || client[core - 1] == '\t' || client[core - 1] == ','))
            core--;
        wput(&w, client, core);
    } else {
        for (size_t i = 0; i <= clen;) {
            const char *c = memchr(client + i, ',', clen - i);
            size_t end = c != NULL ? (size_t)(c - client) : clen;
            const char *p = client + i;
            size_t len = end - i;
            trim(&p, &len);
            if (len > 0 && !set_has(strip, nstrip, p, len)) {
                if (w.len > 0)
                    wput(&w, ",", 1);
                wput(&w, p, len);
            }
            i = end + 1;
        }
    }

    added_from = w.len;
    for (unsigned b = 0; b < B_COUNT; b++) {
        if (need & BIT(b))
            add_beta(&w, added_from, &added, client, clen, beta_names[b], strlen(beta_names[b]),
                     strip, nstrip);
    }
    for (size_t k = 0; k < nadd; k++) {
        if (add[k] != NULL)
            add_beta(&w, added_from, &added, client, clen, add[k], strlen(add[k]), strip, nstrip);
    }
    if (!stripped && added == 0)
        wput(&w, client + core, clen - core);
    if (w.overflow) {
        out[0] = '\0';
        return GH_ERR;
    }
    out[w.len] = '\0';
    if (changed != NULL)
        *changed = stripped || added > 0;
    return GH_OK;
}

/* Computes the anthropic-beta value to send upstream (see beta.h): scans the body, then does
 * what gh_beta_header_scanned does. */
int gh_beta_header(const char *client, const char *body, size_t body_len, unsigned flags,
                   const char *const *add, size_t nadd, const char *const *strip, size_t nstrip,
                   char *out, size_t outsz, int *changed)
{
    gh_jspan_t sp[GH_BETA_NKEYS];
    const gh_jspan_t *spans = NULL;

    /* A files endpoint carries multipart or no body at all: only the flag counts there. */
    if (!(flags & GH_BETA_FILES_ENDPOINT) && body != NULL && body_len > 0 && out != NULL &&
        outsz > 0) {
        if (gh_jscan_object(body, body_len, gh_beta_keys, GH_BETA_NKEYS, sp, NULL) != GH_OK) {
            /* Not a JSON object: forward the client's header as is. */
            size_t clen = client != NULL ? strlen(client) : 0;
            if (changed != NULL)
                *changed = 0;
            out[0] = '\0';
            if (clen >= outsz)
                return GH_ERR;
            memcpy(out, client != NULL ? client : "", clen + 1);
            return GH_OK;
        }
        spans = sp;
    }
    return gh_beta_header_scanned(client, body, spans, flags, add, nadd, strip, nstrip, out, outsz,
                                  changed);
}

/* Computes the anthropic-beta value from a body already scanned for gh_beta_keys (see beta.h). */
int gh_beta_header_scanned(const char *client, const char *body, const gh_jspan_t *spans,
                           unsigned flags, const char *const *add, size_t nadd,
                           const char *const *strip, size_t nstrip, char *out, size_t outsz,
                           int *changed)
{
    unsigned need = 0;
    size_t clen;

    if (changed != NULL)
        *changed = 0;
    if (out == NULL || outsz == 0)
        return GH_ERR;
    out[0] = '\0';
    client = client != NULL ? client : "";
    nstrip = strip != NULL ? nstrip : 0;
    nadd = add != NULL ? nadd : 0;
    clen = strlen(client);

    if (flags & GH_BETA_FILES_ENDPOINT)
        need |= BIT(B_FILES_API);
    else if (body != NULL && spans != NULL)
        detect(body, spans, wanted(client, clen, strip, nstrip), &need);
    return compose(client, clen, need, add, nadd, strip, nstrip, out, outsz, changed);
}
