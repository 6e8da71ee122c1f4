/* oai_resources.h: OpenAI's Files and Batch APIs answered over Anthropic's Files and Message
 * Batches, with the same per-key ownership as resources.c. */
#ifndef GH_OAI_RESOURCES_H
#define GH_OAI_RESOURCES_H

#include "http.h"

/* Answers an OpenAI-shaped request: /v1/batches[/{id}[/cancel|/results]] always, and
 * /v1/files[/{id}[/content]] when the request has no anthropic-version header (path without
 * "/anthropic"). Returns 0 when the request is not one of those (the caller goes on routing). */
int gh_oai_resources_handle(gh_http_req_t *req, const char *path);

#endif
