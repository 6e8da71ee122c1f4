/* proxy.c: the request pipeline of DESIGN.md section 2: authenticate the virtual key, validate
 * and resolve the model, then try the route's targets in order (falling back on 429/5xx/529,
 * timeouts and connection errors, before the first byte reaches the client), relay the answer
 * as it arrives, and leave exactly one usage record per request. */
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

#include "auth.h"
#include "exchange.h"
#include "gh.h"
#include "jscan.h"
#include "oai.h"
#include "quota.h"
#include "log.h"
#include "proxy.h"
#include "reply.h"
#include "route.h"
#include "shm.h"
#include "sse.h"
#include "upstream.h"
#include "usage.h"
#include "worker.h"

/* A header name with its length, so a rule check compares lengths before bytes (these rules run
 * for every header of every request and answer). */
typedef struct {
    const char *s;
    size_t n;
} gh_name_t;
#define GH_NAME(lit)                                                                               \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }

/* 1 when name (len bytes, any case) is one of list. */
static int name_in(const char *name, size_t len, const gh_name_t *list, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (list[i].n == len && strncasecmp(name, list[i].s, len) == 0)
            return 1;
    return 0;
}

/* Request headers never forwarded: framing and hop-by-hop (RFC 9110 7.6.1), the client's
 * credentials (the provider key replaces them) and gatehouse's own. */
int gh_proxy_forward_req_header(const char *name, size_t len)
{
    static const gh_name_t drop[] = {
        GH_NAME("host"),
        GH_NAME("content-length"),
        GH_NAME("transfer-encoding"),
        GH_NAME("connection"),
        GH_NAME("keep-alive"),
        GH_NAME("proxy-connection"),
        GH_NAME("te"),
        GH_NAME("trailer"),
        GH_NAME("upgrade"),
        GH_NAME("expect"),
        GH_NAME("x-api-key"),
        GH_NAME("authorization"),
        GH_NAME("proxy-authorization"),
        GH_NAME("accept-encoding"),
        GH_NAME("cookie"),
        GH_NAME("http2-settings"),
    };

    if (name_in(name, len, drop, GH_ARRAY_LEN(drop)))
        return 0;
    if (len >= 12 && strncasecmp(name, "x-gatehouse-", 12) == 0)
        return 0;
    return 1;
}

/* Response headers not relayed: framing is redone by our HTTP layer. */
int gh_proxy_forward_resp_header(const char *name, size_t len)
{
    static const gh_name_t drop[] = {
        GH_NAME("content-length"), GH_NAME("transfer-encoding"), GH_NAME("connection"),
        GH_NAME("keep-alive"),     GH_NAME("proxy-connection"),  GH_NAME("te"),
        GH_NAME("trailer"),        GH_NAME("upgrade"),           GH_NAME("set-cookie"),
        GH_NAME("alt-svc"),
    };

    return !name_in(name, len, drop, GH_ARRAY_LEN(drop));
}

/* Authenticates the request for ex; answers 401 itself and returns NULL on failure. */
static const gh_vkey_t *authenticate(gh_exchange_t *ex)
{
    const gh_vkey_t *vk = NULL;
    const char *amsg = NULL;
    gh_auth_result_t ar = gh_auth_request(&ex->req->head, &gh_worker->keys, &vk, &amsg);

    if (vk != NULL)
        gh_usage_set(ex->rec.key_id, sizeof(ex->rec.key_id), vk->id, strlen(vk->id));
    if (ar != GH_AUTH_OK) {
        gh_exchange_refuse(ex, 401, "authentication_error", "authentication_error", NULL, "%s",
                           amsg);
        return NULL;
    }
    return vk;
}

/* The common second half of both pipelines, on a body in Anthropic's shape: validate model and
 * stream, resolve the route, check the allowlist and the context window, admit, start. */
static void route_and_start(gh_exchange_t *ex, const gh_vkey_t *vk)
{
    /* one scan finds the members routing needs and those beta detection looks into */
    static const char *keys[3 + GH_BETA_NKEYS] = {"model", "stream", "max_tokens"};
    gh_http_req_t *req = ex->req;
    gh_jspan_t spans[3 + GH_BETA_NKEYS];
    size_t err_off = 0;
    char model[GH_MODEL_MAX], err[300];
    int64_t window;

    if (keys[3] == NULL)
        memcpy(&keys[3], gh_beta_keys, sizeof(gh_beta_keys));
    if (gh_jscan_object(req->body, req->body_len, keys, GH_ARRAY_LEN(keys), spans, &err_off) !=
        GH_OK) {
        snprintf(err, sizeof(err), "%zu", err_off);
        gh_exchange_refuse(ex, 400, "invalid_request_error", "invalid_request_error", NULL,
                           req->body_len == 0 ? "request body is empty: expected a JSON object%s"
                                              : "request body is not valid JSON (error at byte %s)",
                           req->body_len == 0 ? "" : err);
        return;
    }
    ex->rec.stream = spans[1].type == GH_JSON_TRUE;
    if (spans[0].type != GH_JSON_STRING || spans[0].len <= 2 ||
        gh_jscan_string(req->body, &spans[0], model, sizeof(model)) <= 0) {
        gh_exchange_refuse(
            ex, 400, "invalid_request_error", "invalid_request_error", NULL, "model: %s",
            spans[0].type == GH_JSON_ABSENT ? "Field required"
                                            : "must be a non-empty string of at most 159 bytes");
        return;
    }
    gh_usage_set(ex->rec.model_requested, sizeof(ex->rec.model_requested), model, strlen(model));
    if (spans[1].type != GH_JSON_ABSENT && spans[1].type != GH_JSON_TRUE &&
        spans[1].type != GH_JSON_FALSE) {
        gh_exchange_refuse(ex, 400, "invalid_request_error", "invalid_request_error", NULL,
                           "stream: Input should be a valid boolean%s", "");
        return;
    }
    if (gh_route_resolve(ex->provs, vk, model, &ex->route, err, sizeof(err)) != GH_OK) {
        gh_exchange_refuse(ex, 400, "invalid_request_error", "invalid_request_error", NULL, "%s",
                           err);
        return;
    }
    if (!gh_route_allowed(vk, &ex->route)) {
        gh_exchange_refuse(ex, 403, "permission_error", "model_not_allowed", NULL,
                           "model '%s' is not allowed for this API key", model);
        return;
    }
    if (ex->route.ntargets == 0) {
        gh_exchange_refuse(ex, 503, "api_error", "no_provider", NULL,
                           "no provider is configured: set ANTHROPIC_API_KEY on first start or "
                           "add one with the admin API%s",
                           "");
        return;
    }
    window = ex->route.max_input_tokens > 0 ? ex->route.max_input_tokens
                                            : gh_auth_context_window(ex->route.targets[0].model);
    if (ex->route.enforce_context && window > 0 &&
        gh_exchange_estimate_tokens(req->body_len) > window) {
        snprintf(err, sizeof(err), "prompt is too long: %lld tokens > %lld maximum",
                 (long long)gh_exchange_estimate_tokens(req->body_len), (long long)window);
        gh_exchange_refuse(ex, 400, "invalid_request_error", "context_window_exceeded", NULL, "%s",
                           err);
        return;
    }
    gh_exchange_betas(ex, &spans[3]);
    if (gh_exchange_admit_key(ex, vk,
                              spans[2].type == GH_JSON_NUMBER
                                  ? strtoll(req->body + spans[2].off, NULL, 10)
                                  : 0) != GH_OK)
        return;
    gh_exchange_start(ex);
}

/* The request pipeline for a native request: authenticate, then route and start. The body goes
 * upstream byte for byte (only the model is spliced when a route rewrites it). */
void gh_proxy_messages(gh_http_req_t *req, const char *upstream_path)
{
    gh_exchange_t *ex;
    const gh_vkey_t *vk;

    gh_worker_refresh();
    ex = gh_exchange_new(req, upstream_path);
    if (ex == NULL) {
        gh_reply_error(req, GH_SHAPE_ANTHROPIC, 500, "api_error", NULL, "out of memory");
        return;
    }
    if ((vk = authenticate(ex)) == NULL)
        return;
    route_and_start(ex, vk);
}

/* What an OpenAI-shaped request keeps while its answer is translated back. */
typedef struct {
    gh_oai_kind_t kind;
    gh_oai_stream_t *stream;
    gh_buf_t out;
} oai_ctx_t;

/* hooks.buffered: Anthropic answer or error → OpenAI's. */
static void oai_buffered(gh_exchange_t *ex, int *status, struct evbuffer *headers,
                         struct evbuffer *body)
{
    oai_ctx_t *oc = ex->hook_arg;
    const char *b = (const char *)evbuffer_pullup(body, -1);
    size_t len = evbuffer_get_length(body);
    int rc;

    GH_UNUSED(headers);
    gh_buf_reset(&oc->out);
    if (*status >= 200 && *status < 300) {
        rc = gh_oai_response(oc->kind, ex->rec.model_requested, b, len, &oc->out);
        if (rc != GH_OK) {
            gh_log_warn("upstream answer for %s could not be translated", ex->rec.endpoint);
            gh_buf_reset(&oc->out);
            gh_oai_error_body(502, "the provider's answer could not be translated", NULL,
                              "bad_upstream_answer", &oc->out);
            *status = 502;
        }
    } else {
        gh_oai_error(*status, b, len, &oc->out);
    }
    evbuffer_drain(body, len);
    evbuffer_add(body, oc->out.data, oc->out.len);
}

/* hooks.sse_event: one Anthropic event becomes zero or more OpenAI stream events. */
static void oai_sse_event(gh_exchange_t *ex, const char *event, size_t event_len, const char *data,
                          size_t data_len)
{
    oai_ctx_t *oc = ex->hook_arg;

    gh_buf_reset(&oc->out);
    if (oc->stream == NULL)
        return;
    if (gh_oai_stream_event(oc->stream, event, event_len, data, data_len, &oc->out) != GH_OK) {
        gh_buf_reset(&oc->out);
        gh_oai_stream_finish(oc->stream, 1, &oc->out);
    }
    if (oc->out.len > 0)
        gh_exchange_write(ex, oc->out.data, oc->out.len);
}

/* hooks.stream_end: closes the OpenAI stream ([DONE] or response.completed, or an error). */
static void oai_stream_end(gh_exchange_t *ex, int broken)
{
    oai_ctx_t *oc = ex->hook_arg;

    gh_buf_reset(&oc->out);
    if (oc->stream != NULL)
        gh_oai_stream_finish(oc->stream, broken, &oc->out);
    if (oc->out.len > 0)
        gh_exchange_write(ex, oc->out.data, oc->out.len);
}

/* hooks.finished: frees the translation state. */
static void oai_finished(gh_exchange_t *ex)
{
    oai_ctx_t *oc = ex->hook_arg;

    if (oc == NULL)
        return;
    gh_oai_stream_free(oc->stream);
    gh_buf_free(&oc->out);
    free(oc);
    ex->hook_arg = NULL;
}

/* The pipeline for OpenAI-shaped requests: authenticate, translate the body to the Messages API
 * (or /v1/complete), then the same routing, limits and usage as native requests; the answer is
 * translated back, streams event by event. */
void gh_proxy_openai(gh_http_req_t *req, int kind, const char *endpoint)
{
    gh_oai_opts_t opts = {4096};
    gh_oai_req_t treq;
    gh_exchange_t *ex;
    const gh_vkey_t *vk;
    oai_ctx_t *oc;
    char err[400], param[64];
    int status = 400;

    gh_worker_refresh();
    ex = gh_exchange_new(req, endpoint);
    oc = calloc(1, sizeof(*oc));
    if (ex == NULL || oc == NULL) {
        free(oc);
        gh_exchange_free(ex);
        gh_reply_error(req, GH_SHAPE_OPENAI, 500, "api_error", NULL, "out of memory");
        return;
    }
    ex->shape = GH_SHAPE_OPENAI;
    oc->kind = (gh_oai_kind_t)kind;
    ex->hook_arg = oc;
    ex->hooks.finished = oai_finished;
    ex->hooks.buffered = oai_buffered;
    if ((vk = authenticate(ex)) == NULL)
        return;
    memset(&treq, 0, sizeof(treq));
    if (gh_oai_request(oc->kind, req->body, req->body_len, &opts, &treq, &status, err, sizeof(err),
                       param, sizeof(param)) != GH_OK) {
        gh_usage_set(ex->rec.model_requested, sizeof(ex->rec.model_requested), treq.model,
                     strlen(treq.model));
        gh_exchange_refuse(ex, status, "invalid_request_error", "invalid_request_error", NULL, "%s",
                           err);
        gh_oai_req_free(&treq);
        return;
    }
    /* the translated body replaces the client's: the request owns it from here */
    free(req->body);
    req->body = treq.body;
    req->body_len = treq.body_len;
    treq.body = NULL;
    ex->upstream_path = treq.upstream_path;
    if (treq.stream) {
        oc->stream = gh_oai_stream_new(oc->kind, treq.model, treq.include_usage);
        ex->hooks.sse_event = oai_sse_event;
        ex->hooks.stream_end = oai_stream_end;
    }
    gh_oai_req_free(&treq);
    route_and_start(ex, vk);
}

/* OpenAI operations Anthropic has no equivalent for: a clear error naming the operation, in
 * OpenAI's shape (Bifrost's UnsupportedOperationError), never a bare 404. */
void gh_proxy_unsupported(gh_http_req_t *req, const char *operation)
{
    gh_buf_t b = {0};
    static const char h[] = "Content-Type: application/json\r\n";
    char msg[200];

    snprintf(msg, sizeof(msg),
             "%s is not supported by the Anthropic provider (UnsupportedOperationError)",
             operation);
    if (gh_oai_error_body(400, msg, NULL, "unsupported_operation", &b) == GH_OK)
        gh_http_respond(req, 400, h, sizeof(h) - 1, b.data, b.len);
    else
        gh_reply_error(req, GH_SHAPE_OPENAI, 400, "invalid_request_error", NULL, "%s", msg);
    gh_buf_free(&b);
}
