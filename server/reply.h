/* reply.h: answers gatehouse makes itself: JSON bodies and errors in the caller's API shape. */
#ifndef GH_REPLY_H
#define GH_REPLY_H

#include "http.h"

typedef enum {
    GH_SHAPE_ANTHROPIC = 0, /* {"type":"error","error":{"type":..,"message":..}} */
    GH_SHAPE_OPENAI,        /* {"error":{"message":..,"type":..,"param":null,"code":..}} */
} gh_shape_t;

/* Answers status with an error body of the given shape. type is Anthropic's error type
 * (invalid_request_error, authentication_error, permission_error, not_found_error,
 * request_too_large, rate_limit_error, api_error, overloaded_error, billing_error, timeout_error);
 * for the OpenAI shape it is mapped to OpenAI's. extra_headers are "Name: v\r\n" lines or NULL.
 * The message is printf-formatted and JSON-escaped here. Finishes the request. */
void gh_reply_error(gh_http_req_t *req, gh_shape_t shape, int status, const char *type,
                    const char *extra_headers, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Builds the error body alone into out (NUL-terminated); returns its length or -1. */
long gh_reply_error_body(char *out, size_t outsz, gh_shape_t shape, const char *type,
                         const char *message);

/* Answers 200 (or status) with a JSON body. */
void gh_reply_json(gh_http_req_t *req, int status, const char *json, size_t len);

#endif
