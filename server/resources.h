/* resources.h: the Message Batches and Files endpoints: forwarded to the provider that holds
 * the resource, owned by the virtual key that created it (another key gets 404). */
#ifndef GH_RESOURCES_H
#define GH_RESOURCES_H

#include <stdint.h>

#include "exchange.h"
#include "http.h"

struct json_object;

/* The accounting of one read of a batch's results (see gh_resources_usage_new). */
typedef struct gh_batch_usage gh_batch_usage_t;

/* Answers a request under /v1/messages/batches or /v1/files (path without "/anthropic").
 * Returns 0 when the path is not one of those (the caller answers 404). */
int gh_resources_handle(gh_http_req_t *req, const char *path);

/* The HTTP layer's streaming predicate: 1 for file uploads (POST /v1/files). */
int gh_resources_wants_stream(const gh_http_head_t *head, void *arg);

/* 1 when key_id owns the batch (is_batch) or file id; provider receives the provider holding
 * it (when the id is known at all). */
int gh_resources_owner(int is_batch, const char *id, const char *key_id, char *provider,
                       size_t provsz);

/* The ids of every batch (is_batch) or file key_id owns, as a JSON object used as a set (for a
 * batch the value is its OpenAI input file id, or null); the caller puts it. */
struct json_object *gh_resources_owned_ids(int is_batch, const char *key_id);

/* Records that key_id owns a new batch (with its number of requests and, in filename, the
 * OpenAI input file it came from, may be NULL) or file (with its filename, may be NULL) held by
 * provider. */
void gh_resources_remember(int is_batch, const char *id, const char *key_id, const char *provider,
                           int64_t nrequests, const char *filename);

/* The OpenAI input file batch_id was created from, into out; GH_ERR when none is recorded. */
int gh_resources_input_file(const char *batch_id, char *out, size_t outsz);

/* Forgets a deleted batch or file. */
void gh_resources_forget(int is_batch, const char *id);

/* Checks every request of the Anthropic batch body in ex->req->body against the key (allowlist,
 * routes, rewrites) and rewrites params.model to what the provider must see (the body is
 * replaced). All requests must land on one provider (*prov); *nrequests gets their number.
 * Answers the refusal itself (in ex->shape) and returns GH_ERR. */
int gh_resources_prepare_batch(gh_exchange_t *ex, const gh_vkey_t *vk, int64_t *nrequests,
                               const gh_provider_t **prov);

/* Starts accounting a read of batch_id's results by key_id: its result lines are fed to
 * gh_resources_usage_line, and once they were read in full gh_resources_usage_done writes the
 * batch's usage (once per batch, at the batch discount, as the Anthropic results route does).
 * NULL when memory ran out. */
gh_batch_usage_t *gh_resources_usage_new(const char *batch_id, const char *key_id);

/* Adds one JSONL result line (without its newline) to the sums. */
void gh_resources_usage_line(gh_batch_usage_t *u, const char *line, size_t len);

/* The results were read in full: writes the usage rows unless the batch was accounted before. */
void gh_resources_usage_done(gh_batch_usage_t *u);

/* Frees the accounting (NULL is fine). */
void gh_resources_usage_free(gh_batch_usage_t *u);

#endif
