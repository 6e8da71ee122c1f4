/* auth.h: who is calling and what they may use: extracting the virtual key from a request,
 * the worker's in-memory copy of virtual keys and prices, and model allowlists. */
#ifndef GH_AUTH_H
#define GH_AUTH_H

#include <sqlite3.h>
#include <stdint.h>

#include "crypto.h"
#include "http.h"
#include "usage.h"

/* One virtual key as a worker holds it (the secret itself is never known, only its hash). */
typedef struct {
    char id[40];
    char name[128];
    char hash[GH_HASH_HEX_LEN + 1];
    char **models; /* glob patterns; NULL with models_all = every model */
    size_t nmodels;
    int models_all;
    int64_t rpm_limit; /* -1 = none, for every limit */
    int64_t itpm_limit;
    int64_t otpm_limit;
    int64_t max_parallel;
    double budget_usd; /* < 0 = none */
    char budget_period[4];
    int64_t expires_at_ms; /* 0 = never */
    int revoked;
    char force_model[160]; /* "" = none */
    char **alias_from;     /* aliases: alias_from[i] → alias_to[i] */
    char **alias_to;
    size_t naliases;
} gh_vkey_t;

/* Why authentication failed; GH_AUTH_OK when it did not. */
typedef enum {
    GH_AUTH_OK = 0,
    GH_AUTH_MISSING,
    GH_AUTH_UNKNOWN,
    GH_AUTH_REVOKED,
    GH_AUTH_EXPIRED,
} gh_auth_result_t;

/* Finds the credential in x-api-key, "Authorization: Bearer K" or "Authorization: Token K".
 * *key points into the head (not NUL-terminated). Returns GH_OK or GH_ERR when none is present. */
int gh_auth_extract(const gh_http_head_t *h, const char **key, size_t *len);

/* Glob match of a model name against an allowlist pattern ('*', '?', [...]; case-sensitive). */
int gh_auth_glob(const char *pattern, const char *s);

/* 1 when key k may use model (omitted list = all, [] = none). */
int gh_auth_model_allowed(const gh_vkey_t *k, const char *model);

/* Loads (or reloads) every virtual key and every price row from db into this process's cache.
 * On failure the previous cache stays. */
int gh_auth_load(sqlite3 *db);

/* Frees the cache. */
void gh_auth_free(void);

/* Looks a presented secret up by its keyed hash; *out is valid until the next gh_auth_load.
 * Expiry is judged against now_ms. */
gh_auth_result_t gh_auth_lookup(const gh_keys_t *keys, const char *secret, size_t len,
                                int64_t now_ms, const gh_vkey_t **out);

/* The price of model: an exact row, else the longest matching pattern. NULL when unknown. */
const gh_price_t *gh_auth_price(const char *model);

/* Authenticates a client request from its headers at the current time. Returns the result,
 * *vk (the key row when one matched, even revoked or expired) and *msg, the client-facing
 * message for a failure. */
gh_auth_result_t gh_auth_request(const gh_http_head_t *h, const gh_keys_t *keys,
                                 const gh_vkey_t **vk, const char **msg);

/* The alias target of name for key k, or NULL. */
const char *gh_auth_alias(const gh_vkey_t *k, const char *name);

/* The context window of model from its price row (0 when unknown). */
int64_t gh_auth_context_window(const char *model);

/* Number of keys and prices cached (for tests and metrics). */
size_t gh_auth_nkeys(void);
size_t gh_auth_nprices(void);

/* Parses an ISO 8601 UTC timestamp ("2026-01-02T03:04:05Z", fractional seconds and a date alone
 * accepted) into milliseconds since the epoch. Returns GH_OK or GH_ERR. */
int gh_auth_parse_time(const char *s, int64_t *ms);

#endif
