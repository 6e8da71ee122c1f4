/* chat_resp.c: Anthropic Messages answers and event streams turned into OpenAI chat.completion
 * documents and chat.completion.chunk streams. */
#include <stdio.h>
#include <string.h>

#include "oai_int.h"

/* Builds the usage object of Chat Completions: cached input counts inside prompt_tokens, with
 * the cache reads broken out as prompt_tokens_details.cached_tokens. */
static json_object *chat_usage(const gh_oai_usage_t *u)
{
    json_object *o = json_object_new_object(), *d = NULL;
    int64_t prompt = gh_oai_usage_prompt(u);

    if (o == NULL || gh_oai_add_int(o, "prompt_tokens", prompt) != GH_OK ||
        gh_oai_add_int(o, "completion_tokens", u->output) != GH_OK ||
        gh_oai_add_int(o, "total_tokens", prompt + u->output) != GH_OK)
        goto fail;
    d = json_object_new_object();
    if (gh_oai_add(o, "prompt_tokens_details", d) != GH_OK ||
        gh_oai_add_int(d, "cached_tokens", u->cache_read) != GH_OK)
        goto fail;
    return o;
fail:
    json_object_put(o);
    return NULL;
}

/* Returns "chatcmpl-" + the Anthropic message id, in buf. */
static const char *chat_id(char *buf, size_t sz, const char *msg_id)
{
    snprintf(buf, sz, "chatcmpl-%s", msg_id != NULL && msg_id[0] != '\0' ? msg_id : "gatehouse");
    return buf;
}

/* Builds the OpenAI tool call {id, type: function, function: {name, arguments}} of a tool_use
 * block, the input serialized to the JSON string OpenAI carries. */
static json_object *tool_call(json_object *blk)
{
    const char *id = gh_oai_get_str(blk, "id"), *name = gh_oai_get_str(blk, "name");
    json_object *input = gh_oai_get(blk, "input");
    json_object *tc = json_object_new_object(), *fn = NULL;

    if (tc == NULL || gh_oai_add_str(tc, "id", id != NULL ? id : "") != GH_OK ||
        gh_oai_add_str(tc, "type", "function") != GH_OK)
        goto fail;
    fn = json_object_new_object();
    if (gh_oai_add(tc, "function", fn) != GH_OK ||
        gh_oai_add_str(fn, "name", name != NULL ? name : "") != GH_OK ||
        gh_oai_add_str(fn, "arguments", input != NULL ? gh_oai_json(input) : "{}") != GH_OK)
        goto fail;
    return tc;
fail:
    json_object_put(tc);
    return NULL;
}

/* Translates an Anthropic message into a chat.completion appended to out: text blocks joined
 * as content (null when there is none), tool_use blocks as tool_calls, thinking as
 * reasoning_content plus LiteLLM's thinking_blocks (with signatures, so a client can send them
 * back when thinking and tools mix). */
int gh_oai_chat_response(const char *model, json_object *msg, gh_buf_t *out)
{
    json_object *content = gh_oai_get(msg, "content");
    json_object *doc = NULL, *choices, *choice, *m, *calls = NULL, *thinking = NULL;
    gh_buf_t text = GH_BUF_INIT, reasoning = GH_BUF_INIT;
    gh_oai_usage_t u = {0};
    char id[256];
    size_t n;
    int has_text = 0, rc = GH_ERR;

    if (content == NULL || !json_object_is_type(content, json_type_array))
        goto done;
    calls = json_object_new_array();
    thinking = json_object_new_array();
    if (calls == NULL || thinking == NULL)
        goto done;
    n = json_object_array_length(content);
    for (size_t i = 0; i < n; i++) {
        json_object *b = json_object_array_get_idx(content, i), *v;
        const char *type = gh_oai_get_str(b, "type");
        if (type == NULL)
            continue;
        if (strcmp(type, "text") == 0 && (v = gh_oai_get(b, "text")) != NULL) {
            has_text = 1;
            if (gh_buf_append(&text, json_object_get_string(v),
                              (size_t)json_object_get_string_len(v)) != GH_OK)
                goto done;
        } else if (strcmp(type, "tool_use") == 0) {
            if (gh_oai_push(calls, tool_call(b)) != GH_OK)
                goto done;
        } else if (strcmp(type, "thinking") == 0 || strcmp(type, "redacted_thinking") == 0) {
            v = gh_oai_get(b, "thinking");
            if (v != NULL && gh_buf_append(&reasoning, json_object_get_string(v),
                                           (size_t)json_object_get_string_len(v)) != GH_OK)
                goto done;
            if (gh_oai_push(thinking, json_object_get(b)) != GH_OK)
                goto done;
        }
    }
    gh_oai_usage_read(&u, gh_oai_get(msg, "usage"));
    if (model == NULL)
        model = gh_oai_get_str(msg, "model") != NULL ? gh_oai_get_str(msg, "model") : "";
    doc = json_object_new_object();
    if (doc == NULL ||
        gh_oai_add_str(doc, "id", chat_id(id, sizeof id, gh_oai_get_str(msg, "id"))) != GH_OK ||
        gh_oai_add_str(doc, "object", "chat.completion") != GH_OK ||
        gh_oai_add_int(doc, "created", (int64_t)gh_oai_now()) != GH_OK ||
        gh_oai_add_str(doc, "model", model) != GH_OK)
        goto done;
    choices = json_object_new_array();
    if (gh_oai_add(doc, "choices", choices) != GH_OK)
        goto done;
    choice = json_object_new_object();
    if (gh_oai_push(choices, choice) != GH_OK || gh_oai_add_int(choice, "index", 0) != GH_OK)
        goto done;
    m = json_object_new_object();
    if (gh_oai_add(choice, "message", m) != GH_OK ||
        gh_oai_add_str(m, "role", "assistant") != GH_OK ||
        (has_text ? gh_oai_add_strn(m, "content", text.data != NULL ? text.data : "", text.len)
                  : gh_oai_add_null(m, "content")) != GH_OK ||
        gh_oai_add_null(m, "refusal") != GH_OK)
        goto done;
    if (json_object_array_length(calls) != 0 && gh_oai_add_ref(m, "tool_calls", calls) != GH_OK)
        goto done;
    if (json_object_array_length(thinking) != 0 &&
        (gh_oai_add_strn(m, "reasoning_content", reasoning.data != NULL ? reasoning.data : "",
                         reasoning.len) != GH_OK ||
         gh_oai_add_ref(m, "thinking_blocks", thinking) != GH_OK))
        goto done;
    if (gh_oai_add_null(choice, "logprobs") != GH_OK ||
        gh_oai_add_str(choice, "finish_reason",
                       gh_oai_finish_reason(gh_oai_get_str(msg, "stop_reason"))) != GH_OK ||
        gh_oai_add(doc, "usage", chat_usage(&u)) != GH_OK)
        goto done;
    rc = gh_oai_emit(doc, out);
done:
    json_object_put(doc);
    json_object_put(calls);
    json_object_put(thinking);
    gh_buf_free(&text);
    gh_buf_free(&reasoning);
    return rc;
}

/* Appends "data: JSON\n\n" for one object. */
static int sse_data(json_object *o, gh_buf_t *out)
{
    if (gh_buf_puts(out, "data: ") != GH_OK || gh_oai_emit(o, out) != GH_OK)
        return GH_ERR;
    return gh_buf_puts(out, "\n\n");
}

/* Appends one chat.completion.chunk. With delta (taken over; NULL means an allocation failed)
 * choices[0] is {index 0, delta, logprobs, finish_reason}; with usage_only the chunk has no
 * choices and carries usage, as OpenAI's last chunk does. With include_usage every other chunk
 * carries "usage": null, again as OpenAI does. */
static int chunk(gh_oai_stream_t *s, json_object *delta, const char *finish,
                 json_object *usage_only, gh_buf_t *out)
{
    char id[256];
    json_object *c = NULL, *choices, *ch;
    int rc = GH_ERR;

    if (delta == NULL && usage_only == NULL)
        goto done;
    c = json_object_new_object();
    if (c == NULL || gh_oai_add_str(c, "id", chat_id(id, sizeof id, s->id)) != GH_OK ||
        gh_oai_add_str(c, "object", "chat.completion.chunk") != GH_OK ||
        gh_oai_add_int(c, "created", (int64_t)s->created) != GH_OK ||
        gh_oai_add_str(c, "model", s->model) != GH_OK)
        goto done;
    choices = json_object_new_array();
    if (gh_oai_add(c, "choices", choices) != GH_OK)
        goto done;
    if (delta != NULL) {
        ch = json_object_new_object();
        if (gh_oai_push(choices, ch) != GH_OK || gh_oai_add_int(ch, "index", 0) != GH_OK ||
            gh_oai_add_ref(ch, "delta", delta) != GH_OK ||
            gh_oai_add_null(ch, "logprobs") != GH_OK ||
            (finish != NULL ? gh_oai_add_str(ch, "finish_reason", finish)
                            : gh_oai_add_null(ch, "finish_reason")) != GH_OK)
            goto done;
    }
    if (usage_only != NULL ? gh_oai_add_ref(c, "usage", usage_only) != GH_OK
                           : s->include_usage && gh_oai_add_null(c, "usage") != GH_OK)
        goto done;
    rc = sse_data(c, out);
done:
    json_object_put(delta);
    json_object_put(c);
    return rc;
}

/* Builds a delta holding one member: a string (key, val) or, with val NULL, nothing at all. */
static json_object *delta1(const char *key, const char *val, size_t n)
{
    json_object *d = json_object_new_object();

    if (d != NULL && key != NULL && gh_oai_add_strn(d, key, val, n) != GH_OK) {
        json_object_put(d);
        return NULL;
    }
    return d;
}

/* Sends the first chunk, {role: assistant, content: ""}, unless it went out already. */
static int chat_start(gh_oai_stream_t *s, gh_buf_t *out)
{
    json_object *d;

    if (s->started)
        return GH_OK;
    s->started = 1;
    d = json_object_new_object();
    if (d == NULL || gh_oai_add_str(d, "role", "assistant") != GH_OK ||
        gh_oai_add_str(d, "content", "") != GH_OK) {
        json_object_put(d);
        return GH_ERR;
    }
    return chunk(s, d, NULL, NULL, out);
}

/* Sends a tool-call delta: {tool_calls: [{index, id?, type?, function: {name?, arguments}}]}.
 * The opening delta carries id, type and name; later ones only argument text. */
static int tool_delta(gh_oai_stream_t *s, gh_oai_block_t *b, int opening, const char *args,
                      size_t n, gh_buf_t *out)
{
    json_object *d = json_object_new_object(), *arr = NULL, *tc, *fn;

    if (d == NULL)
        return GH_ERR;
    arr = json_object_new_array();
    if (gh_oai_add(d, "tool_calls", arr) != GH_OK)
        goto fail;
    tc = json_object_new_object();
    if (gh_oai_push(arr, tc) != GH_OK || gh_oai_add_int(tc, "index", b->tool_index) != GH_OK)
        goto fail;
    if (opening && (gh_oai_add_str(tc, "id", b->call_id) != GH_OK ||
                    gh_oai_add_str(tc, "type", "function") != GH_OK))
        goto fail;
    fn = json_object_new_object();
    if (gh_oai_add(tc, "function", fn) != GH_OK ||
        (opening && gh_oai_add_str(fn, "name", b->name) != GH_OK) ||
        gh_oai_add_strn(fn, "arguments", args, n) != GH_OK)
        goto fail;
    return chunk(s, d, NULL, NULL, out);
fail:
    json_object_put(d);
    return GH_ERR;
}

/* Handles content_block_start: a text block may already hold text, a tool_use block opens a
 * tool call (numbered among the answer's tool calls), thinking is remembered for its deltas. */
static int block_start(gh_oai_stream_t *s, json_object *ev, gh_buf_t *out)
{
    gh_oai_block_t *b = gh_oai_block_at(s, ev);
    json_object *cb = gh_oai_get(ev, "content_block"), *v;
    const char *type = gh_oai_get_str(cb, "type");

    if (b == NULL || type == NULL || b->type != GH_OAI_BLK_NONE)
        return GH_OK;
    b->open = 1;
    if (strcmp(type, "text") == 0) {
        b->type = GH_OAI_BLK_TEXT;
        v = gh_oai_get(cb, "text");
        if (v != NULL && json_object_get_string_len(v) != 0)
            return chunk(
                s,
                delta1("content", json_object_get_string(v), (size_t)json_object_get_string_len(v)),
                NULL, NULL, out);
    } else if (strcmp(type, "tool_use") == 0) {
        const char *id = gh_oai_get_str(cb, "id"), *name = gh_oai_get_str(cb, "name");
        b->type = GH_OAI_BLK_TOOL;
        b->tool_index = s->ntools++;
        b->call_id = gh_oai_strdup(id != NULL ? id : "");
        b->name = gh_oai_strdup(name != NULL ? name : "");
        if (b->call_id == NULL || b->name == NULL)
            return GH_ERR;
        return tool_delta(s, b, 1, "", 0, out);
    } else if (strcmp(type, "thinking") == 0) {
        b->type = GH_OAI_BLK_THINKING;
        v = gh_oai_get(cb, "thinking");
        if (v != NULL && json_object_get_string_len(v) != 0)
            return chunk(s,
                         delta1("reasoning_content", json_object_get_string(v),
                                (size_t)json_object_get_string_len(v)),
                         NULL, NULL, out);
    }
    return GH_OK;
}

/* Handles content_block_delta: text, tool arguments and thinking text become deltas; signature
 * and citation deltas have no Chat Completions counterpart. */
static int block_delta(gh_oai_stream_t *s, json_object *ev, gh_buf_t *out)
{
    gh_oai_block_t *b = gh_oai_block_at(s, ev);
    json_object *d = gh_oai_get(ev, "delta"), *v;
    const char *type = gh_oai_get_str(d, "type");

    if (b == NULL || type == NULL || !b->open)
        return GH_OK;
    if (strcmp(type, "text_delta") == 0 && b->type == GH_OAI_BLK_TEXT &&
        (v = gh_oai_get(d, "text")) != NULL && json_object_get_string_len(v) != 0)
        return chunk(
            s, delta1("content", json_object_get_string(v), (size_t)json_object_get_string_len(v)),
            NULL, NULL, out);
    if (strcmp(type, "input_json_delta") == 0 && b->type == GH_OAI_BLK_TOOL &&
        (v = gh_oai_get(d, "partial_json")) != NULL && json_object_get_string_len(v) != 0) {
        b->sent = 1;
        return tool_delta(s, b, 0, json_object_get_string(v), (size_t)json_object_get_string_len(v),
                          out);
    }
    if (strcmp(type, "thinking_delta") == 0 && b->type == GH_OAI_BLK_THINKING &&
        (v = gh_oai_get(d, "thinking")) != NULL && json_object_get_string_len(v) != 0)
        return chunk(s,
                     delta1("reasoning_content", json_object_get_string(v),
                            (size_t)json_object_get_string_len(v)),
                     NULL, NULL, out);
    return GH_OK;
}

/* Handles content_block_stop: a tool call that received no argument text gets "{}", so the
 * client's concatenated arguments always parse as JSON. */
static int block_stop(gh_oai_stream_t *s, json_object *ev, gh_buf_t *out)
{
    gh_oai_block_t *b = gh_oai_block_at(s, ev);

    if (b == NULL || !b->open)
        return GH_OK;
    b->open = 0;
    if (b->type == GH_OAI_BLK_TOOL && !b->sent)
        return tool_delta(s, b, 0, "{}", 2, out);
    return GH_OK;
}

/* Sends the chunk with the finish_reason, once. */
static int chat_finish_chunk(gh_oai_stream_t *s, gh_buf_t *out)
{
    if (s->finish_sent)
        return GH_OK;
    s->finish_sent = 1;
    return chunk(s, delta1(NULL, NULL, 0),
                 gh_oai_finish_reason(s->stop_reason[0] != '\0' ? s->stop_reason : NULL), NULL,
                 out);
}

/* Translates one Anthropic event (message_start and message_delta already tracked) into
 * chunks. */
int gh_oai_chat_event(gh_oai_stream_t *s, const char *type, json_object *ev, gh_buf_t *out)
{
    if (strcmp(type, "message_stop") == 0)
        return gh_oai_chat_finish(s, 0, NULL, NULL, out);
    if (strcmp(type, "message_start") != 0 && strcmp(type, "content_block_start") != 0 &&
        strcmp(type, "content_block_delta") != 0 && strcmp(type, "content_block_stop") != 0 &&
        strcmp(type, "message_delta") != 0)
        return GH_OK;
    if (chat_start(s, out) != GH_OK)
        return GH_ERR;
    if (strcmp(type, "content_block_start") == 0)
        return block_start(s, ev, out);
    if (strcmp(type, "content_block_delta") == 0)
        return block_delta(s, ev, out);
    if (strcmp(type, "content_block_stop") == 0)
        return block_stop(s, ev, out);
    if (strcmp(type, "message_delta") == 0 && s->stop_reason[0] != '\0')
        return chat_finish_chunk(s, out);
    return GH_OK;
}

/* Closes the chat stream. broken (an upstream error event, or a stream cut short): one
 * {"error": {...}} data line in OpenAI's shape (which the SDKs raise), then [DONE]. Otherwise
 * the role chunk if nothing was sent, the finish chunk if not sent, the usage chunk when asked
 * for, then [DONE]. */
int gh_oai_chat_finish(gh_oai_stream_t *s, int broken, const char *etype, const char *emsg,
                       gh_buf_t *out)
{
    json_object *doc = NULL, *err, *usage = NULL;
    const char *code, *type;
    int rc = GH_ERR;

    s->closed = 1;
    if (broken) {
        type = gh_oai_error_type(500, etype, &code);
        doc = json_object_new_object();
        err = json_object_new_object();
        if (doc == NULL || gh_oai_add(doc, "error", err) != GH_OK ||
            gh_oai_add_str(err, "message",
                           emsg != NULL ? emsg : "The upstream API reported an error.") != GH_OK ||
            gh_oai_add_str(err, "type", type) != GH_OK || gh_oai_add_null(err, "param") != GH_OK ||
            (code != NULL ? gh_oai_add_str(err, "code", code) : gh_oai_add_null(err, "code")) !=
                GH_OK ||
            sse_data(doc, out) != GH_OK)
            goto done;
    } else {
        if (chat_start(s, out) != GH_OK || chat_finish_chunk(s, out) != GH_OK)
            goto done;
        if (s->include_usage) {
            usage = chat_usage(&s->usage);
            if (usage == NULL || chunk(s, NULL, NULL, usage, out) != GH_OK)
                goto done;
        }
    }
    rc = gh_buf_puts(out, "data: [DONE]\n\n");
done:
    json_object_put(usage);
    json_object_put(doc);
    return rc;
}
