/* resources.c: Message Batches and Files through gatehouse: ownership per virtual key, model
 * checks on batch requests, streamed uploads and downloads, lists filtered to the caller's own
 * resources, and batch token usage accounted (at the batch discount) when results are read. */
#include "config.h"

#include <event2/buffer.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "exchange.h"
#include "gh.h"
#include "log.h"
#include "resources.h"
#include "route.h"
#include "shm.h"
#include "worker.h"

#define GH_BATCH_DISCOUNT 0.5 /* batch processing costs half the list price */

typedef enum { RES_BATCH = 0, RES_FILE } res_kind_t;

/* Per-model token sums of one batch's results. */
typedef struct {
    char model[GH_MODEL_MAX];
    gh_tokens_t tokens;
    int64_t requests;
} batch_model_t;

/* What a resource request carries through its exchange; freed by hooks.finished. */
typedef struct {
    res_kind_t kind;
    char id[128]; /* the resource the request names, "" for create/list */
    char key_id[40];
    char provider[64];
    int is_delete;
    char *line; /* partial JSONL line of a results stream */
    size_t line_len, line_cap;
    batch_model_t *models; /* results accounting */
    size_t nmodels;
    int64_t nrequests;
    int accounted; /* the batch's usage was already written before */
    int rewritten; /* the answer's JSON was changed and must be re-serialised */
} res_ctx_t;

/* A statement run on the worker's connection; these are admin-rate operations, so a short
 * synchronous SQLite call is acceptable here (never on the messages hot path). */
static int db_exec(const char *sql, const char *a, const char *b, const char *c, int64_t n)
{
    sqlite3_stmt *st = NULL;
    int rc = GH_ERR;

    if (sqlite3_prepare_v2(gh_worker->db, sql, -1, &st, NULL) != SQLITE_OK) {
        gh_log_error("sqlite3_prepare_v2(%.40s) failed: %s", sql, sqlite3_errmsg(gh_worker->db));
        goto done;
    }
    if (a != NULL)
        sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    if (b != NULL)
        sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    if (c != NULL)
        sqlite3_bind_text(st, 3, c, -1, SQLITE_STATIC);
    if (n >= 0)
        sqlite3_bind_int64(st, 4, n);
    if (sqlite3_step(st) != SQLITE_DONE) {
        gh_log_error("sqlite3_step(%.40s) failed: %s", sql, sqlite3_errmsg(gh_worker->db));
        goto done;
    }
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}

/* Looks up who owns resource id; fills provider. Returns 1 when key_id owns it. */
static int owned(res_kind_t kind, const char *id, const char *key_id, char *provider, size_t provsz,
                 int *accounted)
{
    const char *sql = kind == RES_BATCH
                          ? "SELECT key_id, provider, results_accounted_at IS NOT NULL FROM "
                            "batches WHERE id = ?1"
                          : "SELECT key_id, provider, 0 FROM files WHERE id = ?1";
    sqlite3_stmt *st = NULL;
    int yes = 0;

    if (sqlite3_prepare_v2(gh_worker->db, sql, -1, &st, NULL) != SQLITE_OK) {
        gh_log_error("sqlite3_prepare_v2(ownership) failed: %s", sqlite3_errmsg(gh_worker->db));
        return 0;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        const char *p = (const char *)sqlite3_column_text(st, 1);
        yes = k != NULL && strcmp(k, key_id) == 0;
        snprintf(provider, provsz, "%s", p != NULL ? p : "");
        if (accounted != NULL)
            *accounted = sqlite3_column_int(st, 2);
    }
    sqlite3_finalize(st);
    return yes;
}

/* Ids of every resource of one kind the key owns, for filtering lists (a JSON object used as a
 * set). */
static struct json_object *owned_set(res_kind_t kind, const char *key_id)
{
    const char *sql = kind == RES_BATCH ? "SELECT id, input_file_id FROM batches WHERE key_id = ?1"
                                        : "SELECT id, NULL FROM files WHERE key_id = ?1";
    struct json_object *set = json_object_new_object();
    sqlite3_stmt *st = NULL;

    if (set == NULL || sqlite3_prepare_v2(gh_worker->db, sql, -1, &st, NULL) != SQLITE_OK)
        return set;
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    /* the value is a batch's OpenAI input file id (or null) */
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *fid = (const char *)sqlite3_column_text(st, 1);
        json_object_object_add(set, (const char *)sqlite3_column_text(st, 0),
                               fid != NULL ? json_object_new_string(fid) : NULL);
    }
    sqlite3_finalize(st);
    return set;
}

/* Points a batch object's results_url at gatehouse itself (the client's Host, and the
 * /anthropic prefix when the client used it), so results are fetched through the gateway with
 * the virtual key, never from the provider with it. */
static void rewrite_results_url(gh_exchange_t *ex, struct json_object *batch)
{
    const gh_header_t *host = gh_http_header(&ex->req->head, "host");
    const gh_header_t *proto = gh_http_header(&ex->req->head, "x-forwarded-proto");
    struct json_object *url, *id;
    char buf[600];

    if (!json_object_object_get_ex(batch, "results_url", &url) ||
        !json_object_is_type(url, json_type_string) ||
        !json_object_object_get_ex(batch, "id", &id) || host == NULL)
        return;
    snprintf(buf, sizeof(buf), "%s://%.*s%s/v1/messages/batches/%s/results",
             proto != NULL && proto->value_len == 5 && strncmp(proto->value, "https", 5) == 0
                 ? "https"
                 : "http",
             (int)host->value_len, host->value,
             strncmp(ex->req->head.path, "/anthropic/", 11) == 0 ? "/anthropic" : "",
             json_object_get_string(id));
    json_object_object_add(batch, "results_url", json_object_new_string(buf));
}

/* Replaces body with text. */
static void set_body(struct evbuffer *body, const char *text)
{
    evbuffer_drain(body, evbuffer_get_length(body));
    evbuffer_add(body, text, strlen(text));
}

/* See resources.h. */
int gh_resources_owner(int is_batch, const char *id, const char *key_id, char *provider,
                       size_t provsz)
{
    return owned(is_batch ? RES_BATCH : RES_FILE, id, key_id, provider, provsz, NULL);
}

/* See resources.h. */
struct json_object *gh_resources_owned_ids(int is_batch, const char *key_id)
{
    return owned_set(is_batch ? RES_BATCH : RES_FILE, key_id);
}

/* See resources.h. */
void gh_resources_remember(int is_batch, const char *id, const char *key_id, const char *provider,
                           int64_t nrequests, const char *filename)
{
    if (is_batch) {
        db_exec("INSERT OR REPLACE INTO batches (id, key_id, provider, requests) "
                "VALUES (?1, ?2, ?3, ?4)",
                id, key_id, provider, nrequests);
        if (filename != NULL)
            db_exec("UPDATE batches SET input_file_id = ?2 WHERE id = ?1", id, filename, NULL, -1);
        return;
    }
    db_exec("INSERT OR REPLACE INTO files (id, key_id, provider, filename) "
            "VALUES (?1, ?2, ?3, ?4)",
            id, key_id, provider, -1);
    if (filename != NULL)
        db_exec("UPDATE files SET filename = ?2 WHERE id = ?1", id, filename, NULL, -1);
}

/* See resources.h. */
int gh_resources_input_file(const char *batch_id, char *out, size_t outsz)
{
    sqlite3_stmt *st = NULL;
    int rc = GH_ERR;

    if (sqlite3_prepare_v2(gh_worker->db, "SELECT input_file_id FROM batches WHERE id = ?1", -1,
                           &st, NULL) != SQLITE_OK) {
        gh_log_error("sqlite3_prepare_v2(input file) failed: %s", sqlite3_errmsg(gh_worker->db));
        return GH_ERR;
    }
    sqlite3_bind_text(st, 1, batch_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT) {
        snprintf(out, outsz, "%s", (const char *)sqlite3_column_text(st, 0));
        rc = GH_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* See resources.h. */
void gh_resources_forget(int is_batch, const char *id)
{
    db_exec(is_batch ? "DELETE FROM batches WHERE id = ?1" : "DELETE FROM files WHERE id = ?1", id,
            NULL, NULL, -1);
}

/* hooks.buffered: records ownership of a created resource, forgets a deleted one, and filters a
 * list down to the caller's own resources. */
static void on_buffered(gh_exchange_t *ex, int *status, struct evbuffer *headers,
                        struct evbuffer *body)
{
    res_ctx_t *rc = ex->hook_arg;
    struct json_object *root, *data, *id;
    struct json_tokener *tok;
    GH_UNUSED(headers);

    if (*status < 200 || *status >= 300)
        return;
    /* the evbuffer is not NUL-terminated: parse with its length */
    tok = json_tokener_new();
    if (tok == NULL)
        return;
    root = json_tokener_parse_ex(tok, (const char *)evbuffer_pullup(body, -1),
                                 (int)evbuffer_get_length(body));
    json_tokener_free(tok);
    if (root == NULL)
        return;
    if (rc->kind == RES_BATCH && !rc->is_delete) {
        struct json_object *items;
        if (json_object_object_get_ex(root, "data", &items) &&
            json_object_is_type(items, json_type_array)) {
            size_t i;
            for (i = 0; i < json_object_array_length(items); i++)
                rewrite_results_url(ex, json_object_array_get_idx(items, i));
        } else {
            rewrite_results_url(ex, root);
        }
        rc->rewritten = 1;
    }
    if (rc->is_delete) {
        gh_resources_forget(rc->kind == RES_BATCH, rc->id);
    } else if (rc->id[0] == '\0' && json_object_object_get_ex(root, "data", &data) &&
               json_object_is_type(data, json_type_array)) {
        struct json_object *set = owned_set(rc->kind, rc->key_id), *kept = json_object_new_array();
        size_t i, n = json_object_array_length(data);
        for (i = 0; i < n && kept != NULL; i++) {
            struct json_object *item = json_object_array_get_idx(data, i);
            if (json_object_object_get_ex(item, "id", &id) &&
                json_object_object_get_ex(set, json_object_get_string(id), NULL))
                json_object_array_add(kept, json_object_get(item));
        }
        if (kept != NULL) {
            size_t k = json_object_array_length(kept);
            json_object_object_add(root, "data", kept);
            json_object_object_add(root, "first_id",
                                   k ? json_object_get(json_object_object_get(
                                           json_object_array_get_idx(kept, 0), "id"))
                                     : NULL);
            json_object_object_add(root, "last_id",
                                   k ? json_object_get(json_object_object_get(
                                           json_object_array_get_idx(kept, k - 1), "id"))
                                     : NULL);
            rc->rewritten = 1;
        }
        json_object_put(set);
    } else if (rc->id[0] == '\0' && json_object_object_get_ex(root, "id", &id)) {
        struct json_object *fn = NULL;
        json_object_object_get_ex(root, "filename", &fn);
        gh_resources_remember(rc->kind == RES_BATCH, json_object_get_string(id), rc->key_id,
                              rc->provider, rc->nrequests,
                              fn != NULL ? json_object_get_string(fn) : NULL);
    }
    if (rc->rewritten)
        set_body(body, json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
    json_object_put(root);
}

/* Adds one JSONL result line's usage to the per-model sums. */
static void account_line(res_ctx_t *rc, const char *line, size_t len)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *root, *res, *type, *msg, *model;
    gh_tokens_t t;
    size_t i;

    if (tok == NULL)
        return;
    root = json_tokener_parse_ex(tok, line, (int)len);
    if (root != NULL && json_object_object_get_ex(root, "result", &res) &&
        json_object_object_get_ex(res, "type", &type) &&
        strcmp(json_object_get_string(type), "succeeded") == 0 &&
        json_object_object_get_ex(res, "message", &msg) &&
        json_object_object_get_ex(msg, "model", &model)) {
        const char *m = json_object_get_string(model), *js;
        memset(&t, 0, sizeof(t));
        js = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN);
        gh_usage_from_message(js, strlen(js), &t);
        for (i = 0; i < rc->nmodels; i++)
            if (strcmp(rc->models[i].model, m) == 0)
                break;
        if (i == rc->nmodels) {
            batch_model_t *g = realloc(rc->models, (rc->nmodels + 1) * sizeof(*g));
            if (g != NULL) {
                rc->models = g;
                memset(&g[i], 0, sizeof(g[i]));
                snprintf(g[i].model, sizeof(g[i].model), "%s", m);
                rc->nmodels++;
            }
        }
        if (i < rc->nmodels) {
            rc->models[i].tokens.input += t.input;
            rc->models[i].tokens.output += t.output;
            rc->models[i].tokens.cache_creation += t.cache_creation;
            rc->models[i].tokens.cache_read += t.cache_read;
            rc->models[i].requests++;
        }
    }
    json_object_put(root);
    json_tokener_free(tok);
}

/* hooks.data of a results stream: splits lines as they pass (the bytes are relayed untouched
 * by the exchange). */
static void on_results_data(gh_exchange_t *ex, const char *p, size_t n)
{
    res_ctx_t *rc = ex->hook_arg;
    size_t i, start = 0;

    for (i = 0; i < n; i++) {
        if (p[i] != '\n')
            continue;
        if (rc->line_len > 0) {
            if (rc->line_len + (i - start) + 1 > rc->line_cap) {
                size_t cap = (rc->line_len + (i - start) + 1) * 2;
                char *g = realloc(rc->line, cap);
                if (g == NULL)
                    return;
                rc->line = g;
                rc->line_cap = cap;
            }
            memcpy(rc->line + rc->line_len, p + start, i - start);
            rc->line_len += i - start;
            account_line(rc, rc->line, rc->line_len);
            rc->line_len = 0;
        } else {
            account_line(rc, p + start, i - start);
        }
        start = i + 1;
    }
    if (start < n) {
        size_t rest = n - start;
        if (rc->line_len + rest > rc->line_cap) {
            size_t cap = (rc->line_len + rest) * 2;
            char *g = realloc(rc->line, cap);
            if (g == NULL)
                return;
            rc->line = g;
            rc->line_cap = cap;
        }
        memcpy(rc->line + rc->line_len, p + start, rest);
        rc->line_len += rest;
    }
}

/* Writes a batch's usage as usage_log rows (one per model, with ids derived from the batch so a
 * second read adds nothing) and marks the batch accounted. */
static void write_batch_usage(res_ctx_t *rc)
{
    size_t i;

    for (i = 0; i < rc->nmodels; i++) {
        gh_usage_rec_t rec;
        const gh_price_t *price = gh_auth_price(rc->models[i].model);
        char rid[320];

        memset(&rec, 0, sizeof(rec));
        snprintf(rid, sizeof(rid), "%s:%s", rc->id, rc->models[i].model);
        gh_usage_set(rec.request_id, sizeof(rec.request_id), rid, strlen(rid));
        gh_usage_now_iso(rec.started_at, sizeof(rec.started_at));
        gh_usage_set(rec.key_id, sizeof(rec.key_id), rc->key_id, strlen(rc->key_id));
        gh_usage_set(rec.endpoint, sizeof(rec.endpoint), "/v1/messages/batches/results", 28);
        gh_usage_set(rec.model_requested, sizeof(rec.model_requested), rc->models[i].model,
                     strlen(rc->models[i].model));
        gh_usage_set(rec.model, sizeof(rec.model), rc->models[i].model,
                     strlen(rc->models[i].model));
        gh_usage_set(rec.provider, sizeof(rec.provider), rc->provider, strlen(rc->provider));
        gh_usage_set(rec.upstream_request_id, sizeof(rec.upstream_request_id), rc->id,
                     strlen(rc->id));
        rec.status = 200;
        rec.attempts = (int32_t)rc->models[i].requests;
        rec.ttft_ms = -1;
        rec.tokens = rc->models[i].tokens;
        rec.cost_usd = price != NULL ? gh_usage_cost(price, &rec.tokens) * GH_BATCH_DISCOUNT : 0;
        gh_shm_usage_publish(&rec);
    }
    db_exec("UPDATE batches SET results_accounted_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
            "WHERE id = ?1",
            rc->id, NULL, NULL, -1);
}

/* hooks.stream_end of a results stream: once read in full, the batch's usage is written. */
static void on_results_end(gh_exchange_t *ex, int broken)
{
    res_ctx_t *rc = ex->hook_arg;

    if (rc->line_len > 0)
        account_line(rc, rc->line, rc->line_len);
    rc->line_len = 0;
    if (broken || rc->accounted || ex->status != 200)
        return;
    write_batch_usage(rc);
}

/* The accounting of one read of a batch's results by another driver (oai_resources.c). */
struct gh_batch_usage {
    res_ctx_t rc;
};

/* See resources.h. */
gh_batch_usage_t *gh_resources_usage_new(const char *batch_id, const char *key_id)
{
    gh_batch_usage_t *u = calloc(1, sizeof(*u));

    if (u == NULL)
        return NULL;
    u->rc.kind = RES_BATCH;
    snprintf(u->rc.id, sizeof(u->rc.id), "%s", batch_id);
    snprintf(u->rc.key_id, sizeof(u->rc.key_id), "%s", key_id);
    owned(RES_BATCH, batch_id, key_id, u->rc.provider, sizeof(u->rc.provider), &u->rc.accounted);
    return u;
}

/* See resources.h. */
void gh_resources_usage_line(gh_batch_usage_t *u, const char *line, size_t len)
{
    account_line(&u->rc, line, len);
}

/* See resources.h. */
void gh_resources_usage_done(gh_batch_usage_t *u)
{
    if (!u->rc.accounted)
        write_batch_usage(&u->rc);
    u->rc.accounted = 1;
}

/* See resources.h. */
void gh_resources_usage_free(gh_batch_usage_t *u)
{
    if (u == NULL)
        return;
    free(u->rc.line);
    free(u->rc.models);
    free(u);
}

/* hooks.finished: frees the context. */
static void on_finished(gh_exchange_t *ex)
{
    res_ctx_t *rc = ex->hook_arg;
    if (rc == NULL)
        return;
    free(rc->line);
    free(rc->models);
    free(rc);
    ex->hook_arg = NULL;
}

/* See resources.h. */
int gh_resources_prepare_batch(gh_exchange_t *ex, const gh_vkey_t *vk, int64_t *nrequests,
                               const gh_provider_t **prov)
{
    struct json_object *root = json_tokener_parse(ex->req->body), *reqs;
    char err[300], msg[400];
    const char *out;
    size_t i, n;
    int rcode = GH_ERR;

    if (root == NULL || !json_object_object_get_ex(root, "requests", &reqs) ||
        !json_object_is_type(reqs, json_type_array) || json_object_array_length(reqs) == 0) {
        gh_exchange_refuse(ex, 400, "invalid_request_error", "invalid_request_error", NULL,
                           "requests: %s", "must be a non-empty array of {custom_id, params}");
        goto done;
    }
    n = json_object_array_length(reqs);
    for (i = 0; i < n; i++) {
        struct json_object *r = json_object_array_get_idx(reqs, i), *params, *model;
        gh_resolved_t res;
        if (!json_object_object_get_ex(r, "params", &params) ||
            !json_object_object_get_ex(params, "model", &model) ||
            !json_object_is_type(model, json_type_string)) {
            snprintf(msg, sizeof(msg), "requests.%zu.params.model: Field required", i);
            gh_exchange_refuse(ex, 400, "invalid_request_error", "invalid_request_error", NULL,
                               "%s", msg);
            goto done;
        }
        if (gh_route_resolve(ex->provs, vk, json_object_get_string(model), &res, err,
                             sizeof(err)) != GH_OK ||
            res.ntargets == 0) {
            snprintf(msg, sizeof(msg), "requests.%zu.params.model: %s", i,
                     res.ntargets == 0 ? "no provider is configured" : err);
            gh_exchange_refuse(ex, 400, "invalid_request_error", "invalid_request_error", NULL,
                               "%s", msg);
            goto done;
        }
        if (!gh_route_allowed(vk, &res)) {
            gh_exchange_refuse(ex, 403, "permission_error", "model_not_allowed", NULL,
                               "model '%s' is not allowed for this API key",
                               json_object_get_string(model));
            goto done;
        }
        if (*prov == NULL)
            *prov = res.targets[0].prov;
        else if (*prov != res.targets[0].prov) {
            gh_exchange_refuse(ex, 400, "invalid_request_error", "invalid_request_error", NULL,
                               "requests: %s",
                               "every request of a batch must go to the same provider");
            goto done;
        }
        json_object_object_add(params, "model", json_object_new_string(res.targets[0].model));
        if (res.params[0] != '\0') {
            /* merge provider:model?k=v parameters into the request's params */
            char obj[1100];
            struct json_object *extra;
            snprintf(obj, sizeof(obj), "{%s}", res.params);
            if ((extra = json_tokener_parse(obj)) != NULL) {
                json_object_object_foreach(extra, k, v)
                    json_object_object_add(params, k, json_object_get(v));
                json_object_put(extra);
            }
        }
    }
    *nrequests = (int64_t)n;
    out = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
    free(ex->req->body);
    ex->req->body_len = strlen(out);
    ex->req->body = strdup(out);
    if (ex->req->body == NULL) {
        ex->req->body_len = 0;
        gh_exchange_refuse(ex, 500, "api_error", "internal_error", NULL, "%s", "out of memory");
        goto done;
    }
    rcode = GH_OK;
done:
    json_object_put(root);
    return rcode;
}

/* See resources.h. */
int gh_resources_wants_stream(const gh_http_head_t *head, void *arg)
{
    const char *p = head->path;
    GH_UNUSED(arg);
    if (strncmp(p, "/anthropic/", 11) == 0)
        p += 10;
    return strcmp(head->method, "POST") == 0 && strcmp(p, "/v1/files") == 0;
}

/* Splits "/v1/messages/batches[/{id}[/cancel|/results]]" or "/v1/files[/{id}[/content]]". */
static int parse_path(const char *path, res_kind_t *kind, char *id, size_t idsz, char *sub,
                      size_t subsz)
{
    const char *rest, *slash;

    if (strncmp(path, "/v1/messages/batches", 20) == 0) {
        *kind = RES_BATCH;
        rest = path + 20;
    } else if (strncmp(path, "/v1/files", 9) == 0) {
        *kind = RES_FILE;
        rest = path + 9;
    } else {
        return 0;
    }
    id[0] = sub[0] = '\0';
    if (*rest == '\0')
        return 1;
    if (*rest != '/' || rest[1] == '\0')
        return 0;
    rest++;
    slash = strchr(rest, '/');
    if ((size_t)(slash ? slash - rest : (long)strlen(rest)) >= idsz)
        return 0;
    snprintf(id, idsz, "%.*s", (int)(slash ? slash - rest : (long)strlen(rest)), rest);
    if (slash != NULL) {
        if (strchr(slash + 1, '/') != NULL || strlen(slash + 1) >= subsz)
            return 0;
        snprintf(sub, subsz, "%s", slash + 1);
    }
    return 1;
}

/* See resources.h. */
int gh_resources_handle(gh_http_req_t *req, const char *path)
{
    const char *m = req->head.method, *amsg = NULL, *endpoint;
    char id[128], sub[16];
    const gh_vkey_t *vk = NULL;
    const gh_provider_t *prov = NULL;
    res_kind_t kind;
    gh_exchange_t *ex;
    res_ctx_t *rc;
    size_t i;

    if (!parse_path(path, &kind, id, sizeof(id), sub, sizeof(sub)))
        return 0;
    if (sub[0] != '\0' &&
        !(kind == RES_BATCH && (!strcmp(sub, "cancel") || !strcmp(sub, "results"))) &&
        !(kind == RES_FILE && !strcmp(sub, "content")))
        return 0;
    endpoint =
        kind == RES_BATCH
            ? (sub[0] == '\0' ? (id[0] ? "/v1/messages/batches/{id}" : "/v1/messages/batches")
               : strcmp(sub, "cancel") == 0 ? "/v1/messages/batches/{id}/cancel"
                                            : "/v1/messages/batches/{id}/results")
            : (sub[0] == '\0' ? (id[0] ? "/v1/files/{id}" : "/v1/files")
                              : "/v1/files/{id}/content");
    gh_worker_refresh();
    ex = gh_exchange_new(req, endpoint);
    rc = calloc(1, sizeof(*rc));
    if (ex == NULL || rc == NULL) {
        free(rc);
        if (ex != NULL)
            gh_exchange_refuse(ex, 500, "api_error", "internal_error", NULL, "%s", "out of memory");
        else
            gh_reply_error(req, GH_SHAPE_ANTHROPIC, 500, "api_error", NULL, "out of memory");
        return 1;
    }
    rc->kind = kind;
    snprintf(rc->id, sizeof(rc->id), "%s", id);
    ex->hook_arg = rc;
    ex->hooks.finished = on_finished;
    ex->hooks.buffered = on_buffered;
    /* the exchange's upstream path is the request's own (ids included) */
    ex->upstream_path = path;
    if (gh_auth_request(&req->head, &gh_worker->keys, &vk, &amsg) != GH_AUTH_OK) {
        if (vk != NULL)
            gh_usage_set(ex->rec.key_id, sizeof(ex->rec.key_id), vk->id, strlen(vk->id));
        gh_exchange_refuse(ex, 401, "authentication_error", "authentication_error", NULL, "%s",
                           amsg);
        return 1;
    }
    gh_usage_set(ex->rec.key_id, sizeof(ex->rec.key_id), vk->id, strlen(vk->id));
    snprintf(rc->key_id, sizeof(rc->key_id), "%s", vk->id);

    /* method checks per shape of path */
    if ((id[0] == '\0' && strcmp(m, "GET") != 0 && strcmp(m, "POST") != 0) ||
        (id[0] != '\0' && sub[0] == '\0' && strcmp(m, "GET") != 0 && strcmp(m, "DELETE") != 0) ||
        (!strcmp(sub, "cancel") && strcmp(m, "POST") != 0) ||
        ((!strcmp(sub, "results") || !strcmp(sub, "content")) && strcmp(m, "GET") != 0)) {
        gh_exchange_refuse(ex, 405, "invalid_request_error", "invalid_request_error", NULL,
                           "method not allowed on %s", req->head.path);
        return 1;
    }
    if (id[0] != '\0') {
        if (!owned(kind, id, vk->id, rc->provider, sizeof(rc->provider), &rc->accounted)) {
            gh_exchange_refuse(ex, 404, "not_found_error", "not_found_error", NULL,
                               kind == RES_BATCH ? "no batch '%s' for this API key"
                                                 : "no file '%s' for this API key",
                               id);
            return 1;
        }
        for (i = 0; i < ex->provs->n; i++)
            if (strcmp(ex->provs->p[i].name, rc->provider) == 0)
                prov = &ex->provs->p[i];
        if (prov == NULL) {
            gh_exchange_refuse(ex, 404, "not_found_error", "not_found_error", NULL,
                               "the provider holding '%s' no longer exists", id);
            return 1;
        }
    } else if (kind == RES_BATCH && strcmp(m, "POST") == 0) {
        if (gh_resources_prepare_batch(ex, vk, &rc->nrequests, &prov) != GH_OK)
            return 1;
    } else {
        prov = gh_worker_default_provider(ex->provs);
        if (prov == NULL) {
            gh_exchange_refuse(ex, 503, "api_error", "no_provider", NULL, "%s",
                               "no provider is configured");
            return 1;
        }
    }
    snprintf(rc->provider, sizeof(rc->provider), "%s", prov->name);
    ex->route.targets[0].prov = prov;
    ex->route.ntargets = 1;
    ex->method = strcmp(m, "GET") == 0 ? "GET" : strcmp(m, "DELETE") == 0 ? "DELETE" : NULL;
    rc->is_delete = strcmp(m, "DELETE") == 0;
    ex->stream_body = req->body_streaming;
    if (!strcmp(sub, "results") || !strcmp(sub, "content"))
        ex->stream_resp = 1;
    if (!strcmp(sub, "results")) {
        ex->hooks.data = on_results_data;
        ex->hooks.stream_end = on_results_end;
    }
    ex->beta_flags = kind == RES_FILE ? GH_BETA_FILES_ENDPOINT : 0;
    gh_exchange_betas(ex, NULL);
    gh_exchange_start(ex);
    return 1;
}
