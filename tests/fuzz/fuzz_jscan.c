/* fuzz_jscan.c: libFuzzer target checking the JSON scanner, string decoder and quoter agree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gh.h"
#include "jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts on a broken invariant; assert() would vanish under NDEBUG. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static const char *const keys[] = {"model", "stream", "messages"};
#define NKEYS (sizeof keys / sizeof keys[0])

/* A deliberately naive recursive reference parser, written straight from RFC 8259, used as an
 * oracle: the fast scanner must accept exactly what it accepts and report the same members. */
typedef struct {
    const unsigned char *s;
    size_t n;
    size_t i;
} ref_t;

/* Skips white space. */
static void ref_ws(ref_t *r)
{
    while (r->i < r->n && strchr(" \t\r\n", r->s[r->i]) != NULL && r->s[r->i] != '\0')
        r->i++;
}

/* Reads four hex digits into *v. */
static int ref_hex4(ref_t *r, unsigned *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++, r->i++) {
        if (r->i >= r->n)
            return 0;
        unsigned char c = r->s[r->i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return 0;
        *v = *v * 16 + d;
    }
    return 1;
}

/* Appends the UTF-8 form of cp to dec (when not NULL). */
static void ref_put(char *dec, size_t *dlen, unsigned cp)
{
    unsigned char u[4];
    size_t m;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        m = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        m = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        m = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (unsigned char)(0x80 | (cp & 0x3f));
        m = 4;
    }
    if (dec != NULL)
        memcpy(dec + *dlen, u, m);
    *dlen += m;
}

/* Parses a string at r->i, decoding it into dec (room for r->n bytes) when not NULL. */
static int ref_string(ref_t *r, char *dec, size_t *dlen)
{
    *dlen = 0;
    if (r->i >= r->n || r->s[r->i] != '"')
        return 0;
    r->i++;
    for (;;) {
        if (r->i >= r->n)
            return 0;
        unsigned char c = r->s[r->i++];
        if (c == '"')
            return 1;
        if (c < 0x20)
            return 0;
        if (c != '\\') {
            if (dec != NULL)
                dec[*dlen] = (char)c;
            (*dlen)++;
            continue;
        }
        if (r->i >= r->n)
            return 0;
        c = r->s[r->i++];
        const char *simple = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *at = c != '\0' ? strchr(simple, c) : NULL;
        if (at != NULL) {
            ref_put(dec, dlen, (unsigned char)to[at - simple]);
            continue;
        }
        if (c != 'u')
            return 0;
        unsigned hi, lo;
        if (!ref_hex4(r, &hi))
            return 0;
        if (hi >= 0xdc00 && hi <= 0xdfff)
            return 0;
        if (hi >= 0xd800 && hi <= 0xdbff) {
            if (r->i + 2 > r->n || r->s[r->i] != '\\' || r->s[r->i + 1] != 'u')
                return 0;
            r->i += 2;
            if (!ref_hex4(r, &lo) || lo < 0xdc00 || lo > 0xdfff)
                return 0;
            hi = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
        }
        ref_put(dec, dlen, hi);
    }
}

/* Counts the decimal digits at r->i and skips them. */
static size_t ref_digits(ref_t *r)
{
    size_t k = 0;
    while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9') {
        r->i++;
        k++;
    }
    return k;
}

static int ref_value(ref_t *r, int depth);

/* Parses the members of an object whose '{' is at r->i; at depth 1 fills spans from keys. */
static int ref_object(ref_t *r, int depth, gh_jspan_t *spans)
{
    char *key = malloc(r->n + 1);
    size_t klen;
    int ok = 0;
    CHECK(key != NULL);
    r->i++;
    ref_ws(r);
    if (r->i < r->n && r->s[r->i] == '}') {
        r->i++;
        ok = 1;
        goto out;
    }
    for (;;) {
        size_t mstart, vstart;
        ref_ws(r);
        mstart = r->i;
        if (!ref_string(r, key, &klen))
            goto out;
        ref_ws(r);
        if (r->i >= r->n || r->s[r->i] != ':')
            goto out;
        r->i++;
        ref_ws(r);
        vstart = r->i;
        if (!ref_value(r, depth))
            goto out;
        if (spans != NULL) {
            for (size_t k = 0; k < NKEYS; k++) {
                if (strlen(keys[k]) == klen && memcmp(keys[k], key, klen) == 0) {
                    gh_jspan_t sp = {GH_JSON_ABSENT, vstart, r->i - vstart, mstart, r->i - mstart};
                    switch (r->s[vstart]) {
                    case '"':
                        sp.type = GH_JSON_STRING;
                        break;
                    case '{':
                        sp.type = GH_JSON_OBJECT;
                        break;
                    case '[':
                        sp.type = GH_JSON_ARRAY;
                        break;
                    case 't':
                        sp.type = GH_JSON_TRUE;
                        break;
                    case 'f':
                        sp.type = GH_JSON_FALSE;
                        break;
                    case 'n':
                        sp.type = GH_JSON_NULL;
                        break;
                    default:
                        sp.type = GH_JSON_NUMBER;
                        break;
                    }
                    spans[k] = sp;
                }
            }
        }
        ref_ws(r);
        if (r->i >= r->n)
            goto out;
        if (r->s[r->i] == '}') {
            r->i++;
            ok = 1;
            goto out;
        }
        if (r->s[r->i] != ',')
            goto out;
        r->i++;
    }
out:
    free(key);
    return ok;
}

/* Parses one value at r->i (white space skipped) nested inside depth containers. */
static int ref_value(ref_t *r, int depth)
{
    size_t dlen;
    if (r->i >= r->n)
        return 0;
    switch (r->s[r->i]) {
    case '{':
        return depth < GH_JSCAN_MAX_DEPTH && ref_object(r, depth + 1, NULL);
    case '[':
        if (depth >= GH_JSCAN_MAX_DEPTH)
            return 0;
        r->i++;
        ref_ws(r);
        if (r->i < r->n && r->s[r->i] == ']') {
            r->i++;
            return 1;
        }
        for (;;) {
            ref_ws(r);
            if (!ref_value(r, depth + 1))
                return 0;
            ref_ws(r);
            if (r->i < r->n && r->s[r->i] == ']') {
                r->i++;
                return 1;
            }
            if (r->i >= r->n || r->s[r->i] != ',')
                return 0;
            r->i++;
        }
    case '"':
        return ref_string(r, NULL, &dlen);
    case 't':
    case 'f':
    case 'n': {
        const char *lit = r->s[r->i] == 't' ? "true" : r->s[r->i] == 'f' ? "false" : "null";
        size_t l = strlen(lit);
        if (r->n - r->i < l || memcmp(r->s + r->i, lit, l) != 0)
            return 0;
        r->i += l;
        return 1;
    }
    default:
        if (r->s[r->i] == '-')
            r->i++;
        if (r->i < r->n && r->s[r->i] == '0')
            r->i++;
        else if (ref_digits(r) == 0)
            return 0;
        if (r->i < r->n && r->s[r->i] == '.') {
            r->i++;
            if (ref_digits(r) == 0)
                return 0;
        }
        if (r->i < r->n && (r->s[r->i] == 'e' || r->s[r->i] == 'E')) {
            r->i++;
            if (r->i < r->n && (r->s[r->i] == '+' || r->s[r->i] == '-'))
                r->i++;
            if (ref_digits(r) == 0)
                return 0;
        }
        return 1;
    }
}

/* The reference verdict on buf[0..size): GH_OK with spans filled, or GH_ERR. */
static int ref_scan(const char *buf, size_t size, gh_jspan_t *spans)
{
    ref_t r = {(const unsigned char *)buf, size, 0};
    memset(spans, 0, NKEYS * sizeof *spans);
    ref_ws(&r);
    if (r.i >= r.n || r.s[r.i] != '{' || !ref_object(&r, 1, spans))
        return GH_ERR;
    ref_ws(&r);
    return r.i == r.n ? GH_OK : GH_ERR;
}

/* Returns a heap copy of a, then b, then c concatenated (the caller frees it); *len gets its
 * length. */
static char *concat3(const char *a, size_t alen, const char *b, size_t blen, const char *c,
                     size_t clen, size_t *len)
{
    char *out = malloc(alen + blen + clen + 1);
    CHECK(out != NULL);
    memcpy(out, a, alen);
    memcpy(out + alen, b, blen);
    memcpy(out + alen + blen, c, clen);
    out[alen + blen + clen] = '\0';
    *len = alen + blen + clen;
    return out;
}

/* Quotes s, wraps it as {"model":...}, scans and decodes it, and checks that s comes back. */
static void quote_round_trip(const char *s, size_t slen)
{
    size_t cap = 6 * slen + 3, dlen;
    char *q = malloc(cap), *doc, *back;
    gh_jspan_t spans[NKEYS];
    long qn;

    CHECK(q != NULL);
    qn = gh_json_quote(s, slen, q, cap);
    CHECK(qn >= 2 && (size_t)qn < cap && q[qn] == '\0');
    /* Exactly enough room works; one byte less does not. */
    CHECK(gh_json_quote(s, slen, q, (size_t)qn + 1) == qn);
    CHECK(gh_json_quote(s, slen, q, (size_t)qn) == -1);

    doc = concat3("{\"model\":", 9, q, (size_t)qn, "}", 1, &dlen);
    CHECK(gh_jscan_object(doc, dlen, keys, NKEYS, spans, NULL) == GH_OK);
    CHECK(spans[0].type == GH_JSON_STRING && spans[0].off == 9 && spans[0].len == (size_t)qn);
    back = malloc(slen + 1);
    CHECK(back != NULL);
    CHECK(gh_jscan_string(doc, &spans[0], back, slen + 1) == (long)slen);
    CHECK(memcmp(back, s, slen) == 0);
    if (slen > 0)
        CHECK(gh_jscan_string(doc, &spans[0], back, slen) == -1);
    free(back);
    free(doc);
    free(q);
}

/* Checks one span reported for a valid document buf[0..size). */
static void check_span(const char *buf, size_t size, const gh_jspan_t *sp)
{
    static const char firsts[] = {0, '"', 0, 't', 'f', 'n', '{', '['};
    size_t dlen;
    char *doc;
    gh_jspan_t again[NKEYS];

    if (sp->type == GH_JSON_ABSENT)
        return;
    CHECK(sp->len > 0 && sp->off + sp->len <= size);
    CHECK(sp->member_off < sp->off && sp->member_off + sp->member_len == sp->off + sp->len);
    CHECK(buf[sp->member_off] == '"');
    if (sp->type == GH_JSON_NUMBER)
        CHECK(buf[sp->off] == '-' || (buf[sp->off] >= '0' && buf[sp->off] <= '9'));
    else
        CHECK(buf[sp->off] == firsts[sp->type]);

    if (sp->type == GH_JSON_STRING) {
        /* The decoded text is never longer than the raw body between the quotes. */
        char *out = malloc(sp->len - 1);
        CHECK(out != NULL);
        long n = gh_jscan_string(buf, sp, out, sp->len - 1);
        CHECK(n >= 0 && (size_t)n <= sp->len - 2 && out[n] == '\0');
        CHECK(gh_jscan_string(buf, sp, out, (size_t)n) == -1);
        quote_round_trip(out, (size_t)n);
        free(out);
    }

    /* Replacing the member or the value keeps the document valid. */
    doc = concat3(buf, sp->member_off, "\"model\":null", 12, buf + sp->member_off + sp->member_len,
                  size - sp->member_off - sp->member_len, &dlen);
    CHECK(gh_jscan_object(doc, dlen, keys, NKEYS, again, NULL) == GH_OK);
    free(doc);
    doc = concat3(buf, sp->off, "[1]", 3, buf + sp->off + sp->len, size - sp->off - sp->len, &dlen);
    CHECK(gh_jscan_object(doc, dlen, keys, NKEYS, again, NULL) == GH_OK);
    free(doc);
}

/* Treats the whole input as one string literal: gh_jscan_string must accept it exactly when the
 * scanner accepts {"model":<input>} with the value spanning all of it. */
static void check_literal(const char *buf, size_t size)
{
    gh_jspan_t raw = {GH_JSON_STRING, 0, size, 0, size}, spans[NKEYS];
    size_t dlen;
    char *out = malloc(size + 1), *doc;
    long n;
    int scanned;

    CHECK(out != NULL);
    n = gh_jscan_string(buf, &raw, out, size + 1);
    doc = concat3("{\"model\":", 9, buf, size, "}", 1, &dlen);
    scanned = gh_jscan_object(doc, dlen, keys, NKEYS, spans, NULL) == GH_OK &&
              spans[0].type == GH_JSON_STRING && spans[0].len == size;
    CHECK((n >= 0) == scanned);
    if (n >= 0) {
        char *out2 = malloc(size + 1);
        CHECK(out2 != NULL);
        CHECK(gh_jscan_string(doc, &spans[0], out2, size + 1) == n);
        CHECK(memcmp(out, out2, (size_t)n + 1) == 0);
        free(out2);
    }
    free(doc);
    free(out);
}

/* Scans the input as a request body, then checks decoding, quoting and splicing against it. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy, so reading past size is caught by ASan rather than hidden by the
     * fuzzer's own buffer layout. */
    char *buf = malloc(size ? size : 1);
    gh_jspan_t spans[NKEYS], ref[NKEYS];
    size_t err = (size_t)-1;

    CHECK(buf != NULL);
    if (size)
        memcpy(buf, data, size);
    int rc = gh_jscan_object(buf, size, keys, NKEYS, spans, &err);
    CHECK(rc == ref_scan(buf, size, ref));
    if (rc == GH_OK) {
        CHECK(memcmp(spans, ref, sizeof spans) == 0);
        for (size_t k = 0; k < NKEYS; k++)
            check_span(buf, size, &spans[k]);
    } else {
        CHECK(err <= size);
        for (size_t k = 0; k < NKEYS; k++)
            CHECK(spans[k].type == GH_JSON_ABSENT);
    }
    quote_round_trip(buf, size);
    check_literal(buf, size);
    free(buf);
    return 0;
}
