/* models.h: GET /v1/models: the models of every provider (fetched from their /v1/models and
 * cached) plus the route names, filtered by the key's allowlist, in a body both the Anthropic
 * and the OpenAI SDKs parse. */
#ifndef GH_MODELS_H
#define GH_MODELS_H

#include "http.h"

/* Answers GET /v1/models (query: limit, after_id, before_id). */
void gh_models_handle(gh_http_req_t *req);

/* Frees the cache and abandons fetches (worker shutdown). */
void gh_models_cleanup(void);

#endif
