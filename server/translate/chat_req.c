/* chat_req.c: translation of an OpenAI Chat Completions request into an Anthropic Messages
 * request. */
#include <stdio.h>
#include <string.h>

#include "oai_int.h"

/* OpenAI parameters with no Anthropic counterpart, dropped without a word (as Bifrost does):
 *   frequency_penalty, presence_penalty, logit_bias, logprobs, top_logprobs, seed, service_tier,
 *   store, metadata (OpenAI's; Anthropic's metadata only takes user_id, which `user` fills),
 *   prediction, modalities, audio, verbosity, web_search_options, prompt_cache_key,
 *   prompt_cache_retention, functions and function_call (the deprecated forms of tools).
 * Consumed into other members: n (must be 1), stream_options, parallel_tool_calls, reasoning,
 * reasoning_effort, response_format, max_completion_tokens, user, safety_identifier.
 * Any other member is dropped too, except the Anthropic ones passed through: top_k, thinking,
 * mcp_servers, container, context_management, output_config. */

/* Tells whether role names a message whose text goes to Anthropic's system prompt. */
static int is_system(const char *role)
{
    return strcmp(role, "system") == 0 || strcmp(role, "developer") == 0;
}

/* Adds a system or developer message's text to the system prompt: a string, or text parts
 * (each keeping its cache_control). */
static int system_msg(gh_oai_err_t *e, gh_oai_conv_t *c, json_object *content, size_t i)
{
    char p[GH_OAI_PARAM_MAX];
    size_t n;

    if (content == NULL)
        return GH_OK;
    if (json_object_is_type(content, json_type_string))
        return gh_oai_conv_system(c, json_object_get_string(content),
                                  (size_t)json_object_get_string_len(content), NULL) == GH_OK
                   ? GH_OK
                   : gh_oai_oom(e);
    if (!json_object_is_type(content, json_type_array))
        return gh_oai_fail(e, gh_oai_path(p, "messages[%zu].content", i),
                           "Invalid type for 'messages[%zu].content': expected a string or an "
                           "array of text parts.",
                           i);
    n = json_object_array_length(content);
    for (size_t j = 0; j < n; j++) {
        json_object *part = json_object_array_get_idx(content, j);
        json_object *text = gh_oai_get(part, "text");
        const char *type = gh_oai_get_str(part, "type");
        if (type == NULL || strcmp(type, "text") != 0 || text == NULL ||
            !json_object_is_type(text, json_type_string))
            return gh_oai_fail(e, gh_oai_path(p, "messages[%zu].content[%zu]", i, j),
                               "Invalid value for 'messages[%zu].content[%zu]': system and "
                               "developer messages take text parts only.",
                               i, j);
        if (gh_oai_conv_system(c, json_object_get_string(text),
                               (size_t)json_object_get_string_len(text),
                               gh_oai_get(part, "cache_control")) != GH_OK)
            return gh_oai_oom(e);
    }
    return GH_OK;
}

/* Converts one content part of a user or assistant message into an Anthropic block appended
 * under role. Empty texts are skipped (Anthropic rejects empty text blocks); Anthropic's own
 * image and document blocks pass through. */
static int chat_part(gh_oai_err_t *e, gh_oai_conv_t *c, const char *role, json_object *part,
                     size_t i, size_t j)
{
    char p[GH_OAI_PARAM_MAX], q[GH_OAI_PARAM_MAX];
    const char *type = gh_oai_get_str(part, "type");
    json_object *cache = gh_oai_get(part, "cache_control"), *b = NULL, *v;

    gh_oai_path(p, "messages[%zu].content[%zu]", i, j);
    if (type == NULL)
        return gh_oai_fail(e, gh_oai_path(q, "%s.type", p), "Missing required parameter: '%s'.", q);
    if (strcmp(type, "text") == 0 || strcmp(type, "refusal") == 0) {
        v = gh_oai_get(part, type);
        if (v == NULL || !json_object_is_type(v, json_type_string))
            return gh_oai_fail(e, gh_oai_path(q, "%s.%s", p, type),
                               "Invalid type for '%s': expected a string.", q);
        if (json_object_get_string_len(v) == 0)
            return GH_OK;
        b = gh_oai_text_block(json_object_get_string(v), (size_t)json_object_get_string_len(v),
                              cache);
        return gh_oai_conv_add(c, role, b) == GH_OK ? GH_OK : gh_oai_oom(e);
    }
    if (strcmp(role, "user") != 0)
        return gh_oai_fail(e, gh_oai_path(q, "%s.type", p),
                           "Invalid value for '%s': assistant content takes text and refusal "
                           "parts only.",
                           q);
    if (strcmp(type, "image_url") == 0) {
        v = gh_oai_get(part, "image_url");
        if (v != NULL && json_object_is_type(v, json_type_object))
            v = gh_oai_get(v, "url");
        if (v == NULL || !json_object_is_type(v, json_type_string))
            return gh_oai_fail(e, gh_oai_path(q, "%s.image_url.url", p),
                               "Missing required parameter: '%s'.", q);
        b = gh_oai_image_block(e, json_object_get_string(v), gh_oai_path(q, "%s.image_url", p));
    } else if (strcmp(type, "file") == 0) {
        v = gh_oai_get(part, "file");
        if (v == NULL || !json_object_is_type(v, json_type_object))
            return gh_oai_fail(e, gh_oai_path(q, "%s.file", p), "Missing required parameter: '%s'.",
                               q);
        b = gh_oai_file_block(e, v, gh_oai_path(q, "%s.file", p));
    } else if (strcmp(type, "image") == 0 || strcmp(type, "document") == 0) {
        return gh_oai_conv_add(c, role, json_object_get(part)) == GH_OK ? GH_OK : gh_oai_oom(e);
    } else {
        return gh_oai_fail(e, gh_oai_path(q, "%s.type", p),
                           "Invalid value for '%s': content part type '%s' is not supported "
                           "(text, image_url and file are).",
                           q, type);
    }
    return gh_oai_conv_add_part(e, c, role, b, cache);
}

/* Converts a user or assistant message's content (a string or an array of parts). */
static int chat_content(gh_oai_err_t *e, gh_oai_conv_t *c, const char *role, json_object *content,
                        size_t i)
{
    char p[GH_OAI_PARAM_MAX];
    size_t n;

    if (content == NULL)
        return GH_OK;
    if (json_object_is_type(content, json_type_string)) {
        if (json_object_get_string_len(content) == 0)
            return GH_OK;
        return gh_oai_conv_add(c, role,
                               gh_oai_text_block(json_object_get_string(content),
                                                 (size_t)json_object_get_string_len(content),
                                                 NULL)) == GH_OK
                   ? GH_OK
                   : gh_oai_oom(e);
    }
    if (!json_object_is_type(content, json_type_array))
        return gh_oai_fail(e, gh_oai_path(p, "messages[%zu].content", i),
                           "Invalid type for 'messages[%zu].content': expected a string or an "
                           "array of content parts.",
                           i);
    n = json_object_array_length(content);
    for (size_t j = 0; j < n; j++) {
        json_object *part = json_object_array_get_idx(content, j);
        if (part == NULL || !json_object_is_type(part, json_type_object))
            return gh_oai_fail(e, gh_oai_path(p, "messages[%zu].content[%zu]", i, j),
                               "Invalid type for 'messages[%zu].content[%zu]': expected an "
                               "object.",
                               i, j);
        if (chat_part(e, c, role, part, i, j) != GH_OK)
            return GH_ERR;
    }
    return GH_OK;
}

/* Converts an assistant message: thinking blocks it carries back (LiteLLM's thinking_blocks,
 * needed by Anthropic when thinking and tools mix), its text, then its tool calls as tool_use
 * blocks with the arguments string parsed to an object. */
static int assistant_msg(gh_oai_err_t *e, gh_oai_conv_t *c, json_object *m, size_t i)
{
    char p[GH_OAI_PARAM_MAX];
    json_object *thinking = gh_oai_get(m, "thinking_blocks"), *calls = gh_oai_get(m, "tool_calls");
    size_t n;

    if (thinking != NULL && json_object_is_type(thinking, json_type_array)) {
        n = json_object_array_length(thinking);
        for (size_t j = 0; j < n; j++) {
            json_object *t = json_object_array_get_idx(thinking, j);
            const char *type = gh_oai_get_str(t, "type");
            if (type != NULL &&
                (strcmp(type, "thinking") == 0 || strcmp(type, "redacted_thinking") == 0) &&
                gh_oai_conv_add(c, "assistant", json_object_get(t)) != GH_OK)
                return gh_oai_oom(e);
        }
    }
    if (chat_content(e, c, "assistant", gh_oai_get(m, "content"), i) != GH_OK)
        return GH_ERR;
    if (calls == NULL)
        return GH_OK;
    if (!json_object_is_type(calls, json_type_array))
        return gh_oai_fail(e, gh_oai_path(p, "messages[%zu].tool_calls", i),
                           "Invalid type for 'messages[%zu].tool_calls': expected an array.", i);
    n = json_object_array_length(calls);
    for (size_t j = 0; j < n; j++) {
        json_object *tc = json_object_array_get_idx(calls, j), *fn = gh_oai_get(tc, "function");
        const char *id = gh_oai_get_str(tc, "id"), *name = gh_oai_get_str(fn, "name");
        json_object *input;
        if (id == NULL || name == NULL)
            return gh_oai_fail(e, gh_oai_path(p, "messages[%zu].tool_calls[%zu]", i, j),
                               "Missing required parameter: 'messages[%zu].tool_calls[%zu].%s'.", i,
                               j, id == NULL ? "id" : "function.name");
        if (gh_oai_tool_input(
                e, gh_oai_get(fn, "arguments"),
                gh_oai_path(p, "messages[%zu].tool_calls[%zu].function.arguments", i, j),
                &input) != GH_OK)
            return GH_ERR;
        if (gh_oai_conv_add(c, "assistant", gh_oai_tool_use(id, name, input)) != GH_OK)
            return gh_oai_oom(e);
    }
    return GH_OK;
}

/* Converts a tool message into a tool_result block of the user turn; consecutive tool messages
 * therefore share one user message, as Anthropic wants. The content is a string or text/image
 * parts; an empty result carries no content. */
static int tool_msg(gh_oai_err_t *e, gh_oai_conv_t *c, json_object *m, size_t i)
{
    char p[GH_OAI_PARAM_MAX];
    const char *id = gh_oai_get_str(m, "tool_call_id");
    json_object *content = gh_oai_get(m, "content"), *b, *parts = NULL;

    if (id == NULL)
        return gh_oai_fail(e, gh_oai_path(p, "messages[%zu].tool_call_id", i),
                           "Missing required parameter: 'messages[%zu].tool_call_id'.", i);
    b = json_object_new_object();
    if (b == NULL || gh_oai_add_str(b, "type", "tool_result") != GH_OK ||
        gh_oai_add_str(b, "tool_use_id", id) != GH_OK)
        goto fail;
    if (content != NULL && json_object_is_type(content, json_type_string)) {
        if (json_object_get_string_len(content) != 0 &&
            gh_oai_add_ref(b, "content", content) != GH_OK)
            goto fail;
    } else if (content != NULL && json_object_is_type(content, json_type_array)) {
        size_t n = json_object_array_length(content);
        parts = json_object_new_array();
        if (parts == NULL)
            goto fail;
        for (size_t j = 0; j < n; j++) {
            json_object *part = json_object_array_get_idx(content, j), *v, *blk = NULL;
            const char *type = gh_oai_get_str(part, "type");
            if (type != NULL && strcmp(type, "text") == 0 &&
                (v = gh_oai_get(part, "text")) != NULL &&
                json_object_is_type(v, json_type_string)) {
                if (json_object_get_string_len(v) == 0)
                    continue;
                blk = gh_oai_text_block(json_object_get_string(v),
                                        (size_t)json_object_get_string_len(v),
                                        gh_oai_get(part, "cache_control"));
            } else if (type != NULL && strcmp(type, "image_url") == 0) {
                v = gh_oai_get(part, "image_url");
                if (v != NULL && json_object_is_type(v, json_type_object))
                    v = gh_oai_get(v, "url");
                if (v == NULL || !json_object_is_type(v, json_type_string)) {
                    gh_oai_fail(e, gh_oai_path(p, "messages[%zu].content[%zu].image_url", i, j),
                                "Missing required parameter: '%s.url'.", p);
                    goto fail;
                }
                blk = gh_oai_image_block(
                    e, json_object_get_string(v),
                    gh_oai_path(p, "messages[%zu].content[%zu].image_url", i, j));
                if (blk == NULL)
                    goto fail;
            } else {
                gh_oai_fail(e, gh_oai_path(p, "messages[%zu].content[%zu]", i, j),
                            "Invalid value for 'messages[%zu].content[%zu]': tool messages take "
                            "text and image_url parts only.",
                            i, j);
                goto fail;
            }
            if (gh_oai_push(parts, blk) != GH_OK)
                goto fail;
        }
        if (json_object_array_length(parts) != 0 && gh_oai_add_ref(b, "content", parts) != GH_OK)
            goto fail;
    } else if (content != NULL) {
        gh_oai_fail(e, gh_oai_path(p, "messages[%zu].content", i),
                    "Invalid type for 'messages[%zu].content': expected a string or an array of "
                    "content parts.",
                    i);
        goto fail;
    }
    json_object_put(parts);
    return gh_oai_conv_add(c, "user", b) == GH_OK ? GH_OK : gh_oai_oom(e);
fail:
    /* keeps a client error already recorded, else reports memory */
    gh_oai_oom(e);
    json_object_put(parts);
    json_object_put(b);
    return GH_ERR;
}

/* Converts the messages array into the conversation, system and developer messages going to the
 * system prompt in order; a message's own cache_control marks its last block. */
static int chat_messages(gh_oai_err_t *e, gh_oai_conv_t *c, json_object *msgs)
{
    char p[GH_OAI_PARAM_MAX];
    size_t n;

    if (msgs == NULL)
        return gh_oai_fail(e, "messages", "Missing required parameter: 'messages'.");
    if (!json_object_is_type(msgs, json_type_array) || json_object_array_length(msgs) == 0)
        return gh_oai_fail(e, "messages",
                           "Invalid value for 'messages': expected a non-empty array.");
    n = json_object_array_length(msgs);
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(msgs, i);
        const char *role = gh_oai_get_str(m, "role");
        size_t mark = c->nblocks;
        int rc;
        if (role == NULL)
            return gh_oai_fail(e, gh_oai_path(p, "messages[%zu].role", i),
                               "Missing required parameter: 'messages[%zu].role'.", i);
        if (is_system(role))
            rc = system_msg(e, c, gh_oai_get(m, "content"), i);
        else if (strcmp(role, "user") == 0)
            rc = chat_content(e, c, "user", gh_oai_get(m, "content"), i);
        else if (strcmp(role, "assistant") == 0)
            rc = assistant_msg(e, c, m, i);
        else if (strcmp(role, "tool") == 0)
            rc = tool_msg(e, c, m, i);
        else
            return gh_oai_fail(e, gh_oai_path(p, "messages[%zu].role", i),
                               "Invalid value for 'messages[%zu].role': '%s' is not supported "
                               "(system, developer, user, assistant and tool are).",
                               i, role);
        if (rc != GH_OK)
            return GH_ERR;
        if (gh_oai_conv_cache_last(c, mark, gh_oai_get(m, "cache_control")) != GH_OK)
            return gh_oai_oom(e);
    }
    return GH_OK;
}

/* Reads response_format: json_schema becomes Anthropic's output_format, json_object sets
 * *json_mode (a system instruction; Anthropic has no schema-less JSON mode), text is the
 * default. */
static int chat_format(gh_oai_err_t *e, json_object *req, json_object *rf, int *json_mode)
{
    const char *type = gh_oai_get_str(rf, "type");

    *json_mode = 0;
    if (rf == NULL)
        return GH_OK;
    if (type == NULL)
        return gh_oai_fail(e, "response_format.type",
                           "Missing required parameter: 'response_format.type'.");
    if (strcmp(type, "text") == 0)
        return GH_OK;
    if (strcmp(type, "json_object") == 0) {
        *json_mode = 1;
        return GH_OK;
    }
    if (strcmp(type, "json_schema") == 0)
        return gh_oai_output_schema(e, req, gh_oai_get(gh_oai_get(rf, "json_schema"), "schema"),
                                    "response_format.json_schema.schema");
    return gh_oai_fail(e, "response_format.type",
                       "Invalid value for 'response_format.type': expected 'text', "
                       "'json_object' or 'json_schema'.");
}

/* Translates a parsed Chat Completions body into req (which already holds "model"); fills the
 * stream flags of out. Errors go to e. */
int gh_oai_chat_request(json_object *body, const gh_oai_opts_t *opts, gh_oai_req_t *out,
                        json_object *req, gh_oai_err_t *e)
{
    gh_oai_conv_t conv;
    json_object *n = gh_oai_get(body, "n"), *mt, *so = gh_oai_get(body, "stream_options"), *iu;
    int64_t max_tokens = opts != NULL && opts->default_max_tokens > 0 ? opts->default_max_tokens
                                                                      : GH_OAI_DEFAULT_MAX_TOKENS;
    int json_mode = 0, rc = GH_ERR;

    if (gh_oai_conv_init(&conv) != GH_OK)
        return gh_oai_oom(e);
    if (n != NULL && (!json_object_is_type(n, json_type_int) || json_object_get_int64(n) != 1)) {
        gh_oai_fail(e, "n",
                    "Invalid value for 'n': only n=1 is supported; Anthropic models return one "
                    "choice per request.");
        goto done;
    }
    mt = gh_oai_get(body, "max_completion_tokens");
    if (mt != NULL ? gh_oai_max_tokens(e, mt, "max_completion_tokens", &max_tokens) != GH_OK
                   : (mt = gh_oai_get(body, "max_tokens")) != NULL &&
                         gh_oai_max_tokens(e, mt, "max_tokens", &max_tokens) != GH_OK)
        goto done;
    /* A placeholder keeps max_tokens near the top; thinking may still raise it. */
    if (gh_oai_add_int(req, "max_tokens", max_tokens) != GH_OK) {
        gh_oai_oom(e);
        goto done;
    }
    if (chat_messages(e, &conv, gh_oai_get(body, "messages")) != GH_OK ||
        chat_format(e, req, gh_oai_get(body, "response_format"), &json_mode) != GH_OK ||
        gh_oai_conv_finish(&conv, req, json_mode, e) != GH_OK ||
        gh_oai_tools(e, 1, req, gh_oai_get(body, "tools")) != GH_OK ||
        gh_oai_tool_choice(e, req, gh_oai_get(body, "tool_choice"),
                           gh_oai_get(body, "parallel_tool_calls"), 0) != GH_OK ||
        gh_oai_stop(e, gh_oai_get(body, "stop"), req, "stop_sequences") != GH_OK ||
        gh_oai_sampling(e, body, req) != GH_OK ||
        gh_oai_thinking(e, body, req, gh_oai_get(body, "reasoning_effort"), "reasoning_effort",
                        &max_tokens) != GH_OK)
        goto done;
    if (gh_oai_add_int(req, "max_tokens", max_tokens) != GH_OK ||
        gh_oai_passthrough(body, req) != GH_OK) {
        gh_oai_oom(e);
        goto done;
    }
    if (so != NULL && !json_object_is_type(so, json_type_object)) {
        gh_oai_fail(e, "stream_options", "Invalid type for 'stream_options': expected an object.");
        goto done;
    }
    iu = gh_oai_get(so, "include_usage");
    out->include_usage = iu != NULL && json_object_get_boolean(iu);
    rc = GH_OK;
done:
    gh_oai_conv_free(&conv);
    return rc;
}
