/* models.c: the model listing: each provider's /v1/models is fetched once per cache period (all
 * waiting requests share the fetch), merged with the route names, filtered and paged. */
#include "config.h"

#include <event2/buffer.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <time.h>

#include "auth.h"
#include "gh.h"
#include "jscan.h"
#include "log.h"
#include "models.h"
#include "reply.h"
#include "route.h"
#include "shm.h"
#include "upstream.h"
#include "usage.h"
#include "worker.h"

#define GH_MODELS_TTL_US (300u * 1000000u) /* upstream model lists change rarely */
#define GH_MODELS_FETCH_TIMEOUT_MS 10000L
#define GH_MODELS_MAX_WAITERS 1024

typedef struct {
    char id[GH_MODEL_MAX];
    char display_name[GH_MODEL_MAX];
    char created_at[32];
    char owned_by[64];
} model_t;

/* One provider's /v1/models fetch. */
typedef struct {
    gh_upstream_xfer_t xfer; /* first: CURLOPT_PRIVATE */
    struct evbuffer *body;
    struct curl_slist *hdrs;
    char url[1200];
    char provider[64];
    int index;
} fetch_t;

static struct {
    model_t *models;
    size_t n;
    uint64_t fetched_us;
    uint64_t epoch; /* provider changes invalidate the cache */
    fetch_t **fetches;
    int pending;   /* fetches in flight */
    model_t *next; /* being assembled */
    size_t nnext;
    gh_http_req_t *waiters[GH_MODELS_MAX_WAITERS];
    size_t nwaiters;
} mc;

static void answer(gh_http_req_t *req);

/* Adds a model to the list being assembled unless its id is already there. */
static int add_model(const char *id, const char *display, const char *created, const char *owner)
{
    model_t *m, *grown;
    size_t i;

    for (i = 0; i < mc.nnext; i++)
        if (strcmp(mc.next[i].id, id) == 0)
            return GH_OK;
    grown = realloc(mc.next, (mc.nnext + 1) * sizeof(*grown));
    if (grown == NULL)
        return GH_ERR;
    mc.next = grown;
    m = &mc.next[mc.nnext++];
    snprintf(m->id, sizeof(m->id), "%s", id);
    snprintf(m->display_name, sizeof(m->display_name), "%s", display != NULL ? display : id);
    snprintf(m->created_at, sizeof(m->created_at), "%s",
             created != NULL ? created : "1970-01-01T00:00:00Z");
    snprintf(m->owned_by, sizeof(m->owned_by), "%s", owner);
    return GH_OK;
}

/* Reads an Anthropic model list ({"data":[{"id","display_name","created_at"}]}) into the list. */
static void merge_list(const char *provider, const char *json, size_t len)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *root, *data;
    size_t i;

    if (tok == NULL)
        return;
    root = json_tokener_parse_ex(tok, json, (int)len);
    if (root != NULL && json_object_object_get_ex(root, "data", &data) &&
        json_object_is_type(data, json_type_array)) {
        for (i = 0; i < json_object_array_length(data); i++) {
            struct json_object *m = json_object_array_get_idx(data, i), *id, *dn, *ca;
            if (!json_object_object_get_ex(m, "id", &id) ||
                !json_object_is_type(id, json_type_string))
                continue;
            add_model(json_object_get_string(id),
                      json_object_object_get_ex(m, "display_name", &dn) ? json_object_get_string(dn)
                                                                        : NULL,
                      json_object_object_get_ex(m, "created_at", &ca) ? json_object_get_string(ca)
                                                                      : NULL,
                      provider);
        }
    } else {
        gh_log_warn("provider %s: /v1/models answer unreadable; its models are not listed",
                    provider);
    }
    json_object_put(root);
    json_tokener_free(tok);
}

/* Frees one fetch. */
static void fetch_free(fetch_t *f)
{
    if (f == NULL)
        return;
    if (f->xfer.easy != NULL)
        gh_upstream_easy_put(f->xfer.easy);
    curl_slist_free_all(f->hdrs);
    if (f->body != NULL)
        evbuffer_free(f->body);
    free(f);
}

/* Adds a route name as a model of its own. */
static void add_route(void *arg, const char *name)
{
    GH_UNUSED(arg);
    add_model(name, name, NULL, "gatehouse-route");
}

/* Every fetch is back: publish the new list and answer everyone who waited. */
static void fetches_done(void)
{
    size_t i, n = mc.nwaiters;

    gh_route_each(add_route, NULL);
    free(mc.models);
    mc.models = mc.next;
    mc.n = mc.nnext;
    mc.next = NULL;
    mc.nnext = 0;
    mc.fetched_us = gh_now_us();
    free(mc.fetches);
    mc.fetches = NULL;
    mc.nwaiters = 0;
    for (i = 0; i < n; i++)
        answer(mc.waiters[i]);
}

/* gh_upstream_xfer_t.done for one provider's list. */
static void on_fetch_done(gh_upstream_xfer_t *x, CURLcode rc)
{
    fetch_t *f = (fetch_t *)x;
    long status = 0;

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK && status == 200)
        merge_list(f->provider, (const char *)evbuffer_pullup(f->body, -1),
                   evbuffer_get_length(f->body));
    else
        gh_log_warn("provider %s: GET /v1/models failed (%s, status %ld)", f->provider,
                    curl_easy_strerror(rc), status);
    mc.fetches[f->index] = NULL;
    fetch_free(f);
    if (--mc.pending == 0)
        fetches_done();
}

/* CURLOPT_WRITEFUNCTION of a fetch. */
static size_t on_fetch_body(char *buf, size_t size, size_t n, void *arg)
{
    fetch_t *f = arg;
    if (evbuffer_get_length(f->body) + size * n > 8u * 1024 * 1024)
        return 0;
    evbuffer_add(f->body, buf, size * n);
    return size * n;
}

/* Starts GET base_url/v1/models on every provider with a key. */
static void start_fetches(void)
{
    const gh_provset_t *ps = gh_worker->provs;
    char line[8300];
    size_t i;

    mc.epoch = gh_shm_epoch();
    mc.fetches = calloc(ps->n ? ps->n : 1, sizeof(*mc.fetches));
    if (mc.fetches == NULL) {
        fetches_done();
        return;
    }
    for (i = 0; i < ps->n; i++) {
        const gh_provider_t *p = &ps->p[i];
        fetch_t *f;
        CURL *e;

        if (p->nkeys == 0)
            continue;
        f = calloc(1, sizeof(*f));
        if (f == NULL || (f->body = evbuffer_new()) == NULL ||
            (e = gh_upstream_easy_get()) == NULL) {
            fetch_free(f);
            continue;
        }
        f->xfer.easy = e;
        f->xfer.done = on_fetch_done;
        f->index = (int)i;
        snprintf(f->provider, sizeof(f->provider), "%s", p->name);
        snprintf(f->url, sizeof(f->url), "%s/v1/models?limit=1000", p->base_url);
        snprintf(line, sizeof(line), "x-api-key: %s", p->keys[0].secret);
        f->hdrs = curl_slist_append(NULL, line);
        sodium_memzero(line, sizeof(line));
        if (f->hdrs != NULL)
            f->hdrs = curl_slist_append(f->hdrs, "anthropic-version: 2023-06-01");
        curl_easy_setopt(e, CURLOPT_URL, f->url);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &f->xfer);
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->hdrs);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_fetch_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
        gh_upstream_defaults(e, GH_MODELS_FETCH_TIMEOUT_MS);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, GH_MODELS_FETCH_TIMEOUT_MS);
        if (f->hdrs == NULL || gh_upstream_start(&f->xfer) != GH_OK) {
            fetch_free(f);
            continue;
        }
        mc.fetches[i] = f;
        mc.pending++;
    }
    if (mc.pending == 0)
        fetches_done();
}

/* Parses "YYYY-MM-DDTHH:MM:SSZ" into unix seconds (0 when unreadable), for OpenAI's "created". */
static long long unix_of(const char *iso)
{
    int64_t ms;
    return gh_auth_parse_time(iso, &ms) == GH_OK ? (long long)(ms / 1000) : 0;
}

/* Writes one page of the allowed models. */
static void answer(gh_http_req_t *req)
{
    const gh_vkey_t *vk = NULL;
    const char *msg = NULL;
    char lim[16], after[GH_MODEL_MAX], before[GH_MODEL_MAX];
    const char *q = req->head.query;
    size_t *allowed = NULL, na = 0, i, start = 0, end;
    long limit = 20;
    struct evbuffer *out = evbuffer_new();
    gh_usage_rec_t rec;

    memset(&rec, 0, sizeof(rec));
    gh_shm_request_id(rec.request_id, sizeof(rec.request_id));
    gh_usage_now_iso(rec.started_at, sizeof(rec.started_at));
    gh_usage_set(rec.endpoint, sizeof(rec.endpoint), "/v1/models", 10);
    rec.ttft_ms = -1;
    if (gh_auth_request(&req->head, &gh_worker->keys, &vk, &msg) != GH_AUTH_OK) {
        if (vk != NULL)
            gh_usage_set(rec.key_id, sizeof(rec.key_id), vk->id, strlen(vk->id));
        rec.status = 401;
        gh_usage_set(rec.error_type, sizeof(rec.error_type), "authentication_error", 20);
        gh_shm_usage_publish(&rec);
        gh_reply_error(req, GH_SHAPE_ANTHROPIC, 401, "authentication_error", NULL, "%s", msg);
        goto done;
    }
    gh_usage_set(rec.key_id, sizeof(rec.key_id), vk->id, strlen(vk->id));
    if (q != NULL && gh_http_query_param(q, "limit", lim, sizeof(lim)) != NULL) {
        limit = strtol(lim, NULL, 10);
        if (limit < 1 || limit > 1000) {
            rec.status = 400;
            gh_usage_set(rec.error_type, sizeof(rec.error_type), "invalid_request_error", 21);
            gh_shm_usage_publish(&rec);
            gh_reply_error(req, GH_SHAPE_ANTHROPIC, 400, "invalid_request_error", NULL,
                           "limit: must be between 1 and 1000");
            goto done;
        }
    }
    allowed = calloc(mc.n ? mc.n : 1, sizeof(*allowed));
    if (allowed == NULL || out == NULL) {
        gh_reply_error(req, GH_SHAPE_ANTHROPIC, 500, "api_error", NULL, "out of memory");
        goto done;
    }
    for (i = 0; i < mc.n; i++)
        if (gh_auth_model_allowed(vk, mc.models[i].id))
            allowed[na++] = i;
    end = na;
    if (q != NULL && gh_http_query_param(q, "after_id", after, sizeof(after)) != NULL) {
        for (i = 0; i < na; i++)
            if (strcmp(mc.models[allowed[i]].id, after) == 0) {
                start = i + 1;
                break;
            }
    }
    if (q != NULL && gh_http_query_param(q, "before_id", before, sizeof(before)) != NULL) {
        for (i = 0; i < na; i++)
            if (strcmp(mc.models[allowed[i]].id, before) == 0) {
                end = i;
                break;
            }
        /* before_id pages backwards: the last `limit` items before it */
        if (end > start && end - start > (size_t)limit)
            start = end - (size_t)limit;
    }
    if (end > start + (size_t)limit)
        end = start + (size_t)limit;
    if (end < start)
        end = start;
    evbuffer_add_printf(out, "{\"object\":\"list\",\"data\":[");
    for (i = start; i < end; i++) {
        const model_t *m = &mc.models[allowed[i]];
        char id[GH_MODEL_MAX * 6 + 3], dn[GH_MODEL_MAX * 6 + 3], ca[100], ow[400];
        gh_json_quote(m->id, strlen(m->id), id, sizeof(id));
        gh_json_quote(m->display_name, strlen(m->display_name), dn, sizeof(dn));
        gh_json_quote(m->created_at, strlen(m->created_at), ca, sizeof(ca));
        gh_json_quote(m->owned_by, strlen(m->owned_by), ow, sizeof(ow));
        evbuffer_add_printf(out,
                            "%s{\"type\":\"model\",\"id\":%s,\"display_name\":%s,\"created_at\":%s,"
                            "\"object\":\"model\",\"created\":%lld,\"owned_by\":%s}",
                            i > start ? "," : "", id, dn, ca, unix_of(m->created_at), ow);
    }
    if (end > start) {
        char first[GH_MODEL_MAX * 6 + 3], last[GH_MODEL_MAX * 6 + 3];
        const char *f = mc.models[allowed[start]].id, *l = mc.models[allowed[end - 1]].id;
        gh_json_quote(f, strlen(f), first, sizeof(first));
        gh_json_quote(l, strlen(l), last, sizeof(last));
        evbuffer_add_printf(out, "],\"has_more\":%s,\"first_id\":%s,\"last_id\":%s}",
                            end < na ? "true" : "false", first, last);
    } else {
        evbuffer_add_printf(out, "],\"has_more\":false,\"first_id\":null,\"last_id\":null}");
    }
    rec.status = 200;
    rec.latency_ms = (int64_t)((gh_now_us() - req->start_us) / 1000u);
    gh_shm_usage_publish(&rec);
    gh_reply_json(req, 200, (const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out));
done:
    free(allowed);
    if (out != NULL)
        evbuffer_free(out);
}

/* A waiting request whose client left: forget it. */
static void on_waiter_abort(void *arg)
{
    size_t i;
    for (i = 0; i < mc.nwaiters; i++)
        if (mc.waiters[i] == arg) {
            mc.waiters[i] = mc.waiters[--mc.nwaiters];
            return;
        }
}

/* Answers from the cache, or queues the request behind a (new or running) fetch. */
void gh_models_handle(gh_http_req_t *req)
{
    gh_worker_refresh();
    if (mc.fetched_us != 0 && gh_now_us() - mc.fetched_us < GH_MODELS_TTL_US &&
        mc.epoch == gh_shm_epoch()) {
        answer(req);
        return;
    }
    if (mc.nwaiters >= GH_MODELS_MAX_WAITERS) {
        answer(req); /* from the stale list rather than queue without bound */
        return;
    }
    mc.waiters[mc.nwaiters++] = req;
    req->on_abort = on_waiter_abort;
    req->handler_arg = req;
    if (mc.pending == 0 && mc.fetches == NULL)
        start_fetches();
}

/* Frees everything (worker exit). */
void gh_models_cleanup(void)
{
    size_t i;
    if (mc.fetches != NULL && gh_worker != NULL && gh_worker->provs != NULL) {
        for (i = 0; i < gh_worker->provs->n; i++)
            if (mc.fetches[i] != NULL) {
                gh_upstream_stop(&mc.fetches[i]->xfer);
                fetch_free(mc.fetches[i]);
            }
    }
    free(mc.fetches);
    free(mc.models);
    free(mc.next);
    memset(&mc, 0, sizeof(mc));
}
