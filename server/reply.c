/* reply.c: error and JSON answers produced by gatehouse itself, in Anthropic's or OpenAI's shape.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "gh.h"
#include "jscan.h"
#include "reply.h"

/* OpenAI's error "type" for an Anthropic error type, as the OpenAI SDKs expect them. */
static const char *openai_type(const char *type)
{
    if (strcmp(type, "invalid_request_error") == 0 || strcmp(type, "request_too_large") == 0 ||
        strcmp(type, "not_found_error") == 0)
        return "invalid_request_error";
    if (strcmp(type, "authentication_error") == 0)
        return "authentication_error";
    if (strcmp(type, "permission_error") == 0)
        return "permission_error";
    if (strcmp(type, "rate_limit_error") == 0)
        return "rate_limit_error";
    if (strcmp(type, "billing_error") == 0)
        return "insufficient_quota";
    return "api_error";
}

/* Formats the body of an error; the message is quoted so any text is safe. */
long gh_reply_error_body(char *out, size_t outsz, gh_shape_t shape, const char *type,
                         const char *message)
{
    char quoted[2048];
    long q;
    int n;

    q = gh_json_quote(message, strlen(message), quoted, sizeof(quoted));
    if (q < 0) {
        snprintf(quoted, sizeof(quoted), "\"error message too long\"");
    }
    if (shape == GH_SHAPE_OPENAI)
        n = snprintf(out, outsz,
                     "{\"error\":{\"message\":%s,\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}",
                     quoted, openai_type(type), type);
    else
        n = snprintf(out, outsz, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":%s}}",
                     type, quoted);
    if (n < 0 || (size_t)n >= outsz)
        return -1;
    return n;
}

/* Formats the message, wraps it in the shape and finishes the request. */
void gh_reply_error(gh_http_req_t *req, gh_shape_t shape, int status, const char *type,
                    const char *extra_headers, const char *fmt, ...)
{
    char msg[1024], body[3072], headers[1024];
    va_list ap;
    long n;
    int hn;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    n = gh_reply_error_body(body, sizeof(body), shape, type, msg);
    if (n < 0)
        n = gh_reply_error_body(body, sizeof(body), shape, type, "error");
    hn = snprintf(headers, sizeof(headers), "Content-Type: application/json\r\n%s",
                  extra_headers != NULL ? extra_headers : "");
    if (hn < 0 || (size_t)hn >= sizeof(headers))
        hn = snprintf(headers, sizeof(headers), "Content-Type: application/json\r\n");
    gh_http_respond(req, status, headers, (size_t)hn, body, (size_t)n);
}

/* Answers a JSON document. */
void gh_reply_json(gh_http_req_t *req, int status, const char *json, size_t len)
{
    static const char h[] = "Content-Type: application/json\r\n";
    gh_http_respond(req, status, h, sizeof(h) - 1, json, len);
}
