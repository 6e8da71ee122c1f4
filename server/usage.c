/* usage.c: token counts from Anthropic answers and streams, their cost, and record helpers. */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <json-c/json.h>

#include "gh.h"
#include "log.h"
#include "jscan.h"
#include "usage.h"

/* Nesting json-c accepts: answers carry tool inputs of any shape, and a usage object must not be
 * missed because a tool input happened to be deep. The tokener's stack is small per level. */
#define GH_USAGE_JSON_DEPTH 512

/* Parses exactly len bytes of JSON (no NUL terminator needed). Returns a new object the caller
 * releases with json_object_put, or NULL for anything that is not one complete JSON value. */
static json_object *gh_usage_parse(const char *json, size_t len)
{
    json_tokener *tok;
    json_object *obj;
    size_t end;
    int ok;

    if (json == NULL || len == 0 || len > (size_t)INT_MAX)
        return NULL;
    tok = json_tokener_new_ex(GH_USAGE_JSON_DEPTH);
    if (tok == NULL) {
        gh_log_error("json_tokener_new_ex failed");
        return NULL;
    }
    obj = json_tokener_parse_ex(tok, json, (int)len);
    ok = obj != NULL && json_tokener_get_error(tok) == json_tokener_success;
    /* One value and nothing after it but white space: "{...}garbage" is not an answer. */
    for (end = json_tokener_get_parse_end(tok); ok && end < len; end++)
        ok = json[end] == ' ' || json[end] == '\t' || json[end] == '\r' || json[end] == '\n';
    if (!ok) {
        json_object_put(obj);
        obj = NULL;
    }
    json_tokener_free(tok);
    return obj;
}

/* Replaces *dst with obj[key] when that is a non-negative integer; null, absent or any other type
 * leaves *dst alone (some providers send null for counts they do not know). */
static void gh_usage_take(json_object *obj, const char *key, int64_t *dst)
{
    json_object *v;
    int64_t n;

    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_int))
        return;
    n = json_object_get_int64(v);
    if (n >= 0)
        *dst = n;
}

/* Copies the four counts of a usage object into t. */
static void gh_usage_take_all(json_object *usage, gh_tokens_t *t)
{
    gh_usage_take(usage, "input_tokens", &t->input);
    gh_usage_take(usage, "output_tokens", &t->output);
    gh_usage_take(usage, "cache_creation_input_tokens", &t->cache_creation);
    gh_usage_take(usage, "cache_read_input_tokens", &t->cache_read);
}

/* Returns obj[key] when it is an object (borrowed from obj), else NULL. */
static json_object *gh_usage_child(json_object *obj, const char *key)
{
    json_object *v;

    if (obj == NULL || !json_object_is_type(obj, json_type_object))
        return NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_object))
        return NULL;
    return v;
}

/* Reads the top-level "usage" only: a "usage" key inside content (a tool input, say) is the
 * model's text, not the bill. The caller owns json and t. */
int gh_usage_from_message(const char *json, size_t len, gh_tokens_t *t)
{
    static const char *const keys[] = {"usage"};
    json_object *root = NULL, *usage;
    gh_jspan_t span;
    int rc = GH_ERR;

    if (t == NULL)
        return GH_ERR;
    /* find the small top-level usage object with the zero-allocation scan, so a long answer is
     * not turned into a json-c tree on every request */
    if (gh_jscan_object(json, len, keys, 1, &span, NULL) != GH_OK ||
        span.type != GH_JSON_OBJECT)
        goto done;
    usage = root = gh_usage_parse(json + span.off, span.len);
    if (root == NULL)
        goto done;
    gh_usage_take_all(usage, t);
    rc = GH_OK;
done:
    json_object_put(root);
    return rc;
}

/* Updates t from message_start (data.message.usage) or message_delta (data.usage). Counts replace
 * instead of adding: message_delta's usage is cumulative, so a repeated or reordered event never
 * counts a token twice. Only those two events are parsed, which keeps the per-event cost of a
 * stream (mostly content_block_delta) at one string compare. */
int gh_usage_from_sse(const char *event, size_t event_len, const char *data, size_t data_len,
                      gh_tokens_t *t)
{
    static const char start[] = "message_start";
    static const char delta[] = "message_delta";
    json_object *root = NULL, *usage;
    int is_start;

    if (event == NULL || t == NULL)
        return GH_OK;
    if (event_len == sizeof(start) - 1 && memcmp(event, start, event_len) == 0)
        is_start = 1;
    else if (event_len == sizeof(delta) - 1 && memcmp(event, delta, event_len) == 0)
        is_start = 0;
    else
        return GH_OK;
    root = gh_usage_parse(data, data_len);
    if (root == NULL)
        goto done;
    usage = is_start ? gh_usage_child(gh_usage_child(root, "message"), "usage")
                     : gh_usage_child(root, "usage");
    if (usage != NULL)
        gh_usage_take_all(usage, t);
done:
    json_object_put(root);
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
    struct tm tm;

    if (out == NULL || outsz == 0)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (gmtime_r(&ts.tv_sec, &tm) == NULL) {
        out[0] = '\0';
        return;
    }
    snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
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
