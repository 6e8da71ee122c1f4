/* errors.c: Anthropic error answers and gatehouse's own errors in OpenAI's error shape. */
#include <stdio.h>
#include <string.h>

#include "oai_int.h"

#define MAX_RAW_MESSAGE 512 /* bytes of a non-JSON upstream body quoted in the message */

/* Anthropic error types and the OpenAI type and code the SDKs expect for them. */
static const struct {
    const char *anthropic;
    const char *type;
    const char *code;
} type_map[] = {
    {"invalid_request_error", "invalid_request_error", NULL},
    {"authentication_error", "authentication_error", "invalid_api_key"},
    {"permission_error", "permission_error", NULL},
    {"not_found_error", "invalid_request_error", "not_found"},
    {"request_too_large", "invalid_request_error", "request_too_large"},
    {"rate_limit_error", "rate_limit_error", "rate_limit_exceeded"},
    {"billing_error", "insufficient_quota", "insufficient_quota"},
    {"timeout_error", "server_error", "timeout"},
    {"overloaded_error", "server_error", "overloaded"},
    {"api_error", "server_error", NULL},
};

/* Picks the OpenAI error type (and *code, possibly NULL) for an Anthropic error type, or from
 * the HTTP status when the type is unknown or missing. Returns a static string. */
const char *gh_oai_error_type(int status, const char *anthropic_type, const char **code)
{
    *code = NULL;
    if (anthropic_type != NULL)
        for (size_t i = 0; i < GH_ARRAY_LEN(type_map); i++)
            if (strcmp(anthropic_type, type_map[i].anthropic) == 0) {
                *code = type_map[i].code;
                return type_map[i].type;
            }
    switch (status) {
    case 401:
        *code = "invalid_api_key";
        return "authentication_error";
    case 402:
        *code = "insufficient_quota";
        return "insufficient_quota";
    case 403:
        return "permission_error";
    case 404:
        *code = "not_found";
        return "invalid_request_error";
    case 413:
        *code = "request_too_large";
        return "invalid_request_error";
    case 429:
        *code = "rate_limit_exceeded";
        return "rate_limit_error";
    default:
        return status >= 500 || status < 400 ? "server_error" : "invalid_request_error";
    }
}

/* Appends {"error":{"message","type","param","code"}} to out; param and code may be NULL or ""
 * (JSON null). */
static int error_doc(const char *message, const char *type, const char *param, const char *code,
                     gh_buf_t *out)
{
    json_object *doc = json_object_new_object(), *err = json_object_new_object();
    int rc = GH_ERR;

    if (doc == NULL || err == NULL)
        goto done;
    if (gh_oai_add(doc, "error", err) != GH_OK) {
        err = NULL;
        goto done;
    }
    if (gh_oai_add_str(err, "message", message) != GH_OK ||
        gh_oai_add_str(err, "type", type) != GH_OK ||
        (param != NULL && param[0] != '\0' ? gh_oai_add_str(err, "param", param)
                                           : gh_oai_add_null(err, "param")) != GH_OK ||
        (code != NULL && code[0] != '\0' ? gh_oai_add_str(err, "code", code)
                                         : gh_oai_add_null(err, "code")) != GH_OK)
        goto done;
    rc = gh_oai_emit(doc, out);
done:
    json_object_put(doc);
    if (doc == NULL)
        json_object_put(err);
    return rc;
}

/* Builds the OpenAI error body of an error gatehouse makes; see oai.h. */
int gh_oai_error_body(int status, const char *message, const char *param, const char *code,
                      gh_buf_t *out)
{
    const char *dcode;
    const char *type = gh_oai_error_type(status, NULL, &dcode);

    return error_doc(message != NULL ? message : "", type, param, code, out);
}

/* Converts an Anthropic error answer; see oai.h. A JSON body gives its error type and message;
 * anything else is quoted (printable ASCII only, so the result stays valid UTF-8 JSON). */
int gh_oai_error(int status, const char *body, size_t len, gh_buf_t *out)
{
    json_object *doc = gh_oai_parse(body, len);
    json_object *err = gh_oai_get(doc, "error");
    const char *atype = gh_oai_get_str(err, "type"), *msg = gh_oai_get_str(err, "message");
    const char *type, *code;
    char raw[MAX_RAW_MESSAGE + 64];
    int rc;

    if (atype == NULL)
        atype = gh_oai_get_str(doc, "type"); /* a bare {"type": ..., "message": ...} */
    if (msg == NULL)
        msg = gh_oai_get_str(doc, "message");
    type = gh_oai_error_type(status, atype, &code);
    /* Anthropic says "model: NAME" when it does not know the model. */
    if (atype != NULL && strcmp(atype, "not_found_error") == 0 && msg != NULL &&
        strstr(msg, "model") != NULL)
        code = "model_not_found";
    if (msg == NULL) {
        size_t n = 0;
        for (size_t i = 0; body != NULL && i < len && n < MAX_RAW_MESSAGE; i++) {
            unsigned char c = (unsigned char)body[i];
            raw[n++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
        }
        while (n > 0 && raw[n - 1] == ' ')
            n--;
        raw[n] = '\0';
        if (n == 0)
            snprintf(raw, sizeof raw, "The upstream API answered with HTTP status %d.", status);
        msg = raw;
    }
    rc = error_doc(msg, type, NULL, code, out);
    json_object_put(doc);
    return rc;
}
