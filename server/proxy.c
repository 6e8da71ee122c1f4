/* proxy.c: the native Anthropic relay: authenticate the virtual key, check the model, send the
 * request bytes upstream untouched (only credentials and hop-by-hop headers change), relay the
 * answer as it arrives, and leave one usage record per request. */
#include "config.h"

#include <event2/buffer.h>
#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "gh.h"
#include "jscan.h"
#include "log.h"
#include "proxy.h"
#include "reply.h"
#include "shm.h"
#include "sse.h"
#include "upstream.h"
#include "usage.h"
#include "worker.h"

#define GH_PROXY_PAUSE_AT (1024 * 1024)            /* client backlog that pauses upstream reads */
#define GH_PROXY_MAX_RESP_BODY (256u * 1024 * 1024) /* a buffered (non-SSE) answer */
#define GH_PROXY_CONNECT_TIMEOUT_MS 10000L

/* One client request relayed upstream; owned by the request from start until done or abort. */
typedef struct {
    gh_upstream_xfer_t xfer; /* first: CURLOPT_PRIVATE points here */
    gh_http_req_t *req;
    gh_provset_t *provs; /* the provider generation this request holds a reference on */
    const gh_provider_t *prov;
    struct curl_slist *hdrs;
    char *url;
    struct evbuffer *resp_headers; /* relayed "Name: value\r\n" lines */
    struct evbuffer *resp_body;    /* a non-streamed answer, sent whole with its length */
    struct event *idle_timer;      /* first-byte and between-bytes timeout */
    gh_sse_parser_t sse;           /* reads usage and errors out of a relayed stream */
    gh_usage_rec_t rec;            /* the usage_log row this request becomes */
    int status;
    int headers_done;
    int sse_resp; /* the answer is text/event-stream: relay as it arrives */
    int paused;
    int timed_out;
    int in_multi;
    uint64_t first_byte_us;
} gh_exchange_t;

/* Request headers never forwarded: framing and hop-by-hop (RFC 9110 7.6.1), the client's
 * credentials (the provider key replaces them) and gatehouse's own. */
int gh_proxy_forward_req_header(const char *name, size_t len)
{
    static const char *const drop[] = {
        "host",          "content-length", "transfer-encoding", "connection",
        "keep-alive",    "proxy-connection", "te",              "trailer",
        "upgrade",       "expect",         "x-api-key",         "authorization",
        "proxy-authorization", "accept-encoding", "cookie",     "http2-settings",
    };
    size_t i;

    for (i = 0; i < GH_ARRAY_LEN(drop); i++)
        if (gh_http_name_eq(name, len, drop[i]))
            return 0;
    if (len >= 12 && strncasecmp(name, "x-gatehouse-", 12) == 0)
        return 0;
    return 1;
}

/* Response headers not relayed: framing is redone by our HTTP layer. */
int gh_proxy_forward_resp_header(const char *name, size_t len)
{
    static const char *const drop[] = {"content-length", "transfer-encoding", "connection",
                                       "keep-alive", "proxy-connection", "te", "trailer",
                                       "upgrade", "set-cookie", "alt-svc"};
    size_t i;

    for (i = 0; i < GH_ARRAY_LEN(drop); i++)
        if (gh_http_name_eq(name, len, drop[i]))
            return 0;
    return 1;
}

/* Frees the exchange and everything it holds; the request itself belongs to the connection. */
static void exchange_free(gh_exchange_t *ex)
{
    if (ex == NULL)
        return;
    if (ex->in_multi) {
        gh_upstream_stop(&ex->xfer);
        ex->in_multi = 0;
    }
    if (ex->xfer.easy != NULL) {
        gh_upstream_easy_put(ex->xfer.easy);
        ex->xfer.easy = NULL;
    }
    if (ex->idle_timer != NULL) {
        event_free(ex->idle_timer);
        ex->idle_timer = NULL;
    }
    curl_slist_free_all(ex->hdrs);
    ex->hdrs = NULL;
    free(ex->url);
    ex->url = NULL;
    if (ex->resp_headers != NULL)
        evbuffer_free(ex->resp_headers);
    if (ex->resp_body != NULL)
        evbuffer_free(ex->resp_body);
    gh_sse_free(&ex->sse);
    gh_worker_provs_release(ex->provs);
    ex->provs = NULL;
    free(ex);
}

/* Completes the usage record (timings, cost) and hands it to the recorder. Runs before the last
 * byte is queued to the client, so a request the client saw finish always has its row. */
static void publish_usage(gh_exchange_t *ex)
{
    uint64_t now = gh_now_us();
    const gh_price_t *price;

    ex->rec.latency_ms = (int64_t)((now - ex->req->start_us) / 1000u);
    ex->rec.ttft_ms = ex->first_byte_us != 0
                          ? (int64_t)((ex->first_byte_us - ex->req->start_us) / 1000u)
                          : -1;
    price = gh_auth_price(ex->rec.model);
    ex->rec.cost_usd = price != NULL ? gh_usage_cost(price, &ex->rec.tokens) : 0.0;
    gh_shm_usage_publish(&ex->rec);
}

/* Answers a refusal made by gatehouse itself and records it. */
static void refuse(gh_exchange_t *ex, int status, const char *type, const char *error_type,
                   const char *fmt, const char *arg)
{
    char hdr[96];

    ex->rec.status = status;
    gh_usage_set(ex->rec.error_type, sizeof(ex->rec.error_type), error_type, strlen(error_type));
    publish_usage(ex);
    snprintf(hdr, sizeof(hdr), "x-gatehouse-request-id: %s\r\n", ex->rec.request_id);
    gh_reply_error(ex->req, GH_SHAPE_ANTHROPIC, status, type, hdr, fmt, arg);
    exchange_free(ex);
}

/* Re-arms the idle timeout: upstream must show progress within the provider's timeout_ms. */
static void arm_idle(gh_exchange_t *ex)
{
    int ms = ex->prov->timeout_ms > 0 ? ex->prov->timeout_ms : GH_DEFAULT_UPSTREAM_TIMEOUT_MS;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ex->idle_timer, &tv);
}

/* Appends the headers gatehouse adds to every relayed answer. */
static void add_gateway_headers(gh_exchange_t *ex, struct evbuffer *b)
{
    evbuffer_add_printf(b, "x-gatehouse-request-id: %s\r\nx-gatehouse-provider: %s\r\n",
                        ex->rec.request_id, ex->prov->name);
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
    else if (ex->rec.error_type[0] == '\0')
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
    return GH_OK;
}

/* CURLOPT_HEADERFUNCTION: records the status, keeps relayable headers, and on the blank line
 * ending a final (non-1xx) head decides between streaming and buffering. */
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
        evbuffer_drain(ex->resp_headers, evbuffer_get_length(ex->resp_headers));
        return len;
    }
    if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        if (ex->status >= 200) {
            ex->headers_done = 1;
            if (ex->sse_resp)
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
    if (gh_http_name_eq(buf, nlen, "content-type") && ex->status == 200 &&
        vend - vstart >= 17 && strncasecmp(buf + vstart, "text/event-stream", 17) == 0)
        ex->sse_resp = 1;
    if (gh_http_name_eq(buf, nlen, "request-id"))
        gh_usage_set(ex->rec.upstream_request_id, sizeof(ex->rec.upstream_request_id),
                     buf + vstart, vend - vstart);
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
    if (ex->paused && gh_http_pending(ex->req) < GH_PROXY_PAUSE_AT / 2) {
        ex->paused = 0;
        gh_upstream_resume(&ex->xfer);
    }
}

/* CURLOPT_WRITEFUNCTION: SSE bytes go to the client at once (pausing when it reads slower than
 * upstream writes) and through the usage parser; other answers are collected to be sent with a
 * Content-Length. */
static size_t on_body(char *buf, size_t size, size_t n, void *arg)
{
    gh_exchange_t *ex = arg;
    size_t len = size * n;

    arm_idle(ex);
    if (ex->first_byte_us == 0)
        ex->first_byte_us = gh_now_us();
    if (ex->sse_resp && ex->headers_done) {
        if (gh_http_pending(ex->req) >= GH_PROXY_PAUSE_AT) {
            ex->paused = 1;
            return CURL_WRITEFUNC_PAUSE;
        }
        gh_http_stream_write(ex->req, buf, len);
        if (ex->sse.cb != NULL)
            gh_sse_feed(&ex->sse, buf, len); /* a broken stream stops accounting, not relay */
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

/* Ends the exchange, answering the client according to how the transfer ended. */
static void finish(gh_exchange_t *ex, CURLcode rc)
{
    gh_http_req_t *req = ex->req;
    char hdr[96];

    ex->in_multi = 0;
    evtimer_del(ex->idle_timer);
    req->on_abort = NULL;
    req->on_drain = NULL;
    snprintf(hdr, sizeof(hdr), "x-gatehouse-request-id: %s\r\n", ex->rec.request_id);
    if (rc == CURLE_OK && ex->headers_done) {
        ex->rec.status = ex->status;
        if (req->streaming) {
            publish_usage(ex);
            gh_http_stream_end(req);
        } else {
            struct evbuffer *h = ex->resp_headers;
            const char *body = (const char *)evbuffer_pullup(ex->resp_body, -1);
            size_t blen = evbuffer_get_length(ex->resp_body);
            if (ex->status >= 400)
                note_error_type(ex, body, blen);
            else
                gh_usage_from_message(body, blen, &ex->rec.tokens);
            publish_usage(ex);
            add_gateway_headers(ex, h);
            gh_http_respond(req, ex->status, (const char *)evbuffer_pullup(h, -1),
                            evbuffer_get_length(h), body, blen);
        }
    } else if (req->streaming) {
        /* Bytes already reached the client: end the stream the way Anthropic does. */
        char body[512], ev[600];
        int n;
        const char *type = ex->timed_out ? "timeout_error" : "api_error";
        gh_reply_error_body(body, sizeof(body), GH_SHAPE_ANTHROPIC, type,
                            ex->timed_out ? "upstream timed out mid-stream"
                                          : "upstream connection failed mid-stream");
        n = snprintf(ev, sizeof(ev), "event: error\ndata: %s\n\n", body);
        gh_log_warn("stream from %s broke after first byte: %s", ex->prov->name,
                    ex->timed_out ? "timeout" : curl_easy_strerror(rc));
        ex->rec.status = ex->status;
        gh_usage_set(ex->rec.error_type, sizeof(ex->rec.error_type), type, strlen(type));
        publish_usage(ex);
        gh_http_stream_write(req, ev, (size_t)n);
        gh_http_stream_end(req);
    } else if (ex->timed_out || rc == CURLE_OPERATION_TIMEDOUT) {
        gh_log_warn("upstream %s timed out", ex->prov->name);
        ex->rec.status = 504;
        gh_usage_set(ex->rec.error_type, sizeof(ex->rec.error_type), "timeout_error", 13);
        publish_usage(ex);
        gh_reply_error(req, GH_SHAPE_ANTHROPIC, 504, "timeout_error", hdr,
                       "upstream provider '%s' timed out", ex->prov->name);
    } else {
        gh_log_warn("upstream %s failed: %s", ex->prov->name, curl_easy_strerror(rc));
        ex->rec.status = 502;
        gh_usage_set(ex->rec.error_type, sizeof(ex->rec.error_type), "upstream_unreachable", 20);
        publish_usage(ex);
        gh_reply_error(req, GH_SHAPE_ANTHROPIC, 502, "api_error", hdr,
                       "upstream provider '%s' unreachable: %s", ex->prov->name,
                       curl_easy_strerror(rc));
    }
    exchange_free(ex);
}

/* gh_upstream_xfer_t.done */
static void on_done(gh_upstream_xfer_t *x, CURLcode rc)
{
    gh_exchange_t *ex = (gh_exchange_t *)x;
    ex->in_multi = 0;
    finish(ex, rc);
}

/* No progress within timeout_ms: stop the transfer and answer 504 (or end the stream). */
static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    gh_exchange_t *ex = arg;
    GH_UNUSED(fd);
    GH_UNUSED(what);

    ex->timed_out = 1;
    if (ex->in_multi) {
        gh_upstream_stop(&ex->xfer);
        ex->in_multi = 0;
    }
    finish(ex, CURLE_OPERATION_TIMEDOUT);
}

/* The client went away: record what was used so far, drop the transfer and our state. */
static void on_client_abort(void *arg)
{
    gh_exchange_t *ex = arg;

    ex->rec.status = 499;
    gh_usage_set(ex->rec.error_type, sizeof(ex->rec.error_type), "client_closed", 13);
    publish_usage(ex);
    exchange_free(ex);
}

/* Copies the forwardable client headers into a curl list and adds the provider key. */
static int build_headers(gh_exchange_t *ex, const gh_provider_key_t *key)
{
    const gh_http_head_t *h = &ex->req->head;
    struct curl_slist *l = NULL, *t;
    char line[8192 + 256];
    int have_ctype = 0, have_version = 0;
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
        /* "Name;" is curl's way to send a header with an empty value */
        if (hd->value_len == 0)
            snprintf(line, sizeof(line), "%.*s;", (int)hd->name_len, hd->name);
        else
            snprintf(line, sizeof(line), "%.*s: %.*s", (int)hd->name_len, hd->name,
                     (int)hd->value_len, hd->value);
        if ((t = curl_slist_append(l, line)) == NULL)
            goto fail;
        l = t;
    }
    if (!have_ctype && (t = curl_slist_append(l, "Content-Type: application/json")) != NULL)
        l = t;
    if (!have_version && (t = curl_slist_append(l, "anthropic-version: 2023-06-01")) != NULL)
        l = t;
    if ((t = curl_slist_append(l, "Expect:")) == NULL)
        goto fail;
    l = t;
    snprintf(line, sizeof(line), "x-api-key: %s", key->secret);
    t = curl_slist_append(l, line);
    sodium_memzero(line, sizeof(line));
    if (t == NULL)
        goto fail;
    l = t;
    ex->hdrs = l;
    return GH_OK;
fail:
    gh_log_error("curl_slist_append failed");
    curl_slist_free_all(l);
    return GH_ERR;
}

/* Picks one of the provider's keys at random in proportion to the weights. */
static const gh_provider_key_t *pick_key(const gh_provider_t *prov)
{
    uint32_t total = 0, r;
    size_t i;

    for (i = 0; i < prov->nkeys; i++)
        total += (uint32_t)(prov->keys[i].weight > 0 ? prov->keys[i].weight : 1);
    r = randombytes_uniform(total);
    for (i = 0; i < prov->nkeys; i++) {
        uint32_t w = (uint32_t)(prov->keys[i].weight > 0 ? prov->keys[i].weight : 1);
        if (r < w)
            return &prov->keys[i];
        r -= w;
    }
    return &prov->keys[prov->nkeys - 1];
}

/* Creates the exchange and the start of its usage record. */
static gh_exchange_t *exchange_new(gh_http_req_t *req, const char *endpoint)
{
    gh_exchange_t *ex = calloc(1, sizeof(*ex));

    if (ex == NULL) {
        gh_log_error("calloc(exchange) failed");
        return NULL;
    }
    ex->req = req;
    ex->provs = gh_worker_provs_acquire();
    gh_shm_request_id(ex->rec.request_id, sizeof(ex->rec.request_id));
    gh_usage_now_iso(ex->rec.started_at, sizeof(ex->rec.started_at));
    gh_usage_set(ex->rec.endpoint, sizeof(ex->rec.endpoint), endpoint, strlen(endpoint));
    ex->rec.ttft_ms = -1;
    return ex;
}

/* Starts the upstream transfer for an authorised, validated request. */
static void forward(gh_exchange_t *ex, const char *upstream_path)
{
    gh_http_req_t *req = ex->req;
    const gh_provider_key_t *key;
    size_t ulen;
    CURL *e;

    key = pick_key(ex->prov);
    ex->resp_headers = evbuffer_new();
    ex->resp_body = evbuffer_new();
    ex->idle_timer = evtimer_new(gh_worker->base, on_idle_timeout, ex);
    ulen = strlen(ex->prov->base_url) + strlen(upstream_path) +
           (req->head.query ? strlen(req->head.query) + 1 : 0) + 1;
    ex->url = malloc(ulen);
    if (ex->resp_headers == NULL || ex->resp_body == NULL || ex->idle_timer == NULL ||
        ex->url == NULL)
        goto oom;
    snprintf(ex->url, ulen, "%s%s%s%s", ex->prov->base_url, upstream_path,
             req->head.query ? "?" : "", req->head.query ? req->head.query : "");
    if (build_headers(ex, key) != GH_OK)
        goto oom;
    gh_sse_init(&ex->sse, on_sse_event, ex);
    e = gh_upstream_easy_get();
    if (e == NULL)
        goto oom;
    ex->xfer.easy = e;
    ex->xfer.done = on_done;
    ex->rec.attempts = 1;
    curl_easy_setopt(e, CURLOPT_URL, ex->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, &ex->xfer);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, ex->hdrs);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, ex);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, ex);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, GH_PROXY_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_USERAGENT, NULL);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    req->on_abort = on_client_abort;
    req->on_drain = on_client_drain;
    req->handler_arg = ex;
    arm_idle(ex);
    if (gh_upstream_start(&ex->xfer) != GH_OK) {
        req->on_abort = NULL;
        req->on_drain = NULL;
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

/* The request pipeline for a native request: authenticate, validate, authorise, forward. */
void gh_proxy_messages(gh_http_req_t *req, const char *upstream_path)
{
    static const char *const keys[] = {"model", "stream"};
    static const char *const auth_msg[] = {
        [GH_AUTH_MISSING] = "missing API key: send a gatehouse virtual key in x-api-key or "
                            "Authorization: Bearer%s",
        [GH_AUTH_UNKNOWN] = "invalid API key%s",
        [GH_AUTH_REVOKED] = "API key has been revoked%s",
        [GH_AUTH_EXPIRED] = "API key has expired%s",
    };
    gh_jspan_t spans[2];
    gh_exchange_t *ex;
    const gh_vkey_t *vk = NULL;
    const char *secret = NULL;
    size_t err_off = 0, slen = 0;
    gh_auth_result_t ar;
    char model[sizeof(ex->rec.model)];
    struct timespec ts;
    int64_t now_ms;

    gh_worker_refresh();
    ex = exchange_new(req, upstream_path);
    if (ex == NULL) {
        gh_reply_error(req, GH_SHAPE_ANTHROPIC, 500, "api_error", NULL, "out of memory");
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    gh_auth_extract(&req->head, &secret, &slen);
    ar = gh_auth_lookup(&gh_worker->keys, secret, slen, now_ms, &vk);
    if (vk != NULL)
        gh_usage_set(ex->rec.key_id, sizeof(ex->rec.key_id), vk->id, strlen(vk->id));
    if (ar != GH_AUTH_OK) {
        refuse(ex, 401, "authentication_error", "authentication_error", auth_msg[ar], "");
        return;
    }

    if (gh_jscan_object(req->body, req->body_len, keys, 2, spans, &err_off) != GH_OK) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%zu", err_off);
        refuse(ex, 400, "invalid_request_error", "invalid_request_error",
               req->body_len == 0 ? "request body is empty: expected a JSON object%s"
                                  : "request body is not valid JSON (error at byte %s)",
               req->body_len == 0 ? "" : msg);
        return;
    }
    ex->rec.stream = spans[1].type == GH_JSON_TRUE;
    if (spans[0].type != GH_JSON_STRING || spans[0].len <= 2 ||
        gh_jscan_string(req->body, &spans[0], model, sizeof(model)) <= 0) {
        refuse(ex, 400, "invalid_request_error", "invalid_request_error", "model: %s",
               spans[0].type == GH_JSON_ABSENT ? "Field required"
                                               : "must be a non-empty string of at most 159 bytes");
        return;
    }
    gh_usage_set(ex->rec.model_requested, sizeof(ex->rec.model_requested), model, strlen(model));
    if (spans[1].type != GH_JSON_ABSENT && spans[1].type != GH_JSON_TRUE &&
        spans[1].type != GH_JSON_FALSE) {
        refuse(ex, 400, "invalid_request_error", "invalid_request_error",
               "stream: Input should be a valid boolean%s", "");
        return;
    }
    if (!gh_auth_model_allowed(vk, model)) {
        refuse(ex, 403, "permission_error", "model_not_allowed",
               "model '%s' is not allowed for this API key", model);
        return;
    }
    ex->prov = gh_worker_default_provider(ex->provs);
    if (ex->prov == NULL || ex->prov->nkeys == 0) {
        refuse(ex, 503, "api_error", "no_provider",
               "no provider is configured: set ANTHROPIC_API_KEY on first start or add one with "
               "the admin API%s",
               "");
        return;
    }
    gh_usage_set(ex->rec.provider, sizeof(ex->rec.provider), ex->prov->name,
                 strlen(ex->prov->name));
    gh_usage_set(ex->rec.model, sizeof(ex->rec.model), model, strlen(model));
    forward(ex, upstream_path);
}
