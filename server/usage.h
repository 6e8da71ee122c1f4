/* usage.h: what one request used: the record a worker publishes, token extraction from
 * Anthropic answers and streams, and cost from per-million-token prices. */
#ifndef GH_USAGE_H
#define GH_USAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t input;          /* usage.input_tokens (excludes cache tokens) */
    int64_t output;         /* usage.output_tokens */
    int64_t cache_creation; /* usage.cache_creation_input_tokens */
    int64_t cache_read;     /* usage.cache_read_input_tokens */
} gh_tokens_t;

typedef struct {
    double input_per_mtok;
    double output_per_mtok;
    double cache_write_per_mtok;
    double cache_read_per_mtok;
} gh_price_t;

/* One usage_log row, fixed-size so it can live in shared memory. Strings are NUL-terminated and
 * truncated to fit. Columns as in DESIGN.md section 7. */
typedef struct {
    char request_id[40];
    char started_at[32]; /* ISO 8601 UTC with milliseconds */
    char key_id[40];     /* "" = no key (unauthenticated) */
    char endpoint[48];
    char model_requested[160];
    char provider[64];
    char model[160];
    char error_type[40]; /* "" = none */
    char upstream_request_id[64];
    int32_t status;
    int32_t attempts;
    int32_t stream;
    int64_t latency_ms;
    int64_t ttft_ms; /* -1 = none */
    gh_tokens_t tokens;
    double cost_usd;
} gh_usage_rec_t;

/* Reads the top-level "usage" object of a non-streamed Messages answer into t (fields left as
 * they are when absent). Returns GH_OK when a usage object was found. */
int gh_usage_from_message(const char *json, size_t len, gh_tokens_t *t);

/* Updates t from one SSE event of a Messages stream: message_start carries message.usage,
 * message_delta carries cumulative usage (any field present replaces the earlier value, so
 * nothing is counted twice). Other events are ignored. Returns GH_OK. */
int gh_usage_from_sse(const char *event, size_t event_len, const char *data, size_t data_len,
                      gh_tokens_t *t);

/* Cost in USD of t at price p: each kind of token at its own rate. */
double gh_usage_cost(const gh_price_t *p, const gh_tokens_t *t);

/* Formats the current UTC time as ISO 8601 with milliseconds ("2026-01-02T03:04:05.678Z"). */
void gh_usage_now_iso(char *out, size_t outsz);

/* Formats unix milliseconds the same way (usage_log's timestamp format). */
void gh_usage_iso(int64_t ms, char *out, size_t outsz);

/* Copies src into a fixed-size record field, truncating and NUL-terminating. */
void gh_usage_set(char *dst, size_t dstsz, const char *src, size_t srclen);

#endif
