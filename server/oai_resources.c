/* oai_resources.c: OpenAI's Files and Batch APIs over Anthropic's Files and Message Batches: file
 * objects and lists in OpenAI's shapes, batches made from an uploaded JSONL file or a requests
 * array of chat completion bodies (each translated and checked like a native batch request), and
 * results relayed line by line as chat.completion objects, accounted like the Anthropic route. */
#include "config.h"

#include <event2/buffer.h>
#include <json-c/json.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "exchange.h"
#include "gh.h"
#include "log.h"
#include "oai.h"
#include "oai_resources.h"
#include "proxy.h"
#include "quota.h"
#include "resources.h"
#include "route.h"
#include "shm.h"
#include "worker.h"

#define OAIR_PAUSE_AT (1024 * 1024)       /* client backlog that pauses a results download */
#define OAIR_MAX_ERROR_BODY (1024 * 1024) /* an upstream error answer kept for translation */
#define OAIR_CONNECT_TIMEOUT_MS 10000L
#define OAIR_CHAT "/v1/chat/completions" /* the one endpoint a batch may target */
#define OAIR_JSON (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE) /* answers we write */

/* The operation a request asks for. */
typedef enum {
    OP_NONE = -1, /* the path exists, the method does not */
    OP_FILE_LIST,
    OP_FILE_CREATE,
    OP_FILE_GET,
    OP_FILE_DELETE,
    OP_FILE_CONTENT,
    OP_BATCH_LIST,
    OP_BATCH_CREATE,
    OP_BATCH_GET,
    OP_BATCH_CANCEL,
    OP_BATCH_RESULTS,
} op_t;

/* One OpenAI-shaped request: the exchange's hook_arg (freed by hooks.finished), with the state of
 * the transfers gatehouse makes itself (an input file's content, a results stream). */
typedef struct {
    gh_upstream_xfer_t xfer; /* first: CURLOPT_PRIVATE of our own transfers */
    gh_exchange_t *ex;
    op_t op;
    char id[128]; /* the file or batch the path names, "" for create/list */
    char key_id[40];
    char input_file_id[128]; /* of a batch being created from a file */
    char upath[1400];        /* the Anthropic path (and query) upstream */
    const gh_provider_t *prov;
    int64_t nrequests;
    int in_multi; /* our own transfer is running */
    int status;   /* its HTTP status */
    int headers_done;
    int streaming; /* the results stream towards the client has begun */
    int paused;
    int timed_out;
    int too_big;
    struct curl_slist *hdrs;
    char *url;
    struct event *idle;
    struct evbuffer *in; /* fetched content, an error answer, or a partial results line */
    gh_batch_usage_t *usage;
    size_t line_no;
    gh_buf_t out;
} oair_t;

/* Parses one JSON document of n bytes (trailing whitespace allowed); NULL when it is not one. */
static struct json_object *parse_json(const char *p, size_t n)
{
    struct json_tokener *tok;
    struct json_object *root = NULL;
    size_t end;

    if (n == 0 || n > INT_MAX || (tok = json_tokener_new()) == NULL)
        return NULL;
    root = json_tokener_parse_ex(tok, p, (int)n);
    if (root != NULL) {
        for (end = json_tokener_get_parse_end(tok); end < n; end++)
            if (p[end] != ' ' && p[end] != '\t' && p[end] != '\r' && p[end] != '\n') {
                json_object_put(root);
                root = NULL;
                break;
            }
    }
    json_tokener_free(tok);
    return root;
}

/* A new reference to member key of a, or NULL (JSON null) when absent. */
static struct json_object *member(struct json_object *a, const char *key)
{
    struct json_object *v;
    return json_object_object_get_ex(a, key, &v) ? json_object_get(v) : NULL;
}

/* The string member key of a, or NULL. */
static const char *str_member(struct json_object *a, const char *key)
{
    struct json_object *v;
    if (!json_object_object_get_ex(a, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* An ISO 8601 member of a as unix seconds, or NULL (JSON null) when absent or unreadable. */
static struct json_object *unix_member(struct json_object *a, const char *key)
{
    const char *s = str_member(a, key);
    int64_t ms;

    if (s == NULL || gh_auth_parse_time(s, &ms) != GH_OK)
        return NULL;
    return json_object_new_int64(ms / 1000);
}

/* The integer member key of a (0 when absent). */
static int64_t int_member(struct json_object *a, const char *key)
{
    struct json_object *v;
    return json_object_object_get_ex(a, key, &v) ? json_object_get_int64(v) : 0;
}

/* Anthropic's file metadata → OpenAI's file object. */
static struct json_object *file_object(struct json_object *a)
{
    struct json_object *f = json_object_new_object();

    if (f == NULL)
        return NULL;
    json_object_object_add(f, "id", member(a, "id"));
    json_object_object_add(f, "object", json_object_new_string("file"));
    json_object_object_add(f, "bytes", member(a, "size_bytes"));
    json_object_object_add(f, "created_at", unix_member(a, "created_at"));
    json_object_object_add(f, "filename", member(a, "filename"));
    json_object_object_add(f, "purpose", json_object_new_string("batch"));
    json_object_object_add(f, "status", json_object_new_string("processed"));
    json_object_object_add(f, "content_type", member(a, "mime_type"));
    return f;
}

/* Anthropic's message_batch → OpenAI's batch object; input_file_id may be NULL (unknown). */
static struct json_object *batch_object(struct json_object *a, const char *input_file_id)
{
    struct json_object *b = json_object_new_object(), *counts = NULL, *rc;
    const char *ps = str_member(a, "processing_status"), *status;
    int64_t processing = 0, succeeded = 0, errored = 0, canceled = 0, expired = 0, total;

    if (b == NULL || (rc = json_object_new_object()) == NULL) {
        json_object_put(b);
        return NULL;
    }
    if (json_object_object_get_ex(a, "request_counts", &counts)) {
        processing = int_member(counts, "processing");
        succeeded = int_member(counts, "succeeded");
        errored = int_member(counts, "errored");
        canceled = int_member(counts, "canceled");
        expired = int_member(counts, "expired");
    }
    total = processing + succeeded + errored + canceled + expired;
    if (ps == NULL || strcmp(ps, "in_progress") == 0)
        status = "in_progress";
    else if (strcmp(ps, "canceling") == 0)
        status = "cancelling";
    else if (strcmp(ps, "ended") == 0)
        status = total > 0 && canceled == total ? "cancelled" : "completed";
    else
        status = ps;
    json_object_object_add(b, "id", member(a, "id"));
    json_object_object_add(b, "object", json_object_new_string("batch"));
    json_object_object_add(b, "endpoint", json_object_new_string(OAIR_CHAT));
    json_object_object_add(b, "errors", NULL);
    json_object_object_add(b, "input_file_id",
                           input_file_id != NULL ? json_object_new_string(input_file_id) : NULL);
    json_object_object_add(b, "completion_window", json_object_new_string("24h"));
    json_object_object_add(b, "status", json_object_new_string(status));
    json_object_object_add(b, "output_file_id", NULL);
    json_object_object_add(b, "error_file_id", NULL);
    json_object_object_add(b, "created_at", unix_member(a, "created_at"));
    json_object_object_add(b, "in_progress_at", unix_member(a, "created_at"));
    json_object_object_add(b, "expires_at", unix_member(a, "expires_at"));
    json_object_object_add(b, "finalizing_at", NULL);
    json_object_object_add(b, "completed_at",
                           strcmp(status, "completed") == 0 ? unix_member(a, "ended_at") : NULL);
    json_object_object_add(b, "failed_at", NULL);
    json_object_object_add(b, "expired_at", NULL);
    json_object_object_add(b, "cancelling_at", unix_member(a, "cancel_initiated_at"));
    json_object_object_add(b, "cancelled_at",
                           strcmp(status, "cancelled") == 0 ? unix_member(a, "ended_at") : NULL);
    json_object_object_add(rc, "total", json_object_new_int64(total));
    json_object_object_add(rc, "completed", json_object_new_int64(succeeded));
    json_object_object_add(rc, "failed", json_object_new_int64(errored + expired));
    json_object_object_add(b, "request_counts", rc);
    json_object_object_add(b, "metadata", NULL);
    return b;
}

/* An Anthropic page of files or batches → OpenAI's list, kept to the key's own resources. */
static struct json_object *list_object(struct json_object *root, int is_batch, const char *key_id)
{
    struct json_object *data, *set, *list = json_object_new_object(), *kept, *hm;
    size_t i, n, k;

    if (list == NULL || (kept = json_object_new_array()) == NULL) {
        json_object_put(list);
        return NULL;
    }
    json_object_object_add(list, "object", json_object_new_string("list"));
    json_object_object_add(list, "data", kept);
    set = gh_resources_owned_ids(is_batch, key_id);
    if (json_object_object_get_ex(root, "data", &data) &&
        json_object_is_type(data, json_type_array)) {
        n = json_object_array_length(data);
        for (i = 0; i < n; i++) {
            struct json_object *item = json_object_array_get_idx(data, i);
            const char *id = str_member(item, "id");
            struct json_object *fid = NULL;
            if (id == NULL || set == NULL || !json_object_object_get_ex(set, id, &fid))
                continue;
            json_object_array_add(
                kept, is_batch
                          ? batch_object(item, fid != NULL ? json_object_get_string(fid) : NULL)
                          : file_object(item));
        }
    }
    json_object_put(set);
    k = json_object_array_length(kept);
    json_object_object_add(
        list, "has_more",
        json_object_new_boolean(json_object_object_get_ex(root, "has_more", &hm) &&
                                json_object_get_boolean(hm)));
    json_object_object_add(list, "first_id",
                           k ? member(json_object_array_get_idx(kept, 0), "id") : NULL);
    json_object_object_add(list, "last_id",
                           k ? member(json_object_array_get_idx(kept, k - 1), "id") : NULL);
    return list;
}

/* Replaces an evbuffer's contents. */
static void set_body(struct evbuffer *body, const char *p, size_t n)
{
    evbuffer_drain(body, evbuffer_get_length(body));
    evbuffer_add(body, p, n);
}

/* hooks.buffered: records ownership of a created file or batch, forgets a deleted file, and
 * turns Anthropic's answer (or error) into OpenAI's. */
static void on_buffered(gh_exchange_t *ex, int *status, struct evbuffer *headers,
                        struct evbuffer *body)
{
    oair_t *o = ex->hook_arg;
    const char *b = (const char *)evbuffer_pullup(body, -1);
    size_t len = evbuffer_get_length(body);
    struct json_object *root = NULL, *out = NULL;
    const char *id;

    GH_UNUSED(headers);
    if (b == NULL)
        b = "";
    gh_buf_reset(&o->out);
    if (*status < 200 || *status >= 300) {
        gh_oai_error(*status, b, len, &o->out);
        goto replace;
    }
    if (o->op == OP_FILE_CONTENT)
        return;
    if ((root = parse_json(b, len)) == NULL)
        goto untranslatable;
    id = str_member(root, "id");
    switch (o->op) {
    case OP_FILE_LIST:
    case OP_BATCH_LIST:
        out = list_object(root, o->op == OP_BATCH_LIST, o->key_id);
        break;
    case OP_FILE_CREATE:
        if (id != NULL)
            gh_resources_remember(0, id, o->key_id, o->prov->name, -1,
                                  str_member(root, "filename"));
        out = file_object(root);
        break;
    case OP_FILE_DELETE:
        gh_resources_forget(0, o->id);
        if ((out = json_object_new_object()) != NULL) {
            json_object_object_add(out, "id", json_object_new_string(id != NULL ? id : o->id));
            json_object_object_add(out, "object", json_object_new_string("file"));
            json_object_object_add(out, "deleted", json_object_new_boolean(1));
        }
        break;
    case OP_BATCH_CREATE:
        if (id != NULL)
            gh_resources_remember(1, id, o->key_id, o->prov->name, o->nrequests,
                                  o->input_file_id[0] ? o->input_file_id : NULL);
        out = batch_object(root, o->input_file_id[0] ? o->input_file_id : NULL);
        break;
    case OP_BATCH_GET:
    case OP_BATCH_CANCEL: {
        char fid[128];
        out = batch_object(root,
                           gh_resources_input_file(o->id, fid, sizeof(fid)) == GH_OK ? fid : NULL);
        break;
    }
    case OP_FILE_GET:
    default:
        out = file_object(root);
        break;
    }
    if (out == NULL)
        goto untranslatable;
    gh_buf_puts(&o->out, json_object_to_json_string_ext(out, OAIR_JSON));
    goto replace;
untranslatable:
    gh_log_warn("upstream answer for %s could not be translated", ex->rec.endpoint);
    gh_buf_reset(&o->out);
    gh_oai_error_body(502, "the provider's answer could not be translated", NULL,
                      "bad_upstream_answer", &o->out);
    *status = 502;
replace:
    set_body(body, o->out.data != NULL ? o->out.data : "", o->out.len);
    json_object_put(root);
    json_object_put(out);
}

/* hooks.finished: stops our own transfer if one runs and frees the context. */
static void on_finished(gh_exchange_t *ex)
{
    oair_t *o = ex->hook_arg;

    if (o == NULL)
        return;
    if (o->in_multi)
        gh_upstream_stop(&o->xfer);
    if (o->xfer.easy != NULL)
        gh_upstream_easy_put(o->xfer.easy);
    curl_slist_free_all(o->hdrs);
    free(o->url);
    if (o->idle != NULL)
        event_free(o->idle);
    if (o->in != NULL)
        evbuffer_free(o->in);
    gh_resources_usage_free(o->usage);
    gh_buf_free(&o->out);
    free(o);
    ex->hook_arg = NULL;
}

/* Splits "/v1/batches[/{id}[/{sub}]]" or "/v1/files[/{id}[/{sub}]]": 1, or 0 when the path is
 * neither, -1 when it is one of them but malformed. */
static int parse_path(const char *path, int *is_batch, char *id, size_t idsz, char *sub,
                      size_t subsz)
{
    const char *rest, *slash;
    size_t n;

    if (strncmp(path, "/v1/batches", 11) == 0) {
        *is_batch = 1;
        rest = path + 11;
    } else if (strncmp(path, "/v1/files", 9) == 0) {
        *is_batch = 0;
        rest = path + 9;
    } else {
        return 0;
    }
    id[0] = sub[0] = '\0';
    if (*rest == '\0')
        return 1;
    if (*rest != '/')
        return 0;
    rest++;
    slash = strchr(rest, '/');
    n = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
    if (n == 0 || n >= idsz)
        return -1;
    snprintf(id, idsz, "%.*s", (int)n, rest);
    if (slash != NULL) {
        if (strchr(slash + 1, '/') != NULL || strlen(slash + 1) >= subsz)
            return -1;
        snprintf(sub, subsz, "%s", slash + 1);
    }
    return 1;
}

/* The operation, usage endpoint and allowed methods of a path; 0 when there is no such route. */
static int route_of(int is_batch, const char *id, const char *sub, const char *m, op_t *op,
                    const char **endpoint, const char **allow)
{
    int get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;

    *op = OP_NONE;
    if (id[0] == '\0') {
        *endpoint = is_batch ? "/v1/batches" : "/v1/files";
        *allow = "GET, POST";
        if (get || post)
            *op = is_batch ? (get ? OP_BATCH_LIST : OP_BATCH_CREATE)
                           : (get ? OP_FILE_LIST : OP_FILE_CREATE);
    } else if (sub[0] == '\0') {
        *endpoint = is_batch ? "/v1/batches/{id}" : "/v1/files/{id}";
        *allow = is_batch ? "GET" : "GET, DELETE";
        if (get)
            *op = is_batch ? OP_BATCH_GET : OP_FILE_GET;
        else if (!is_batch && strcmp(m, "DELETE") == 0)
            *op = OP_FILE_DELETE;
    } else if (!is_batch && strcmp(sub, "content") == 0) {
        *endpoint = "/v1/files/{id}/content";
        *allow = "GET";
        if (get)
            *op = OP_FILE_CONTENT;
    } else if (is_batch && strcmp(sub, "cancel") == 0) {
        *endpoint = "/v1/batches/{id}/cancel";
        *allow = "POST";
        if (post)
            *op = OP_BATCH_CANCEL;
    } else if (is_batch && strcmp(sub, "results") == 0) {
        *endpoint = "/v1/batches/{id}/results";
        *allow = "GET";
        if (get)
            *op = OP_BATCH_RESULTS;
    } else {
        return 0;
    }
    return 1;
}

/* Appends OpenAI's cursor (after, limit) to o->upath as Anthropic's (after_id, limit). */
static void list_query(oair_t *o, const char *query)
{
    char after[256], limit[32];
    size_t used = strlen(o->upath);
    const char *sep = "?";
    long l;

    if (query == NULL)
        return;
    if (gh_http_query_param(query, "after", after, sizeof(after)) != NULL && after[0] != '\0' &&
        strspn(after, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
            strlen(after)) {
        snprintf(o->upath + used, sizeof(o->upath) - used, "%safter_id=%s", sep, after);
        used = strlen(o->upath);
        sep = "&";
    }
    if (gh_http_query_param(query, "limit", limit, sizeof(limit)) != NULL && limit[0] != '\0' &&
        strspn(limit, "0123456789") == strlen(limit)) {
        l = strtol(limit, NULL, 10);
        snprintf(o->upath + used, sizeof(o->upath) - used, "%slimit=%ld", sep,
                 l < 1      ? 1
                 : l > 1000 ? 1000
                            : l);
    }
}

/* Sends the request upstream through the exchange (fallback, usage, relay); the answer comes back
 * through on_buffered, or streams unchanged for a file's content. */
static void relay(oair_t *o)
{
    gh_exchange_t *ex = o->ex;
    int files = o->op <= OP_FILE_CONTENT;

    ex->upstream_path = o->upath;
    ex->req->head.query = NULL; /* the upstream query, if any, is in upath */
    ex->route.targets[0].prov = o->prov;
    ex->route.ntargets = 1;
    ex->method = o->op == OP_FILE_DELETE ? "DELETE"
                 : (o->op == OP_FILE_CREATE || o->op == OP_BATCH_CREATE || o->op == OP_BATCH_CANCEL)
                     ? NULL
                     : "GET";
    ex->stream_body = o->op == OP_FILE_CREATE && ex->req->body_streaming;
    ex->stream_resp = o->op == OP_FILE_CONTENT;
    ex->beta_flags = files ? GH_BETA_FILES_ENDPOINT : 0;
    gh_exchange_betas(ex, NULL);
    gh_exchange_start(ex);
}

/* Translates one chat completion request of a batch and appends {custom_id, params} to reqs.
 * where names it in messages ("requests[2]", "input file line 3"). GH_ERR with err and *status. */
static int add_request(struct json_object *reqs, struct json_object *custom_id,
                       struct json_object *body, const char *where, char *err, size_t errsz,
                       int *status)
{
    gh_oai_opts_t opts = {4096};
    gh_oai_req_t treq;
    struct json_object *params = NULL, *item;
    char msg[400], param[64];
    const char *txt;
    int rc = GH_ERR;

    memset(&treq, 0, sizeof(treq));
    *status = 400;
    if (custom_id == NULL || !json_object_is_type(custom_id, json_type_string)) {
        snprintf(err, errsz, "%s.custom_id: must be a string", where);
        goto done;
    }
    if (body == NULL || !json_object_is_type(body, json_type_object)) {
        snprintf(err, errsz, "%s.body: must be a chat completion request object", where);
        goto done;
    }
    txt = json_object_to_json_string_ext(body, OAIR_JSON);
    if (gh_oai_request(GH_OAI_CHAT, txt, strlen(txt), &opts, &treq, status, msg, sizeof(msg), param,
                       sizeof(param)) != GH_OK) {
        snprintf(err, errsz, "%s.body: %s", where, msg);
        goto done;
    }
    if ((params = parse_json(treq.body, treq.body_len)) == NULL ||
        (item = json_object_new_object()) == NULL) {
        *status = 500;
        snprintf(err, errsz, "%s", "out of memory");
        goto done;
    }
    json_object_object_del(params, "stream"); /* batch requests never stream */
    json_object_object_add(item, "custom_id", json_object_get(custom_id));
    json_object_object_add(item, "params", params);
    params = NULL;
    json_object_array_add(reqs, item);
    rc = GH_OK;
done:
    json_object_put(params);
    gh_oai_req_free(&treq);
    return rc;
}

/* Reads the requests of OpenAI's input file (JSONL of {custom_id, method, url, body}). */
static int requests_from_jsonl(const char *p, size_t n, struct json_object *reqs, char *err,
                               size_t errsz, int *status)
{
    size_t off = 0, line = 0;
    int rc = GH_OK;

    while (off < n && rc == GH_OK) {
        const char *nl = memchr(p + off, '\n', n - off);
        size_t len = nl != NULL ? (size_t)(nl - (p + off)) : n - off, i;
        struct json_object *obj;
        const char *method, *url;
        char where[64];

        line++;
        for (i = 0; i < len && (p[off + i] == ' ' || p[off + i] == '\t' || p[off + i] == '\r');)
            i++;
        if (i < len) {
            snprintf(where, sizeof(where), "input file line %zu", line);
            *status = 400;
            if ((obj = parse_json(p + off, len)) == NULL ||
                !json_object_is_type(obj, json_type_object)) {
                snprintf(err, errsz, "%s: not a JSON object", where);
                rc = GH_ERR;
            } else if (((method = str_member(obj, "method")) != NULL &&
                        strcmp(method, "POST") != 0) ||
                       ((url = str_member(obj, "url")) != NULL && strcmp(url, OAIR_CHAT) != 0)) {
                snprintf(err, errsz, "%s: only POST %s is supported in a batch", where, OAIR_CHAT);
                rc = GH_ERR;
            } else {
                struct json_object *cid = NULL, *body = NULL;
                json_object_object_get_ex(obj, "custom_id", &cid);
                json_object_object_get_ex(obj, "body", &body);
                rc = add_request(reqs, cid, body, where, err, errsz, status);
            }
            json_object_put(obj);
        }
        off += len + 1;
    }
    return rc;
}

/* Reads Bifrost's variant: a requests array of {custom_id, body | params}. */
static int requests_from_array(struct json_object *arr, struct json_object *reqs, char *err,
                               size_t errsz, int *status)
{
    size_t i, n = json_object_array_length(arr);

    for (i = 0; i < n; i++) {
        struct json_object *r = json_object_array_get_idx(arr, i), *cid = NULL, *body = NULL;
        char where[64];
        snprintf(where, sizeof(where), "requests[%zu]", i);
        if (!json_object_is_type(r, json_type_object)) {
            *status = 400;
            snprintf(err, errsz, "%s: must be an object {custom_id, body}", where);
            return GH_ERR;
        }
        json_object_object_get_ex(r, "custom_id", &cid);
        if (!json_object_object_get_ex(r, "body", &body))
            json_object_object_get_ex(r, "params", &body);
        if (add_request(reqs, cid, body, where, err, errsz, status) != GH_OK)
            return GH_ERR;
    }
    return GH_OK;
}

/* Refuses with a message made here (OpenAI's shape, since ex->shape says so); frees o. */
static void refuse(oair_t *o, int status, const char *type, const char *msg)
{
    gh_exchange_refuse(o->ex, status, type, type, NULL, "%s", msg);
}

/* Creates the Anthropic batch from the translated requests (reqs is consumed): every model is
 * checked against the key and routed as for a native batch, then the exchange sends it. */
static void submit_batch(oair_t *o, const gh_vkey_t *vk, struct json_object *reqs)
{
    gh_http_req_t *req = o->ex->req;
    struct json_object *root = json_object_new_object();
    const char *txt;
    char *copy = NULL;

    if (root != NULL) {
        json_object_object_add(root, "requests", reqs);
        reqs = NULL;
        txt = json_object_to_json_string_ext(root, OAIR_JSON);
        copy = txt != NULL ? strdup(txt) : NULL;
    }
    json_object_put(reqs);
    json_object_put(root);
    if (copy == NULL) {
        refuse(o, 500, "api_error", "out of memory");
        return;
    }
    free(req->body);
    req->body = copy;
    req->body_len = strlen(copy);
    o->prov = NULL;
    if (gh_resources_prepare_batch(o->ex, vk, &o->nrequests, &o->prov) != GH_OK)
        return; /* answered; o is gone */
    snprintf(o->upath, sizeof(o->upath), "%s", "/v1/messages/batches");
    relay(o);
}

/* Re-authenticates after an asynchronous step (the key cache may have been reloaded meanwhile);
 * answers 401 itself and returns NULL on failure. */
static const gh_vkey_t *reauth(oair_t *o)
{
    const gh_vkey_t *vk = NULL;
    const char *msg = NULL;

    if (gh_auth_request(&o->ex->req->head, &gh_worker->keys, &vk, &msg) != GH_AUTH_OK) {
        refuse(o, 401, "authentication_error", msg != NULL ? msg : "invalid API key");
        return NULL;
    }
    return vk;
}

/* Publishes the usage row of a request whose upstream part gatehouse ran itself. */
static void publish(oair_t *o, int status, const char *error_type)
{
    gh_exchange_t *ex = o->ex;

    ex->rec.status = status;
    if (error_type != NULL)
        gh_usage_set(ex->rec.error_type, sizeof(ex->rec.error_type), error_type,
                     strlen(error_type));
    ex->rec.latency_ms = (int64_t)((gh_now_us() - ex->req->start_us) / 1000u);
    gh_shm_usage_publish(&ex->rec);
}

/* Answers an upstream error answer held in o->in, translated to OpenAI's shape; frees o. */
static void answer_upstream_error(oair_t *o)
{
    gh_exchange_t *ex = o->ex;
    gh_http_req_t *req = ex->req;
    const char *b = (const char *)evbuffer_pullup(o->in, -1);
    size_t len = evbuffer_get_length(o->in);
    struct json_object *root, *err;
    const char *type = NULL;
    char hdr[200];
    int n;

    if (b == NULL)
        b = "";
    root = parse_json(b, len);
    if (root != NULL && json_object_object_get_ex(root, "error", &err))
        type = str_member(err, "type");
    publish(o, o->status, type != NULL ? type : "api_error");
    json_object_put(root);
    gh_buf_reset(&o->out);
    gh_oai_error(o->status, b, len, &o->out);
    n = snprintf(hdr, sizeof(hdr),
                 "Content-Type: application/json\r\nx-gatehouse-request-id: %s\r\n",
                 ex->rec.request_id);
    req->on_abort = NULL;
    req->on_drain = NULL;
    gh_http_respond(req, o->status, hdr, (size_t)n, o->out.data != NULL ? o->out.data : "",
                    o->out.len);
    gh_exchange_free(ex);
}

/* Our own transfer failed before any answer: 504 on a timeout, else 502; frees o. */
static void answer_transport_error(oair_t *o, CURLcode rc)
{
    char msg[300];

    if (o->timed_out || rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(msg, sizeof(msg), "upstream provider '%s' timed out", o->prov->name);
        gh_exchange_refuse(o->ex, 504, "timeout_error", "timeout_error", NULL, "%s", msg);
        return;
    }
    snprintf(msg, sizeof(msg), "upstream provider '%s' unreachable: %s", o->prov->name,
             curl_easy_strerror(rc));
    gh_exchange_refuse(o->ex, 502, "api_error", "upstream_unreachable", NULL, "%s", msg);
}

/* Ends our own transfer's bookkeeping: the handle goes back to the pool, the timer stops. */
static void xfer_over(oair_t *o)
{
    o->in_multi = 0;
    if (o->idle != NULL)
        evtimer_del(o->idle);
    if (o->xfer.easy != NULL)
        gh_upstream_easy_put(o->xfer.easy);
    o->xfer.easy = NULL;
    o->ex->req->on_abort = NULL;
    o->ex->req->on_drain = NULL;
}

/* Re-arms the idle timeout of our own transfer (the provider's timeout_ms between bytes). */
static void arm_idle(oair_t *o)
{
    int ms = o->prov->timeout_ms > 0 ? o->prov->timeout_ms : GH_DEFAULT_UPSTREAM_TIMEOUT_MS;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(o->idle, &tv);
}

/* Begins the results stream towards the client. */
static void begin_results(oair_t *o)
{
    gh_exchange_t *ex = o->ex;
    char h[400];
    int n = snprintf(h, sizeof(h),
                     "Content-Type: application/x-jsonl\r\nx-gatehouse-request-id: %s\r\n"
                     "x-gatehouse-provider: %s\r\n",
                     ex->rec.request_id, o->prov->name);
    gh_http_stream_begin(ex->req, 200, h, (size_t)n);
    o->streaming = 1;
}

/* CURLOPT_HEADERFUNCTION of our own transfers: the status, the upstream request id, and the
 * start of the results stream once a 2xx head is complete. */
static size_t on_xfer_header(char *buf, size_t size, size_t n, void *arg)
{
    oair_t *o = arg;
    size_t len = size * n, vs;
    const char *colon;

    arm_idle(o);
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        const char *sp = memchr(buf, ' ', len);
        o->status = sp != NULL ? atoi(sp + 1) : 502;
        o->headers_done = 0;
        return len;
    }
    if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        if (o->status >= 200) {
            o->headers_done = 1;
            if (o->op == OP_BATCH_RESULTS && o->status < 300)
                begin_results(o);
        }
        return len;
    }
    colon = memchr(buf, ':', len);
    if (colon != NULL && gh_http_name_eq(buf, (size_t)(colon - buf), "request-id")) {
        for (vs = (size_t)(colon - buf) + 1; vs < len && buf[vs] == ' ';)
            vs++;
        while (len > vs && (buf[len - 1] == '\r' || buf[len - 1] == '\n' || buf[len - 1] == ' '))
            len--;
        gh_usage_set(o->ex->rec.upstream_request_id, sizeof(o->ex->rec.upstream_request_id),
                     buf + vs, len - vs);
    }
    return size * n;
}

/* One Anthropic result line → OpenAI's batch output line ({id, custom_id, response, error}),
 * appended to out with its newline. */
static int result_line(const char *batch_id, size_t line_no, const char *line, size_t len,
                       gh_buf_t *out)
{
    struct json_object *root = parse_json(line, len), *o = json_object_new_object(), *res = NULL;
    struct json_object *msg = NULL, *body = NULL, *resp, *err;
    const char *type = NULL, *code = NULL, *text = NULL;
    char rid[200];
    gh_buf_t tmp = GH_BUF_INIT;
    int rc = GH_ERR;

    if (o == NULL)
        goto done;
    snprintf(rid, sizeof(rid), "batch_req_%s_%zu", batch_id, line_no);
    json_object_object_add(o, "id", json_object_new_string(rid));
    json_object_object_add(o, "custom_id", root != NULL ? member(root, "custom_id") : NULL);
    if (root != NULL && json_object_object_get_ex(root, "result", &res))
        type = str_member(res, "type");
    if (type != NULL && strcmp(type, "succeeded") == 0 &&
        json_object_object_get_ex(res, "message", &msg)) {
        const char *js = json_object_to_json_string_ext(msg, OAIR_JSON);
        if (gh_oai_response(GH_OAI_CHAT, NULL, js, strlen(js), &tmp) == GH_OK &&
            (body = parse_json(tmp.data, tmp.len)) != NULL &&
            (resp = json_object_new_object()) != NULL) {
            json_object_object_add(resp, "status_code", json_object_new_int(200));
            json_object_object_add(resp, "request_id", member(msg, "id"));
            json_object_object_add(resp, "body", body);
            body = NULL;
            json_object_object_add(o, "response", resp);
            json_object_object_add(o, "error", NULL);
        } else {
            code = "bad_upstream_answer";
            text = "the provider's answer could not be translated";
        }
    } else if (type != NULL && strcmp(type, "errored") == 0) {
        struct json_object *e = NULL, *inner = NULL;
        json_object_object_get_ex(res, "error", &e);
        if (e == NULL || !json_object_object_get_ex(e, "error", &inner))
            inner = e; /* {"type":"error","error":{type, message}} or the inner object alone */
        code = inner != NULL && str_member(inner, "type") != NULL ? str_member(inner, "type")
                                                                  : "api_error";
        text = inner != NULL && str_member(inner, "message") != NULL ? str_member(inner, "message")
                                                                     : "the request failed";
    } else if (type != NULL && strcmp(type, "canceled") == 0) {
        code = "batch_cancelled";
        text = "the batch was cancelled before this request was processed";
    } else if (type != NULL && strcmp(type, "expired") == 0) {
        code = "batch_expired";
        text = "the batch expired before this request was processed";
    } else {
        code = "bad_upstream_answer";
        text = "the provider's result line could not be read";
    }
    if (code != NULL) {
        if ((err = json_object_new_object()) == NULL)
            goto done;
        json_object_object_add(err, "code", json_object_new_string(code));
        json_object_object_add(err, "message", json_object_new_string(text));
        json_object_object_add(o, "response", NULL);
        json_object_object_add(o, "error", err);
    }
    if (gh_buf_puts(out, json_object_to_json_string_ext(o, OAIR_JSON)) == GH_OK &&
        gh_buf_append(out, "\n", 1) == GH_OK)
        rc = GH_OK;
done:
    json_object_put(body);
    json_object_put(root);
    json_object_put(o);
    gh_buf_free(&tmp);
    return rc;
}

/* Accounts, translates and relays every complete line in o->in (and, at the end, the last one
 * even without its newline). */
static void relay_lines(oair_t *o, int final)
{
    char *line;
    size_t n;

    for (;;) {
        line = evbuffer_readln(o->in, &n, EVBUFFER_EOL_LF);
        if (line == NULL && final && evbuffer_get_length(o->in) > 0) {
            n = evbuffer_get_length(o->in);
            if ((line = malloc(n + 1)) == NULL)
                break;
            evbuffer_remove(o->in, line, n);
            line[n] = '\0';
        }
        if (line == NULL)
            break;
        while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' '))
            n--;
        if (n > 0) {
            if (o->usage != NULL)
                gh_resources_usage_line(o->usage, line, n);
            gh_buf_reset(&o->out);
            if (result_line(o->id, ++o->line_no, line, n, &o->out) == GH_OK)
                gh_http_stream_write(o->ex->req, o->out.data, o->out.len);
        }
        free(line);
    }
}

/* CURLOPT_WRITEFUNCTION of a results download: lines go to the client as they arrive (pausing
 * while it reads slower than upstream writes); an error answer is kept for translation. */
static size_t on_results_body(char *buf, size_t size, size_t n, void *arg)
{
    oair_t *o = arg;
    size_t len = size * n;

    arm_idle(o);
    if (!o->streaming) {
        if (evbuffer_get_length(o->in) + len <= OAIR_MAX_ERROR_BODY)
            evbuffer_add(o->in, buf, len);
        return len;
    }
    if (gh_http_pending(o->ex->req) >= OAIR_PAUSE_AT) {
        o->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    evbuffer_add(o->in, buf, len);
    relay_lines(o, 0);
    return len;
}

/* gh_upstream_xfer_t.done of a results download. */
static void on_results_done(gh_upstream_xfer_t *x, CURLcode rc)
{
    oair_t *o = (oair_t *)x;
    gh_exchange_t *ex = o->ex;

    xfer_over(o);
    if (o->streaming) {
        if (rc == CURLE_OK) {
            relay_lines(o, 1);
            if (o->usage != NULL)
                gh_resources_usage_done(o->usage);
            publish(o, o->status, NULL);
        } else {
            gh_log_warn("batch results from %s broke after their first byte: %s", o->prov->name,
                        o->timed_out ? "timeout" : curl_easy_strerror(rc));
            publish(o, o->status, o->timed_out ? "timeout_error" : "api_error");
        }
        gh_http_stream_end(ex->req);
        gh_exchange_free(ex);
        return;
    }
    if (rc != CURLE_OK || !o->headers_done) {
        answer_transport_error(o, rc);
        return;
    }
    answer_upstream_error(o);
}

/* CURLOPT_WRITEFUNCTION of an input file download: collected, up to the request body limit. */
static size_t on_fetch_body(char *buf, size_t size, size_t n, void *arg)
{
    oair_t *o = arg;
    size_t len = size * n;
    size_t cap =
        o->status >= 200 && o->status < 300 ? gh_worker->cfg->max_body : OAIR_MAX_ERROR_BODY;

    arm_idle(o);
    if (evbuffer_get_length(o->in) + len > cap) {
        o->too_big = 1;
        return 0;
    }
    evbuffer_add(o->in, buf, len);
    return len;
}

/* gh_upstream_xfer_t.done of an input file download: its lines become the batch. */
static void on_fetch_done(gh_upstream_xfer_t *x, CURLcode rc)
{
    oair_t *o = (oair_t *)x;
    struct json_object *reqs;
    const gh_vkey_t *vk;
    char err[600];
    int status = 400;

    xfer_over(o);
    if (o->too_big) {
        snprintf(err, sizeof(err), "input_file_id: file '%s' is larger than %zu bytes",
                 o->input_file_id, gh_worker->cfg->max_body);
        refuse(o, 400, "invalid_request_error", err);
        return;
    }
    if (rc != CURLE_OK || !o->headers_done) {
        answer_transport_error(o, rc);
        return;
    }
    if (o->status < 200 || o->status >= 300) {
        answer_upstream_error(o);
        return;
    }
    if ((vk = reauth(o)) == NULL)
        return;
    if ((reqs = json_object_new_array()) == NULL) {
        refuse(o, 500, "api_error", "out of memory");
        return;
    }
    if (requests_from_jsonl((const char *)evbuffer_pullup(o->in, -1), evbuffer_get_length(o->in),
                            reqs, err, sizeof(err), &status) != GH_OK) {
        json_object_put(reqs);
        refuse(o, status, status >= 500 ? "api_error" : "invalid_request_error", err);
        return;
    }
    evbuffer_drain(o->in, evbuffer_get_length(o->in));
    if (json_object_array_length(reqs) == 0) {
        json_object_put(reqs);
        snprintf(err, sizeof(err), "input_file_id: file '%s' holds no requests", o->input_file_id);
        refuse(o, 400, "invalid_request_error", err);
        return;
    }
    submit_batch(o, vk, reqs);
}

/* req->on_abort while our own transfer runs: the client left. */
static void on_xfer_abort(void *arg)
{
    oair_t *o = arg;

    if (o->in_multi) {
        gh_upstream_stop(&o->xfer);
        o->in_multi = 0;
    }
    publish(o, 499, "client_closed");
    gh_exchange_free(o->ex);
}

/* req->on_drain: the client caught up; let curl deliver again. */
static void on_xfer_drain(void *arg)
{
    oair_t *o = arg;

    if (o->paused && o->in_multi && gh_http_pending(o->ex->req) < OAIR_PAUSE_AT / 2) {
        o->paused = 0;
        arm_idle(o);
        gh_upstream_resume(&o->xfer);
    }
}

/* No upstream progress within the provider's timeout: the transfer fails. */
static void on_xfer_idle(evutil_socket_t fd, short what, void *arg)
{
    oair_t *o = arg;
    GH_UNUSED(fd);
    GH_UNUSED(what);

    o->timed_out = 1;
    if (o->in_multi) {
        gh_upstream_stop(&o->xfer);
        o->in_multi = 0;
    }
    o->xfer.done(&o->xfer, CURLE_OPERATION_TIMEDOUT);
}

/* The curl header list of our own transfers: the client's forwardable headers, the API version,
 * the betas the endpoint and the provider's policy need, and the provider key. */
static int xfer_headers(oair_t *o, const gh_provider_key_t *key, unsigned beta_flags)
{
    const gh_http_head_t *h = &o->ex->req->head;
    const gh_header_t *cb = gh_http_header(h, "anthropic-beta");
    const gh_provider_t *p = o->prov;
    struct curl_slist *l = NULL, *t;
    char line[8192 + 256], beta[1024];
    int rc = GH_ERR;
    size_t i;

    for (i = 0; i < h->nheaders; i++) {
        const gh_header_t *hd = &h->headers[i];
        if (!gh_proxy_forward_req_header(hd->name, hd->name_len) ||
            gh_http_name_eq(hd->name, hd->name_len, "anthropic-beta") ||
            gh_http_name_eq(hd->name, hd->name_len, "content-type") ||
            hd->name_len + hd->value_len + 3 > sizeof(line))
            continue;
        if (hd->value_len == 0)
            snprintf(line, sizeof(line), "%.*s;", (int)hd->name_len, hd->name);
        else
            snprintf(line, sizeof(line), "%.*s: %.*s", (int)hd->name_len, hd->name,
                     (int)hd->value_len, hd->value);
        if ((t = curl_slist_append(l, line)) == NULL)
            goto done;
        l = t;
    }
    if (gh_http_header(h, "anthropic-version") == NULL) {
        if ((t = curl_slist_append(l, "anthropic-version: 2023-06-01")) == NULL)
            goto done;
        l = t;
    }
    if (gh_beta_header(cb != NULL ? cb->value : NULL, NULL, 0, beta_flags,
                       (const char *const *)p->beta_add, p->nbeta_add,
                       (const char *const *)p->beta_strip, p->nbeta_strip, beta, sizeof(beta),
                       NULL) == GH_OK &&
        beta[0] != '\0') {
        snprintf(line, sizeof(line), "anthropic-beta: %s", beta);
        if ((t = curl_slist_append(l, line)) == NULL)
            goto done;
        l = t;
    }
    snprintf(line, sizeof(line), "x-api-key: %s", key->secret);
    t = curl_slist_append(l, line);
    sodium_memzero(line, sizeof(line));
    if (t == NULL)
        goto done;
    l = t;
    o->hdrs = l;
    l = NULL;
    rc = GH_OK;
done:
    curl_slist_free_all(l);
    return rc;
}

/* Starts a GET of o->upath on o->prov run by gatehouse itself (not relayed by the exchange):
 * a results stream to translate, or an input file to read. Answers failures itself. */
static void start_get(oair_t *o, unsigned beta_flags,
                      size_t (*on_data)(char *, size_t, size_t, void *),
                      void (*done)(gh_upstream_xfer_t *, CURLcode))
{
    const gh_provider_t *p = o->prov;
    const gh_provider_key_t *key = NULL;
    gh_http_req_t *req = o->ex->req;
    int64_t now = gh_wall_ms();
    size_t i, ulen;
    CURL *e;

    for (i = 0; i < p->nkeys && key == NULL; i++)
        if (gh_limits_cooldown_until(p->keys[i].id, now) == 0)
            key = &p->keys[i];
    if (key == NULL && p->nkeys > 0)
        key = &p->keys[0];
    if (key == NULL) {
        refuse(o, 503, "api_error", "the provider holding this resource has no API key");
        return;
    }
    ulen = strlen(p->base_url) + strlen(o->upath) + 1;
    o->url = malloc(ulen);
    o->in = evbuffer_new();
    o->idle = evtimer_new(gh_worker->base, on_xfer_idle, o);
    if (o->url == NULL || o->in == NULL || o->idle == NULL ||
        xfer_headers(o, key, beta_flags) != GH_OK || (e = gh_upstream_easy_get()) == NULL) {
        refuse(o, 500, "api_error", "out of memory");
        return;
    }
    snprintf(o->url, ulen, "%s%s", p->base_url, o->upath);
    o->xfer.easy = e;
    o->xfer.done = done;
    gh_usage_set(o->ex->rec.provider, sizeof(o->ex->rec.provider), p->name, strlen(p->name));
    o->ex->rec.attempts++;
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, &o->xfer);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, o->hdrs);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_xfer_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, o);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, o);
    gh_upstream_defaults(e, OAIR_CONNECT_TIMEOUT_MS);
    if (gh_upstream_start(&o->xfer) != GH_OK) {
        refuse(o, 500, "api_error", "could not start the upstream request");
        return;
    }
    o->in_multi = 1;
    arm_idle(o);
    req->on_abort = on_xfer_abort;
    req->on_drain = on_xfer_drain;
    req->handler_arg = o;
}

/* The provider named name in the exchange's provider generation, or NULL. */
static const gh_provider_t *provider_named(const gh_exchange_t *ex, const char *name)
{
    size_t i;
    for (i = 0; i < ex->provs->n; i++)
        if (strcmp(ex->provs->p[i].name, name) == 0)
            return &ex->provs->p[i];
    return NULL;
}

/* POST /v1/batches: an input file (fetched first) or a requests array becomes the batch. */
static void create_batch(oair_t *o, const gh_vkey_t *vk)
{
    gh_http_req_t *req = o->ex->req;
    struct json_object *root = parse_json(req->body, req->body_len), *arr, *reqs = NULL;
    const char *ep, *win, *fid;
    char err[600], provider[64] = "";
    int status = 400;

    if (root == NULL || !json_object_is_type(root, json_type_object)) {
        refuse(o, 400, "invalid_request_error",
               req->body_len == 0 ? "request body is empty: expected a JSON object"
                                  : "request body is not a valid JSON object");
        goto done;
    }
    if (((ep = str_member(root, "endpoint")) != NULL && strcmp(ep, OAIR_CHAT) != 0) ||
        (json_object_object_get_ex(root, "endpoint", &arr) && ep == NULL)) {
        refuse(o, 400, "invalid_request_error",
               "endpoint: only /v1/chat/completions is supported for batches");
        goto done;
    }
    if (((win = str_member(root, "completion_window")) != NULL && strcmp(win, "24h") != 0) ||
        (json_object_object_get_ex(root, "completion_window", &arr) && win == NULL)) {
        refuse(o, 400, "invalid_request_error", "completion_window: only '24h' is supported");
        goto done;
    }
    if ((fid = str_member(root, "input_file_id")) != NULL) {
        if (strlen(fid) >= sizeof(o->input_file_id) ||
            !gh_resources_owner(0, fid, vk->id, provider, sizeof(provider))) {
            snprintf(err, sizeof(err), "No such File object: %.200s", fid);
            refuse(o, 404, "not_found_error", err);
            goto done;
        }
        snprintf(o->input_file_id, sizeof(o->input_file_id), "%s", fid);
        if ((o->prov = provider_named(o->ex, provider)) == NULL) {
            snprintf(err, sizeof(err), "the provider holding '%s' no longer exists", fid);
            refuse(o, 404, "not_found_error", err);
            goto done;
        }
        snprintf(o->upath, sizeof(o->upath), "/v1/files/%s/content", fid);
        start_get(o, GH_BETA_FILES_ENDPOINT, on_fetch_body, on_fetch_done);
        goto done;
    }
    if (!json_object_object_get_ex(root, "requests", &arr) ||
        !json_object_is_type(arr, json_type_array) || json_object_array_length(arr) == 0) {
        refuse(o, 400, "invalid_request_error",
               "input_file_id: Field required (or a non-empty requests array of {custom_id, "
               "body})");
        goto done;
    }
    if ((reqs = json_object_new_array()) == NULL ||
        requests_from_array(arr, reqs, err, sizeof(err), &status) != GH_OK) {
        json_object_put(reqs);
        if (reqs == NULL)
            refuse(o, 500, "api_error", "out of memory");
        else
            refuse(o, status, status >= 500 ? "api_error" : "invalid_request_error", err);
        goto done;
    }
    submit_batch(o, vk, reqs);
done:
    json_object_put(root);
}

/* See oai_resources.h. */
int gh_oai_resources_handle(gh_http_req_t *req, const char *path)
{
    const char *m = req->head.method, *endpoint = NULL, *allow = NULL, *amsg = NULL;
    char id[128], sub[16], msg[400], provider[64] = "";
    const gh_vkey_t *vk = NULL;
    gh_exchange_t *ex;
    oair_t *o;
    int is_batch, pr;
    op_t op;

    if ((pr = parse_path(path, &is_batch, id, sizeof(id), sub, sizeof(sub))) == 0)
        return 0;
    if (!is_batch && gh_http_header(&req->head, "anthropic-version") != NULL)
        return 0; /* Anthropic's Files API, in resources.c */
    if (pr < 0 || !route_of(is_batch, id, sub, m, &op, &endpoint, &allow)) {
        gh_reply_error(req, GH_SHAPE_OPENAI, 404, "not_found_error", NULL, "no route for %s %s", m,
                       req->head.path);
        return 1;
    }
    gh_worker_refresh();
    ex = gh_exchange_new(req, endpoint);
    o = calloc(1, sizeof(*o));
    if (ex == NULL || o == NULL) {
        free(o);
        gh_exchange_free(ex);
        gh_reply_error(req, GH_SHAPE_OPENAI, 500, "api_error", NULL, "out of memory");
        return 1;
    }
    ex->shape = GH_SHAPE_OPENAI;
    ex->hook_arg = o;
    ex->hooks.finished = on_finished;
    ex->hooks.buffered = on_buffered;
    o->ex = ex;
    o->op = op;
    snprintf(o->id, sizeof(o->id), "%s", id);
    if (gh_auth_request(&req->head, &gh_worker->keys, &vk, &amsg) != GH_AUTH_OK) {
        if (vk != NULL)
            gh_usage_set(ex->rec.key_id, sizeof(ex->rec.key_id), vk->id, strlen(vk->id));
        refuse(o, 401, "authentication_error", amsg != NULL ? amsg : "invalid API key");
        return 1;
    }
    gh_usage_set(ex->rec.key_id, sizeof(ex->rec.key_id), vk->id, strlen(vk->id));
    snprintf(o->key_id, sizeof(o->key_id), "%s", vk->id);
    if (op == OP_NONE) {
        char hdr[64];
        snprintf(hdr, sizeof(hdr), "Allow: %s\r\n", allow);
        gh_exchange_refuse(ex, 405, "invalid_request_error", "method_not_allowed", hdr,
                           "method not allowed on %s", req->head.path);
        return 1;
    }
    if (id[0] != '\0') {
        if (!gh_resources_owner(is_batch, id, vk->id, provider, sizeof(provider))) {
            snprintf(msg, sizeof(msg), "No such %s object: %s", is_batch ? "Batch" : "File", id);
            refuse(o, 404, "not_found_error", msg);
            return 1;
        }
        if ((o->prov = provider_named(ex, provider)) == NULL) {
            snprintf(msg, sizeof(msg), "the provider holding '%s' no longer exists", id);
            refuse(o, 404, "not_found_error", msg);
            return 1;
        }
    } else if (op != OP_BATCH_CREATE && (o->prov = gh_worker_default_provider(ex->provs)) == NULL) {
        refuse(o, 503, "api_error", "no provider is configured");
        return 1;
    }
    switch (op) {
    case OP_FILE_LIST:
    case OP_FILE_CREATE:
        snprintf(o->upath, sizeof(o->upath), "%s", "/v1/files");
        if (op == OP_FILE_LIST)
            list_query(o, req->head.query);
        break;
    case OP_FILE_GET:
    case OP_FILE_DELETE:
        snprintf(o->upath, sizeof(o->upath), "/v1/files/%s", id);
        break;
    case OP_FILE_CONTENT:
        snprintf(o->upath, sizeof(o->upath), "/v1/files/%s/content", id);
        break;
    case OP_BATCH_LIST:
        snprintf(o->upath, sizeof(o->upath), "%s", "/v1/messages/batches");
        list_query(o, req->head.query);
        break;
    case OP_BATCH_GET:
        snprintf(o->upath, sizeof(o->upath), "/v1/messages/batches/%s", id);
        break;
    case OP_BATCH_CANCEL:
        snprintf(o->upath, sizeof(o->upath), "/v1/messages/batches/%s/cancel", id);
        break;
    case OP_BATCH_RESULTS:
        snprintf(o->upath, sizeof(o->upath), "/v1/messages/batches/%s/results", id);
        if ((o->usage = gh_resources_usage_new(id, vk->id)) == NULL) {
            refuse(o, 500, "api_error", "out of memory");
            return 1;
        }
        start_get(o, 0, on_results_body, on_results_done);
        return 1;
    case OP_BATCH_CREATE:
    default:
        create_batch(o, vk);
        return 1;
    }
    relay(o);
    return 1;
}
