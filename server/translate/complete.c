/* complete.c: OpenAI legacy text completions translated to and from Anthropic's /v1/complete. */
#include <stdio.h>
#include <string.h>

#include "oai_int.h"

/* OpenAI /v1/completions parameters that are dropped: echo, suffix, logprobs, best_of (1 only
 * makes sense), frequency_penalty, presence_penalty, logit_bias, seed. n must be 1 and stream
 * false: /v1/complete is translated without streaming, as Bifrost does. */

#define HUMAN "\n\nHuman:"
#define ASSISTANT "\n\nAssistant:"

/* Reads prompt: a string, or an array holding exactly one string (token arrays and batches of
 * prompts have no /v1/complete counterpart). *p points into body. */
static int read_prompt(gh_oai_err_t *e, json_object *body, json_object **p)
{
    json_object *v = gh_oai_get(body, "prompt");

    if (v != NULL && json_object_is_type(v, json_type_array) && json_object_array_length(v) == 1)
        v = json_object_array_get_idx(v, 0);
    if (v == NULL)
        return gh_oai_fail(e, "prompt", "Missing required parameter: 'prompt'.");
    if (!json_object_is_type(v, json_type_string))
        return gh_oai_fail(e, "prompt",
                           "Invalid value for 'prompt': expected a string or an array of one "
                           "string.");
    *p = v;
    return GH_OK;
}

/* Translates a parsed /v1/completions body into a /v1/complete body in req (which holds
 * "model"). The prompt is wrapped as "\n\nHuman: {prompt}\n\nAssistant:" unless it already
 * starts with "\n\nHuman:" (then it is in Anthropic's format and kept); max_tokens becomes
 * max_tokens_to_sample. */
int gh_oai_complete_request(json_object *body, const gh_oai_opts_t *opts, gh_oai_req_t *out,
                            json_object *req, gh_oai_err_t *e)
{
    json_object *prompt = NULL, *n = gh_oai_get(body, "n"), *mt = gh_oai_get(body, "max_tokens");
    gh_buf_t p = GH_BUF_INIT;
    int64_t max_tokens = opts != NULL && opts->default_max_tokens > 0 ? opts->default_max_tokens
                                                                      : GH_OAI_DEFAULT_MAX_TOKENS;
    const char *s;
    size_t len;
    int rc = GH_ERR;

    if (out->stream) {
        gh_oai_fail(e, "stream",
                    "Invalid value for 'stream': streaming is not supported for text "
                    "completions; use /v1/chat/completions to stream.");
        goto done;
    }
    if (n != NULL && (!json_object_is_type(n, json_type_int) || json_object_get_int64(n) != 1)) {
        gh_oai_fail(e, "n", "Invalid value for 'n': only n=1 is supported.");
        goto done;
    }
    if (read_prompt(e, body, &prompt) != GH_OK ||
        (mt != NULL && gh_oai_max_tokens(e, mt, "max_tokens", &max_tokens) != GH_OK))
        goto done;
    s = json_object_get_string(prompt);
    len = (size_t)json_object_get_string_len(prompt);
    if (strncmp(s, HUMAN, strlen(HUMAN)) == 0) {
        if (gh_buf_append(&p, s, len) != GH_OK)
            goto done;
    } else if (gh_buf_puts(&p, HUMAN " ") != GH_OK || gh_buf_append(&p, s, len) != GH_OK ||
               gh_buf_puts(&p, ASSISTANT) != GH_OK) {
        goto done;
    }
    if (gh_oai_add_strn(req, "prompt", p.data, p.len) != GH_OK ||
        gh_oai_add_int(req, "max_tokens_to_sample", max_tokens) != GH_OK)
        goto done;
    if (gh_oai_stop(e, gh_oai_get(body, "stop"), req, "stop_sequences") != GH_OK ||
        gh_oai_sampling(e, body, req) != GH_OK)
        goto done;
    rc = GH_OK;
done:
    if (rc != GH_OK)
        gh_oai_oom(e); /* keeps the client error when there is one */
    gh_buf_free(&p);
    return rc;
}

/* Maps a /v1/complete stop_reason to a finish_reason. */
static const char *complete_finish(const char *stop_reason)
{
    if (stop_reason != NULL && strcmp(stop_reason, "max_tokens") == 0)
        return "length";
    return "stop";
}

/* Translates a /v1/complete answer {completion, stop_reason, model, id} into a text_completion
 * appended to out; usage is added only when the upstream reported some. */
int gh_oai_complete_response(const char *model, json_object *msg, gh_buf_t *out)
{
    json_object *completion = gh_oai_get(msg, "completion"), *doc = NULL, *choices, *ch, *u;
    const char *id = gh_oai_get_str(msg, "id");
    gh_oai_usage_t usage = {0};
    char idbuf[256];
    int rc = GH_ERR;

    if (completion == NULL || !json_object_is_type(completion, json_type_string))
        goto done;
    if (model == NULL)
        model = gh_oai_get_str(msg, "model") != NULL ? gh_oai_get_str(msg, "model") : "";
    snprintf(idbuf, sizeof idbuf, "cmpl-%s", id != NULL ? id : "gatehouse");
    doc = json_object_new_object();
    if (doc == NULL || gh_oai_add_str(doc, "id", idbuf) != GH_OK ||
        gh_oai_add_str(doc, "object", "text_completion") != GH_OK ||
        gh_oai_add_int(doc, "created", (int64_t)gh_oai_now()) != GH_OK ||
        gh_oai_add_str(doc, "model", model) != GH_OK)
        goto done;
    choices = json_object_new_array();
    if (gh_oai_add(doc, "choices", choices) != GH_OK)
        goto done;
    ch = json_object_new_object();
    if (gh_oai_push(choices, ch) != GH_OK || gh_oai_add_ref(ch, "text", completion) != GH_OK ||
        gh_oai_add_int(ch, "index", 0) != GH_OK || gh_oai_add_null(ch, "logprobs") != GH_OK ||
        gh_oai_add_str(ch, "finish_reason", complete_finish(gh_oai_get_str(msg, "stop_reason"))) !=
            GH_OK)
        goto done;
    gh_oai_usage_read(&usage, gh_oai_get(msg, "usage"));
    if (usage.seen) {
        int64_t prompt = gh_oai_usage_prompt(&usage);
        u = json_object_new_object();
        if (gh_oai_add(doc, "usage", u) != GH_OK ||
            gh_oai_add_int(u, "prompt_tokens", prompt) != GH_OK ||
            gh_oai_add_int(u, "completion_tokens", usage.output) != GH_OK ||
            gh_oai_add_int(u, "total_tokens", prompt + usage.output) != GH_OK)
            goto done;
    }
    rc = gh_oai_emit(doc, out);
done:
    json_object_put(doc);
    return rc;
}
