/* quota.h: rate limits, concurrency caps, budgets and key cooldowns shared by all workers. */

#ifndef GH_QUOTA_H
#define GH_QUOTA_H

#include <limits.h>
#include <stdint.h>

/*
 * Everything lives in one anonymous MAP_SHARED segment that the master maps before fork, so every
 * worker reads and writes the same numbers. Each table (rate windows, concurrency, budgets,
 * cooldowns) is guarded by its own process-shared robust mutex held for a few hundred ns; a
 * process killed while holding one does not wedge the others.
 *
 * Entities are named by a kind and a string id of at most GH_LIMITS_ID_MAX - 1 bytes. A table
 * holds GH_LIMITS_MAX_USED entities (7/8 of GH_LIMITS_SLOTS, so probe chains stay short); when it
 * is full, or when there is no segment, or the id is unusable, every call fails open: the request
 * is admitted, a warning is logged (at most once a second per process) and the fail-open
 * counter moves. Nothing here ever refuses a request because of its own trouble.
 *
 * Time is always passed in as unix milliseconds (now_ms), so tests can inject a clock.
 */

#define GH_LIMITS_SLOTS 8192
#define GH_LIMITS_MAX_USED (GH_LIMITS_SLOTS / 8 * 7)
#define GH_LIMITS_ID_MAX 64
#define GH_LIMITS_WINDOW_S 60

/* Entity kinds. */
#define GH_LIMITS_KIND_KEY 1          /* a virtual key: id "vk_..." */
#define GH_LIMITS_KIND_PROVIDER 2     /* a provider: id is its name */
#define GH_LIMITS_KIND_PROVIDER_KEY 3 /* a provider API key: id is its decimal row id */

/* Which limit refused an admission (gh_limit_result_t.limited). */
#define GH_LIMITED_NONE 0
#define GH_LIMITED_REQUESTS 1
#define GH_LIMITED_INPUT_TOKENS 2
#define GH_LIMITED_OUTPUT_TOKENS 3

/* Refusal reasons counted for /metrics (index into gh_limits_stats' array). */
#define GH_LIMITS_REFUSED_REQUESTS 0    /* requests_rate_limited */
#define GH_LIMITS_REFUSED_TOKENS 1      /* tokens_rate_limited */
#define GH_LIMITS_REFUSED_CONCURRENCY 2 /* concurrency_limited */
#define GH_LIMITS_REFUSED_BUDGET 3      /* budget_exceeded */
#define GH_LIMITS_NREASONS 4

/* Tables, for gh_limits_test_lock. */
#define GH_LIMITS_TABLE_RATE 0
#define GH_LIMITS_TABLE_CONC 1
#define GH_LIMITS_TABLE_BUDGET 2
#define GH_LIMITS_TABLE_COOLDOWN 3
#define GH_LIMITS_NTABLES 4

/* Per-minute limits of one entity, read from its configuration on every call: < 0 = unlimited,
 * 0 = nothing is admitted. */
typedef struct {
    int64_t rpm;  /* requests */
    int64_t itpm; /* input tokens: input + cache creation (cache reads are free, as Buildkite) */
    int64_t otpm; /* output tokens */
} gh_limit_cfg_t;

/* One limit as the anthropic-ratelimit-*-{limit,remaining,reset} headers show it. limit < 0 means
 * unlimited (remaining is then -1 and reset_ms 0: send no header). reset_ms is the unix ms at
 * which everything counted so far has left the window (now_ms when nothing is counted). */
typedef struct {
    int64_t limit;
    int64_t remaining;
    int64_t reset_ms;
} gh_limit_view_t;

/* What an admission decided. retry_after_s (>= 1, refusals only) is when every refused limit has
 * room for this very request again. admitted_ms is the instant the admission was counted at:
 * pass it, not your own clock, to gh_limits_settle and gh_limits_cancel. */
typedef struct {
    gh_limit_view_t requests, input_tokens, output_tokens;
    int limited; /* GH_LIMITED_*: the first refused limit, in the order requests, input, output */
    int64_t retry_after_s;
    int64_t admitted_ms;
} gh_limit_result_t;

/* The segment. Set by gh_limits_create; NULL before (every call then fails open). */
typedef struct gh_limits gh_limits_t;
extern gh_limits_t *gh_limits;

/* Maps the zeroed shared segment and initialises its robust mutexes. The master calls it before
 * forking (tests call it directly); the caller owns it until gh_limits_destroy. */
int gh_limits_create(void);

/* Unmaps this process's view of the segment and sets gh_limits to NULL. */
void gh_limits_destroy(void);

/*
 * Rate limits over a sliding 60-second window of 1-second buckets (the sum of the last 60).
 *
 * gh_limits_admit checks rpm, itpm and otpm of one entity at once and, when all three have room,
 * counts 1 request, est_in input tokens and est_out output tokens; otherwise it counts nothing.
 * A limit has room when used + estimate <= limit; a single request whose estimate alone exceeds a
 * token limit is admitted when that limit's window is empty, or it could never run. Returns
 * GH_OK (admitted) or GH_ERR (refused); res is filled either way. An entity whose three limits
 * are all unlimited is not tracked (its usage is not remembered if limits are set later).
 * Refusals are not counted in the stats here: call gh_limits_count_refusal for the refusal the
 * client actually sees.
 */
int gh_limits_admit(int kind, const char *id, const gh_limit_cfg_t *cfg, int64_t est_in,
                    int64_t est_out, int64_t now_ms, gh_limit_result_t *res);

/* True-up once the usage is known: replaces the estimates with the actual counts in the bucket
 * the admission used (admitted_ms = res.admitted_ms). If that bucket has already left the window
 * (a long stream), the tokens beyond the estimate are counted in the current second (now_ms). */
void gh_limits_settle(int kind, const char *id, int64_t admitted_ms, int64_t est_in,
                      int64_t est_out, int64_t act_in, int64_t act_out, int64_t now_ms);

/* Undoes an admission (e.g. the key admitted but the provider refused): removes 1 request and the
 * estimates from the bucket the admission used, if it is still in the window. */
void gh_limits_cancel(int kind, const char *id, int64_t admitted_ms, int64_t est_in,
                      int64_t est_out);

/*
 * Concurrency: in-flight requests of one entity across all workers, tracked per pid.
 *
 * gh_limits_enter takes one hold for pid unless the entity already has max in flight (GH_ERR);
 * max < 0 = unlimited (nothing is tracked), 0 = refuse all. gh_limits_leave gives one back (a
 * leave without a tracked hold does nothing, so enter/leave pair up even if max changed).
 * gh_limits_reap releases every hold of a dead worker: the master calls it right after waitpid,
 * before the pid can be reused.
 */
int gh_limits_enter(int kind, const char *id, int64_t max, int32_t pid);
void gh_limits_leave(int kind, const char *id, int32_t pid);
void gh_limits_reap(int32_t pid);

/*
 * Budgets of virtual keys per calendar period in UTC: "1d" from 00:00, "1w" from Monday 00:00,
 * "1M" from the 1st 00:00. Period functions return the unix ms of the start of the period holding
 * now_ms (end = start of the next one), or -1 for an unknown period.
 */
int64_t gh_limits_period_start_ms(const char *period, int64_t now_ms);
int64_t gh_limits_period_end_ms(const char *period, int64_t now_ms);

/* Returns GH_ERR when the key has spent >= budget in the current period, else GH_OK; budget < 0 =
 * none (GH_OK, *spent_out 0). The first check of a key in a period calls seed(seed_arg,
 * period_start_ms) outside any lock (the caller sums usage_log.cost_usd since then) and stores
 * the result unless another process stored one first; seed NULL counts as 0. spent_out may be
 * NULL. An unknown period fails open. */
int gh_limits_budget_check(const char *key_id, const char *period, double budget, int64_t now_ms,
                           double (*seed)(void *arg, int64_t period_start_ms), void *seed_arg,
                           double *spent_out);

/* Adds one request's cost to the key's spend for the period holding now_ms (use the timestamp
 * the usage_log row gets). Dropped when that period is not seeded yet: the seed will read the
 * row from SQLite, so a cost is never counted twice (it can be missed only when the row reaches
 * SQLite after a concurrent seed read it: budgets err on admitting). */
void gh_limits_budget_add(const char *key_id, const char *period, double cost_usd, int64_t now_ms);

/* Cooldowns of provider API keys (after a 429): gh_limits_cooldown extends the key's cooldown to
 * until_ms (never shortens it); gh_limits_cooldown_until returns the end of the cooldown, or 0
 * when the key is not cooling at now_ms. */
void gh_limits_cooldown(int64_t provider_key_id, int64_t until_ms);
int64_t gh_limits_cooldown_until(int64_t provider_key_id, int64_t now_ms);
/* Ends provider_key_id's cooldown (a new key may reuse a deleted key's id). */
void gh_limits_cooldown_clear(int64_t provider_key_id);

/* Forgets idle entries (empty windows, ended budget periods, expired cooldowns) so a long-lived
 * master never fills the tables with keys that are gone. Takes each lock for a small chunk at a
 * time. The master calls it now and then (every 10 s is plenty). */
void gh_limits_sweep(int64_t now_ms);

/* Stats for /metrics: refusals by GH_LIMITS_REFUSED_* reason, and how often a call failed open. */
void gh_limits_count_refusal(int reason);
void gh_limits_stats(uint64_t out[GH_LIMITS_NREASONS]);
uint64_t gh_limits_fail_opens(void);

/* Tests only: takes a table's lock (GH_LIMITS_TABLE_*) and keeps it, so a test child can die
 * holding it. Returns GH_OK or GH_ERR. */
int gh_limits_test_lock(int table);

#endif
