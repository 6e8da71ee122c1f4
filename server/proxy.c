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

/* The request pipeline for a native request: authenticate, validate, resolve, authorise,
 * forward. */
void gh_proxy_messages(gh_http_req_t *req, const char *upstream_path)
{
    static const char *const keys[] = {"model", "stream", "max_tokens"};
    gh_jspan_t spans[3];
    gh_exchange_t *ex;
    const gh_vkey_t *vk = NULL;
    const char *amsg = NULL;
    size_t err_off = 0;
    gh_auth_result_t ar;
    char model[GH_MODEL_MAX], err[300];
    int64_t window;

    gh_worker_refresh();
    ex = gh_exchange_new(req, upstream_path);
    if (ex == NULL) {
        gh_reply_error(req, GH_SHAPE_ANTHROPIC, 500, "api_error", NULL, "out of memory");
        return;
    }
    ar = gh_auth_request(&req->head, &gh_worker->keys, &vk, &amsg);
    if (vk != NULL)
        gh_usage_set(ex->rec.key_id, sizeof(ex->rec.key_id), vk->id, strlen(vk->id));
    if (ar != GH_AUTH_OK) {
        gh_exchange_refuse(ex, 401, "authentication_error", "authentication_error", NULL, "%s", amsg);
        return;
    }

    if (gh_jscan_object(req->body, req->body_len, keys, 3, spans, &err_off) != GH_OK) {
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
        gh_exchange_refuse(ex, 400, "invalid_request_error", "invalid_request_error", NULL, "model: %s",
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
        gh_exchange_refuse(ex, 400, "invalid_request_error", "invalid_request_error", NULL, "%s", err);
        return;
    }
    if (!gh_route_allowed(vk, &ex->route)) {
        gh_exchange_refuse(ex, 403, "permission_error", "model_not_allowed", NULL,
               "model '%s' is not allowed for this API key", model);
        return;
    }
    if (ex->route.ntargets == 0) {
        gh_exchange_refuse(ex, 503, "api_error", "no_provider", NULL,
               "no provider is configured: set ANTHROPIC_API_KEY on first start or add one with "
               "the admin API%s",
               "");
        return;
    }
    window = ex->route.max_input_tokens > 0
                 ? ex->route.max_input_tokens
                 : gh_auth_context_window(ex->route.targets[0].model);
    if (ex->route.enforce_context && window > 0 &&
        gh_exchange_estimate_tokens(req->body_len) > window) {
        snprintf(err, sizeof(err), "prompt is too long: %lld tokens > %lld maximum",
                 (long long)gh_exchange_estimate_tokens(req->body_len), (long long)window);
        gh_exchange_refuse(ex, 400, "invalid_request_error", "context_window_exceeded", NULL, "%s", err);
        return;
    }
    if (gh_exchange_admit_key(ex, vk, spans[2].type == GH_JSON_NUMBER
                              ? strtoll(req->body + spans[2].off, NULL, 10)
                              : 0) != GH_OK)
        return;
    gh_exchange_start(ex);
}
