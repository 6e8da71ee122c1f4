/* beta.h: computes the anthropic-beta header sent upstream from the client's header, the features
 * the request body uses and the provider's add/strip policy. */
#ifndef GH_BETA_H
#define GH_BETA_H

#include <stddef.h>

#include "jscan.h"

/* The betas gatehouse adds on its own when a request needs them (Bifrost's table). Passthrough-only
 * betas (skills, context-1m, redact-thinking, interleaved-thinking) are never added. */
#define GH_BETA_COMPUTER_USE_2501 "computer-use-2025-01-24"
#define GH_BETA_COMPUTER_USE_2511 "computer-use-2025-11-24"
#define GH_BETA_STRUCTURED_OUTPUTS "structured-outputs-2025-11-13"
#define GH_BETA_ADVANCED_TOOL_USE "advanced-tool-use-2025-11-20"
#define GH_BETA_MCP_CLIENT "mcp-client-2025-11-20"
#define GH_BETA_PROMPT_CACHING_SCOPE "prompt-caching-scope-2026-01-05"
#define GH_BETA_COMPACT "compact-2026-01-12"
#define GH_BETA_CONTEXT_MANAGEMENT "context-management-2025-06-27"
#define GH_BETA_FILES_API "files-api-2025-04-14"
#define GH_BETA_FAST_MODE "fast-mode-2026-02-01"

/* Flags of gh_beta_header: the request goes to a Files API endpoint. */
#define GH_BETA_FILES_ENDPOINT 1u

/* Computes the anthropic-beta value to send upstream. client is the client's anthropic-beta header
 * value (may be NULL or ""; comma-separated list; kept untouched and first, in order). The body
 * (a JSON object, the Messages/count_tokens request; may be NULL or empty for endpoints without a
 * JSON body) is inspected for features that need a beta; flags say e.g. this is a files endpoint
 * (whose multipart or empty body is then not inspected).
 * Betas the body needs and the client header lacks are appended, then provider policy applies:
 * add[] (always added if missing) and strip[] (removed wherever they came from, for upstreams that
 * refuse them). Tokens are compared trimmed and case-sensitively; nothing is added twice. Writes
 * the resulting value into out (NUL-terminated; "" means send no header); *changed (may be NULL)
 * tells whether it differs from client, so the caller can forward the client's header untouched
 * when it did not. A body that is not a valid JSON object yields the client's header unchanged
 * (the proxy rejects such bodies anyway). Detection only looks inside the few top-level members
 * that matter, so text that merely mentions a feature never triggers it. Returns GH_OK, or GH_ERR
 * when out is too small (out is then "" when outsz > 0). */
int gh_beta_header(const char *client, const char *body, size_t body_len, unsigned flags,
                   const char *const *add, size_t nadd, const char *const *strip, size_t nstrip,
                   char *out, size_t outsz, int *changed);

/* The top-level members gh_beta_header looks at, for callers that scan the body anyway. */
#define GH_BETA_NKEYS 8
extern const char *const gh_beta_keys[GH_BETA_NKEYS];

/* Same as gh_beta_header for a body the caller has already validated with gh_jscan_object, with
 * spans[0..GH_BETA_NKEYS) filled for the keys gh_beta_keys (e.g. appended to the caller's own key
 * list), which saves the scan of the whole body. body or spans NULL means no body. */
int gh_beta_header_scanned(const char *client, const char *body, const gh_jspan_t *spans,
                           unsigned flags, const char *const *add, size_t nadd,
                           const char *const *strip, size_t nstrip, char *out, size_t outsz,
                           int *changed);

#endif
