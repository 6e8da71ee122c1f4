/* content.c: content blocks, tools and sampling, thinking and output-format parameters shared by
 * the Chat Completions and Responses request translators. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oai_int.h"

/* Thinking budgets for OpenAI's reasoning effort levels. Anthropic's minimum is 1024. */
static const struct {
    const char *effort;
    int64_t budget;
} efforts[] = {
    {"none", 0},      {"minimal", 1024}, {"low", 1024},
    {"medium", 4096}, {"high", 16384},   {"xhigh", 32768},
};

/* Anthropic request members an OpenAI body may carry and that pass unchanged (top_k and
 * thinking are handled with the sampling and thinking parameters). */
static const char *const passthrough_keys[] = {"mcp_servers", "container", "context_management",
                                               "output_config"};

/* Builds {type: text, text, cache_control?}; cache_control is shared by reference. Returns the
 * new block (owned by the caller) or NULL when memory ran out. */
json_object *gh_oai_text_block(const char *text, size_t len, json_object *cache_control)
{
    json_object *b = json_object_new_object();

    if (b == NULL || gh_oai_add_str(b, "type", "text") != GH_OK ||
        gh_oai_add_strn(b, "text", text, len) != GH_OK ||
        (cache_control != NULL && gh_oai_add_ref(b, "cache_control", cache_control) != GH_OK)) {
        json_object_put(b);
        return NULL;
    }
    return b;
}

/* Splits a data URL "data:TYPE[;param...][;base64],DATA": copies the lower-cased media type
 * into media, points *data at the payload and tells whether it is base64. GH_ERR when url is
 * not a well-formed data URL. */
static int data_url(const char *url, char *media, size_t msz, const char **data, int *b64)
{
    const char *p = url + 5, *comma, *semi;
    size_t n;

    if (strncmp(url, "data:", 5) != 0 || (comma = strchr(p, ',')) == NULL)
        return GH_ERR;
    semi = memchr(p, ';', (size_t)(comma - p));
    n = (size_t)((semi != NULL ? semi : comma) - p);
    if (n == 0 || n >= msz)
        return GH_ERR;
    for (size_t i = 0; i < n; i++)
        media[i] = (char)tolower((unsigned char)p[i]);
    media[n] = '\0';
    *b64 = comma - p >= 7 && strncmp(comma - 7, ";base64", 7) == 0;
    *data = comma + 1;
    return GH_OK;
}

/* Returns the value of one base64 digit, or -1. */
static int b64_digit(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Decodes base64 (standard or URL alphabet, padding optional, white space skipped) into out.
 * GH_ERR on a character outside the alphabet. */
static int b64_decode(const char *s, gh_buf_t *out)
{
    unsigned acc = 0;
    int bits = 0;

    if (gh_buf_reserve(out, strlen(s) / 4 * 3 + 3) != GH_OK)
        return GH_ERR;
    for (; *s != '\0' && *s != '='; s++) {
        int d = b64_digit((unsigned char)*s);
        if (d < 0) {
            if (isspace((unsigned char)*s))
                continue;
            return GH_ERR;
        }
        acc = (acc << 6) | (unsigned)d;
        bits += 6;
        if (bits >= 8) {
            char c;
            bits -= 8;
            c = (char)((acc >> bits) & 0xff);
            if (gh_buf_append(out, &c, 1) != GH_OK)
                return GH_ERR;
        }
    }
    return GH_OK;
}

/* Builds {type, source: {type: src_type, KEY: value...}} for image and document blocks. kv holds
 * key/value pairs of the source, ending with NULL. Returns NULL when memory ran out. */
static json_object *source_block(const char *type, const char *src_type, const char *const *kv)
{
    json_object *b = json_object_new_object(), *src = json_object_new_object();

    if (b == NULL || src == NULL || gh_oai_add_str(b, "type", type) != GH_OK ||
        gh_oai_add_str(src, "type", src_type) != GH_OK)
        goto fail;
    for (; kv[0] != NULL; kv += 2)
        if (gh_oai_add_str(src, kv[0], kv[1]) != GH_OK)
            goto fail;
    if (gh_oai_add(b, "source", src) != GH_OK) {
        src = NULL;
        goto fail;
    }
    return b;
fail:
    json_object_put(src);
    json_object_put(b);
    return NULL;
}

/* Turns a base64 data URL payload into the Anthropic block for its media type: images, PDFs
 * (base64 document source) and plain text (decoded into a text document source, the only form
 * Anthropic takes text documents in). NULL with e set for other types or bad base64. */
static json_object *data_block(gh_oai_err_t *e, const char *media, const char *data,
                               const char *param)
{
    static const char *const images[] = {"image/jpeg", "image/png", "image/gif", "image/webp"};
    gh_buf_t text = GH_BUF_INIT;
    json_object *b = NULL;

    if (strcmp(media, "image/jpg") == 0)
        media = "image/jpeg";
    for (size_t i = 0; i < GH_ARRAY_LEN(images); i++)
        if (strcmp(media, images[i]) == 0) {
            const char *kv[] = {"media_type", media, "data", data, NULL};
            b = source_block("image", "base64", kv);
            goto done;
        }
    if (strcmp(media, "application/pdf") == 0) {
        const char *kv[] = {"media_type", media, "data", data, NULL};
        b = source_block("document", "base64", kv);
    } else if (strcmp(media, "text/plain") == 0) {
        if (b64_decode(data, &text) != GH_OK || gh_buf_reserve(&text, 0) != GH_OK) {
            gh_oai_fail(e, param, "Invalid value for '%s': the data URL is not valid base64.",
                        param);
            goto done;
        }
        if (memchr(text.data, '\0', text.len) != NULL) {
            gh_oai_fail(e, param, "Invalid value for '%s': a text/plain file must be text.", param);
            goto done;
        }
        const char *kv[] = {"media_type", "text/plain", "data", text.data, NULL};
        b = source_block("document", "text", kv);
    } else {
        gh_oai_fail(e, param,
                    "Invalid value for '%s': media type '%s' is not supported (images: jpeg, png, "
                    "gif, webp; files: application/pdf, text/plain).",
                    param, media);
    }
done:
    gh_buf_free(&text);
    return b;
}

/* Turns an OpenAI image URL into an Anthropic block: a base64 data URL becomes a base64 source
 * (a PDF data URL a document), an http(s) URL a url source. Returns the block (owned by the
 * caller) or NULL with e set. */
json_object *gh_oai_image_block(gh_oai_err_t *e, const char *url, const char *param)
{
    char media[64];
    const char *data;
    int b64;
    json_object *b = NULL;

    if (strncmp(url, "data:", 5) == 0) {
        if (data_url(url, media, sizeof media, &data, &b64) != GH_OK || !b64) {
            gh_oai_fail(e, param,
                        "Invalid value for '%s': expected a base64 data URL "
                        "(data:image/png;base64,...).",
                        param);
            goto done;
        }
        b = data_block(e, media, data, param);
    } else if (strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0) {
        const char *kv[] = {"url", url, NULL};
        b = source_block("image", "url", kv);
    } else {
        gh_oai_fail(e, param, "Invalid value for '%s': expected a data URL or an http(s) URL.",
                    param);
    }
done:
    if (b == NULL)
        gh_oai_oom(e); /* keeps the client error when there is one */
    return b;
}

/* Turns an OpenAI file reference into a document block. file holds file_data (a data URL, or
 * bare base64 taken as a PDF), file_id (an Anthropic Files API id: a file source, which needs
 * the files-api beta header upstream) or file_url, and optionally filename (the title). */
json_object *gh_oai_file_block(gh_oai_err_t *e, json_object *file, const char *param)
{
    const char *fdata = gh_oai_get_str(file, "file_data");
    const char *fid = gh_oai_get_str(file, "file_id");
    const char *furl = gh_oai_get_str(file, "file_url");
    const char *fname = gh_oai_get_str(file, "filename");
    char media[64];
    const char *data;
    int b64;
    json_object *b = NULL;

    if (fdata != NULL && strncmp(fdata, "data:", 5) == 0) {
        if (data_url(fdata, media, sizeof media, &data, &b64) != GH_OK || !b64) {
            gh_oai_fail(e, param, "Invalid value for '%s.file_data': expected a base64 data URL.",
                        param);
            goto done;
        }
        b = data_block(e, media, data, param);
    } else if (fdata != NULL) {
        const char *kv[] = {"media_type", "application/pdf", "data", fdata, NULL};
        b = source_block("document", "base64", kv);
    } else if (fid != NULL) {
        const char *kv[] = {"file_id", fid, NULL};
        b = source_block("document", "file", kv);
    } else if (furl != NULL) {
        const char *kv[] = {"url", furl, NULL};
        b = source_block("document", "url", kv);
    } else {
        gh_oai_fail(e, param, "Missing required parameter: '%s.file_data' or '%s.file_id'.", param,
                    param);
        goto done;
    }
    /* Only documents carry a title; a file that turned out to be an image keeps none. */
    if (b != NULL && fname != NULL && fname[0] != '\0' &&
        strcmp(gh_oai_get_str(b, "type"), "document") == 0 &&
        gh_oai_add_str(b, "title", fname) != GH_OK) {
        json_object_put(b);
        b = NULL;
    }
done:
    if (b == NULL)
        gh_oai_oom(e); /* keeps the client error when there is one */
    return b;
}

/* Parses an OpenAI function-call arguments value (a JSON string, or an object some clients
 * send) into the object Anthropic's tool_use input wants; an empty string means {}. *input is a
 * new reference owned by the caller. GH_ERR with e set when it is not a JSON object. */
int gh_oai_tool_input(gh_oai_err_t *e, json_object *arguments, const char *param,
                      json_object **input)
{
    const char *s;
    size_t n, i;

    *input = NULL;
    if (arguments != NULL && json_object_is_type(arguments, json_type_object)) {
        *input = json_object_get(arguments);
        return GH_OK;
    }
    if (arguments != NULL && !json_object_is_type(arguments, json_type_string))
        return gh_oai_fail(e, param, "Invalid type for '%s': expected a string.", param);
    s = arguments != NULL ? json_object_get_string(arguments) : "";
    n = arguments != NULL ? (size_t)json_object_get_string_len(arguments) : 0;
    for (i = 0; i < n && isspace((unsigned char)s[i]); i++)
        ;
    if (i == n) {
        *input = json_object_new_object();
        return *input != NULL ? GH_OK : gh_oai_oom(e);
    }
    *input = gh_oai_parse(s, n);
    if (*input == NULL || !json_object_is_type(*input, json_type_object)) {
        json_object_put(*input);
        *input = NULL;
        return gh_oai_fail(e, param,
                           "Invalid value for '%s': the arguments must be a JSON object encoded "
                           "as a string.",
                           param);
    }
    return GH_OK;
}

/* Builds a tool_use block, taking ownership of input. NULL when memory ran out. */
json_object *gh_oai_tool_use(const char *id, const char *name, json_object *input)
{
    json_object *b = json_object_new_object();

    if (b == NULL || input == NULL || gh_oai_add_str(b, "type", "tool_use") != GH_OK ||
        gh_oai_add_str(b, "id", id) != GH_OK || gh_oai_add_str(b, "name", name) != GH_OK ||
        gh_oai_add(b, "input", json_object_get(input)) != GH_OK) {
        json_object_put(b);
        json_object_put(input);
        return NULL;
    }
    json_object_put(input);
    return b;
}

/* Appends to tools the Anthropic definition of one OpenAI function (name, description,
 * parameters; strict is dropped). Missing parameters become an empty object schema, which
 * Anthropic requires. cache (the tool's cache_control) is kept. */
int gh_oai_tool_def(gh_oai_err_t *e, json_object *tools, json_object *fn, json_object *cache,
                    const char *param)
{
    char p[GH_OAI_PARAM_MAX];
    const char *name = gh_oai_get_str(fn, "name");
    json_object *desc = gh_oai_get(fn, "description");
    json_object *params = gh_oai_get(fn, "parameters");
    json_object *t = NULL, *schema = NULL;

    if (name == NULL || name[0] == '\0')
        return gh_oai_fail(e, gh_oai_path(p, "%s.name", param),
                           "Missing required parameter: '%s.name'.", param);
    if (params != NULL && !json_object_is_type(params, json_type_object))
        return gh_oai_fail(e, gh_oai_path(p, "%s.parameters", param),
                           "Invalid type for '%s.parameters': expected an object.", param);
    if (desc != NULL && !json_object_is_type(desc, json_type_string))
        return gh_oai_fail(e, gh_oai_path(p, "%s.description", param),
                           "Invalid type for '%s.description': expected a string.", param);
    if (cache == NULL)
        cache = gh_oai_get(fn, "cache_control");
    t = json_object_new_object();
    if (t == NULL || gh_oai_add_str(t, "name", name) != GH_OK)
        goto fail;
    if (desc != NULL && json_object_get_string_len(desc) != 0 &&
        gh_oai_add_ref(t, "description", desc) != GH_OK)
        goto fail;
    if (params != NULL) {
        schema = json_object_get(params);
    } else {
        schema = json_object_new_object();
        if (schema == NULL || gh_oai_add_str(schema, "type", "object") != GH_OK ||
            gh_oai_add(schema, "properties", json_object_new_object()) != GH_OK)
            goto fail;
    }
    if (gh_oai_add(t, "input_schema", schema) != GH_OK) {
        schema = NULL;
        goto fail;
    }
    schema = NULL;
    if (cache != NULL && gh_oai_add_ref(t, "cache_control", cache) != GH_OK)
        goto fail;
    return gh_oai_push(tools, t) == GH_OK ? GH_OK : gh_oai_oom(e);
fail:
    json_object_put(schema);
    json_object_put(t);
    return gh_oai_oom(e);
}

/* Maps tool_choice and parallel_tool_calls onto req's tool_choice: auto/none/required become
 * auto/none/any, a named function {type: tool, name}; parallel_tool_calls false sets
 * disable_parallel_tool_use (on auto when no choice was given). Both are dropped when req has no
 * tools, because Anthropic rejects a tool_choice without tools. responses picks the Responses
 * shape of a named function ({type, name} instead of {type, function: {name}}). */
int gh_oai_tool_choice(gh_oai_err_t *e, json_object *req, json_object *choice,
                       json_object *parallel, int responses)
{
    const char *param = "tool_choice", *type = NULL, *name = NULL;
    json_object *tc = NULL;

    if (parallel != NULL && !json_object_is_type(parallel, json_type_boolean))
        return gh_oai_fail(e, "parallel_tool_calls",
                           "Invalid type for 'parallel_tool_calls': expected a boolean.");
    if (choice != NULL && json_object_is_type(choice, json_type_string)) {
        const char *s = json_object_get_string(choice);
        type = strcmp(s, "auto") == 0       ? "auto"
               : strcmp(s, "none") == 0     ? "none"
               : strcmp(s, "required") == 0 ? "any"
                                            : NULL;
        if (type == NULL)
            return gh_oai_fail(e, param,
                               "Invalid value for 'tool_choice': expected 'auto', 'none', "
                               "'required' or a named function.");
    } else if (choice != NULL && json_object_is_type(choice, json_type_object)) {
        const char *t = gh_oai_get_str(choice, "type");
        if (t != NULL && strcmp(t, "function") == 0) {
            name = gh_oai_get_str(gh_oai_get(choice, "function"), "name");
            if (name == NULL)
                name = gh_oai_get_str(choice, "name");
            if (name == NULL)
                return gh_oai_fail(e, responses ? "tool_choice.name" : "tool_choice.function.name",
                                   "Missing required parameter: '%s'.",
                                   responses ? "tool_choice.name" : "tool_choice.function.name");
            type = "tool";
        } else if (t != NULL && (strcmp(t, "auto") == 0 || strcmp(t, "any") == 0 ||
                                 strcmp(t, "none") == 0 || strcmp(t, "tool") == 0)) {
            /* Already Anthropic's shape: pass it on. */
            tc = json_object_get(choice);
        } else {
            return gh_oai_fail(e, param,
                               "Invalid value for 'tool_choice': type '%s' is not supported; use "
                               "'auto', 'none', 'required' or a named function.",
                               t != NULL ? t : "(missing)");
        }
    } else if (choice != NULL) {
        return gh_oai_fail(e, param,
                           "Invalid type for 'tool_choice': expected a string or an "
                           "object.");
    }
    if (gh_oai_get(req, "tools") == NULL) {
        json_object_put(tc);
        return GH_OK;
    }
    if (tc == NULL && type == NULL && parallel != NULL && !json_object_get_boolean(parallel))
        type = "auto";
    if (tc == NULL && type != NULL) {
        tc = json_object_new_object();
        if (tc == NULL || gh_oai_add_str(tc, "type", type) != GH_OK ||
            (name != NULL && gh_oai_add_str(tc, "name", name) != GH_OK))
            goto fail;
    }
    if (tc == NULL)
        return GH_OK;
    if (parallel != NULL && !json_object_get_boolean(parallel) &&
        strcmp(gh_oai_get_str(tc, "type") != NULL ? gh_oai_get_str(tc, "type") : "", "none") != 0 &&
        gh_oai_add(tc, "disable_parallel_tool_use", json_object_new_boolean(1)) != GH_OK)
        goto fail;
    return gh_oai_add(req, "tool_choice", tc) == GH_OK ? GH_OK : gh_oai_oom(e);
fail:
    json_object_put(tc);
    return gh_oai_oom(e);
}

/* Reads a token limit: a positive integer (an integral float is accepted). */
int gh_oai_max_tokens(gh_oai_err_t *e, json_object *v, const char *param, int64_t *out)
{
    double d;

    if (json_object_is_type(v, json_type_int)) {
        *out = json_object_get_int64(v);
    } else if (json_object_is_type(v, json_type_double)) {
        d = json_object_get_double(v);
        if (!(d >= 1 && d <= 1e15) || d != (double)(int64_t)d)
            return gh_oai_fail(e, param, "Invalid type for '%s': expected an integer.", param);
        *out = (int64_t)d;
    } else {
        return gh_oai_fail(e, param, "Invalid type for '%s': expected an integer.", param);
    }
    if (*out < 1 || *out > 100000000)
        return gh_oai_fail(e, param, "Invalid value for '%s': expected a positive integer.", param);
    return GH_OK;
}

/* Copies the sampling parameters to req: temperature (OpenAI's 0..2 clamped to Anthropic's
 * 0..1), top_p, top_k (Anthropic's own, passed through), and user (or safety_identifier) as
 * metadata.user_id. Numbers in range keep their exact text. */
int gh_oai_sampling(gh_oai_err_t *e, json_object *body, json_object *req)
{
    json_object *t = gh_oai_get(body, "temperature"), *p = gh_oai_get(body, "top_p");
    json_object *k = gh_oai_get(body, "top_k"), *u = gh_oai_get(body, "user"), *meta;

    if (t != NULL) {
        if (!gh_oai_is_num(t) || json_object_get_double(t) < 0)
            return gh_oai_fail(e, "temperature",
                               "Invalid value for 'temperature': expected a number from 0 to 2.");
        if (json_object_get_double(t) > 1
                ? gh_oai_add(req, "temperature", json_object_new_double(1.0)) != GH_OK
                : gh_oai_add_ref(req, "temperature", t) != GH_OK)
            return gh_oai_oom(e);
    }
    if (p != NULL) {
        if (!gh_oai_is_num(p) || json_object_get_double(p) < 0 || json_object_get_double(p) > 1)
            return gh_oai_fail(e, "top_p",
                               "Invalid value for 'top_p': expected a number from 0 to 1.");
        if (gh_oai_add_ref(req, "top_p", p) != GH_OK)
            return gh_oai_oom(e);
    }
    if (k != NULL) {
        if (!json_object_is_type(k, json_type_int) || json_object_get_int64(k) < 0)
            return gh_oai_fail(e, "top_k",
                               "Invalid value for 'top_k': expected a non-negative integer.");
        if (gh_oai_add_ref(req, "top_k", k) != GH_OK)
            return gh_oai_oom(e);
    }
    if (u == NULL)
        u = gh_oai_get(body, "safety_identifier");
    if (u != NULL && !json_object_is_type(u, json_type_string))
        return gh_oai_fail(e, "user", "Invalid type for 'user': expected a string.");
    if (u != NULL && json_object_get_string_len(u) != 0) {
        meta = json_object_new_object();
        if (gh_oai_add(req, "metadata", meta) != GH_OK ||
            gh_oai_add_ref(meta, "user_id", u) != GH_OK)
            return gh_oai_oom(e);
    }
    return GH_OK;
}

/* Copies stop (a string or an array of strings) to req[key] as an array. Sequences made only of
 * white space are dropped: Anthropic rejects them, and OpenAI clients commonly send "\n". */
int gh_oai_stop(gh_oai_err_t *e, json_object *stop, json_object *req, const char *key)
{
    json_object *arr = NULL;
    size_t n;

    if (stop == NULL)
        return GH_OK;
    if (!json_object_is_type(stop, json_type_string) && !json_object_is_type(stop, json_type_array))
        return gh_oai_fail(e, "stop",
                           "Invalid type for 'stop': expected a string or an array of strings.");
    arr = json_object_new_array();
    if (arr == NULL)
        return gh_oai_oom(e);
    n = json_object_is_type(stop, json_type_string) ? 1 : json_object_array_length(stop);
    for (size_t i = 0; i < n; i++) {
        json_object *s =
            json_object_is_type(stop, json_type_string) ? stop : json_object_array_get_idx(stop, i);
        const char *c;
        char p[GH_OAI_PARAM_MAX];
        if (s == NULL || !json_object_is_type(s, json_type_string)) {
            json_object_put(arr);
            return gh_oai_fail(e, gh_oai_path(p, "stop[%zu]", i),
                               "Invalid type for 'stop[%zu]': expected a string.", i);
        }
        for (c = json_object_get_string(s); *c != '\0' && isspace((unsigned char)*c); c++)
            ;
        if (*c != '\0' && gh_oai_push(arr, json_object_get(s)) != GH_OK) {
            json_object_put(arr);
            return gh_oai_oom(e);
        }
    }
    if (json_object_array_length(arr) == 0) {
        json_object_put(arr);
        return GH_OK;
    }
    return gh_oai_add(req, key, arr) == GH_OK ? GH_OK : gh_oai_oom(e);
}

/* Reads the thinking budget asked for by reasoning {max_tokens} or an effort level (-1 picks the
 * minimum). *budget is 0 when no thinking was asked for. */
static int thinking_budget(gh_oai_err_t *e, json_object *reasoning, json_object *effort,
                           const char *effort_param, int64_t *budget)
{
    json_object *rmax = gh_oai_get(reasoning, "max_tokens");

    *budget = 0;
    if (reasoning != NULL && !json_object_is_type(reasoning, json_type_object))
        return gh_oai_fail(e, "reasoning", "Invalid type for 'reasoning': expected an object.");
    if (rmax != NULL) {
        if (!json_object_is_type(rmax, json_type_int))
            return gh_oai_fail(e, "reasoning.max_tokens",
                               "Invalid type for 'reasoning.max_tokens': expected an integer.");
        *budget = json_object_get_int64(rmax);
        if (*budget == -1)
            *budget = GH_OAI_MIN_THINKING;
        if (*budget < GH_OAI_MIN_THINKING || *budget > 100000000)
            return gh_oai_fail(e, "reasoning.max_tokens",
                               "Invalid value for 'reasoning.max_tokens': Anthropic needs a "
                               "thinking budget of at least %d tokens (-1 picks %d).",
                               GH_OAI_MIN_THINKING, GH_OAI_MIN_THINKING);
        return GH_OK;
    }
    if (effort == NULL)
        return GH_OK;
    if (json_object_is_type(effort, json_type_string))
        for (size_t i = 0; i < GH_ARRAY_LEN(efforts); i++)
            if (strcmp(json_object_get_string(effort), efforts[i].effort) == 0) {
                *budget = efforts[i].budget;
                return GH_OK;
            }
    return gh_oai_fail(e, effort_param,
                       "Invalid value for '%s': expected 'none', 'minimal', 'low', 'medium', "
                       "'high' or 'xhigh'.",
                       effort_param);
}

/* Sets req.thinking from an Anthropic thinking object in the body (passed through), or from
 * reasoning {effort, max_tokens} / a reasoning effort. The budget must stay below max_tokens, so
 * when it does not, the budget is added to *max_tokens: the client's limit stays the room for
 * the visible answer. Thinking forbids temperature and top_k and narrows top_p to 0.95..1, so
 * those are dropped from req when thinking is on. */
int gh_oai_thinking(gh_oai_err_t *e, json_object *body, json_object *req, json_object *effort,
                    const char *effort_param, int64_t *max_tokens)
{
    json_object *native = gh_oai_get(body, "thinking"), *th = NULL, *p;
    int64_t budget = 0;

    if (effort == NULL) {
        effort = gh_oai_get(gh_oai_get(body, "reasoning"), "effort");
        effort_param = "reasoning.effort";
    }
    if (native != NULL) {
        const char *type = gh_oai_get_str(native, "type");
        json_object *b = gh_oai_get(native, "budget_tokens");
        if (type == NULL)
            return gh_oai_fail(e, "thinking", "Missing required parameter: 'thinking.type'.");
        if (b != NULL && json_object_is_type(b, json_type_int))
            budget = json_object_get_int64(b);
        if (strcmp(type, "disabled") == 0)
            budget = 0;
        th = json_object_get(native);
    } else {
        if (thinking_budget(e, gh_oai_get(body, "reasoning"), effort, effort_param, &budget) !=
            GH_OK)
            return GH_ERR;
        if (budget == 0)
            return GH_OK;
        th = json_object_new_object();
        if (th == NULL || gh_oai_add_str(th, "type", "enabled") != GH_OK ||
            gh_oai_add_int(th, "budget_tokens", budget) != GH_OK) {
            json_object_put(th);
            return gh_oai_oom(e);
        }
    }
    if (gh_oai_add(req, "thinking", th) != GH_OK)
        return gh_oai_oom(e);
    /* a budget out of Anthropic's range is left for the upstream to refuse */
    if (budget > 0 && budget <= 100000000 && budget >= *max_tokens)
        *max_tokens += budget;
    if (budget > 0 || (native != NULL && strcmp(gh_oai_get_str(native, "type"), "disabled") != 0)) {
        json_object_object_del(req, "temperature");
        json_object_object_del(req, "top_k");
        p = gh_oai_get(req, "top_p");
        if (p != NULL && json_object_get_double(p) < 0.95)
            json_object_object_del(req, "top_p");
    }
    return GH_OK;
}

/* Sets req.output_format to Anthropic's structured output for a JSON schema (the schema object
 * is shared; OpenAI's name and strict have no counterpart). */
int gh_oai_output_schema(gh_oai_err_t *e, json_object *req, json_object *schema, const char *param)
{
    json_object *of;

    if (schema == NULL || !json_object_is_type(schema, json_type_object))
        return gh_oai_fail(e, param, "Missing required parameter: '%s' (a JSON schema object).",
                           param);
    of = json_object_new_object();
    if (of == NULL || gh_oai_add_str(of, "type", "json_schema") != GH_OK ||
        gh_oai_add_ref(of, "schema", schema) != GH_OK) {
        json_object_put(of);
        return gh_oai_oom(e);
    }
    return gh_oai_add(req, "output_format", of) == GH_OK ? GH_OK : gh_oai_oom(e);
}

/* Copies the Anthropic-only members a client may add to an OpenAI body (see passthrough_keys)
 * into req, unchanged. */
int gh_oai_passthrough(json_object *body, json_object *req)
{
    for (size_t i = 0; i < GH_ARRAY_LEN(passthrough_keys); i++) {
        json_object *v = gh_oai_get(body, passthrough_keys[i]);
        if (v != NULL && gh_oai_add_ref(req, passthrough_keys[i], v) != GH_OK)
            return GH_ERR;
    }
    return GH_OK;
}

/* Converts an OpenAI tools array into req.tools: function tools become {name, description,
 * input_schema} (Chat Completions nests them in "function", the Responses API does not: nested
 * says which), Anthropic's own versioned tool types (web_search_20250305, bash_20250124...) pass
 * through, anything else is refused naming tools[i].type. An empty array adds nothing. */
int gh_oai_tools(gh_oai_err_t *e, int nested, json_object *req, json_object *tools)
{
    char p[GH_OAI_PARAM_MAX];
    json_object *arr;
    size_t n;

    if (tools == NULL)
        return GH_OK;
    if (!json_object_is_type(tools, json_type_array))
        return gh_oai_fail(e, "tools", "Invalid type for 'tools': expected an array.");
    n = json_object_array_length(tools);
    if (n == 0)
        return GH_OK;
    arr = json_object_new_array();
    if (gh_oai_add(req, "tools", arr) != GH_OK)
        return gh_oai_oom(e);
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i);
        const char *type = gh_oai_get_str(t, "type");
        size_t tl = type != NULL ? strlen(type) : 0;
        if (type != NULL && strcmp(type, "function") == 0) {
            json_object *fn = nested ? gh_oai_get(t, "function") : t;
            if (fn == NULL || !json_object_is_type(fn, json_type_object))
                return gh_oai_fail(e, gh_oai_path(p, "tools[%zu].function", i),
                                   "Missing required parameter: 'tools[%zu].function'.", i);
            if (gh_oai_tool_def(e, arr, fn, nested ? gh_oai_get(t, "cache_control") : NULL,
                                nested ? gh_oai_path(p, "tools[%zu].function", i)
                                       : gh_oai_path(p, "tools[%zu]", i)) != GH_OK)
                return GH_ERR;
        } else if (tl > 0 && type[tl - 1] >= '0' && type[tl - 1] <= '9') {
            if (gh_oai_push(arr, json_object_get(t)) != GH_OK)
                return gh_oai_oom(e);
        } else if (nested) {
            return gh_oai_fail(e, gh_oai_path(p, "tools[%zu].type", i),
                               "Invalid value for 'tools[%zu].type': only function tools are "
                               "supported.",
                               i);
        } else {
            return gh_oai_fail(e, gh_oai_path(p, "tools[%zu].type", i),
                               "Invalid value for 'tools[%zu].type': '%s' is not supported; only "
                               "function tools are.",
                               i, type != NULL ? type : "(missing)");
        }
    }
    return GH_OK;
}
