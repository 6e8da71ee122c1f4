/* resp_out.c: Anthropic Messages answers and event streams turned into OpenAI Responses API
 * response objects and Responses streaming events. */
#include <stdio.h>
#include <string.h>

#include "oai_int.h"

/* Output item ids are derived from the Anthropic message id and the item's output index (tool
 * calls from the tool_use id), so one upstream answer always gives the same ids, streamed or
 * not. */

/* Builds the Responses usage object; cached input counts inside input_tokens. Anthropic does
 * not count thinking tokens apart, so reasoning_tokens is 0. */
static json_object *resp_usage(const gh_oai_usage_t *u)
{
    json_object *o = json_object_new_object(), *d;
    int64_t in = gh_oai_usage_prompt(u);

    if (o == NULL || gh_oai_add_int(o, "input_tokens", in) != GH_OK)
        goto fail;
    d = json_object_new_object();
    if (gh_oai_add(o, "input_tokens_details", d) != GH_OK ||
        gh_oai_add_int(d, "cached_tokens", u->cache_read) != GH_OK ||
        gh_oai_add_int(o, "output_tokens", u->output) != GH_OK)
        goto fail;
    d = json_object_new_object();
    if (gh_oai_add(o, "output_tokens_details", d) != GH_OK ||
        gh_oai_add_int(d, "reasoning_tokens", 0) != GH_OK ||
        gh_oai_add_int(o, "total_tokens", in + u->output) != GH_OK)
        goto fail;
    return o;
fail:
    json_object_put(o);
    return NULL;
}

/* Builds the response object. status NULL derives it from stop_reason (max_tokens and refusal
 * make it incomplete, with the reason); output is shared by reference; usage NULL gives null. */
json_object *gh_oai_resp_object(const char *msg_id, const char *model, time_t created,
                                const char *status, const char *stop_reason, json_object *output,
                                const gh_oai_usage_t *usage)
{
    char id[256];
    const char *reason = NULL;
    json_object *r = json_object_new_object(), *inc;

    if (status == NULL) {
        status = "completed";
        if (stop_reason != NULL && (strcmp(stop_reason, "max_tokens") == 0 ||
                                    strcmp(stop_reason, "model_context_window_exceeded") == 0))
            reason = "max_output_tokens";
        else if (stop_reason != NULL && strcmp(stop_reason, "refusal") == 0)
            reason = "content_filter";
        if (reason != NULL)
            status = "incomplete";
    }
    snprintf(id, sizeof id, "resp_%s", gh_oai_id_base(msg_id));
    if (r == NULL || gh_oai_add_str(r, "id", id) != GH_OK ||
        gh_oai_add_str(r, "object", "response") != GH_OK ||
        gh_oai_add_int(r, "created_at", (int64_t)created) != GH_OK ||
        gh_oai_add_str(r, "status", status) != GH_OK || gh_oai_add_null(r, "error") != GH_OK)
        goto fail;
    if (reason != NULL) {
        inc = json_object_new_object();
        if (gh_oai_add(r, "incomplete_details", inc) != GH_OK ||
            gh_oai_add_str(inc, "reason", reason) != GH_OK)
            goto fail;
    } else if (gh_oai_add_null(r, "incomplete_details") != GH_OK) {
        goto fail;
    }
    if (gh_oai_add_str(r, "model", model) != GH_OK ||
        gh_oai_add_ref(r, "output", output) != GH_OK ||
        gh_oai_add(r, "parallel_tool_calls", json_object_new_boolean(1)) != GH_OK ||
        gh_oai_add_str(r, "tool_choice", "auto") != GH_OK ||
        gh_oai_add(r, "tools", json_object_new_array()) != GH_OK ||
        gh_oai_add(r, "store", json_object_new_boolean(0)) != GH_OK ||
        (usage != NULL ? gh_oai_add(r, "usage", resp_usage(usage)) : gh_oai_add_null(r, "usage")) !=
            GH_OK ||
        gh_oai_add(r, "metadata", json_object_new_object()) != GH_OK)
        goto fail;
    return r;
fail:
    json_object_put(r);
    return NULL;
}

/* Builds an empty assistant message item with the given status. */
static json_object *message_item(const char *id, const char *status)
{
    json_object *m = json_object_new_object();

    if (m == NULL || gh_oai_add_str(m, "id", id) != GH_OK ||
        gh_oai_add_str(m, "type", "message") != GH_OK ||
        gh_oai_add_str(m, "status", status) != GH_OK ||
        gh_oai_add_str(m, "role", "assistant") != GH_OK ||
        gh_oai_add(m, "content", json_object_new_array()) != GH_OK) {
        json_object_put(m);
        return NULL;
    }
    return m;
}

/* Builds an output_text part. */
static json_object *text_part(const char *text, size_t n)
{
    json_object *p = json_object_new_object();

    if (p == NULL || gh_oai_add_str(p, "type", "output_text") != GH_OK ||
        gh_oai_add_strn(p, "text", text, n) != GH_OK ||
        gh_oai_add(p, "annotations", json_object_new_array()) != GH_OK) {
        json_object_put(p);
        return NULL;
    }
    return p;
}

/* Builds a function_call item. */
static json_object *call_item(const char *id, const char *call_id, const char *name,
                              const char *args, size_t n, const char *status)
{
    json_object *c = json_object_new_object();

    if (c == NULL || gh_oai_add_str(c, "id", id) != GH_OK ||
        gh_oai_add_str(c, "type", "function_call") != GH_OK ||
        gh_oai_add_str(c, "status", status) != GH_OK ||
        gh_oai_add_strn(c, "arguments", args, n) != GH_OK ||
        gh_oai_add_str(c, "call_id", call_id) != GH_OK ||
        gh_oai_add_str(c, "name", name) != GH_OK) {
        json_object_put(c);
        return NULL;
    }
    return c;
}

/* Builds a summary_text part. */
static json_object *summary_part(const char *text, size_t n)
{
    json_object *p = json_object_new_object();

    if (p == NULL || gh_oai_add_str(p, "type", "summary_text") != GH_OK ||
        gh_oai_add_strn(p, "text", text, n) != GH_OK) {
        json_object_put(p);
        return NULL;
    }
    return p;
}

/* Builds a reasoning item. text NULL gives an empty summary (the item as first announced); the
 * thinking signature travels in encrypted_content so a client can send the item back. */
static json_object *reasoning_item(const char *id, const char *text, size_t n, const char *sig)
{
    json_object *r = json_object_new_object(), *sum = NULL;

    if (r == NULL || gh_oai_add_str(r, "id", id) != GH_OK ||
        gh_oai_add_str(r, "type", "reasoning") != GH_OK)
        goto fail;
    sum = json_object_new_array();
    if (gh_oai_add(r, "summary", sum) != GH_OK ||
        (text != NULL && gh_oai_push(sum, summary_part(text, n)) != GH_OK))
        goto fail;
    if (sig != NULL && sig[0] != '\0' && gh_oai_add_str(r, "encrypted_content", sig) != GH_OK)
        goto fail;
    return r;
fail:
    json_object_put(r);
    return NULL;
}

/* Writes the id of a function_call item: "fc_" + the tool_use id without its "toolu_". */
static const char *call_item_id(char *buf, size_t sz, const char *tool_id)
{
    snprintf(buf, sz, "fc_%s",
             strncmp(tool_id, "toolu_", 6) == 0 && tool_id[6] != '\0' ? tool_id + 6 : tool_id);
    return buf;
}

/* Translates an Anthropic message into a Responses response object appended to out: text
 * blocks in a row share one message item, tool_use blocks become function_call items, thinking
 * blocks reasoning items, in the order of the answer. */
int gh_oai_resp_response(const char *model, json_object *msg, gh_buf_t *out)
{
    json_object *content = gh_oai_get(msg, "content"), *output = NULL, *r = NULL, *item = NULL;
    json_object *parts = NULL;
    const char *msg_id = gh_oai_get_str(msg, "id");
    const char *base = gh_oai_id_base(msg_id);
    gh_oai_usage_t u = {0};
    char id[300];
    size_t n;
    int rc = GH_ERR;

    if (content == NULL || !json_object_is_type(content, json_type_array))
        goto done;
    output = json_object_new_array();
    if (output == NULL)
        goto done;
    n = json_object_array_length(content);
    for (size_t i = 0; i < n; i++) {
        json_object *b = json_object_array_get_idx(content, i), *v;
        const char *type = gh_oai_get_str(b, "type");
        int idx = (int)json_object_array_length(output);
        item = NULL;
        if (type == NULL)
            continue;
        if (strcmp(type, "text") == 0) {
            v = gh_oai_get(b, "text");
            if (parts == NULL) {
                snprintf(id, sizeof id, "msg_%s_%d", base, idx);
                item = message_item(id, "completed");
                if (gh_oai_push(output, item) != GH_OK)
                    goto done;
                parts = gh_oai_get(item, "content");
                item = NULL;
            }
            if (gh_oai_push(parts, text_part(v != NULL ? json_object_get_string(v) : "",
                                             v != NULL ? (size_t)json_object_get_string_len(v)
                                                       : 0)) != GH_OK)
                goto done;
        } else if (strcmp(type, "tool_use") == 0) {
            const char *tid = gh_oai_get_str(b, "id"), *name = gh_oai_get_str(b, "name");
            const char *args;
            v = gh_oai_get(b, "input");
            args = v != NULL ? gh_oai_json(v) : "{}";
            parts = NULL;
            item = call_item(call_item_id(id, sizeof id, tid != NULL ? tid : ""),
                             tid != NULL ? tid : "", name != NULL ? name : "", args, strlen(args),
                             "completed");
        } else if (strcmp(type, "thinking") == 0) {
            v = gh_oai_get(b, "thinking");
            parts = NULL;
            snprintf(id, sizeof id, "rs_%s_%d", base, idx);
            item = reasoning_item(id, v != NULL ? json_object_get_string(v) : "",
                                  v != NULL ? (size_t)json_object_get_string_len(v) : 0,
                                  gh_oai_get_str(b, "signature"));
        } else {
            continue; /* server tool blocks, redacted thinking: no Responses counterpart */
        }
        if (item != NULL && gh_oai_push(output, item) != GH_OK)
            goto done;
        if (strcmp(type, "text") != 0 && item == NULL)
            goto done;
    }
    gh_oai_usage_read(&u, gh_oai_get(msg, "usage"));
    if (model == NULL)
        model = gh_oai_get_str(msg, "model") != NULL ? gh_oai_get_str(msg, "model") : "";
    r = gh_oai_resp_object(msg_id, model, gh_oai_now(), NULL, gh_oai_get_str(msg, "stop_reason"),
                           output, &u);
    if (r == NULL)
        goto done;
    rc = gh_oai_emit(r, out);
done:
    json_object_put(r);
    json_object_put(output);
    return rc;
}

/* Appends one streaming event: "event: TYPE\ndata: JSON\n\n", with the next sequence_number
 * added to ev (taken over; NULL means an allocation failed). */
static int emit(gh_oai_stream_t *s, json_object *ev, gh_buf_t *out)
{
    const char *type = gh_oai_get_str(ev, "type");
    int rc = GH_ERR;

    if (ev == NULL || type == NULL || gh_oai_add_int(ev, "sequence_number", s->seq++) != GH_OK)
        goto done;
    if (gh_buf_printf(out, "event: %s\ndata: ", type) != GH_OK || gh_oai_emit(ev, out) != GH_OK ||
        gh_buf_puts(out, "\n\n") != GH_OK)
        goto done;
    rc = GH_OK;
done:
    json_object_put(ev);
    return rc;
}

/* Starts an event object {type}. */
static json_object *ev_new(const char *type)
{
    json_object *ev = json_object_new_object();

    if (ev != NULL && gh_oai_add_str(ev, "type", type) != GH_OK) {
        json_object_put(ev);
        return NULL;
    }
    return ev;
}

/* Builds {type, item_id, output_index[, content_index|summary_index]} for the events that
 * address a part of an output item; which < 0 leaves the index out. */
static json_object *ev_item(const char *type, const gh_oai_block_t *b, const char *which, int index)
{
    json_object *ev = ev_new(type);

    if (ev == NULL || gh_oai_add_str(ev, "item_id", b->item_id) != GH_OK ||
        gh_oai_add_int(ev, "output_index", b->output_index) != GH_OK ||
        (which != NULL && gh_oai_add_int(ev, which, index) != GH_OK)) {
        json_object_put(ev);
        return NULL;
    }
    return ev;
}

/* Emits {type, output_index, item} (output_item.added / .done); item is shared. */
static int emit_item(gh_oai_stream_t *s, const char *type, int index, json_object *item,
                     gh_buf_t *out)
{
    json_object *ev = ev_new(type);

    if (ev == NULL || gh_oai_add_int(ev, "output_index", index) != GH_OK ||
        gh_oai_add_ref(ev, "item", item) != GH_OK) {
        json_object_put(ev);
        return GH_ERR;
    }
    return emit(s, ev, out);
}

/* Emits a lifecycle event carrying the whole response: response.created, .in_progress,
 * .completed or .failed. err (code, message) is set on failed responses. */
static int emit_response(gh_oai_stream_t *s, const char *type, const char *status, const char *code,
                         const char *message, gh_buf_t *out)
{
    json_object *ev = ev_new(type), *empty = NULL, *r = NULL, *err;
    int live = strcmp(status, "in_progress") == 0;
    int rc = GH_ERR;

    if (ev == NULL || (live && (empty = json_object_new_array()) == NULL))
        goto done;
    r = gh_oai_resp_object(s->id, s->model, s->created, strcmp(status, "done") == 0 ? NULL : status,
                           s->stop_reason[0] != '\0' ? s->stop_reason : NULL,
                           live ? empty : s->output, live ? NULL : &s->usage);
    if (r == NULL)
        goto done;
    if (code != NULL) {
        err = json_object_new_object();
        if (gh_oai_add(r, "error", err) != GH_OK || gh_oai_add_str(err, "code", code) != GH_OK ||
            gh_oai_add_str(err, "message", message) != GH_OK)
            goto done;
    }
    if (gh_oai_add(ev, "response", r) != GH_OK) {
        r = NULL;
        goto done;
    }
    r = NULL;
    rc = emit(s, ev, out);
    ev = NULL;
done:
    json_object_put(r);
    json_object_put(ev);
    json_object_put(empty);
    return rc;
}

/* Sends response.created and response.in_progress once. */
static int resp_start(gh_oai_stream_t *s, gh_buf_t *out)
{
    if (s->started)
        return GH_OK;
    s->started = 1;
    if (emit_response(s, "response.created", "in_progress", NULL, NULL, out) != GH_OK)
        return GH_ERR;
    return emit_response(s, "response.in_progress", "in_progress", NULL, NULL, out);
}

/* Finishes the open message item, if any: output_item.done, and the item joins the output. */
static int msg_close(gh_oai_stream_t *s, gh_buf_t *out)
{
    json_object *item = s->msg_item;

    if (item == NULL)
        return GH_OK;
    s->msg_item = NULL;
    if (gh_oai_add_str(item, "status", "completed") != GH_OK ||
        emit_item(s, "response.output_item.done", s->msg_index, item, out) != GH_OK) {
        json_object_put(item);
        return GH_ERR;
    }
    return gh_oai_push(s->output, item);
}

/* Opens a text block: a message item when none is open, then a new output_text part. */
static int start_text(gh_oai_stream_t *s, gh_oai_block_t *b, gh_buf_t *out)
{
    char id[300];
    json_object *ev;

    if (s->msg_item == NULL) {
        s->msg_index = s->noutput++;
        s->msg_parts = 0;
        snprintf(id, sizeof id, "msg_%s_%d", gh_oai_id_base(s->id), s->msg_index);
        s->msg_item = message_item(id, "in_progress");
        if (s->msg_item == NULL ||
            emit_item(s, "response.output_item.added", s->msg_index, s->msg_item, out) != GH_OK)
            return GH_ERR;
    }
    b->type = GH_OAI_BLK_TEXT;
    b->output_index = s->msg_index;
    b->content_index = s->msg_parts++;
    b->item_id = gh_oai_strdup(gh_oai_get_str(s->msg_item, "id"));
    if (b->item_id == NULL)
        return GH_ERR;
    ev = ev_item("response.content_part.added", b, "content_index", b->content_index);
    if (ev == NULL || gh_oai_add(ev, "part", text_part("", 0)) != GH_OK) {
        json_object_put(ev);
        return GH_ERR;
    }
    return emit(s, ev, out);
}

/* Opens a tool_use block as a function_call item. */
static int start_tool(gh_oai_stream_t *s, gh_oai_block_t *b, json_object *cb, gh_buf_t *out)
{
    char id[300];
    const char *tid = gh_oai_get_str(cb, "id"), *name = gh_oai_get_str(cb, "name");
    json_object *item;
    int rc;

    if (msg_close(s, out) != GH_OK)
        return GH_ERR;
    b->type = GH_OAI_BLK_TOOL;
    b->output_index = s->noutput++;
    b->call_id = gh_oai_strdup(tid != NULL ? tid : "");
    b->name = gh_oai_strdup(name != NULL ? name : "");
    b->item_id = gh_oai_strdup(call_item_id(id, sizeof id, tid != NULL ? tid : ""));
    if (b->call_id == NULL || b->name == NULL || b->item_id == NULL)
        return GH_ERR;
    item = call_item(b->item_id, b->call_id, b->name, "", 0, "in_progress");
    if (item == NULL)
        return GH_ERR;
    rc = emit_item(s, "response.output_item.added", b->output_index, item, out);
    json_object_put(item);
    return rc;
}

/* Opens a thinking block as a reasoning item with one summary part. */
static int start_thinking(gh_oai_stream_t *s, gh_oai_block_t *b, gh_buf_t *out)
{
    char id[300];
    json_object *item, *ev;
    int rc;

    if (msg_close(s, out) != GH_OK)
        return GH_ERR;
    b->type = GH_OAI_BLK_THINKING;
    b->output_index = s->noutput++;
    snprintf(id, sizeof id, "rs_%s_%d", gh_oai_id_base(s->id), b->output_index);
    b->item_id = gh_oai_strdup(id);
    if (b->item_id == NULL || (item = reasoning_item(id, NULL, 0, NULL)) == NULL)
        return GH_ERR;
    rc = emit_item(s, "response.output_item.added", b->output_index, item, out);
    json_object_put(item);
    if (rc != GH_OK)
        return GH_ERR;
    ev = ev_item("response.reasoning_summary_part.added", b, "summary_index", 0);
    if (ev == NULL || gh_oai_add(ev, "part", summary_part("", 0)) != GH_OK) {
        json_object_put(ev);
        return GH_ERR;
    }
    return emit(s, ev, out);
}

/* Appends delta text to a block and emits the matching delta event. */
static int block_text(gh_oai_stream_t *s, gh_oai_block_t *b, const char *text, size_t n,
                      gh_buf_t *out)
{
    json_object *ev;

    if (n == 0)
        return GH_OK;
    if (gh_buf_append(&b->acc, text, n) != GH_OK)
        return GH_ERR;
    if (b->type == GH_OAI_BLK_TEXT)
        ev = ev_item("response.output_text.delta", b, "content_index", b->content_index);
    else if (b->type == GH_OAI_BLK_TOOL)
        ev = ev_item("response.function_call_arguments.delta", b, NULL, 0);
    else
        ev = ev_item("response.reasoning_summary_text.delta", b, "summary_index", 0);
    if (ev == NULL || gh_oai_add_strn(ev, "delta", text, n) != GH_OK ||
        (b->type == GH_OAI_BLK_TEXT &&
         gh_oai_add(ev, "logprobs", json_object_new_array()) != GH_OK)) {
        json_object_put(ev);
        return GH_ERR;
    }
    return emit(s, ev, out);
}

/* Closes a text block: output_text.done and content_part.done; the part joins the open message
 * item, which stays open for the text blocks that may follow. */
static int stop_text(gh_oai_stream_t *s, gh_oai_block_t *b, gh_buf_t *out)
{
    const char *t = b->acc.data != NULL ? b->acc.data : "";
    json_object *ev = ev_item("response.output_text.done", b, "content_index", b->content_index);
    json_object *part;

    if (ev == NULL || gh_oai_add_strn(ev, "text", t, b->acc.len) != GH_OK ||
        gh_oai_add(ev, "logprobs", json_object_new_array()) != GH_OK) {
        json_object_put(ev);
        return GH_ERR;
    }
    if (emit(s, ev, out) != GH_OK)
        return GH_ERR;
    part = text_part(t, b->acc.len);
    ev = ev_item("response.content_part.done", b, "content_index", b->content_index);
    if (part == NULL || ev == NULL || gh_oai_add_ref(ev, "part", part) != GH_OK) {
        json_object_put(ev);
        json_object_put(part);
        return GH_ERR;
    }
    if (emit(s, ev, out) != GH_OK) {
        json_object_put(part);
        return GH_ERR;
    }
    if (s->msg_item != NULL && s->msg_index == b->output_index)
        return gh_oai_push(gh_oai_get(s->msg_item, "content"), part);
    json_object_put(part);
    return GH_OK;
}

/* Closes a tool_use block: arguments done ("{}" when none came, so they parse) and the finished
 * function_call item. */
static int stop_tool(gh_oai_stream_t *s, gh_oai_block_t *b, gh_buf_t *out)
{
    const char *args = b->acc.len != 0 ? b->acc.data : "{}";
    size_t n = b->acc.len != 0 ? b->acc.len : 2;
    json_object *ev = ev_item("response.function_call_arguments.done", b, NULL, 0), *item;

    if (ev == NULL || gh_oai_add_strn(ev, "arguments", args, n) != GH_OK) {
        json_object_put(ev);
        return GH_ERR;
    }
    if (emit(s, ev, out) != GH_OK)
        return GH_ERR;
    item = call_item(b->item_id, b->call_id, b->name, args, n, "completed");
    if (item == NULL ||
        emit_item(s, "response.output_item.done", b->output_index, item, out) != GH_OK) {
        json_object_put(item);
        return GH_ERR;
    }
    return gh_oai_push(s->output, item);
}

/* Closes a thinking block: summary text and part done, then the finished reasoning item. */
static int stop_thinking(gh_oai_stream_t *s, gh_oai_block_t *b, gh_buf_t *out)
{
    const char *t = b->acc.data != NULL ? b->acc.data : "";
    json_object *ev = ev_item("response.reasoning_summary_text.done", b, "summary_index", 0);
    json_object *item;

    if (ev == NULL || gh_oai_add_strn(ev, "text", t, b->acc.len) != GH_OK) {
        json_object_put(ev);
        return GH_ERR;
    }
    if (emit(s, ev, out) != GH_OK)
        return GH_ERR;
    ev = ev_item("response.reasoning_summary_part.done", b, "summary_index", 0);
    if (ev == NULL || gh_oai_add(ev, "part", summary_part(t, b->acc.len)) != GH_OK) {
        json_object_put(ev);
        return GH_ERR;
    }
    if (emit(s, ev, out) != GH_OK)
        return GH_ERR;
    item = reasoning_item(b->item_id, t, b->acc.len, b->sig.data);
    if (item == NULL ||
        emit_item(s, "response.output_item.done", b->output_index, item, out) != GH_OK) {
        json_object_put(item);
        return GH_ERR;
    }
    return gh_oai_push(s->output, item);
}

/* Closes an open block of any kind. */
static int stop_block(gh_oai_stream_t *s, gh_oai_block_t *b, gh_buf_t *out)
{
    if (!b->open)
        return GH_OK;
    b->open = 0;
    if (b->type == GH_OAI_BLK_TEXT)
        return stop_text(s, b, out);
    if (b->type == GH_OAI_BLK_TOOL)
        return stop_tool(s, b, out);
    if (b->type == GH_OAI_BLK_THINKING)
        return stop_thinking(s, b, out);
    return GH_OK;
}

/* Handles content_block_start for the block types Responses can show; others stay silent. */
static int block_start(gh_oai_stream_t *s, json_object *ev, gh_buf_t *out)
{
    gh_oai_block_t *b = gh_oai_block_at(s, ev);
    json_object *cb = gh_oai_get(ev, "content_block"), *v = NULL;
    const char *type = gh_oai_get_str(cb, "type");
    int rc;

    if (b == NULL || type == NULL || b->type != GH_OAI_BLK_NONE)
        return GH_OK;
    if (strcmp(type, "text") == 0) {
        rc = start_text(s, b, out);
        v = gh_oai_get(cb, "text");
    } else if (strcmp(type, "tool_use") == 0) {
        rc = start_tool(s, b, cb, out);
    } else if (strcmp(type, "thinking") == 0) {
        rc = start_thinking(s, b, out);
        v = gh_oai_get(cb, "thinking");
    } else {
        return GH_OK;
    }
    if (rc != GH_OK)
        return GH_ERR;
    b->open = 1;
    if (v != NULL && json_object_is_type(v, json_type_string))
        return block_text(s, b, json_object_get_string(v), (size_t)json_object_get_string_len(v),
                          out);
    return GH_OK;
}

/* Handles content_block_delta: text, argument and thinking deltas; a signature is kept for the
 * reasoning item. */
static int block_delta(gh_oai_stream_t *s, json_object *ev, gh_buf_t *out)
{
    gh_oai_block_t *b = gh_oai_block_at(s, ev);
    json_object *d = gh_oai_get(ev, "delta"), *v = NULL;
    const char *type = gh_oai_get_str(d, "type");

    if (b == NULL || type == NULL || !b->open)
        return GH_OK;
    if (strcmp(type, "signature_delta") == 0 && b->type == GH_OAI_BLK_THINKING) {
        v = gh_oai_get(d, "signature");
        return v == NULL ? GH_OK
                         : gh_buf_append(&b->sig, json_object_get_string(v),
                                         (size_t)json_object_get_string_len(v));
    }
    if (strcmp(type, "text_delta") == 0 && b->type == GH_OAI_BLK_TEXT)
        v = gh_oai_get(d, "text");
    else if (strcmp(type, "input_json_delta") == 0 && b->type == GH_OAI_BLK_TOOL)
        v = gh_oai_get(d, "partial_json");
    else if (strcmp(type, "thinking_delta") == 0 && b->type == GH_OAI_BLK_THINKING)
        v = gh_oai_get(d, "thinking");
    if (v == NULL || !json_object_is_type(v, json_type_string))
        return GH_OK;
    return block_text(s, b, json_object_get_string(v), (size_t)json_object_get_string_len(v), out);
}

/* Translates one Anthropic event (message_start and message_delta already tracked) into
 * Responses events. */
int gh_oai_resp_event(gh_oai_stream_t *s, const char *type, json_object *ev, gh_buf_t *out)
{
    gh_oai_block_t *b;

    if (strcmp(type, "message_stop") == 0)
        return gh_oai_resp_finish(s, 0, NULL, NULL, out);
    if (strcmp(type, "message_start") != 0 && strcmp(type, "content_block_start") != 0 &&
        strcmp(type, "content_block_delta") != 0 && strcmp(type, "content_block_stop") != 0)
        return GH_OK;
    if (resp_start(s, out) != GH_OK)
        return GH_ERR;
    if (strcmp(type, "content_block_start") == 0)
        return block_start(s, ev, out);
    if (strcmp(type, "content_block_delta") == 0)
        return block_delta(s, ev, out);
    if (strcmp(type, "content_block_stop") == 0 && (b = gh_oai_block_at(s, ev)) != NULL)
        return stop_block(s, b, out);
    return GH_OK;
}

/* Closes the Responses stream. broken (an upstream error event or a stream cut short): an
 * `error` event, then response.failed with what was produced so far. Otherwise the open blocks
 * and message item are finished and response.completed carries the whole response (status
 * incomplete when the answer hit max_tokens). */
int gh_oai_resp_finish(gh_oai_stream_t *s, int broken, const char *etype, const char *emsg,
                       gh_buf_t *out)
{
    const char *code, *type;
    json_object *ev;

    s->closed = 1;
    if (broken) {
        type = gh_oai_error_type(500, etype, &code);
        if (code == NULL)
            code = type;
        if (emsg == NULL)
            emsg = "The upstream API reported an error.";
        ev = ev_new("error");
        if (ev == NULL || gh_oai_add_str(ev, "code", code) != GH_OK ||
            gh_oai_add_str(ev, "message", emsg) != GH_OK || gh_oai_add_null(ev, "param") != GH_OK) {
            json_object_put(ev);
            return GH_ERR;
        }
        if (emit(s, ev, out) != GH_OK)
            return GH_ERR;
        return emit_response(s, "response.failed", "failed", code, emsg, out);
    }
    if (resp_start(s, out) != GH_OK)
        return GH_ERR;
    for (size_t i = 0; i < s->nblocks; i++)
        if (stop_block(s, &s->blocks[i], out) != GH_OK)
            return GH_ERR;
    if (msg_close(s, out) != GH_OK)
        return GH_ERR;
    return emit_response(s, "response.completed", "done", NULL, NULL, out);
}
