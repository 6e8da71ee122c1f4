/* usage.c: token counts from Anthropic answers and streams, their cost, and record helpers. */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "gh.h"
#include "log.h"
#include "jscan.h"
#include "buf.h"
#include "usage.h"

/* Parses a JSON integer span strictly (digits only: no sign, fraction or exponent). */
static int span_count(const char *buf, const gh_jspan_t *sp, int64_t *out)
{
    int64_t v = 0;
    size_t i;

    if (sp->type != GH_JSON_NUMBER || sp->len == 0 || sp->len > 18)
        return GH_ERR;
    for (i = 0; i < sp->len; i++) {
        char c = buf[sp->off + i];
        if (c < '0' || c > '9')
            return GH_ERR;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return GH_OK;
}

/* Reads the counts of the usage object at span (within buf) into t; a count that is present as
 * a non-negative integer replaces the earlier value, anything else leaves it. */
static int take_usage(const char *buf, const gh_jspan_t *usage, gh_tokens_t *t)
{
    static const char *const fields[] = {"input_tokens", "output_tokens",
                                         "cache_creation_input_tokens", "cache_read_input_tokens"};
    int64_t *dst[] = {&t->input, &t->output, &t->cache_creation, &t->cache_read};
    gh_jspan_t sp[4];
    size_t i;

    if (usage->type != GH_JSON_OBJECT ||
        gh_jscan_object(buf + usage->off, usage->len, fields, 4, sp, NULL) != GH_OK)
        return GH_ERR;
    for (i = 0; i < 4; i++) {
        int64_t v;
        if (span_count(buf + usage->off, &sp[i], &v) == GH_OK)
            *dst[i] = v;
    }
    return GH_OK;
}

/* Reads the top-level usage object of a whole answer. The zero-allocation scan validates the
 * document and finds the object, so a long answer is never turned into a json-c tree (this runs
 * on every request). */
int gh_usage_from_message(const char *json, size_t len, gh_tokens_t *t)
{
    static const char *const keys[] = {"usage"};
    gh_jspan_t span;

    if (json == NULL || t == NULL || gh_jscan_object(json, len, keys, 1, &span, NULL) != GH_OK)
        return GH_ERR;
    return take_usage(json, &span, t);
}

/* Updates t from message_start (data.message.usage) or message_delta (data.usage). Counts replace
 * instead of adding: message_delta's usage is cumulative, so a repeated or reordered event never
 * counts a token twice. Only those two events are read, which keeps the per-event cost of a
 * stream (mostly content_block_delta) at one string compare. */
int gh_usage_from_sse(const char *event, size_t event_len, const char *data, size_t data_len,
                      gh_tokens_t *t)
{
    static const char start[] = "message_start";
    static const char delta[] = "message_delta";
    static const char *const k_message[] = {"message"};
    static const char *const k_usage[] = {"usage"};
    gh_jspan_t msg, usage;

    if (event == NULL || data == NULL || t == NULL)
        return GH_OK;
    if (event_len == sizeof(start) - 1 && memcmp(event, start, event_len) == 0) {
        if (gh_jscan_object(data, data_len, k_message, 1, &msg, NULL) != GH_OK ||
            msg.type != GH_JSON_OBJECT ||
            gh_jscan_object(data + msg.off, msg.len, k_usage, 1, &usage, NULL) != GH_OK)
            return GH_OK;
        usage.off += msg.off;
        take_usage(data, &usage, t);
    } else if (event_len == sizeof(delta) - 1 && memcmp(event, delta, event_len) == 0) {
        if (gh_jscan_object(data, data_len, k_usage, 1, &usage, NULL) == GH_OK)
            take_usage(data, &usage, t);
    }
    return GH_OK;
}

/* Prices each kind of token at its own rate; input excludes cache tokens (Anthropic's usage
 * convention), so the four terms never overlap. Summing before the one division keeps the
 * result as exact as the prices allow. */
double gh_usage_cost(const gh_price_t *p, const gh_tokens_t *t)
{
    double sum;

    if (p == NULL || t == NULL)
        return 0.0;
    sum = (double)t->input * p->input_per_mtok + (double)t->output * p->output_per_mtok +
          (double)t->cache_creation * p->cache_write_per_mtok +
          (double)t->cache_read * p->cache_read_per_mtok;
    return sum / 1e6;
}

/* Writes the current UTC time as "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 characters) into out, which the
 * caller owns; a short buffer gets a truncated, still terminated string. */
void gh_usage_now_iso(char *out, size_t outsz)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    gh_usage_iso((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, out, outsz);
}

/* See usage.h. Hand-formatted: it runs on every request (started_at). */
void gh_usage_iso(int64_t ms, char *out, size_t outsz)
{
    char tmp[GH_ISO_MS_LEN];
    size_t n = sizeof(tmp);

    if (out == NULL || outsz == 0)
        return;
    gh_fmt_iso_ms(tmp, ms);
    if (n > outsz - 1)
        n = outsz - 1;
    memcpy(out, tmp, n);
    out[n] = '\0';
}

/* Copies at most dstsz-1 bytes of src into dst and terminates it. A cut never splits a UTF-8
 * sequence, so a truncated model name or id is still valid text in SQLite. NULL src gives "". */
void gh_usage_set(char *dst, size_t dstsz, const char *src, size_t srclen)
{
    size_t n;

    if (dst == NULL || dstsz == 0)
        return;
    if (src == NULL) {
        dst[0] = '\0';
        return;
    }
    n = srclen;
    if (n > dstsz - 1) {
        n = dstsz - 1;
        /* src[n] is the first byte left out; while it continues a sequence, drop its lead too. */
        while (n > 0 && ((unsigned char)src[n] & 0xC0u) == 0x80u)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}
