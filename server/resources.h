/* resources.h: the Message Batches and Files endpoints: forwarded to the provider that holds
 * the resource, owned by the virtual key that created it (another key gets 404). */
#ifndef GH_RESOURCES_H
#define GH_RESOURCES_H

#include "http.h"

/* Answers a request under /v1/messages/batches or /v1/files (path without "/anthropic").
 * Returns 0 when the path is not one of those (the caller answers 404). */
int gh_resources_handle(gh_http_req_t *req, const char *path);

/* The HTTP layer's streaming predicate: 1 for file uploads (POST /v1/files). */
int gh_resources_wants_stream(const gh_http_head_t *head, void *arg);

#endif
