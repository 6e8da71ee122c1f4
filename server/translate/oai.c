/* oai.c: the entry points of the OpenAI translators, dispatching requests, answers and stream
 * events to the translator of each API shape. */
#include <stdlib.h>
#include <string.h>

#include "oai_int.h"

/* Reads the members every OpenAI body shares (model, stream) into out and req. */
static int common_members(gh_oai_err_t *e, json_object *body, gh_oai_req_t *out, json_object *req)
{
    json_object *model = gh_oai_get(body, "model"), *stream = gh_oai_get(body, "stream");
    size_t n;

    if (model == NULL)
        return gh_oai_fail(e, "model", "Missing required parameter: 'model'.");
    n = (size_t)json_object_get_string_len(model);
    if (!json_object_is_type(model, json_type_string) || n == 0 ||
        strlen(json_object_get_string(model)) != n)
        return gh_oai_fail(e, "model", "Invalid value for 'model': expected a model name.");
    if (n >= sizeof out->model)
        return gh_oai_fail(e, "model", "Invalid value for 'model': the name is too long.");
    memcpy(out->model, json_object_get_string(model), n + 1);
    if (stream != NULL && !json_object_is_type(stream, json_type_boolean))
        return gh_oai_fail(e, "stream", "Invalid type for 'stream': expected a boolean.");
    out->stream = stream != NULL && json_object_get_boolean(stream);
    return gh_oai_add_ref(req, "model", model) == GH_OK ? GH_OK : gh_oai_oom(e);
}

/* Translates an OpenAI request body into an Anthropic one; see oai.h. out's body is malloc'd
 * and owned by the caller. */
int gh_oai_request(gh_oai_kind_t kind, const char *body, size_t len, const gh_oai_opts_t *opts,
                   gh_oai_req_t *out, int *status, char *err, size_t errsz, char *param,
                   size_t paramsz)
{
    gh_oai_err_t e = {0, err, errsz, param, paramsz};
    json_object *in = NULL, *req = NULL;
    gh_buf_t b = GH_BUF_INIT;
    int rc = GH_ERR;

    memset(out, 0, sizeof *out);
    if (err != NULL && errsz != 0)
        err[0] = '\0';
    if (param != NULL && paramsz != 0)
        param[0] = '\0';
    if (err == NULL)
        e.msgsz = 0;
    if (param == NULL)
        e.paramsz = 0;
    in = gh_oai_parse(body, len);
    if (in == NULL || !json_object_is_type(in, json_type_object)) {
        gh_oai_fail(&e, "",
                    "We could not parse the JSON body of your request: expected a JSON object.");
        goto done;
    }
    req = json_object_new_object();
    if (req == NULL) {
        gh_oai_oom(&e);
        goto done;
    }
    if (common_members(&e, in, out, req) != GH_OK)
        goto done;
    switch (kind) {
    case GH_OAI_CHAT:
        rc = gh_oai_chat_request(in, opts, out, req, &e);
        out->upstream_path = "/v1/messages";
        break;
    case GH_OAI_RESPONSES:
        rc = gh_oai_resp_request(in, opts, out, req, &e);
        out->upstream_path = "/v1/messages";
        break;
    case GH_OAI_COMPLETIONS:
        rc = gh_oai_complete_request(in, opts, out, req, &e);
        out->upstream_path = "/v1/complete";
        break;
    default:
        gh_oai_fail(&e, "", "Unknown OpenAI API.");
        break;
    }
    if (rc != GH_OK)
        goto done;
    rc = GH_ERR;
    if (out->stream && gh_oai_add(req, "stream", json_object_new_boolean(1)) != GH_OK)
        goto done;
    if (gh_oai_emit(req, &b) != GH_OK || (out->body = gh_buf_detach(&b, &out->body_len)) == NULL)
        goto done;
    rc = GH_OK;
done:
    if (rc != GH_OK) {
        gh_oai_oom(&e); /* keeps the client error when there is one */
        gh_buf_free(&b);
        free(out->body);
        memset(out, 0, sizeof *out);
    }
    if (status != NULL)
        *status = rc == GH_OK ? 200 : e.status;
    json_object_put(req);
    json_object_put(in);
    return rc;
}

/* Frees the translated body and zeroes r. */
void gh_oai_req_free(gh_oai_req_t *r)
{
    if (r == NULL)
        return;
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* Translates a non-streamed Anthropic answer into the OpenAI document of kind; see oai.h. */
int gh_oai_response(gh_oai_kind_t kind, const char *model_requested, const char *body, size_t len,
                    gh_buf_t *out)
{
    json_object *msg = gh_oai_parse(body, len);
    int rc = GH_ERR;

    if (msg == NULL || !json_object_is_type(msg, json_type_object))
        goto done;
    switch (kind) {
    case GH_OAI_CHAT:
        rc = gh_oai_chat_response(model_requested, msg, out);
        break;
    case GH_OAI_RESPONSES:
        rc = gh_oai_resp_response(model_requested, msg, out);
        break;
    case GH_OAI_COMPLETIONS:
        rc = gh_oai_complete_response(model_requested, msg, out);
        break;
    default:
        break;
    }
done:
    json_object_put(msg);
    return rc;
}

/* Creates the stream translator; the caller owns it and frees it with gh_oai_stream_free. */
gh_oai_stream_t *gh_oai_stream_new(gh_oai_kind_t kind, const char *model_requested,
                                   int include_usage)
{
    gh_oai_stream_t *s;

    if (kind != GH_OAI_CHAT && kind != GH_OAI_RESPONSES)
        return NULL;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->kind = kind;
    s->include_usage = include_usage != 0;
    s->created = gh_oai_now();
    s->model_fixed = model_requested != NULL;
    s->model = gh_oai_strdup(model_requested != NULL ? model_requested : "");
    s->id = gh_oai_strdup("");
    s->output = json_object_new_array();
    if (s->model == NULL || s->id == NULL || s->output == NULL) {
        gh_oai_stream_free(s);
        return NULL;
    }
    return s;
}

/* Returns the state of the content block named by ev's "index", growing the table as needed;
 * NULL when the index is missing or out of range, so a malformed event is skipped. */
gh_oai_block_t *gh_oai_block_at(gh_oai_stream_t *s, json_object *ev)
{
    json_object *iv = gh_oai_get(ev, "index");
    int64_t i;
    gh_oai_block_t *nb;
    size_t n;

    if (iv == NULL || !json_object_is_type(iv, json_type_int))
        return NULL;
    i = json_object_get_int64(iv);
    if (i < 0 || i >= GH_OAI_MAX_BLOCKS)
        return NULL;
    if ((size_t)i < s->nblocks)
        return &s->blocks[i];
    n = (size_t)i + 1 > s->nblocks * 2 ? (size_t)i + 1 : s->nblocks * 2;
    nb = realloc(s->blocks, n * sizeof *nb);
    if (nb == NULL)
        return NULL;
    memset(nb + s->nblocks, 0, (n - s->nblocks) * sizeof *nb);
    s->blocks = nb;
    s->nblocks = n;
    return &s->blocks[i];
}

/* Replaces the string *dst (owned by s) with a copy of src. */
static int set_str(char **dst, const char *src)
{
    char *p = gh_oai_strdup(src);

    if (p == NULL)
        return GH_ERR;
    free(*dst);
    *dst = p;
    return GH_OK;
}

/* Records what every translator needs from message_start and message_delta: the message id,
 * the upstream model (when the client's is not echoed), the stop reason and the usage. */
static int track(gh_oai_stream_t *s, const char *type, json_object *ev)
{
    if (strcmp(type, "message_start") == 0) {
        json_object *m = gh_oai_get(ev, "message");
        const char *id = gh_oai_get_str(m, "id"), *model = gh_oai_get_str(m, "model");
        if (id != NULL && set_str(&s->id, id) != GH_OK)
            return GH_ERR;
        if (!s->model_fixed && model != NULL && set_str(&s->model, model) != GH_OK)
            return GH_ERR;
        gh_oai_usage_read(&s->usage, gh_oai_get(m, "usage"));
    } else if (strcmp(type, "message_delta") == 0) {
        const char *sr = gh_oai_get_str(gh_oai_get(ev, "delta"), "stop_reason");
        if (sr != NULL) {
            size_t n = strlen(sr) < sizeof s->stop_reason ? strlen(sr) : sizeof s->stop_reason - 1;
            memcpy(s->stop_reason, sr, n);
            s->stop_reason[n] = '\0';
        }
        gh_oai_usage_read(&s->usage, gh_oai_get(ev, "usage"));
    }
    return GH_OK;
}

/* Translates one Anthropic stream event; see oai.h. The event name wins; without one (or with
 * the SSE default "message") the data's "type" names the event. */
int gh_oai_stream_event(gh_oai_stream_t *s, const char *event, size_t event_len, const char *data,
                        size_t data_len, gh_buf_t *out)
{
    char name[64];
    const char *type;
    json_object *ev = NULL;
    int rc = GH_OK;

    if (s == NULL || s->closed)
        return GH_OK;
    if (event != NULL && event_len != 0 && event_len < sizeof name &&
        !(event_len == 7 && memcmp(event, "message", 7) == 0)) {
        memcpy(name, event, event_len);
        name[event_len] = '\0';
    } else {
        name[0] = '\0';
    }
    if (strcmp(name, "ping") == 0)
        return GH_OK;
    ev = gh_oai_parse(data, data_len);
    if (ev == NULL || !json_object_is_type(ev, json_type_object)) {
        rc = GH_ERR;
        goto done;
    }
    type = name[0] != '\0' ? name : gh_oai_get_str(ev, "type");
    if (type == NULL || strcmp(type, "ping") == 0)
        goto done;
    if (strcmp(type, "error") == 0) {
        json_object *err = gh_oai_get(ev, "error");
        const char *etype = gh_oai_get_str(err, "type"), *emsg = gh_oai_get_str(err, "message");
        rc = s->kind == GH_OAI_CHAT ? gh_oai_chat_finish(s, 1, etype, emsg, out)
                                    : gh_oai_resp_finish(s, 1, etype, emsg, out);
        goto done;
    }
    if (track(s, type, ev) != GH_OK) {
        rc = GH_ERR;
        goto done;
    }
    rc = s->kind == GH_OAI_CHAT ? gh_oai_chat_event(s, type, ev, out)
                                : gh_oai_resp_event(s, type, ev, out);
done:
    json_object_put(ev);
    return rc;
}

/* Closes the OpenAI stream when the upstream one ended; see oai.h. */
int gh_oai_stream_finish(gh_oai_stream_t *s, int broken, gh_buf_t *out)
{
    static const char broke[] = "The upstream stream ended before the answer was complete.";

    if (s == NULL || s->closed)
        return GH_OK;
    if (s->kind == GH_OAI_CHAT)
        return gh_oai_chat_finish(s, broken, "api_error", broken ? broke : NULL, out);
    return gh_oai_resp_finish(s, broken, "api_error", broken ? broke : NULL, out);
}

/* Tells whether the OpenAI stream is complete. */
int gh_oai_stream_closed(const gh_oai_stream_t *s)
{
    return s != NULL && s->closed;
}

/* Frees the translator and everything it holds. */
void gh_oai_stream_free(gh_oai_stream_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nblocks; i++) {
        free(s->blocks[i].item_id);
        free(s->blocks[i].call_id);
        free(s->blocks[i].name);
        gh_buf_free(&s->blocks[i].acc);
        gh_buf_free(&s->blocks[i].sig);
    }
    free(s->blocks);
    free(s->model);
    free(s->id);
    json_object_put(s->output);
    json_object_put(s->msg_item);
    free(s);
}
