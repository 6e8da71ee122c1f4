/* jscan.c: a single-pass, zero-allocation JSON validator that locates top-level object members. */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "gh.h"
#include "jscan.h"

/* True for the bytes that end a run of plain string content: the closing quote, the start of an
 * escape, and the control characters RFC 8259 forbids raw inside strings. */
static inline int special_byte(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

/* Returns the index of the first special byte in s[i..n), or n. String bodies are most of a
 * request (prompts, file contents), so this is where the scanner spends its time: it tests 16
 * bytes at a time with SSE2, or 8 with plain word arithmetic elsewhere. */
static inline size_t skip_plain(const unsigned char *s, size_t i, size_t n)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i bslash = _mm_set1_epi8('\\');
    const __m128i ctl = _mm_set1_epi8(0x1f);
    while (n - i >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        /* min(v, 0x1f) == v holds exactly for the unsigned bytes <= 0x1f. */
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                 _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v));
        unsigned mask = (unsigned)_mm_movemask_epi8(m);
        if (mask != 0)
            return i + (size_t)__builtin_ctz(mask);
        i += 16;
    }
#else
    const uint64_t ones = 0x0101010101010101ull;
    const uint64_t highs = 0x8080808080808080ull;
    while (n - i >= 8) {
        uint64_t v;
        memcpy(&v, s + i, sizeof v);
        /* The classic has-zero-byte / has-byte-less-than tests: non-zero iff some byte matches. */
        uint64_t q = v ^ (ones * '"');
        uint64_t b = v ^ (ones * '\\');
        uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v);
        if ((hit & highs) != 0)
            break;
        i += 8;
    }
#endif
    while (i < n && !special_byte(s[i]))
        i++;
    return i;
}

/* Returns the value of the hex digit c, or -1. */
static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Reads the four hex digits at s[i..i+4) into *v; GH_ERR when they are missing or not hex. */
static inline int hex4(const unsigned char *s, size_t i, size_t n, uint32_t *v)
{
    uint32_t r = 0;
    if (n - i < 4)
        return GH_ERR;
    for (size_t k = 0; k < 4; k++) {
        int d = hexval(s[i + k]);
        if (d < 0)
            return GH_ERR;
        r = (r << 4) | (uint32_t)d;
    }
    *v = r;
    return GH_OK;
}

/* Decodes the escape whose backslash is at s[i] (i < n) into the code point *cp and returns the
 * index just past it. A high surrogate must be followed by an escaped low surrogate and a lone
 * low surrogate is refused: the upstream API rejects such strings, so failing early is kinder.
 * Returns 0 (never a valid end, which is at least i + 2) on error with *err at the fault. */
static size_t read_escape(const unsigned char *s, size_t i, size_t n, uint32_t *cp, size_t *err)
{
    uint32_t hi, lo;
    if (n - i < 2) {
        *err = n;
        return 0;
    }
    switch (s[i + 1]) {
    case '"':
        *cp = '"';
        return i + 2;
    case '\\':
        *cp = '\\';
        return i + 2;
    case '/':
        *cp = '/';
        return i + 2;
    case 'b':
        *cp = '\b';
        return i + 2;
    case 'f':
        *cp = '\f';
        return i + 2;
    case 'n':
        *cp = '\n';
        return i + 2;
    case 'r':
        *cp = '\r';
        return i + 2;
    case 't':
        *cp = '\t';
        return i + 2;
    case 'u':
        break;
    default:
        *err = i + 1;
        return 0;
    }
    if (hex4(s, i + 2, n, &hi) != GH_OK) {
        *err = i + 2;
        return 0;
    }
    if (hi < 0xd800 || hi > 0xdfff) {
        *cp = hi;
        return i + 6;
    }
    if (hi >= 0xdc00) {
        *err = i;
        return 0;
    }
    if (n - i < 8 || s[i + 6] != '\\' || s[i + 7] != 'u' || hex4(s, i + 8, n, &lo) != GH_OK ||
        lo < 0xdc00 || lo > 0xdfff) {
        *err = i;
        return 0;
    }
    *cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
    return i + 12;
}

/* Encodes the code point cp (at most 0x10ffff, never a surrogate) as UTF-8 into u; returns the
 * number of bytes. */
static inline size_t utf8_put(uint32_t cp, unsigned char u[4])
{
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    u[0] = (unsigned char)(0xf0 | (cp >> 18));
    u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    u[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Scans the string whose opening quote is at s[*pos]. On success *pos is just past the closing
 * quote and *esc tells whether the string held any escape; on GH_ERR *pos is the fault. UTF-8 is
 * deliberately not validated: the bytes are forwarded untouched and upstream judges them. */
static int scan_string(const unsigned char *s, size_t n, size_t *pos, int *esc)
{
    size_t i = *pos + 1;
    uint32_t cp;
    *esc = 0;
    for (;;) {
        i = skip_plain(s, i, n);
        if (i >= n) {
            *pos = n;
            return GH_ERR;
        }
        if (s[i] == '"') {
            *pos = i + 1;
            return GH_OK;
        }
        if (s[i] != '\\') {
            *pos = i;
            return GH_ERR;
        }
        *esc = 1;
        size_t next = read_escape(s, i, n, &cp, pos);
        if (next == 0)
            return GH_ERR;
        i = next;
    }
}

/* Scans the number starting at s[i] with the exact RFC 8259 grammar
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and returns the index past it, or 0 on error
 * with *err at the fault. What follows the number is checked by the caller. */
static size_t scan_number(const unsigned char *s, size_t i, size_t n, size_t *err)
{
    if (s[i] == '-')
        i++;
    if (i >= n || s[i] < '0' || s[i] > '9') {
        *err = i;
        return 0;
    }
    if (s[i++] != '0')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || s[i] < '0' || s[i] > '9') {
            *err = i;
            return 0;
        }
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || s[i] < '0' || s[i] > '9') {
            *err = i;
            return 0;
        }
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    return i;
}

/* Returns the index of the first non-white-space byte in s[i..n), or n. */
static inline size_t skip_ws(const unsigned char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t'))
        i++;
    return i;
}

/* Tells whether the raw key body s[a..b) (between the quotes, already validated) equals the
 * NUL-terminated key. Escaped keys are decoded on the fly, byte by byte, so no buffer is needed;
 * a decoded NUL never matches because key ends there. */
static int key_equal(const unsigned char *s, size_t a, size_t b, int esc, const char *key)
{
    const unsigned char *k = (const unsigned char *)key;
    size_t j = 0;
    if (!esc) {
        size_t kl = b - a;
        return strncmp(key, (const char *)s + a, kl) == 0 && key[kl] == '\0';
    }
    while (a < b) {
        if (s[a] != '\\') {
            if (k[j] == '\0' || k[j] != s[a])
                return 0;
            j++;
            a++;
            continue;
        }
        uint32_t cp;
        size_t err;
        unsigned char u[4];
        size_t next = read_escape(s, a, b, &cp, &err);
        if (next == 0)
            return 0;
        size_t m = utf8_put(cp, u);
        for (size_t t = 0; t < m; t++, j++)
            if (k[j] == '\0' || k[j] != u[t])
                return 0;
        a = next;
    }
    return k[j] == '\0';
}

/* Returns the type of the value whose first byte is c (already known to start some value or to
 * be rejected right after). */
static gh_json_type_t type_of(unsigned char c)
{
    switch (c) {
    case '{':
        return GH_JSON_OBJECT;
    case '[':
        return GH_JSON_ARRAY;
    case '"':
        return GH_JSON_STRING;
    case 't':
        return GH_JSON_TRUE;
    case 'f':
        return GH_JSON_FALSE;
    case 'n':
        return GH_JSON_NULL;
    default:
        return GH_JSON_NUMBER;
    }
}

/* Validates buf as one JSON object and fills spans for the requested top-level keys; see
 * jscan.h. Nothing is allocated: the only state is a byte per open container. The caller owns
 * buf, keys and spans; on GH_ERR every span is reset to GH_JSON_ABSENT. The parser is a small
 * state machine written with labels, so nesting costs no recursion and no per-byte dispatch. */
int gh_jscan_object(const char *buf, size_t len, const char *const *keys, size_t nkeys,
                    gh_jspan_t *spans, size_t *err_off)
{
    const unsigned char *s = (const unsigned char *)buf;
    unsigned char stack[GH_JSCAN_MAX_DEPTH];
    size_t n = len, i = 0, depth = 0;
    size_t kstart = 0, kend = 0, vstart = 0, next;
    gh_json_type_t vtype = GH_JSON_ABSENT;
    int kesc = 0, esc;

    for (size_t k = 0; k < nkeys && spans != NULL; k++)
        memset(&spans[k], 0, sizeof spans[k]);
    if ((s == NULL && n != 0) || (nkeys != 0 && (keys == NULL || spans == NULL)))
        goto fail;

    i = skip_ws(s, 0, n);
    if (i >= n || s[i] != '{')
        goto fail;
    stack[depth++] = '{';
    i++;

object_open: /* just after '{': either '}' or the first key */
    i = skip_ws(s, i, n);
    if (i < n && s[i] == '}') {
        i++;
        goto close;
    }

object_key: /* at a key, white space already skipped */
    if (i >= n || s[i] != '"')
        goto fail;
    if (depth == 1)
        kstart = i;
    if (scan_string(s, n, &i, &esc) != GH_OK)
        goto fail;
    if (depth == 1) {
        kend = i;
        kesc = esc;
    }
    i = skip_ws(s, i, n);
    if (i >= n || s[i] != ':')
        goto fail;
    i = skip_ws(s, i + 1, n);

value: /* at a value, white space already skipped */
    if (i >= n)
        goto fail;
    if (depth == 1) {
        vstart = i;
        vtype = type_of(s[i]);
    }
    switch (s[i]) {
    case '{':
    case '[':
        if (depth >= GH_JSCAN_MAX_DEPTH)
            goto fail;
        stack[depth++] = s[i];
        if (s[i++] == '{')
            goto object_open;
        i = skip_ws(s, i, n);
        if (i < n && s[i] == ']') {
            i++;
            goto close;
        }
        goto value;
    case '"':
        if (scan_string(s, n, &i, &esc) != GH_OK)
            goto fail;
        break;
    case 't':
        if (n - i < 4 || memcmp(s + i, "true", 4) != 0)
            goto fail;
        i += 4;
        break;
    case 'f':
        if (n - i < 5 || memcmp(s + i, "false", 5) != 0)
            goto fail;
        i += 5;
        break;
    case 'n':
        if (n - i < 4 || memcmp(s + i, "null", 4) != 0)
            goto fail;
        i += 4;
        break;
    default:
        if (s[i] != '-' && (s[i] < '0' || s[i] > '9'))
            goto fail;
        next = scan_number(s, i, n, &i);
        if (next == 0)
            goto fail;
        i = next;
        break;
    }

after_value: /* just past a complete value inside the container stack[depth - 1] */
    if (depth == 1) {
        /* Only the outermost object's members can match; the last occurrence wins. */
        for (size_t k = 0; k < nkeys; k++) {
            if (key_equal(s, kstart + 1, kend - 1, kesc, keys[k])) {
                spans[k].type = vtype;
                spans[k].off = vstart;
                spans[k].len = i - vstart;
                spans[k].member_off = kstart;
                spans[k].member_len = i - kstart;
            }
        }
    }
    i = skip_ws(s, i, n);
    if (i >= n)
        goto fail;
    if (stack[depth - 1] == '{') {
        if (s[i] == ',') {
            i = skip_ws(s, i + 1, n);
            goto object_key;
        }
        if (s[i] == '}') {
            i++;
            goto close;
        }
    } else {
        if (s[i] == ',') {
            i = skip_ws(s, i + 1, n);
            goto value;
        }
        if (s[i] == ']') {
            i++;
            goto close;
        }
    }
    goto fail;

close: /* just past the '}' or ']' that ends stack[depth - 1] */
    if (--depth > 0)
        goto after_value;
    i = skip_ws(s, i, n);
    if (i != n)
        goto fail;
    if (err_off != NULL)
        *err_off = 0;
    return GH_OK;

fail:
    for (size_t k = 0; k < nkeys && spans != NULL; k++)
        memset(&spans[k], 0, sizeof spans[k]);
    if (err_off != NULL)
        *err_off = i < n ? i : n;
    return GH_ERR;
}

/* Decodes the string at span into out (owned by the caller, outsz bytes); see jscan.h. The span
 * is validated again rather than trusted, so a span from anywhere cannot cause an overread past
 * span->off + span->len. */
long gh_jscan_string(const char *buf, const gh_jspan_t *span, char *out, size_t outsz)
{
    const unsigned char *s;
    size_t i, end, o = 0, err;
    uint32_t cp;
    unsigned char u[4];

    if (buf == NULL || span == NULL || out == NULL || outsz == 0 || span->type != GH_JSON_STRING ||
        span->len < 2)
        return -1;
    s = (const unsigned char *)buf + span->off;
    end = span->len - 1;
    if (s[0] != '"' || s[end] != '"')
        return -1;
    i = 1;
    for (;;) {
        size_t j = skip_plain(s, i, end);
        if (j - i >= outsz - o)
            return -1;
        memcpy(out + o, s + i, j - i);
        o += j - i;
        if (j == end)
            break;
        if (s[j] != '\\')
            return -1;
        /* Bounding the escape by end keeps it from swallowing the closing quote. */
        i = read_escape(s, j, end, &cp, &err);
        if (i == 0)
            return -1;
        size_t m = utf8_put(cp, u);
        if (m >= outsz - o)
            return -1;
        memcpy(out + o, u, m);
        o += m;
    }
    if (o > LONG_MAX)
        return -1;
    out[o] = '\0';
    return (long)o;
}

/* Writes s[0..slen) as a quoted JSON string into out (owned by the caller, outsz bytes); see
 * jscan.h. Runs of plain bytes are copied whole; only '"', '\\' and control bytes are escaped,
 * so bytes >= 0x80 (UTF-8 or not) pass through unchanged. */
long gh_json_quote(const char *s, size_t slen, char *out, size_t outsz)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, o = 0;

    if (out == NULL || outsz == 0 || (s == NULL && slen != 0))
        return -1;
    out[o++] = '"';
    while (i < slen) {
        size_t j = skip_plain(u, i, slen);
        if (j - i >= outsz - o)
            return -1;
        memcpy(out + o, u + i, j - i);
        o += j - i;
        if (j == slen)
            break;
        unsigned char c = u[j];
        char e[6] = {'\\', 0, 0, 0, 0, 0};
        size_t m = 2;
        switch (c) {
        case '"':
        case '\\':
            e[1] = (char)c;
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\t':
            e[1] = 't';
            break;
        case '\b':
            e[1] = 'b';
            break;
        case '\f':
            e[1] = 'f';
            break;
        default:
            e[1] = 'u';
            e[2] = '0';
            e[3] = '0';
            e[4] = hex[c >> 4];
            e[5] = hex[c & 0xf];
            m = 6;
            break;
        }
        if (m >= outsz - o)
            return -1;
        memcpy(out + o, e, m);
        o += m;
        i = j + 1;
    }
    /* The closing quote and the NUL. */
    if (outsz - o < 2 || o + 1 > LONG_MAX)
        return -1;
    out[o++] = '"';
    out[o] = '\0';
    return (long)o;
}
