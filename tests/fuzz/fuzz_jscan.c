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
    gh_jspan_t spans[NKEYS];
    size_t err = (size_t)-1;

    CHECK(buf != NULL);
    if (size)
        memcpy(buf, data, size);
    if (gh_jscan_object(buf, size, keys, NKEYS, spans, &err) == GH_OK) {
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
