/* common.c: the clock, JSON helpers, error reporting and conversation builder of the OpenAI
 * translators. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oai_int.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* The instruction that stands in for OpenAI's JSON mode: Anthropic has no schema-less JSON mode,
 * so the model is told in the system prompt instead. */
#define JSON_MODE_INSTRUCTION                                                                      \
    "Respond with a single valid JSON object and nothing else: no prose and no markdown code "     \
    "fences."

static time_t (*oai_clock)(void);

/* Installs the test clock; NULL goes back to time(). */
void gh_oai_set_clock(time_t (*fn)(void))
{
    oai_clock = fn;
}

/* Returns the current time from the installed clock, for "created" fields. */
time_t gh_oai_now(void)
{
    return oai_clock != NULL ? oai_clock() : time(NULL);
}

/* Parses buf[0..len) as exactly one strict JSON value (valid UTF-8, white space around it
 * allowed). Returns the new tree, owned by the caller, or NULL when the text is not JSON. */
json_object *gh_oai_parse(const char *buf, size_t len)
{
    /* one tokener per process, reset for each text: creating one zeroes a 128-level parse stack,
     * which cost more than parsing a small request (a worker is single-threaded) */
    static json_tokener *tok;
    json_object *o = NULL;
    size_t end;

    /* json-c reads a raw NUL as the end of the text; a JSON text never contains one. */
    if (buf == NULL || len == 0 || len > (size_t)INT32_MAX || memchr(buf, '\0', len) != NULL)
        goto fail;
    if (tok == NULL) {
        tok = json_tokener_new_ex(GH_OAI_JSON_DEPTH);
        if (tok == NULL)
            goto fail;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    }
    json_tokener_reset(tok);
    o = json_tokener_parse_ex(tok, buf, (int)len);
    if (o == NULL || json_tokener_get_error(tok) != json_tokener_success)
        goto fail;
    for (end = json_tokener_get_parse_end(tok); end < len; end++)
        if (buf[end] != ' ' && buf[end] != '\t' && buf[end] != '\r' && buf[end] != '\n')
            goto fail;
    return o;
fail:
    json_object_put(o);
    if (tok != NULL)
        json_tokener_reset(tok);
    return NULL;
}

/* Appends the compact serialization of o to out. */
int gh_oai_emit(json_object *o, gh_buf_t *out)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(o, JSON_FLAGS, &n);

    if (s == NULL)
        return GH_ERR;
    return gh_buf_append(out, s, n);
}

/* Returns the compact serialization of o; the string belongs to o and lives until o changes. */
const char *gh_oai_json(json_object *o)
{
    return json_object_to_json_string_ext(o, JSON_FLAGS);
}

/* Returns obj[key], or NULL when obj is not an object, the key is missing or its value is null:
 * OpenAI treats an explicit null like an absent parameter. The value belongs to obj. */
json_object *gh_oai_get(json_object *obj, const char *key)
{
    json_object *v = NULL;

    if (obj == NULL || !json_object_is_type(obj, json_type_object))
        return NULL;
    if (!json_object_object_get_ex(obj, key, &v))
        return NULL;
    return v;
}

/* Returns obj[key] when it is a string (owned by obj), else NULL. */
const char *gh_oai_get_str(json_object *obj, const char *key)
{
    json_object *v = gh_oai_get(obj, key);

    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* Tells whether o is a JSON number. */
int gh_oai_is_num(json_object *o)
{
    return o != NULL &&
           (json_object_is_type(o, json_type_int) || json_object_is_type(o, json_type_double));
}

/* Sets obj[key] = val, taking ownership of val in every case; a NULL val means an allocation
 * failed upstream of this call, so it fails too. */
int gh_oai_add(json_object *obj, const char *key, json_object *val)
{
    if (val == NULL)
        return GH_ERR;
    if (json_object_object_add(obj, key, val) != 0) {
        json_object_put(val);
        return GH_ERR;
    }
    return GH_OK;
}

/* Sets obj[key] to a new reference of val, which stays owned by the caller too (shared
 * subtrees from the request are reference counted by json-c). */
int gh_oai_add_ref(json_object *obj, const char *key, json_object *val)
{
    if (val == NULL)
        return gh_oai_add_null(obj, key);
    return gh_oai_add(obj, key, json_object_get(val));
}

/* Sets obj[key] = null. */
int gh_oai_add_null(json_object *obj, const char *key)
{
    return json_object_object_add(obj, key, NULL) == 0 ? GH_OK : GH_ERR;
}

/* Sets obj[key] to the string s (copied). */
int gh_oai_add_str(json_object *obj, const char *key, const char *s)
{
    return gh_oai_add(obj, key, json_object_new_string(s));
}

/* Sets obj[key] to the n bytes at s (copied). */
int gh_oai_add_strn(json_object *obj, const char *key, const char *s, size_t n)
{
    if (n > (size_t)INT32_MAX)
        return GH_ERR;
    return gh_oai_add(obj, key, json_object_new_string_len(s, (int)n));
}

/* Sets obj[key] to the integer v. */
int gh_oai_add_int(json_object *obj, const char *key, int64_t v)
{
    return gh_oai_add(obj, key, json_object_new_int64(v));
}

/* Appends val to the array arr, taking ownership of val in every case. */
int gh_oai_push(json_object *arr, json_object *val)
{
    if (val == NULL)
        return GH_ERR;
    if (json_object_array_add(arr, val) != 0) {
        json_object_put(val);
        return GH_ERR;
    }
    return GH_OK;
}

/* Records a client error (HTTP 400) with its parameter path; returns GH_ERR so callers can
 * `return gh_oai_fail(...)`. */
int gh_oai_fail(gh_oai_err_t *e, const char *param, const char *fmt, ...)
{
    va_list ap;

    e->status = 400;
    if (e->msgsz != 0) {
        va_start(ap, fmt);
        vsnprintf(e->msg, e->msgsz, fmt, ap);
        va_end(ap);
    }
    if (e->paramsz != 0)
        snprintf(e->param, e->paramsz, "%s", param != NULL ? param : "");
    return GH_ERR;
}

/* Records that memory ran out (HTTP 500), unless a client error was already recorded: a failed
 * helper may have set one before its caller noticed the failure. */
int gh_oai_oom(gh_oai_err_t *e)
{
    if (e->status == 400)
        return GH_ERR;
    e->status = 500;
    if (e->msgsz != 0)
        snprintf(e->msg, e->msgsz, "The server ran out of memory translating the request.");
    if (e->paramsz != 0)
        e->param[0] = '\0';
    return GH_ERR;
}

/* Formats a parameter path into buf (GH_OAI_PARAM_MAX bytes, truncated if longer) and returns
 * buf, so error paths can be built inline. */
const char *gh_oai_path(char *buf, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, GH_OAI_PARAM_MAX, fmt, ap);
    va_end(ap);
    return buf;
}

/* Prepares an empty conversation; the builder owns both arrays until gh_oai_conv_free. */
int gh_oai_conv_init(gh_oai_conv_t *c)
{
    memset(c, 0, sizeof *c);
    c->messages = json_object_new_array();
    c->system = json_object_new_array();
    if (c->messages == NULL || c->system == NULL) {
        gh_oai_conv_free(c);
        return GH_ERR;
    }
    return GH_OK;
}

/* Releases the builder's arrays (those handed to a request keep their own reference). */
void gh_oai_conv_free(gh_oai_conv_t *c)
{
    json_object_put(c->messages);
    json_object_put(c->system);
    memset(c, 0, sizeof *c);
}

/* Appends a converted content part (ownership of b taken; NULL means its conversion already
 * failed and reported why) with the part's cache_control, if any, to the conversation. */
int gh_oai_conv_add_part(gh_oai_err_t *e, gh_oai_conv_t *c, const char *role, json_object *b,
                         json_object *cache)
{
    if (b == NULL)
        return GH_ERR;
    if (cache != NULL && gh_oai_add_ref(b, "cache_control", cache) != GH_OK) {
        json_object_put(b);
        return gh_oai_oom(e);
    }
    return gh_oai_conv_add(c, role, b) == GH_OK ? GH_OK : gh_oai_oom(e);
}

/* Appends block (ownership taken) to the conversation as said by role. Anthropic wants user and
 * assistant turns to alternate, so a block joins the last message when it has the same role
 * (this is also how consecutive tool results end up in one user message). */
int gh_oai_conv_add(gh_oai_conv_t *c, const char *role, json_object *block)
{
    size_t n = json_object_array_length(c->messages);
    json_object *last = n != 0 ? json_object_array_get_idx(c->messages, n - 1) : NULL;
    json_object *msg = NULL, *content;

    if (block == NULL)
        return GH_ERR;
    if (last != NULL && strcmp(gh_oai_get_str(last, "role"), role) == 0) {
        content = gh_oai_get(last, "content");
    } else {
        msg = json_object_new_object();
        if (msg == NULL || gh_oai_add_str(msg, "role", role) != GH_OK)
            goto fail;
        content = json_object_new_array();
        if (gh_oai_add(msg, "content", content) != GH_OK)
            goto fail;
        /* gh_oai_push drops msg itself when it fails */
        if (gh_oai_push(c->messages, msg) != GH_OK) {
            msg = NULL;
            goto fail;
        }
    }
    c->nblocks++;
    return gh_oai_push(content, block);
fail:
    json_object_put(msg);
    json_object_put(block);
    return GH_ERR;
}

/* Adds one system text (system/developer messages, instructions) with its cache_control, if
 * any. Empty texts are skipped: Anthropic rejects empty text blocks. */
int gh_oai_conv_system(gh_oai_conv_t *c, const char *text, size_t len, json_object *cache_control)
{
    if (len == 0)
        return GH_OK;
    if (cache_control != NULL)
        c->system_cache = 1;
    return gh_oai_push(c->system, gh_oai_text_block(text, len, cache_control));
}

/* Puts cache_control on the last block added, when blocks were added since mark (the value of
 * c->nblocks before a message was converted): a message-level cache_control, as LiteLLM
 * accepts it, marks the end of that message. */
int gh_oai_conv_cache_last(gh_oai_conv_t *c, size_t mark, json_object *cache_control)
{
    size_t n = json_object_array_length(c->messages), m;
    json_object *content;

    if (cache_control == NULL || c->nblocks == mark || n == 0)
        return GH_OK;
    content = gh_oai_get(json_object_array_get_idx(c->messages, n - 1), "content");
    m = json_object_array_length(content);
    if (m == 0)
        return GH_OK;
    return gh_oai_add_ref(json_object_array_get_idx(content, m - 1), "cache_control",
                          cache_control);
}

/* Stores "system" and "messages" in req. The system texts are joined with blank lines into one
 * string unless one of them carries cache_control, which only the block form can hold.
 * json_object_mode adds the JSON-mode instruction last. */
int gh_oai_conv_finish(gh_oai_conv_t *c, json_object *req, int json_object_mode, gh_oai_err_t *e)
{
    gh_buf_t sys = GH_BUF_INIT;
    size_t n;
    int rc = GH_ERR;

    if (json_object_mode &&
        gh_oai_conv_system(c, JSON_MODE_INSTRUCTION, strlen(JSON_MODE_INSTRUCTION), NULL) != GH_OK)
        goto done;
    n = json_object_array_length(c->system);
    if (n != 0 && c->system_cache) {
        if (gh_oai_add_ref(req, "system", c->system) != GH_OK)
            goto done;
    } else if (n != 0) {
        for (size_t i = 0; i < n; i++) {
            json_object *t = gh_oai_get(json_object_array_get_idx(c->system, i), "text");
            if ((i != 0 && gh_buf_puts(&sys, "\n\n") != GH_OK) ||
                gh_buf_append(&sys, json_object_get_string(t),
                              (size_t)json_object_get_string_len(t)) != GH_OK)
                goto done;
        }
        if (gh_oai_add_strn(req, "system", sys.data, sys.len) != GH_OK)
            goto done;
    }
    if (json_object_array_length(c->messages) == 0) {
        gh_oai_fail(e, "messages",
                    "Invalid value for 'messages': at least one user or assistant message with "
                    "content is required.");
        goto done;
    }
    if (gh_oai_add_ref(req, "messages", c->messages) != GH_OK)
        goto done;
    rc = GH_OK;
done:
    if (rc != GH_OK)
        gh_oai_oom(e); /* keeps the client error when there is one */
    gh_buf_free(&sys);
    return rc;
}

/* Reads token counts from an Anthropic usage object; fields that are absent keep their value,
 * because message_delta only repeats some of what message_start said. */
void gh_oai_usage_read(gh_oai_usage_t *u, json_object *usage)
{
    static const char *const keys[] = {"input_tokens", "output_tokens", "cache_read_input_tokens",
                                       "cache_creation_input_tokens"};
    int64_t *dst[] = {&u->input, &u->output, &u->cache_read, &u->cache_creation};

    if (usage == NULL || !json_object_is_type(usage, json_type_object))
        return;
    u->seen = 1;
    for (size_t i = 0; i < GH_ARRAY_LEN(keys); i++) {
        json_object *v = gh_oai_get(usage, keys[i]);
        if (v != NULL && json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0)
            *dst[i] = json_object_get_int64(v);
    }
}

/* Returns the prompt tokens OpenAI reports: Anthropic counts cached input separately, OpenAI
 * counts it inside the prompt. */
int64_t gh_oai_usage_prompt(const gh_oai_usage_t *u)
{
    return u->input + u->cache_read + u->cache_creation;
}

/* Maps an Anthropic stop_reason to a Chat Completions finish_reason (a static string). */
const char *gh_oai_finish_reason(const char *stop_reason)
{
    if (stop_reason == NULL)
        return "stop";
    if (strcmp(stop_reason, "max_tokens") == 0 ||
        strcmp(stop_reason, "model_context_window_exceeded") == 0)
        return "length";
    if (strcmp(stop_reason, "tool_use") == 0)
        return "tool_calls";
    if (strcmp(stop_reason, "refusal") == 0)
        return "content_filter";
    return "stop"; /* end_turn, stop_sequence, pause_turn and anything newer */
}

/* Returns the part of an Anthropic message id after "msg_", from which the Responses ids are
 * derived so they stay stable for one upstream answer. */
const char *gh_oai_id_base(const char *id)
{
    if (id == NULL || id[0] == '\0')
        return "gatehouse";
    return strncmp(id, "msg_", 4) == 0 && id[4] != '\0' ? id + 4 : id;
}

/* Returns a malloc'd copy of s (NULL stays NULL is not allowed: s must be a string). */
char *gh_oai_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);

    if (p != NULL)
        memcpy(p, s, n);
    return p;
}
