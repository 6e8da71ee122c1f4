/* route.h: model resolution: a key's force_model and aliases, "provider/model" pins,
 * "provider:model?param=v" parameters, and routes (a name → an ordered chain of targets). */
#ifndef GH_ROUTE_H
#define GH_ROUTE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "worker.h"

#define GH_ROUTE_MAX_TARGETS 16
#define GH_MODEL_MAX 160

typedef struct {
    const gh_provider_t *prov;
    char model[GH_MODEL_MAX]; /* what upstream sees */
} gh_target_t;

/* What a request's model name resolved to. */
typedef struct {
    char name[GH_MODEL_MAX]; /* after force_model/aliases, parameters and pin removed */
    char pinned[64];         /* the pinned provider, or "" */
    gh_target_t targets[GH_ROUTE_MAX_TARGETS];
    size_t ntargets;
    char params[1024]; /* JSON members to merge into the body ("\"k\":v,..."), or "" */
    int is_route;
    int enforce_context;
    int64_t max_input_tokens; /* the route's own context window, 0 = from the price row */
} gh_resolved_t;

/* Loads (or reloads) every route with its targets into this process's cache. */
int gh_route_load(sqlite3 *db);
void gh_route_free(void);
size_t gh_route_count(void);

/* Names of the cached routes, for model listings: calls fn for each. */
void gh_route_each(void (*fn)(void *arg, const char *name), void *arg);

/* Resolves the model a client sent. key may be NULL (no rewrites). Returns GH_OK, or GH_ERR with
 * a client-facing message in err (unknown pinned provider, malformed parameters, a route whose
 * providers are all missing). A model that is neither a route nor pinned goes to the default
 * provider (see gh_worker_default_provider). */
int gh_route_resolve(const gh_provset_t *ps, const gh_vkey_t *key, const char *model,
                     gh_resolved_t *out, char *err, size_t errsz);

/* 1 when the key's allowlist admits the resolved request: the name, or for a pinned request
 * either "provider/model" or the bare model. */
int gh_route_allowed(const gh_vkey_t *key, const gh_resolved_t *r);

/* Rewrites a JSON object body: replaces the top-level "model" value with model (when it differs)
 * and sets every member of params (raw "\"k\":v" list), replacing existing ones. Other bytes are
 * copied unchanged. *out is malloc'd; returns GH_OK, or GH_ERR on invalid JSON / no memory. */
int gh_route_rewrite_body(const char *body, size_t len, const char *model, const char *params,
                          char **out, size_t *outlen);

#endif
