/* oai.h: translation between OpenAI's Chat Completions, Responses and legacy completions shapes
 * and Anthropic's Messages (and /v1/complete) API, requests, answers, errors and streams. */
#ifndef GH_OAI_H
#define GH_OAI_H

#include <stddef.h>
#include <time.h>

#include "buf.h"

typedef enum { GH_OAI_CHAT = 0, GH_OAI_RESPONSES, GH_OAI_COMPLETIONS } gh_oai_kind_t;

typedef struct {
    int default_max_tokens; /* used when the request has none; <= 0 means 4096 */
} gh_oai_opts_t;

typedef struct {
    char *body; /* malloc'd Anthropic request JSON (Messages, or /v1/complete for COMPLETIONS) */
    size_t body_len;
    char model[160];   /* the model the client asked for (routing happens later, on this name) */
    int stream;        /* the client asked for a stream */
    int include_usage; /* chat: stream_options.include_usage */
    const char *upstream_path; /* "/v1/messages" or "/v1/complete" (static string) */
} gh_oai_req_t;

typedef struct gh_oai_stream gh_oai_stream_t;

/* Translates an OpenAI request body into out (zeroed first; the caller frees it with
 * gh_oai_req_free, also after GH_ERR). The body's "model" is the client's name; the caller may
 * splice the routed name in. On GH_ERR, *status is the HTTP status to answer (400, or 500 when
 * memory ran out), err holds an OpenAI-style message naming the offending parameter and param
 * the parameter's path ("messages[2].content") or "" when none applies. */
int gh_oai_request(gh_oai_kind_t kind, const char *body, size_t len, const gh_oai_opts_t *opts,
                   gh_oai_req_t *out, int *status, char *err, size_t errsz, char *param,
                   size_t paramsz);

/* Frees what gh_oai_request put in r and zeroes it. */
void gh_oai_req_free(gh_oai_req_t *r);

/* Turns a non-streamed Anthropic answer (Messages, or /v1/complete for COMPLETIONS) into the
 * OpenAI document (chat.completion, response, text_completion), appended to out.
 * model_requested is echoed as "model" (NULL: the upstream's model). GH_ERR when the body is not
 * a JSON answer of the expected shape (answer 502 then) or memory ran out. */
int gh_oai_response(gh_oai_kind_t kind, const char *model_requested, const char *body, size_t len,
                    gh_buf_t *out);

/* Turns an Anthropic error answer (status and body, possibly not JSON) into OpenAI's error shape
 * {"error":{"message","type","param","code"}}, appended to out. The caller answers with the same
 * status. GH_ERR only when memory ran out. */
int gh_oai_error(int status, const char *body, size_t len, gh_buf_t *out);

/* Builds an OpenAI error body for an error gatehouse makes itself: the type follows the status
 * (400 invalid_request_error, 401 authentication_error, 403 permission_error, 404
 * invalid_request_error, 429 rate_limit_error, 5xx server_error...). param and code may be NULL
 * or "" (null in the JSON). */
int gh_oai_error_body(int status, const char *message, const char *param, const char *code,
                      gh_buf_t *out);

/* Starts the translator of one streamed answer (GH_OAI_CHAT or GH_OAI_RESPONSES; the legacy
 * completions API does not stream, so GH_OAI_COMPLETIONS gives NULL). model_requested is echoed
 * as "model" (NULL: the upstream's). include_usage (chat only) adds the usage chunk. NULL when
 * memory ran out. */
gh_oai_stream_t *gh_oai_stream_new(gh_oai_kind_t kind, const char *model_requested,
                                   int include_usage);

/* Feeds one Anthropic SSE event (name and data JSON, as the SSE splitter hands them) and appends
 * the translated SSE text to out: "data: {...}\n\n" for chat, "event: X\ndata: {...}\n\n" for
 * Responses. message_stop closes the OpenAI stream at once (chat: final usage chunk when asked
 * for, then "data: [DONE]"; Responses: response.completed). An Anthropic `error` event becomes
 * an OpenAI error event followed by the closing ("data: [DONE]" / response.failed). Events after
 * the close are ignored. GH_ERR when a known event's data is not valid JSON or memory ran out;
 * the caller should then call gh_oai_stream_finish(s, 1, out) and end the stream. */
int gh_oai_stream_event(gh_oai_stream_t *s, const char *event, size_t event_len, const char *data,
                        size_t data_len, gh_buf_t *out);

/* Appends whatever still has to close the stream, when the upstream stream ended. broken != 0
 * (the upstream broke mid-stream): an error event, then the closing as for an `error` event.
 * broken == 0: the finish chunk if not sent, the usage chunk when asked for, "data: [DONE]"
 * (chat) / response.completed (Responses). Nothing when the stream was already closed. */
int gh_oai_stream_finish(gh_oai_stream_t *s, int broken, gh_buf_t *out);

/* Tells whether the OpenAI stream has been closed (by message_stop, an error or finish). */
int gh_oai_stream_closed(const gh_oai_stream_t *s);

/* Frees the translator (NULL is fine). */
void gh_oai_stream_free(gh_oai_stream_t *s);

/* Test hook: the clock used for "created"/"created_at" (NULL restores time()). */
void gh_oai_set_clock(time_t (*fn)(void));

#endif
