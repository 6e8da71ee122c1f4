/* proxy.h: the native relay: forwards an Anthropic API request to a provider byte for byte and
 * relays the answer, streaming event by event. */
#ifndef GH_PROXY_H
#define GH_PROXY_H

#include "http.h"

/* Relays a POST whose JSON body carries "model" (Messages, count_tokens) to upstream_path on the
 * provider. Answers 400 for a body that is not a JSON object or lacks a string "model". */
void gh_proxy_messages(gh_http_req_t *req, const char *upstream_path);

/* Relays an OpenAI-shaped request (kind: gh_oai_kind_t) translated to the Messages API (or
 * /v1/complete), answering in OpenAI's shapes; endpoint names the usage row. */
void gh_proxy_openai(gh_http_req_t *req, int kind, const char *endpoint);

/* Answers an OpenAI operation Anthropic lacks (embeddings, audio, images) with a clear error. */
void gh_proxy_unsupported(gh_http_req_t *req, const char *operation);

/* Header rule: 1 when a client request header may be forwarded upstream (hop-by-hop headers,
 * credentials and framing headers are not). */
int gh_proxy_forward_req_header(const char *name, size_t len);

/* Header rule: 1 when an upstream response header is relayed to the client. */
int gh_proxy_forward_resp_header(const char *name, size_t len);

#endif
