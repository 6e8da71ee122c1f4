/* exchange.c: one request's trip upstream: key choice, fallback along the route, retries with
 * back-off, cooldowns, limits admission and true-up, the relay of the answer as it arrives, and
 * the usage record published before the last byte reaches the client. */
#include "config.h"

#include <event2/buffer.h>
#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "exchange.h"
#include "gh.h"
#include "jscan.h"
#include "log.h"
#include "proxy.h"
#include "shm.h"
#include "store.h"

#define GH_EXCHANGE_PAUSE_AT (1024 * 1024)          /* client backlog that pauses upstream reads */
#define GH_PROXY_MAX_RESP_BODY (256u * 1024 * 1024) /* a buffered (non-SSE) answer */
#define GH_PROXY_CONNECT_TIMEOUT_MS 10000L
#define GH_PROXY_COOLDOWN_MS 10000 /* a 429 without retry-after cools its key this long */

/* How an attempt ended, for the fallback decision. */
typedef enum {
    OUTCOME_OK = 0,     /* relay it (2xx, or an error that must not fall back) */
    OUTCOME_KEY_BAD,    /* 401/403: skip this key for the rest of the request */
    OUTCOME_RATE_LIMIT, /* 429: the key cools down, try another */
    OUTCOME_RETRYABLE,  /* 5xx/529/timeout/connection error */
} outcome_t;

static void start_attempt(gh_exchange_t *ex);
static void on_idle_timeout(evutil_socket_t fd, short what, void *arg);
static void on_retry_timer(evutil_socket_t fd, short what, void *arg);

#define GH_EXCHANGE_POOL 256 /* finished exchanges kept for reuse (allocations per request) */

static struct {
    gh_exchange_t *free[GH_EXCHANGE_POOL];
    int n;
} exchange_pool;

/* 1 while a provider key cools down after a 429 (in any worker). */
static int key_cooling(int64_t key_id)
{
    return gh_limits_cooldown_until(key_id, gh_wall_ms()) > 0;
}

/* Frees the exchange and everything it holds; the request itself belongs to the connection. */
/* Frees the parts an exchange keeps between requests, then the struct. */
static void exchange_destroy(gh_exchange_t *ex)
{
    if (ex->idle_timer != NULL)
        event_free(ex->idle_timer);
    if (ex->retry_timer != NULL)
        event_free(ex->retry_timer);
    if (ex->resp_headers != NULL)
        evbuffer_free(ex->resp_headers);
    if (ex->resp_body != NULL)
        evbuffer_free(ex->resp_body);
    free(ex);
}

void gh_exchange_free(gh_exchange_t *ex)
{
    if (ex == NULL)
        return;
    if (ex->hooks.finished != NULL)
        ex->hooks.finished(ex);
    if (ex->in_multi) {
        gh_upstream_stop(&ex->xfer);
        ex->in_multi = 0;
    }
    if (ex->xfer.easy != NULL) {
        gh_upstream_easy_put(ex->xfer.easy);
        ex->xfer.easy = NULL;
    }
    curl_slist_free_all(ex->hdrs);
    ex->hdrs = NULL;
    free(ex->url);
    ex->url = NULL;
    free(ex->fwd_body);
    ex->fwd_body = NULL;
    gh_sse_free(&ex->sse);
    gh_worker_provs_release(ex->provs);
    ex->provs = NULL;
    if (ex->idle_timer != NULL && ex->retry_timer != NULL && ex->resp_headers != NULL &&
        ex->resp_body != NULL && exchange_pool.n < GH_EXCHANGE_POOL) {
        /* keep the buffers and timers (their callback argument is this very struct) */
        evtimer_del(ex->idle_timer);
        evtimer_del(ex->retry_timer);
        evbuffer_drain(ex->resp_headers, evbuffer_get_length(ex->resp_headers));
        evbuffer_drain(ex->resp_body, evbuffer_get_length(ex->resp_body));
        exchange_pool.free[exchange_pool.n++] = ex;
        return;
    }
    exchange_destroy(ex);
}

/* See exchange.h. */
void gh_exchange_pool_free(void)
{
    while (exchange_pool.n > 0)
        exchange_destroy(exchange_pool.free[--exchange_pool.n]);
}

/* Trues up the provider window an attempt was admitted into with what it really used. */
static void settle_provider(gh_exchange_t *ex, int64_t act_in, int64_t act_out)
{
    if (ex->prov_admitted == NULL)
        return;
    gh_limits_settle(GH_LIMITS_KIND_PROVIDER, ex->prov_admitted->name, ex->prov_res.admitted_ms,
                     ex->est_in, ex->est_out, act_in, act_out, gh_wall_ms());
    ex->prov_admitted = NULL;
}

/* Gives back what the request held (concurrency slot) and replaces the admission estimates
 * with the actual token counts; adds the cost to the key's budget period. */
static void settle_limits(gh_exchange_t *ex)
{
    int64_t act_in = ex->rec.tokens.input + ex->rec.tokens.cache_creation;
    int64_t act_out = ex->rec.tokens.output, now = gh_wall_ms();

    if (ex->key_admitted) {
        gh_limits_settle(GH_LIMITS_KIND_KEY, ex->rec.key_id, ex->key_res.admitted_ms, ex->est_in,
                         ex->est_out, act_in, act_out, now);
        ex->key_admitted = 0;
    }
    settle_provider(ex, act_in, act_out);
    if (ex->in_parallel) {
        gh_limits_leave(GH_LIMITS_KIND_KEY, ex->rec.key_id, (int32_t)gh_getpid());
        ex->in_parallel = 0;
    }
    if (ex->budget >= 0 && ex->rec.cost_usd > 0)
        gh_limits_budget_add(ex->rec.key_id, ex->budget_period, ex->rec.cost_usd, now);
}

/* Completes the usage record (timings, cost) and hands it to the recorder. Runs before the last
 * byte is queued to the client, so a request the client saw finish always has its row. */
static void publish_usage(gh_exchange_t *ex)
{
    uint64_t now = gh_now_us();
    const gh_price_t *price;

    ex->rec.latency_ms = (int64_t)((now - ex->req->start_us) / 1000u);
    ex->rec.ttft_ms =
        ex->first_byte_us != 0 ? (int64_t)((ex->first_byte_us - ex->req->start_us) / 1000u) : -1;
    price = gh_auth_price(ex->rec.model);
    ex->rec.cost_usd = price != NULL ? gh_usage_cost(price, &ex->rec.tokens) : 0.0;
    gh_shm_usage_publish(&ex->rec);
    settle_limits(ex);
}

/* Appends the anthropic-ratelimit-* headers of one admission view (unlimited ones omitted). */
static size_t ratelimit_headers(const gh_limit_result_t *res, char *out, size_t outsz)
{
    static const char *const names[] = {"requests", "input-tokens", "output-tokens"};
    static const char *const parts[] = {"-limit: ", "-remaining: ", "-reset: "};
    const gh_limit_view_t *v[] = {&res->requests, &res->input_tokens, &res->output_tokens};
    size_t used = 0, i, j;

    /* hand-formatted: this runs on every answer of a limited key, and snprintf cost more than
     * the rest of the header work together */
    for (i = 0; i < 3; i++) {
        size_t nl = strlen(names[i]);
        if (v[i]->limit < 0)
            continue;
        /* three lines of at most 21 + 13 + 12 + 20 + 2 bytes each */
        if (outsz - used < 3 * 80)
            break;
        for (j = 0; j < 3; j++) {
            char *p = out + used;
            size_t pl = strlen(parts[j]);
            memcpy(p, "anthropic-ratelimit-", 20);
            memcpy(p + 20, names[i], nl);
            memcpy(p + 20 + nl, parts[j], pl);
            p += 20 + nl + pl;
            if (j == 0) {
                p += gh_fmt_i64(p, v[i]->limit);
            } else if (j == 1) {
                p += gh_fmt_i64(p, v[i]->remaining > 0 ? v[i]->remaining : 0);
            } else {
                gh_fmt_iso_sec(p, (v[i]->reset_ms + 999) / 1000);
                p += GH_ISO_SEC_LEN;
                *p++ = 'Z';
            }
            *p++ = '\r';
            *p++ = '\n';
            used = (size_t)(p - out);
        }
    }
    if (used < outsz)
        out[used] = '\0';
    return used;
}

/* Answers a refusal made by gatehouse itself (with extra "Name: v\r\n" headers, may be NULL) and
 * records it; frees the exchange. */
void gh_exchange_refuse(gh_exchange_t *ex, int status, const char *type, const char *error_type,
                        const char *extra, const char *fmt, const char *arg)
{
    char hdr[1400];

    ex->rec.status = status;
    gh_usage_set(ex->rec.error_type, sizeof(ex->rec.error_type), error_type, strlen(error_type));
    publish_usage(ex);
    /* tell the SDKs (and Claude Code) whether retrying can help: a bad key or a denied model
     * never heals by itself, a rate limit or an outage does */
    snprintf(hdr, sizeof(hdr), "x-gatehouse-request-id: %s\r\nx-should-retry: %s\r\n%s",
             ex->rec.request_id, status == 429 || status >= 500 ? "true" : "false",
             extra != NULL ? extra : "");
    ex->req->on_abort = NULL;
    ex->req->on_drain = NULL;
    gh_reply_error(ex->req, ex->shape, status, type, hdr, fmt, arg);
    gh_exchange_free(ex);
}

/* refuse_h without extra headers. */
static void refuse(gh_exchange_t *ex, int status, const char *type, const char *error_type,
                   const char *fmt, const char *arg)
{
    gh_exchange_refuse(ex, status, type, error_type, NULL, fmt, arg);
}

/* A 429 for a limit gatehouse enforces: retry-after and the limit headers, Anthropic's wording. */
static void refuse_rate(gh_exchange_t *ex, const gh_limit_result_t *res, const char *error_type,
                        const char *what)
{
    char hdr[1200];
    size_t n = (size_t)snprintf(hdr, sizeof(hdr), "retry-after: %lld\r\n",
                                (long long)(res->retry_after_s > 0 ? res->retry_after_s : 1));
    ratelimit_headers(res, hdr + n, sizeof(hdr) - n);
    gh_exchange_refuse(
        ex, 429, "rate_limit_error", error_type, hdr,
        "This request would exceed the %s; retry after the time in the retry-after header", what);
}

/* Re-arms the idle timeout: upstream must show progress within the provider's timeout_ms. */
static int64_t idle_ms(const gh_exchange_t *ex)
{
    return ex->prov->timeout_ms > 0 ? ex->prov->timeout_ms : GH_DEFAULT_UPSTREAM_TIMEOUT_MS;
}

/* Starts the idle timer for a new attempt. */
static void start_idle(gh_exchange_t *ex)
{
    int64_t ms = idle_ms(ex);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

    ex->progress_us = gh_now_us();
    evtimer_add(ex->idle_timer, &tv);
}

/* Notes upstream progress. The timer is not moved on every chunk (a min-heap update per SSE
 * event adds up over thousands of streams): it checks the time of the last progress when it
 * fires and sleeps again for what is left. */
static void arm_idle(gh_exchange_t *ex)
{
    ex->progress_us = gh_now_us();
}

/* Appends the headers gatehouse adds to every relayed answer. */
static void add_gateway_headers(gh_exchange_t *ex, struct evbuffer *b)
{
    static const struct {
        const char *name;
        size_t len;
    } h[] = {{GH_LIT("x-gatehouse-request-id: ")},
             {GH_LIT("\r\nx-gatehouse-provider: ")},
             {GH_LIT("\r\nx-gatehouse-model: ")},
             {GH_LIT("\r\nx-gatehouse-attempts: ")}};
    const struct {
        const char *s;
        size_t max;
    } val[3] = {{ex->rec.request_id, sizeof(ex->rec.request_id)},
                {ex->rec.provider, sizeof(ex->rec.provider)},
                {ex->rec.model, sizeof(ex->rec.model)}};
    char line[1024 + sizeof(ex->rec.request_id) + sizeof(ex->rec.provider) + sizeof(ex->rec.model) +
              128];
    size_t n = 0, i, j;

    if (ex->key_limited)
        n = ratelimit_headers(&ex->key_res, line, 1024);
    for (i = 0; i < 3; i++) {
        size_t vl = strnlen(val[i].s, val[i].max);
        memcpy(line + n, h[i].name, h[i].len);
        n += h[i].len;
        /* the model is the client's own string: a CR or LF in it must not start a header */
        for (j = 0; j < vl; j++) {
            unsigned char c = (unsigned char)val[i].s[j];
            line[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
        }
    }
    memcpy(line + n, h[3].name, h[3].len);
    n += h[3].len;
    n += gh_fmt_i64(line + n, ex->rec.attempts);
    memcpy(line + n, "\r\n", 2);
    evbuffer_add(b, line, n + 2);
}

/* Starts the streamed answer towards the client with the upstream status and headers. */
static void begin_client_stream(gh_exchange_t *ex)
{
    struct evbuffer *h = ex->resp_headers;
    add_gateway_headers(ex, h);
    gh_http_stream_begin(ex->req, ex->status, (const char *)evbuffer_pullup(h, -1),
                         evbuffer_get_length(h));
}

/* Reads error.type out of an Anthropic error document (body or SSE error data). */
static void note_error_type(gh_exchange_t *ex, const char *json, size_t len)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *root = NULL, *err = NULL, *type = NULL;

    if (tok == NULL)
        return;
    root = json_tokener_parse_ex(tok, json, (int)(len > 65536 ? 65536 : len));
    if (root != NULL && json_object_object_get_ex(root, "error", &err) &&
        json_object_object_get_ex(err, "type", &type) &&
        json_object_is_type(type, json_type_string))
        gh_usage_set(ex->rec.error_type, sizeof(ex->rec.error_type), json_object_get_string(type),
                     (size_t)json_object_get_string_len(type));
    else
        gh_usage_set(ex->rec.error_type, sizeof(ex->rec.error_type), "api_error", 9);
    json_object_put(root);
    json_tokener_free(tok);
}

/* gh_sse_event_cb: usage from message_start/message_delta, the type of an error event. */
static int on_sse_event(void *arg, const char *event, size_t event_len, const char *data,
                        size_t data_len)
{
    gh_exchange_t *ex = arg;

    if (event_len == 5 && memcmp(event, "error", 5) == 0)
        note_error_type(ex, data, data_len);
    else if (event_len > 8 && memcmp(event, "message_", 8) == 0)
        gh_usage_from_sse(event, event_len, data, data_len, &ex->rec.tokens);
    if (ex->hooks.sse_event != NULL)
        ex->hooks.sse_event(ex, event, event_len, data, data_len);
    return GH_OK;
}

/* Statuses that send the request to the next key or target instead of to the client. */
static outcome_t classify_status(int status)
{
    switch (status) {
    case 401:
    case 403:
        return OUTCOME_KEY_BAD;
    case 429:
        return OUTCOME_RATE_LIMIT;
    case 500:
    case 502:
    case 503:
    case 504:
    case 529:
        return OUTCOME_RETRYABLE;
    default:
        return OUTCOME_OK;
    }
}

/* CURLOPT_HEADERFUNCTION: records the status, keeps relayable headers, and on the blank line
 * ending a final (non-1xx) head decides between streaming, buffering and falling back. */
static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
    gh_exchange_t *ex = arg;
    size_t len = size * n, nlen, vstart, vend;
    char *colon;

    arm_idle(ex);
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        const char *sp = memchr(buf, ' ', len);
        ex->status = sp != NULL ? atoi(sp + 1) : 502;
        ex->headers_done = 0;
        ex->sse_resp = 0;
        ex->retry_after_ms = -1;
        evbuffer_drain(ex->resp_headers, evbuffer_get_length(ex->resp_headers));
        return len;
    }
    if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        if (ex->status >= 200) {
            ex->headers_done = 1;
            ex->failing = classify_status(ex->status) != OUTCOME_OK;
            if ((ex->sse_resp || (ex->stream_resp && ex->status < 300)) && !ex->failing)
                begin_client_stream(ex);
        }
        return len;
    }
    colon = memchr(buf, ':', len);
    if (colon == NULL)
        return len;
    nlen = (size_t)(colon - buf);
    vstart = nlen + 1;
    while (vstart < len && (buf[vstart] == ' ' || buf[vstart] == '\t'))
        vstart++;
    vend = len;
    while (vend > vstart && (buf[vend - 1] == '\r' || buf[vend - 1] == '\n' ||
                             buf[vend - 1] == ' ' || buf[vend - 1] == '\t'))
        vend--;
    if (gh_http_name_eq(buf, nlen, "content-type") && ex->status == 200 && vend - vstart >= 17 &&
        strncasecmp(buf + vstart, "text/event-stream", 17) == 0)
        ex->sse_resp = 1;
    if (gh_http_name_eq(buf, nlen, "request-id"))
        gh_usage_set(ex->rec.upstream_request_id, sizeof(ex->rec.upstream_request_id), buf + vstart,
                     vend - vstart);
    if (gh_http_name_eq(buf, nlen, "retry-after") && vend > vstart)
        ex->retry_after_ms = (int64_t)atoi(buf + vstart) * 1000;
    if (ex->key_limited && nlen > 20 && strncasecmp(buf, "anthropic-ratelimit-", 20) == 0)
        return len; /* the key's own limits are what its holder must see */
    if (gh_proxy_forward_resp_header(buf, nlen)) {
        evbuffer_add(ex->resp_headers, buf, nlen);
        evbuffer_add(ex->resp_headers, ": ", 2);
        evbuffer_add(ex->resp_headers, buf + vstart, vend - vstart);
        evbuffer_add(ex->resp_headers, "\r\n", 2);
    }
    return len;
}

/* The client drained its backlog: let curl deliver again. */
static void on_client_drain(void *arg)
{
    gh_exchange_t *ex = arg;
    if (ex->paused && gh_http_pending(ex->req) < GH_EXCHANGE_PAUSE_AT / 2) {
        ex->paused = 0;
        gh_upstream_resume(&ex->xfer);
    }
}

/* CURLOPT_WRITEFUNCTION: SSE bytes go to the client at once (pausing when it reads slower than
 * upstream writes) and through the usage parser; other answers are collected to be sent with a
 * Content-Length (or dropped for a fallback). */
static size_t on_body(char *buf, size_t size, size_t n, void *arg)
{
    gh_exchange_t *ex = arg;
    size_t len = size * n;

    arm_idle(ex);
    if (ex->first_byte_us == 0 && !ex->failing)
        ex->first_byte_us = gh_now_us();
    if (ex->sse_resp && ex->headers_done && !ex->failing) {
        if (gh_http_pending(ex->req) >= GH_EXCHANGE_PAUSE_AT) {
            ex->paused = 1;
            return CURL_WRITEFUNC_PAUSE;
        }
        if (ex->hooks.sse_event == NULL)
            gh_http_stream_write(ex->req, buf, len);
        if (ex->sse.cb != NULL)
            gh_sse_feed(&ex->sse, buf, len); /* a broken stream stops accounting, not relay */
        return len;
    }
    if (ex->stream_resp && ex->headers_done && !ex->failing && ex->req->streaming) {
        if (gh_http_pending(ex->req) >= GH_EXCHANGE_PAUSE_AT) {
            ex->paused = 1;
            return CURL_WRITEFUNC_PAUSE;
        }
        gh_http_stream_write(ex->req, buf, len);
        if (ex->hooks.data != NULL)
            ex->hooks.data(ex, buf, len);
        return len;
    }
    if (evbuffer_get_length(ex->resp_body) + len > GH_PROXY_MAX_RESP_BODY) {
        gh_log_warn("upstream answer from %s exceeds %u bytes; aborting", ex->prov->name,
                    GH_PROXY_MAX_RESP_BODY);
        return 0;
    }
    evbuffer_add(ex->resp_body, buf, len);
    return len;
}

/* Relays the answer held in resp_headers/resp_body (success, or the last upstream error when
 * every target failed) and ends the exchange. */
static void relay_buffered(gh_exchange_t *ex)
{
    gh_http_req_t *req = ex->req;
    struct evbuffer *h = ex->resp_headers;
    const char *body = (const char *)evbuffer_pullup(ex->resp_body, -1);
    size_t blen = evbuffer_get_length(ex->resp_body);

    int status = ex->status;

    ex->rec.status = ex->status;
    if (ex->status >= 400)
        note_error_type(ex, body, blen);
    else
        gh_usage_from_message(body, blen, &ex->rec.tokens);
    publish_usage(ex);
    if (ex->hooks.buffered != NULL) {
        ex->hooks.buffered(ex, &status, h, ex->resp_body);
        body = (const char *)evbuffer_pullup(ex->resp_body, -1);
        blen = evbuffer_get_length(ex->resp_body);
    }
    add_gateway_headers(ex, h);
    gh_http_respond(req, status, (const char *)evbuffer_pullup(h, -1), evbuffer_get_length(h), body,
                    blen);
    gh_exchange_free(ex);
}

/* Ends a stream that broke after bytes reached the client, the way Anthropic ends one. */
static void end_broken_stream(gh_exchange_t *ex, CURLcode rc)
{
    char body[512], ev[600];
    const char *type = ex->timed_out ? "timeout_error" : "api_error";
    int n;

    gh_reply_error_body(body, sizeof(body), GH_SHAPE_ANTHROPIC, type,
                        ex->timed_out ? "upstream timed out mid-stream"
                                      : "upstream connection failed mid-stream");
    n = snprintf(ev, sizeof(ev), "event: error\ndata: %s\n\n", body);
    gh_log_warn("stream from %s broke after its first byte: %s", ex->prov->name,
                ex->timed_out ? "timeout" : curl_easy_strerror(rc));
    ex->rec.status = ex->status;
    gh_usage_set(ex->rec.error_type, sizeof(ex->rec.error_type), type, strlen(type));
    publish_usage(ex);
    if (ex->hooks.stream_end != NULL)
        ex->hooks.stream_end(ex, 1);
    else if (ex->sse_resp)
        gh_http_stream_write(ex->req, ev, (size_t)n);
    gh_http_stream_end(ex->req);
    gh_exchange_free(ex);
}

/* Every target failed on its transport (no HTTP answer to relay): 502 or 504. */
static void fail_transport(gh_exchange_t *ex)
{
    CURLcode rc = (CURLcode)ex->last_transport;
    char hdr[96];
    int timeout = rc == CURLE_OPERATION_TIMEDOUT;

    snprintf(hdr, sizeof(hdr), "x-gatehouse-request-id: %s\r\n", ex->rec.request_id);
    ex->rec.status = timeout ? 504 : 502;
    gh_usage_set(ex->rec.error_type, sizeof(ex->rec.error_type),
                 timeout ? "timeout_error" : "upstream_unreachable",
                 strlen(timeout ? "timeout_error" : "upstream_unreachable"));
    publish_usage(ex);
    ex->req->on_abort = NULL;
    ex->req->on_drain = NULL;
    if (timeout)
        gh_reply_error(ex->req, ex->shape, 504, "timeout_error", hdr,
                       "upstream provider '%s' timed out", ex->prov->name);
    else
        gh_reply_error(ex->req, ex->shape, 502, "api_error", hdr,
                       "upstream provider '%s' unreachable: %s", ex->prov->name,
                       curl_easy_strerror(rc));
    gh_exchange_free(ex);
}

/* Retry timer: the back-off is over. */
static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    GH_UNUSED(fd);
    GH_UNUSED(what);
    start_attempt(arg);
}

/* The exponential back-off before retry number n (1-based), with jitter in [d/2, d], stretched
 * to honour retry-after. -1 when retry-after asks for longer than backoff_max_ms. */
static int64_t backoff_ms(const gh_provider_t *p, int n, int64_t retry_after_ms)
{
    int64_t d = p->backoff_initial_ms > 0 ? p->backoff_initial_ms : 0, max = p->backoff_max_ms;
    int i;

    for (i = 1; i < n && d < max; i++)
        d *= 2;
    if (d > max)
        d = max;
    if (d > 1)
        d = d / 2 + (int64_t)randombytes_uniform((uint32_t)(d / 2 + 1));
    if (retry_after_ms > 0) {
        if (retry_after_ms > max)
            return -1;
        if (retry_after_ms > d)
            d = retry_after_ms;
    }
    return d;
}

/* After a failed attempt: the next key of this target, a retry after back-off, the next target,
 * or (nothing left) the last failure goes to the client. */
static void fall_back(gh_exchange_t *ex, outcome_t why)
{
    const gh_provider_t *p = ex->prov;
    size_t k = (size_t)(ex->key - p->keys);
    int64_t delay;

    if (ex->stream_body) {
        /* the streamed body is gone: it cannot be sent again */
        if (ex->last_transport != 0)
            fail_transport(ex);
        else
            relay_buffered(ex);
        return;
    }
    if (k < GH_PROXY_MAX_KEYS) {
        ex->tried[k] = 1;
        if (why == OUTCOME_KEY_BAD)
            ex->excluded[k] = 1;
    }
    if (why == OUTCOME_RATE_LIMIT)
        gh_limits_cooldown(
            ex->key->id,
            gh_wall_ms() + (ex->retry_after_ms > 0 ? ex->retry_after_ms : GH_PROXY_COOLDOWN_MS));
    /* another key of the same target that has not been tried in this pass */
    for (k = 0; k < p->nkeys && k < GH_PROXY_MAX_KEYS; k++)
        if (!ex->tried[k] && !ex->excluded[k] && !key_cooling(p->keys[k].id)) {
            start_attempt(ex);
            return;
        }
    /* a back-off retry on this target */
    if (why == OUTCOME_RETRYABLE && ex->retries < p->max_retries &&
        (delay = backoff_ms(p, ex->retries + 1, ex->retry_after_ms)) >= 0) {
        struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)((delay % 1000) * 1000)};
        ex->retries++;
        memset(ex->tried, 0, sizeof(ex->tried));
        evtimer_add(ex->retry_timer, &tv);
        return;
    }
    /* the next target */
    if (ex->target + 1 < ex->route.ntargets) {
        ex->target++;
        ex->retries = 0;
        memset(ex->tried, 0, sizeof(ex->tried));
        memset(ex->excluded, 0, sizeof(ex->excluded));
        start_attempt(ex);
        return;
    }
    /* nothing left: the client gets the last failure */
    if (ex->last_transport != 0)
        fail_transport(ex);
    else
        relay_buffered(ex);
}

/* Ends one attempt: relay, or fall back when the answer allows it and nothing was sent yet. */
static void attempt_done(gh_exchange_t *ex, CURLcode rc)
{
    gh_http_req_t *req = ex->req;

    ex->in_multi = 0;
    evtimer_del(ex->idle_timer);
    if (req->streaming) {
        if (rc == CURLE_OK) {
            ex->rec.status = ex->status;
            publish_usage(ex);
            if (ex->hooks.stream_end != NULL)
                ex->hooks.stream_end(ex, 0);
            gh_http_stream_end(req);
            gh_exchange_free(ex);
        } else {
            end_broken_stream(ex, rc);
        }
        return;
    }
    if (rc != CURLE_OK || !ex->headers_done) {
        ex->last_transport = rc != CURLE_OK ? (int)rc : (int)CURLE_RECV_ERROR;
        ex->retry_after_ms = -1;
        gh_log_warn("upstream %s (attempt %d): %s", ex->prov->name, ex->rec.attempts,
                    ex->timed_out ? "timed out" : curl_easy_strerror(rc));
        fall_back(ex, OUTCOME_RETRYABLE);
        return;
    }
    ex->last_transport = 0;
    if (ex->failing) {
        gh_log_info("upstream %s answered %d (attempt %d); falling back", ex->prov->name,
                    ex->status, ex->rec.attempts);
        fall_back(ex, classify_status(ex->status));
        return;
    }
    relay_buffered(ex);
}

/* gh_upstream_xfer_t.done */
static void on_done(gh_upstream_xfer_t *x, CURLcode rc)
{
    attempt_done((gh_exchange_t *)x, rc);
}

/* No progress within timeout_ms: stop the transfer; it counts as a failed attempt. */
static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    gh_exchange_t *ex = arg;
    uint64_t idle_us = gh_now_us() - ex->progress_us, limit_us = (uint64_t)idle_ms(ex) * 1000u;
    GH_UNUSED(fd);
    GH_UNUSED(what);

    if (idle_us < limit_us) {
        uint64_t left = limit_us - idle_us;
        struct timeval tv = {(time_t)(left / 1000000u), (suseconds_t)(left % 1000000u)};
        evtimer_add(ex->idle_timer, &tv);
        return;
    }
    ex->timed_out = 1;
    if (ex->in_multi) {
        gh_upstream_stop(&ex->xfer);
        ex->in_multi = 0;
    }
    attempt_done(ex, CURLE_OPERATION_TIMEDOUT);
}

/* The client went away: record what was used so far, drop the transfer and our state. */
static void on_client_abort(void *arg)
{
    gh_exchange_t *ex = arg;

    ex->rec.status = 499;
    gh_usage_set(ex->rec.error_type, sizeof(ex->rec.error_type), "client_closed", 13);
    publish_usage(ex);
    gh_exchange_free(ex);
}

/* Copies the forwardable client headers into a curl list and adds the provider key. */
static int build_headers(gh_exchange_t *ex, const gh_provider_key_t *key)
{
    const gh_http_head_t *h = &ex->req->head;
    struct curl_slist *l = NULL, *t;
    char line[8192 + 256];
    int have_ctype = 0, have_version = 0, n;
    size_t i;

    for (i = 0; i < h->nheaders; i++) {
        const gh_header_t *hd = &h->headers[i];
        if (!gh_proxy_forward_req_header(hd->name, hd->name_len))
            continue;
        if (hd->name_len + hd->value_len + 3 > sizeof(line))
            continue;
        if (gh_http_name_eq(hd->name, hd->name_len, "content-type"))
            have_ctype = 1;
        if (gh_http_name_eq(hd->name, hd->name_len, "anthropic-version"))
            have_version = 1;
        if (ex->extra_beta != NULL && gh_http_name_eq(hd->name, hd->name_len, "anthropic-beta"))
            continue; /* replaced below by the computed value */
        /* "Name;" is curl's way to send a header with an empty value; built with memcpy, as
         * this runs for every header of every request */
        memcpy(line, hd->name, hd->name_len);
        if (hd->value_len == 0) {
            line[hd->name_len] = ';';
            line[hd->name_len + 1] = '\0';
        } else {
            line[hd->name_len] = ':';
            line[hd->name_len + 1] = ' ';
            memcpy(line + hd->name_len + 2, hd->value, hd->value_len);
            line[hd->name_len + 2 + hd->value_len] = '\0';
        }
        if ((t = curl_slist_append(l, line)) == NULL)
            goto fail;
        l = t;
    }
    if (!have_ctype && (t = curl_slist_append(l, "Content-Type: application/json")) != NULL)
        l = t;
    if (!have_version && (t = curl_slist_append(l, "anthropic-version: 2023-06-01")) != NULL)
        l = t;
    if (ex->extra_beta != NULL && ex->extra_beta[0] != '\0') {
        snprintf(line, sizeof(line), "anthropic-beta: %s", ex->extra_beta);
        if ((t = curl_slist_append(l, line)) == NULL)
            goto fail;
        l = t;
    }
    if ((t = curl_slist_append(l, "Expect:")) == NULL)
        goto fail;
    l = t;
    if (ex->stream_body && ex->req->head.content_length < 0) {
        if ((t = curl_slist_append(l, "Transfer-Encoding: chunked")) == NULL)
            goto fail;
        l = t;
    }
    n = snprintf(line, sizeof(line), "x-api-key: %s", key->secret);
    t = curl_slist_append(l, line);
    sodium_memzero(line, n > 0 && (size_t)n < sizeof(line) ? (size_t)n : sizeof(line));
    if (t == NULL)
        goto fail;
    l = t;
    curl_slist_free_all(ex->hdrs);
    ex->hdrs = l;
    return GH_OK;
fail:
    gh_log_error("curl_slist_append failed");
    curl_slist_free_all(l);
    return GH_ERR;
}

/* Picks, at random in proportion to the weights, one of the target's keys that is neither
 * refused, cooling down, nor already tried in this pass. NULL when none is left. */
static const gh_provider_key_t *pick_key(gh_exchange_t *ex)
{
    const gh_provider_t *p = ex->prov;
    uint32_t total = 0, r;
    size_t i;

    for (i = 0; i < p->nkeys && i < GH_PROXY_MAX_KEYS; i++)
        if (!ex->tried[i] && !ex->excluded[i] && !key_cooling(p->keys[i].id))
            total += (uint32_t)(p->keys[i].weight > 0 ? p->keys[i].weight : 1);
    if (total == 0)
        return NULL;
    r = randombytes_uniform(total);
    for (i = 0; i < p->nkeys && i < GH_PROXY_MAX_KEYS; i++) {
        uint32_t w;
        if (ex->tried[i] || ex->excluded[i] || key_cooling(p->keys[i].id))
            continue;
        w = (uint32_t)(p->keys[i].weight > 0 ? p->keys[i].weight : 1);
        if (r < w)
            return &p->keys[i];
        r -= w;
    }
    return NULL;
}

/* Prepares the body for the current target: the client's bytes when the model and parameters
 * are unchanged, else a rewrite of them. */
static int prepare_body(gh_exchange_t *ex, const char **body, size_t *len)
{
    const gh_target_t *t = &ex->route.targets[ex->target];

    free(ex->fwd_body);
    ex->fwd_body = NULL;
    if (strcmp(t->model, ex->rec.model_requested) == 0 && ex->route.params[0] == '\0') {
        *body = ex->req->body;
        *len = ex->req->body_len;
        return GH_OK;
    }
    if (gh_route_rewrite_body(ex->req->body, ex->req->body_len, t->model, ex->route.params,
                              &ex->fwd_body, &ex->fwd_len) != GH_OK)
        return GH_ERR;
    *body = ex->fwd_body;
    *len = ex->fwd_len;
    return GH_OK;
}

/* CURLOPT_READFUNCTION for a request body that streams in from the client: hands over what has
 * arrived, pauses when nothing has yet, and ends when the client's body ended. */
static size_t on_read_body(char *buf, size_t size, size_t n, void *arg)
{
    gh_exchange_t *ex = arg;
    struct evbuffer *in = ex->req->body_in;
    size_t got;

    if (evbuffer_get_length(in) == 0) {
        if (ex->req->body_done)
            return 0;
        ex->body_paused = 1;
        return CURL_READFUNC_PAUSE;
    }
    got = (size_t)evbuffer_remove(in, buf, size * n);
    gh_http_body_consumed(ex->req);
    return got;
}

/* More of a streamed request body arrived (or it ended): wake curl if it waits for it. */
static void on_body_arrived(void *arg)
{
    gh_exchange_t *ex = arg;
    if (ex->body_paused && ex->in_multi) {
        ex->body_paused = 0;
        curl_easy_pause(ex->xfer.easy, CURLPAUSE_CONT);
    }
}

/* The current target's provider is at its own rate limit in gatehouse: the attempt is not made;
 * the next target is tried, or the client gets a 429 naming the provider. */
static void provider_full(gh_exchange_t *ex)
{
    char body[512];
    long n;

    gh_log_info("provider %s is at its rate limit; %s", ex->prov->name,
                ex->target + 1 < ex->route.ntargets ? "trying the next target" : "refusing");
    if (ex->target + 1 < ex->route.ntargets) {
        ex->target++;
        ex->retries = 0;
        memset(ex->tried, 0, sizeof(ex->tried));
        memset(ex->excluded, 0, sizeof(ex->excluded));
        start_attempt(ex);
        return;
    }
    if (ex->rec.attempts > 0 && ex->last_transport == 0 && ex->status != 0) {
        relay_buffered(ex); /* an earlier target's real answer says more than our own 429 */
        return;
    }
    gh_limits_count_refusal(ex->prov_res.limited == GH_LIMITED_REQUESTS ? GH_LIMITS_REFUSED_REQUESTS
                                                                        : GH_LIMITS_REFUSED_TOKENS);
    n = snprintf(body, sizeof(body), "provider '%s' rate limit", ex->prov->name);
    GH_UNUSED(n);
    refuse_rate(ex, &ex->prov_res, "rate_limited", body);
}

/* The client's anthropic-beta value, NUL-terminated (the parser ends every value), or NULL. */
static const char *client_beta(const gh_exchange_t *ex)
{
    const gh_header_t *b = gh_http_header(&ex->req->head, "anthropic-beta");
    return b != NULL ? b->value : NULL;
}

/* See exchange.h. */
void gh_exchange_betas(gh_exchange_t *ex, const gh_jspan_t *spans)
{
    int changed = 0, rc;

    if (spans != NULL)
        rc = gh_beta_header_scanned(client_beta(ex), ex->req->body, spans, ex->beta_flags, NULL, 0,
                                    NULL, 0, ex->beta_needed, sizeof(ex->beta_needed), &changed);
    else
        rc = gh_beta_header(client_beta(ex), NULL, 0, ex->beta_flags, NULL, 0, NULL, 0,
                            ex->beta_needed, sizeof(ex->beta_needed), &changed);
    ex->beta_changed = rc == GH_OK && changed;
}

/* Picks the anthropic-beta value for the current provider: its add/strip policy applied to
 * what the request needs; NULL (forward the client's header untouched) when nothing changed. */
static void provider_betas(gh_exchange_t *ex)
{
    const gh_provider_t *p = ex->prov;
    const char *base = ex->beta_changed ? ex->beta_needed : client_beta(ex);
    int changed = 0;

    ex->extra_beta = ex->beta_changed ? ex->beta_needed : NULL;
    if (p->nbeta_add == 0 && p->nbeta_strip == 0)
        return;
    if (gh_beta_header(base, NULL, 0, 0, (const char *const *)p->beta_add, p->nbeta_add,
                       (const char *const *)p->beta_strip, p->nbeta_strip, ex->beta_out,
                       sizeof(ex->beta_out), &changed) == GH_OK &&
        (changed || ex->beta_changed))
        ex->extra_beta = ex->beta_out;
}

/* Starts one upstream attempt on the current target (moving on when it has no usable key). */
static void start_attempt(gh_exchange_t *ex)
{
    gh_http_req_t *req = ex->req;
    const gh_target_t *t;
    const char *body;
    size_t ulen, blen;
    CURL *e;

    for (;;) {
        t = &ex->route.targets[ex->target];
        ex->prov = t->prov;
        ex->key = pick_key(ex);
        if (ex->key != NULL)
            break;
        if (ex->target + 1 >= ex->route.ntargets) {
            if (ex->rec.attempts == 0) {
                char msg[160], hdr[64];
                int64_t soonest = 0, now = gh_wall_ms();
                size_t i;
                for (i = 0; i < ex->prov->nkeys; i++) {
                    int64_t until = gh_limits_cooldown_until(ex->prov->keys[i].id, now);
                    if (until > 0 && (soonest == 0 || until < soonest))
                        soonest = until;
                }
                snprintf(hdr, sizeof(hdr), "retry-after: %lld\r\n",
                         (long long)(soonest > now ? (soonest - now + 999) / 1000 : 1));
                snprintf(msg, sizeof(msg), "%s", ex->prov->name);
                gh_exchange_refuse(
                    ex, 429, "rate_limit_error", "provider_keys_cooling", hdr,
                    "every API key of provider '%s' is cooling down after a rate limit; "
                    "retry after the time in the retry-after header",
                    msg);
            } else if (ex->last_transport != 0) {
                fail_transport(ex);
            } else {
                relay_buffered(ex);
            }
            return;
        }
        ex->target++;
        ex->retries = 0;
        memset(ex->tried, 0, sizeof(ex->tried));
        memset(ex->excluded, 0, sizeof(ex->excluded));
    }
    gh_usage_set(ex->rec.provider, sizeof(ex->rec.provider), ex->prov->name,
                 strlen(ex->prov->name));
    gh_usage_set(ex->rec.model, sizeof(ex->rec.model), t->model, strlen(t->model));
    /* the previous attempt's provider window keeps its request but no tokens */
    settle_provider(ex, 0, 0);
    if (ex->prov->rpm_limit >= 0 || ex->prov->itpm_limit >= 0 || ex->prov->otpm_limit >= 0) {
        gh_limit_cfg_t pc = {ex->prov->rpm_limit, ex->prov->itpm_limit, ex->prov->otpm_limit};
        if (gh_limits_admit(GH_LIMITS_KIND_PROVIDER, ex->prov->name, &pc, ex->est_in, ex->est_out,
                            gh_wall_ms(), &ex->prov_res) != GH_OK) {
            provider_full(ex);
            return;
        }
        ex->prov_admitted = ex->prov;
    }
    if (prepare_body(ex, &body, &blen) != GH_OK) {
        refuse(ex, 400, "invalid_request_error", "invalid_request_error",
               "could not apply the model parameters to the request body%s", "");
        return;
    }
    ulen = strlen(ex->prov->base_url) + strlen(ex->upstream_path) +
           (req->head.query ? strlen(req->head.query) + 1 : 0) + 1;
    free(ex->url);
    ex->url = malloc(ulen);
    provider_betas(ex);
    if (ex->url == NULL || build_headers(ex, ex->key) != GH_OK)
        goto oom;
    snprintf(ex->url, ulen, "%s%s%s%s", ex->prov->base_url, ex->upstream_path,
             req->head.query ? "?" : "", req->head.query ? req->head.query : "");
    evbuffer_drain(ex->resp_headers, evbuffer_get_length(ex->resp_headers));
    evbuffer_drain(ex->resp_body, evbuffer_get_length(ex->resp_body));
    ex->status = 0;
    ex->headers_done = 0;
    ex->failing = 0;
    ex->sse_resp = 0;
    ex->timed_out = 0;
    ex->rec.upstream_request_id[0] = '\0';
    if (ex->xfer.easy == NULL && (ex->xfer.easy = gh_upstream_easy_get()) == NULL)
        goto oom;
    e = ex->xfer.easy;
    ex->xfer.done = on_done;
    ex->rec.attempts++;
    curl_easy_setopt(e, CURLOPT_URL, ex->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, &ex->xfer);
    if (ex->method != NULL && strcmp(ex->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (ex->method != NULL && strcmp(ex->method, "DELETE") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else if (ex->stream_body) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read_body);
        curl_easy_setopt(e, CURLOPT_READDATA, ex);
        curl_easy_setopt(
            e, CURLOPT_POSTFIELDSIZE_LARGE,
            (curl_off_t)(req->head.content_length >= 0 ? req->head.content_length : -1));
    } else {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, ex->hdrs);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, ex);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, ex);
    gh_upstream_defaults(e, GH_PROXY_CONNECT_TIMEOUT_MS);
    start_idle(ex);
    if (gh_upstream_start(&ex->xfer) != GH_OK) {
        refuse(ex, 500, "api_error", "internal_error", "could not start the upstream request%s",
               "");
        return;
    }
    ex->in_multi = 1;
    return;
oom:
    gh_log_error("out of memory setting up an upstream request");
    refuse(ex, 500, "api_error", "internal_error", "out of memory%s", "");
}

/* Creates the exchange and the start of its usage record. */
gh_exchange_t *gh_exchange_new(gh_http_req_t *req, const char *endpoint)
{
    gh_exchange_t *ex;

    if (exchange_pool.n > 0) {
        struct evbuffer *h, *b;
        struct event *it, *rt;
        ex = exchange_pool.free[--exchange_pool.n];
        h = ex->resp_headers;
        b = ex->resp_body;
        it = ex->idle_timer;
        rt = ex->retry_timer;
        memset(ex, 0, sizeof(*ex));
        ex->resp_headers = h;
        ex->resp_body = b;
        ex->idle_timer = it;
        ex->retry_timer = rt;
    } else if ((ex = calloc(1, sizeof(*ex))) == NULL) {
        gh_log_error("calloc(exchange) failed");
        return NULL;
    }
    ex->req = req;
    ex->provs = gh_worker_provs_acquire();
    ex->upstream_path = endpoint;
    gh_shm_request_id(ex->rec.request_id, sizeof(ex->rec.request_id));
    gh_usage_now_iso(ex->rec.started_at, sizeof(ex->rec.started_at));
    gh_usage_set(ex->rec.endpoint, sizeof(ex->rec.endpoint), endpoint, strlen(endpoint));
    ex->rec.ttft_ms = -1;
    if (ex->resp_headers == NULL)
        ex->resp_headers = evbuffer_new();
    if (ex->resp_body == NULL)
        ex->resp_body = evbuffer_new();
    if (ex->idle_timer == NULL)
        ex->idle_timer = evtimer_new(gh_worker->base, on_idle_timeout, ex);
    if (ex->retry_timer == NULL)
        ex->retry_timer = evtimer_new(gh_worker->base, on_retry_timer, ex);
    if (ex->resp_headers == NULL || ex->resp_body == NULL || ex->idle_timer == NULL ||
        ex->retry_timer == NULL) {
        gh_log_error("evbuffer_new/evtimer_new failed");
        gh_exchange_free(ex);
        return NULL;
    }
    gh_sse_init(&ex->sse, on_sse_event, ex);
    return ex;
}

/* A conservative estimate of a body's input tokens: about one token per 6 bytes of JSON, low
 * enough that a request Anthropic accepts is never refused for its context window. */
int64_t gh_exchange_estimate_tokens(size_t body_len)
{
    return (int64_t)(body_len / 6);
}

/* gh_limits_budget_check's seed: what the key has spent since the period began, from SQLite.
 * The master seeds every key that had a budget at start-up, so a worker runs this only for a key
 * given a budget since, or when a period rolls over (when it has no rows yet). */
static double budget_seed(void *arg, int64_t period_start_ms)
{
    double spent = 0;

    gh_store_key_spend(gh_worker->db, (const char *)arg, period_start_ms, &spent);
    return spent;
}

/* The key's budget, rate limits and concurrency cap, in that order; answers the refusal itself
 * (and returns GH_ERR) when one is exhausted. max_tokens is the output estimate. */
int gh_exchange_admit_key(gh_exchange_t *ex, const gh_vkey_t *vk, int64_t max_tokens)
{
    int64_t now = gh_wall_ms();
    double spent = 0;

    ex->budget = vk->budget_usd;
    snprintf(ex->budget_period, sizeof(ex->budget_period), "%s",
             vk->budget_period[0] ? vk->budget_period : "1M");
    if (ex->budget >= 0 &&
        gh_limits_budget_check(ex->rec.key_id, ex->budget_period, ex->budget, now, budget_seed,
                               ex->rec.key_id, &spent) != GH_OK) {
        char reset[64], msg[240];
        gh_usage_iso(gh_limits_period_end_ms(ex->budget_period, now), reset, sizeof(reset));
        snprintf(msg, sizeof(msg), "$%.2f per %s (spent $%.4f); it resets at %s", ex->budget,
                 ex->budget_period, spent, reset);
        gh_limits_count_refusal(GH_LIMITS_REFUSED_BUDGET);
        ex->budget = -1; /* nothing to add */
        refuse(ex, 402, "billing_error", "budget_exceeded",
               "this API key has used up its budget of %s", msg);
        return GH_ERR;
    }
    ex->key_cfg.rpm = vk->rpm_limit;
    ex->key_cfg.itpm = vk->itpm_limit;
    ex->key_cfg.otpm = vk->otpm_limit;
    ex->est_in = (int64_t)(ex->req->body_len / 4) + 1;
    ex->est_out = max_tokens > 0 ? max_tokens : 1;
    ex->key_limited = vk->rpm_limit >= 0 || vk->itpm_limit >= 0 || vk->otpm_limit >= 0;
    if (ex->key_limited) {
        if (gh_limits_admit(GH_LIMITS_KIND_KEY, ex->rec.key_id, &ex->key_cfg, ex->est_in,
                            ex->est_out, now, &ex->key_res) != GH_OK) {
            int tokens = ex->key_res.limited != GH_LIMITED_REQUESTS;
            gh_limits_count_refusal(tokens ? GH_LIMITS_REFUSED_TOKENS : GH_LIMITS_REFUSED_REQUESTS);
            refuse_rate(ex, &ex->key_res, "rate_limited",
                        ex->key_res.limited == GH_LIMITED_REQUESTS ? "API key's requests per minute"
                        : ex->key_res.limited == GH_LIMITED_INPUT_TOKENS
                            ? "API key's input tokens per minute"
                            : "API key's output tokens per minute");
            return GH_ERR;
        }
        ex->key_admitted = 1;
    }
    if (vk->max_parallel >= 0) {
        if (gh_limits_enter(GH_LIMITS_KIND_KEY, ex->rec.key_id, vk->max_parallel,
                            (int32_t)gh_getpid()) != GH_OK) {
            char msg[64];
            gh_limits_count_refusal(GH_LIMITS_REFUSED_CONCURRENCY);
            snprintf(msg, sizeof(msg), "%lld", (long long)vk->max_parallel);
            /* nothing was sent upstream: the admission is undone, not settled */
            if (ex->key_admitted)
                gh_limits_cancel(GH_LIMITS_KIND_KEY, ex->rec.key_id, ex->key_res.admitted_ms,
                                 ex->est_in, ex->est_out);
            ex->key_admitted = 0;
            gh_exchange_refuse(
                ex, 429, "rate_limit_error", "concurrency_limited", "retry-after: 1\r\n",
                "this API key already has its maximum of %s requests in flight", msg);
            return GH_ERR;
        }
        ex->in_parallel = 1;
    }
    return GH_OK;
}

/* See exchange.h. */
void gh_exchange_start(gh_exchange_t *ex)
{
    ex->req->on_abort = on_client_abort;
    ex->req->on_drain = on_client_drain;
    ex->req->on_body = on_body_arrived;
    ex->req->handler_arg = ex;
    start_attempt(ex);
}

/* See exchange.h. */
void gh_exchange_write(gh_exchange_t *ex, const void *p, size_t n)
{
    gh_http_stream_write(ex->req, p, n);
}
