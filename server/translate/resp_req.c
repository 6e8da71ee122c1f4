/* resp_req.c: translation of an OpenAI Responses API request into an Anthropic Messages
 * request. */
#include <stdio.h>
#include <string.h>

#include "oai_int.h"

/* Responses parameters that are dropped: store (gatehouse keeps no responses, so a stored
 * response can never be retrieved), include, metadata, truncation, max_tool_calls, service_tier,
 * top_logprobs, prompt_cache_key, prompt_cache_retention, stream_options, text.verbosity,
 * reasoning.summary. Refused with 400 because they need state gatehouse does not keep:
 * previous_response_id, conversation, background, prompt (stored prompt templates), and
 * item_reference input items. Anthropic's own top_k, thinking, mcp_servers, container,
 * context_management and output_config pass through. */

/* Members whose use needs stored responses, and why they are refused. */
static const struct {
    const char *key;
    const char *why;
} stateful[] = {
    {"previous_response_id", "gatehouse does not store responses: previous_response_id is not "
                             "supported; send the whole conversation in 'input'."},
    {"conversation", "gatehouse does not store conversations: 'conversation' is not supported; "
                     "send the whole conversation in 'input'."},
    {"prompt", "gatehouse does not store prompt templates: 'prompt' is not supported; send the "
               "instructions and input instead."},
};

/* Converts one content part of a message item into a block under role (Anthropic's own image
 * and document blocks pass through). */
static int resp_part(gh_oai_err_t *e, gh_oai_conv_t *c, const char *role, json_object *part,
                     const char *param)
{
    char q[GH_OAI_PARAM_MAX];
    const char *type = gh_oai_get_str(part, "type");
    json_object *cache = gh_oai_get(part, "cache_control"), *b = NULL, *v;

    if (type == NULL)
        return gh_oai_fail(e, gh_oai_path(q, "%s.type", param),
                           "Missing required parameter: "
                           "'%s'.",
                           q);
    if (strcmp(type, "input_text") == 0 || strcmp(type, "output_text") == 0 ||
        strcmp(type, "text") == 0 || strcmp(type, "refusal") == 0) {
        v = gh_oai_get(part, strcmp(type, "refusal") == 0 ? "refusal" : "text");
        if (v == NULL || !json_object_is_type(v, json_type_string))
            return gh_oai_fail(e, gh_oai_path(q, "%s.text", param),
                               "Invalid type for '%s': expected a string.", q);
        if (json_object_get_string_len(v) == 0)
            return GH_OK;
        if (strcmp(role, "system") == 0)
            return gh_oai_conv_system(c, json_object_get_string(v),
                                      (size_t)json_object_get_string_len(v), cache) == GH_OK
                       ? GH_OK
                       : gh_oai_oom(e);
        b = gh_oai_text_block(json_object_get_string(v), (size_t)json_object_get_string_len(v),
                              cache);
        return gh_oai_conv_add(c, role, b) == GH_OK ? GH_OK : gh_oai_oom(e);
    }
    if (strcmp(role, "user") != 0)
        return gh_oai_fail(e, gh_oai_path(q, "%s.type", param),
                           "Invalid value for '%s': only text parts are allowed here.", q);
    if (strcmp(type, "input_image") == 0) {
        const char *url = gh_oai_get_str(part, "image_url"), *fid = gh_oai_get_str(part, "file_id");
        if (url != NULL) {
            b = gh_oai_image_block(e, url, gh_oai_path(q, "%s.image_url", param));
        } else if (fid != NULL) {
            json_object *src = json_object_new_object();
            b = json_object_new_object();
            if (b == NULL || src == NULL || gh_oai_add_str(b, "type", "image") != GH_OK ||
                gh_oai_add_str(src, "type", "file") != GH_OK ||
                gh_oai_add_str(src, "file_id", fid) != GH_OK) {
                json_object_put(src);
                json_object_put(b);
                return gh_oai_oom(e);
            }
            if (gh_oai_add(b, "source", src) != GH_OK) {
                json_object_put(b);
                return gh_oai_oom(e);
            }
        } else {
            return gh_oai_fail(e, gh_oai_path(q, "%s.image_url", param),
                               "Missing required parameter: '%s'.", q);
        }
    } else if (strcmp(type, "input_file") == 0) {
        b = gh_oai_file_block(e, part, param);
    } else if (strcmp(type, "image") == 0 || strcmp(type, "document") == 0) {
        return gh_oai_conv_add(c, role, json_object_get(part)) == GH_OK ? GH_OK : gh_oai_oom(e);
    } else {
        return gh_oai_fail(e, gh_oai_path(q, "%s.type", param),
                           "Invalid value for '%s': content type '%s' is not supported "
                           "(input_text, input_image and input_file are).",
                           q, type);
    }
    return gh_oai_conv_add_part(e, c, role, b, cache);
}

/* Converts a message item (or an EasyInputMessage without type): system and developer text goes
 * to the system prompt, user and assistant content to the conversation. */
static int message_item(gh_oai_err_t *e, gh_oai_conv_t *c, json_object *item, const char *param)
{
    char p[GH_OAI_PARAM_MAX];
    const char *role = gh_oai_get_str(item, "role");
    json_object *content = gh_oai_get(item, "content");
    size_t n;

    if (role == NULL)
        return gh_oai_fail(e, gh_oai_path(p, "%s.role", param), "Missing required parameter: '%s'.",
                           p);
    if (strcmp(role, "developer") == 0)
        role = "system";
    if (strcmp(role, "system") != 0 && strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0)
        return gh_oai_fail(e, gh_oai_path(p, "%s.role", param),
                           "Invalid value for '%s': expected 'user', 'assistant', 'system' or "
                           "'developer'.",
                           p);
    if (content == NULL)
        return GH_OK;
    if (json_object_is_type(content, json_type_string)) {
        size_t len = (size_t)json_object_get_string_len(content);
        if (len == 0)
            return GH_OK;
        if (strcmp(role, "system") == 0)
            return gh_oai_conv_system(c, json_object_get_string(content), len, NULL) == GH_OK
                       ? GH_OK
                       : gh_oai_oom(e);
        return gh_oai_conv_add(
                   c, role, gh_oai_text_block(json_object_get_string(content), len, NULL)) == GH_OK
                   ? GH_OK
                   : gh_oai_oom(e);
    }
    if (!json_object_is_type(content, json_type_array))
        return gh_oai_fail(e, gh_oai_path(p, "%s.content", param),
                           "Invalid type for '%s': expected a string or an array of content "
                           "parts.",
                           p);
    n = json_object_array_length(content);
    for (size_t j = 0; j < n; j++)
        if (resp_part(e, c, role, json_object_array_get_idx(content, j),
                      gh_oai_path(p, "%s.content[%zu]", param, j)) != GH_OK)
            return GH_ERR;
    return GH_OK;
}

/* Converts a function_call_output item into a tool_result block of the user turn; output is a
 * string or input_text/input_image parts. */
static int call_output_item(gh_oai_err_t *e, gh_oai_conv_t *c, json_object *item, const char *param)
{
    char p[GH_OAI_PARAM_MAX];
    const char *id = gh_oai_get_str(item, "call_id");
    json_object *output = gh_oai_get(item, "output"), *b = NULL, *parts = NULL;
    gh_oai_conv_t sub = {0};
    int rc = GH_ERR;

    if (id == NULL) {
        gh_oai_fail(e, gh_oai_path(p, "%s.call_id", param), "Missing required parameter: '%s'.", p);
        goto done;
    }
    b = json_object_new_object();
    if (b == NULL || gh_oai_add_str(b, "type", "tool_result") != GH_OK ||
        gh_oai_add_str(b, "tool_use_id", id) != GH_OK)
        goto done;
    if (output != NULL && json_object_is_type(output, json_type_string)) {
        if (json_object_get_string_len(output) != 0 &&
            gh_oai_add_ref(b, "content", output) != GH_OK)
            goto done;
    } else if (output != NULL && json_object_is_type(output, json_type_array)) {
        /* Reuse the part converter on a scratch conversation: its one user message holds the
         * blocks of the result. */
        size_t n = json_object_array_length(output);
        if (gh_oai_conv_init(&sub) != GH_OK)
            goto done;
        for (size_t j = 0; j < n; j++)
            if (resp_part(e, &sub, "user", json_object_array_get_idx(output, j),
                          gh_oai_path(p, "%s.output[%zu]", param, j)) != GH_OK)
                goto done;
        if (json_object_array_length(sub.messages) != 0) {
            parts = gh_oai_get(json_object_array_get_idx(sub.messages, 0), "content");
            if (gh_oai_add_ref(b, "content", parts) != GH_OK)
                goto done;
        }
    } else if (output != NULL) {
        gh_oai_fail(e, gh_oai_path(p, "%s.output", param),
                    "Invalid type for '%s': expected a string or an array of content parts.", p);
        goto done;
    }
    rc = gh_oai_conv_add(c, "user", b);
    b = NULL;
done:
    if (rc != GH_OK)
        gh_oai_oom(e); /* keeps the client error when there is one */
    if (sub.messages != NULL)
        gh_oai_conv_free(&sub);
    json_object_put(b);
    return rc;
}

/* Converts a reasoning item back into a thinking block when it carries the signature gatehouse
 * put in encrypted_content (Anthropic needs it to accept the thinking); otherwise it is
 * dropped, since unsigned thinking cannot be sent back. */
static int reasoning_item(gh_oai_err_t *e, gh_oai_conv_t *c, json_object *item)
{
    const char *sig = gh_oai_get_str(item, "encrypted_content");
    json_object *summary = gh_oai_get(item, "summary"), *b;
    gh_buf_t text = GH_BUF_INIT;
    size_t n;
    int rc = GH_ERR;

    if (sig == NULL || sig[0] == '\0')
        return GH_OK;
    n = summary != NULL && json_object_is_type(summary, json_type_array)
            ? json_object_array_length(summary)
            : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *t = gh_oai_get(json_object_array_get_idx(summary, i), "text");
        if (t != NULL && gh_buf_append(&text, json_object_get_string(t),
                                       (size_t)json_object_get_string_len(t)) != GH_OK)
            goto done;
    }
    b = json_object_new_object();
    if (b == NULL || gh_oai_add_str(b, "type", "thinking") != GH_OK ||
        gh_oai_add_strn(b, "thinking", text.data != NULL ? text.data : "", text.len) != GH_OK ||
        gh_oai_add_str(b, "signature", sig) != GH_OK) {
        json_object_put(b);
        goto done;
    }
    rc = gh_oai_conv_add(c, "assistant", b);
done:
    gh_buf_free(&text);
    return rc == GH_OK ? GH_OK : gh_oai_oom(e);
}

/* Converts input: a string (one user message) or an array of items. */
static int resp_input(gh_oai_err_t *e, gh_oai_conv_t *c, json_object *input)
{
    char p[GH_OAI_PARAM_MAX], q[GH_OAI_PARAM_MAX];
    size_t n;

    if (input == NULL)
        return gh_oai_fail(e, "input", "Missing required parameter: 'input'.");
    if (json_object_is_type(input, json_type_string)) {
        size_t len = (size_t)json_object_get_string_len(input);
        if (len == 0)
            return GH_OK;
        return gh_oai_conv_add(c, "user",
                               gh_oai_text_block(json_object_get_string(input), len, NULL)) == GH_OK
                   ? GH_OK
                   : gh_oai_oom(e);
    }
    if (!json_object_is_type(input, json_type_array))
        return gh_oai_fail(e, "input",
                           "Invalid type for 'input': expected a string or an array of items.");
    n = json_object_array_length(input);
    for (size_t i = 0; i < n; i++) {
        json_object *item = json_object_array_get_idx(input, i);
        const char *type = gh_oai_get_str(item, "type");
        int rc;
        gh_oai_path(p, "input[%zu]", i);
        if (item == NULL || !json_object_is_type(item, json_type_object))
            return gh_oai_fail(e, p, "Invalid type for '%s': expected an object.", p);
        if (type == NULL || strcmp(type, "message") == 0) {
            rc = message_item(e, c, item, p);
        } else if (strcmp(type, "function_call") == 0) {
            const char *id = gh_oai_get_str(item, "call_id"), *name = gh_oai_get_str(item, "name");
            json_object *in;
            if (id == NULL || name == NULL)
                return gh_oai_fail(e, gh_oai_path(q, "%s.%s", p, id == NULL ? "call_id" : "name"),
                                   "Missing required parameter: '%s'.", q);
            if (gh_oai_tool_input(e, gh_oai_get(item, "arguments"),
                                  gh_oai_path(q, "%s.arguments", p), &in) != GH_OK)
                return GH_ERR;
            rc = gh_oai_conv_add(c, "assistant", gh_oai_tool_use(id, name, in)) == GH_OK
                     ? GH_OK
                     : gh_oai_oom(e);
        } else if (strcmp(type, "function_call_output") == 0) {
            rc = call_output_item(e, c, item, p);
        } else if (strcmp(type, "reasoning") == 0) {
            rc = reasoning_item(e, c, item);
        } else if (strcmp(type, "item_reference") == 0) {
            return gh_oai_fail(e, gh_oai_path(q, "%s.type", p),
                               "gatehouse does not store responses: item_reference input items "
                               "are not supported; send the items themselves.");
        } else {
            return gh_oai_fail(e, gh_oai_path(q, "%s.type", p),
                               "Invalid value for '%s': input item type '%s' is not supported "
                               "(message, function_call, function_call_output and reasoning "
                               "are).",
                               q, type);
        }
        if (rc != GH_OK)
            return GH_ERR;
    }
    return GH_OK;
}

/* Reads text.format: json_schema (flat in the Responses API: {type, name, schema, strict})
 * becomes output_format, json_object sets *json_mode, text is the default. */
static int resp_format(gh_oai_err_t *e, json_object *req, json_object *text, int *json_mode)
{
    json_object *f = gh_oai_get(text, "format");
    const char *type = gh_oai_get_str(f, "type");

    *json_mode = 0;
    if (f == NULL)
        return GH_OK;
    if (type == NULL)
        return gh_oai_fail(e, "text.format.type",
                           "Missing required parameter: "
                           "'text.format.type'.");
    if (strcmp(type, "text") == 0)
        return GH_OK;
    if (strcmp(type, "json_object") == 0) {
        *json_mode = 1;
        return GH_OK;
    }
    if (strcmp(type, "json_schema") == 0)
        return gh_oai_output_schema(e, req, gh_oai_get(f, "schema"), "text.format.schema");
    return gh_oai_fail(e, "text.format.type",
                       "Invalid value for 'text.format.type': expected 'text', 'json_object' or "
                       "'json_schema'.");
}

/* Translates a parsed Responses body into req (which holds "model"). Errors go to e. */
int gh_oai_resp_request(json_object *body, const gh_oai_opts_t *opts, gh_oai_req_t *out,
                        json_object *req, gh_oai_err_t *e)
{
    gh_oai_conv_t conv;
    json_object *mt = gh_oai_get(body, "max_output_tokens"),
                *ins = gh_oai_get(body, "instructions");
    json_object *bg = gh_oai_get(body, "background");
    int64_t max_tokens = opts != NULL && opts->default_max_tokens > 0 ? opts->default_max_tokens
                                                                      : GH_OAI_DEFAULT_MAX_TOKENS;
    int json_mode = 0, rc = GH_ERR;

    GH_UNUSED(out);
    if (gh_oai_conv_init(&conv) != GH_OK)
        return gh_oai_oom(e);
    for (size_t i = 0; i < GH_ARRAY_LEN(stateful); i++)
        if (gh_oai_get(body, stateful[i].key) != NULL) {
            gh_oai_fail(e, stateful[i].key, "%s", stateful[i].why);
            goto done;
        }
    if (bg != NULL &&
        (!json_object_is_type(bg, json_type_boolean) || json_object_get_boolean(bg))) {
        gh_oai_fail(e, "background",
                    "gatehouse does not store responses: background responses are not "
                    "supported.");
        goto done;
    }
    if (mt != NULL && gh_oai_max_tokens(e, mt, "max_output_tokens", &max_tokens) != GH_OK)
        goto done;
    if (gh_oai_add_int(req, "max_tokens", max_tokens) != GH_OK)
        goto done;
    if (ins != NULL && !json_object_is_type(ins, json_type_string)) {
        gh_oai_fail(e, "instructions", "Invalid type for 'instructions': expected a string.");
        goto done;
    }
    if (ins != NULL && gh_oai_conv_system(&conv, json_object_get_string(ins),
                                          (size_t)json_object_get_string_len(ins), NULL) != GH_OK)
        goto done;
    if (resp_input(e, &conv, gh_oai_get(body, "input")) != GH_OK ||
        resp_format(e, req, gh_oai_get(body, "text"), &json_mode) != GH_OK ||
        gh_oai_conv_finish(&conv, req, json_mode, e) != GH_OK ||
        gh_oai_tools(e, 0, req, gh_oai_get(body, "tools")) != GH_OK ||
        gh_oai_tool_choice(e, req, gh_oai_get(body, "tool_choice"),
                           gh_oai_get(body, "parallel_tool_calls"), 1) != GH_OK ||
        gh_oai_sampling(e, body, req) != GH_OK ||
        gh_oai_thinking(e, body, req, NULL, "reasoning.effort", &max_tokens) != GH_OK)
        goto done;
    if (gh_oai_add_int(req, "max_tokens", max_tokens) != GH_OK ||
        gh_oai_passthrough(body, req) != GH_OK)
        goto done;
    rc = GH_OK;
done:
    if (rc != GH_OK)
        gh_oai_oom(e); /* keeps the client error when there is one */
    gh_oai_conv_free(&conv);
    return rc;
}
