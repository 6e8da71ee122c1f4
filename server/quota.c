/* quota.c: rate windows, concurrency holds, budgets and cooldowns under process-shared locks. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "gh.h"
#include "quota.h"
#include "log.h"

#define GH_LIM_MASK (GH_LIMITS_SLOTS - 1u)
#define GH_LIM_SWEEP_CHUNK 256u
#define GH_LIM_WARN_INTERVAL_US 1000000u
#define GH_LIM_DAY_MS 86400000ll

#if (GH_LIMITS_SLOTS & (GH_LIMITS_SLOTS - 1)) != 0
#error "GH_LIMITS_SLOTS must be a power of two"
#endif

/* The name of an entry. hash 0 marks an empty slot (real hashes are forced nonzero); pid is 0
 * except in the holds table, where one entry is one worker's holds on one entity. */
typedef struct {
    uint32_t hash;
    int32_t kind;
    int32_t pid;
    char id[GH_LIMITS_ID_MAX];
} gh_lim_key_t;

/* One second of a window: v[0] requests, v[1] input tokens, v[2] output tokens. */
typedef struct {
    int64_t sec;
    int64_t v[3];
} gh_lim_bucket_t;

/* A rate window. head is the newest second any caller has shown, so the window never runs
 * backwards when a worker that read the clock earlier takes the lock later. */
typedef struct {
    gh_lim_key_t k;
    int64_t head;
    gh_lim_bucket_t b[GH_LIMITS_WINDOW_S];
} gh_lim_rate_t;

/* In-flight requests of an entity (conc table) or of one pid on an entity (holds table). */
typedef struct {
    gh_lim_key_t k;
    int64_t count;
} gh_lim_conc_t;

/* A key's spend in the period [start_ms, end_ms) of kind period. */
typedef struct {
    gh_lim_key_t k;
    char period[4];
    int64_t start_ms;
    int64_t end_ms;
    double spent;
} gh_lim_budget_t;

/* A provider key cooling down until until_ms. */
typedef struct {
    gh_lim_key_t k;
    int64_t until_ms;
} gh_lim_cool_t;

/* A mutex alone on its cache line, so workers busy on one table do not slow another's. */
typedef struct {
    _Alignas(64) pthread_mutex_t m;
} gh_lim_mutex_t;

/* Tables, as gh_lim_find and friends name them. */
enum { GH_LIM_RATE, GH_LIM_CONC, GH_LIM_HOLD, GH_LIM_BUDGET, GH_LIM_COOL, GH_LIM_NTABS };

/* The segment. The holds table is guarded by the conc mutex, since enter and leave change both. */
struct gh_limits {
    gh_lim_mutex_t mu[GH_LIMITS_NTABLES];
    _Atomic uint64_t refusals[GH_LIMITS_NREASONS];
    _Atomic uint64_t fail_opens;
    uint32_t used[GH_LIM_NTABS]; /* entries in each table */
    gh_lim_rate_t rate[GH_LIMITS_SLOTS];
    gh_lim_conc_t conc[GH_LIMITS_SLOTS];
    gh_lim_conc_t hold[GH_LIMITS_SLOTS];
    gh_lim_budget_t budget[GH_LIMITS_SLOTS];
    gh_lim_cool_t cool[GH_LIMITS_SLOTS];
};

/* Where each table lives in the segment and the size of its entries, so one probe and one delete
 * serve all five. */
static const struct {
    size_t off, stride;
} gh_lim_tabs[GH_LIM_NTABS] = {
    [GH_LIM_RATE] = {offsetof(gh_limits_t, rate), sizeof(gh_lim_rate_t)},
    [GH_LIM_CONC] = {offsetof(gh_limits_t, conc), sizeof(gh_lim_conc_t)},
    [GH_LIM_HOLD] = {offsetof(gh_limits_t, hold), sizeof(gh_lim_conc_t)},
    [GH_LIM_BUDGET] = {offsetof(gh_limits_t, budget), sizeof(gh_lim_budget_t)},
    [GH_LIM_COOL] = {offsetof(gh_limits_t, cool), sizeof(gh_lim_cool_t)},
};

/* What a chunked scan (gh_lim_scan) hands its callback. */
typedef struct {
    int which;
    int64_t now_ms;
    int32_t pid;
    int64_t released;
} gh_lim_scan_t;

gh_limits_t *gh_limits = NULL;

/* Size of the mapping, kept for munmap. */
static size_t gh_limits_size;

static const char *const gh_lim_lock_names[GH_LIMITS_NTABLES] = {"rate", "concurrency", "budget",
                                                                 "cooldown"};

/* Floor division, so times before 1970 (tests, broken clocks) still bucket right. */
static int64_t gh_lim_fdiv(int64_t a, int64_t b)
{
    int64_t q = a / b;

    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Floor modulo: always in [0, b) for b > 0, as bucket indexes must be. */
static int64_t gh_lim_fmod(int64_t a, int64_t b)
{
    return a - gh_lim_fdiv(a, b) * b;
}

/* 1 when a warning may be logged: at most one a second per process, so a full table under load
 * does not also flood the log (the fail-open counter has the total). */
static int gh_lim_warn_ok(void)
{
    static uint64_t last_us;
    struct timespec ts;
    uint64_t now;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    if (last_us != 0 && now - last_us < GH_LIM_WARN_INTERVAL_US)
        return 0;
    last_us = now;
    return 1;
}

/* Counts and logs one call that admits because this module cannot decide; always GH_OK. */
static int gh_lim_fail_open(const char *what, const char *id)
{
    if (gh_limits != NULL)
        atomic_fetch_add_explicit(&gh_limits->fail_opens, 1, memory_order_relaxed);
    if (gh_lim_warn_ok())
        gh_log_warn("limits: %s for '%s': admitting without a limit", what,
                    id != NULL ? id : "(null)");
    return GH_OK;
}

/* Fills k for (kind, id, pid) with its FNV-1a hash. GH_ERR (nothing to track) for a bad kind or
 * an id that is missing, empty or too long. */
static int gh_lim_key(gh_lim_key_t *k, int kind, const char *id, int32_t pid)
{
    uint32_t h = 2166136261u;
    size_t len, i;

    if (id == NULL || kind < GH_LIMITS_KIND_KEY || kind > GH_LIMITS_KIND_PROVIDER_KEY)
        return GH_ERR;
    len = strlen(id);
    if (len == 0 || len >= GH_LIMITS_ID_MAX)
        return GH_ERR;
    memset(k, 0, sizeof(*k));
    k->kind = kind;
    k->pid = pid;
    memcpy(k->id, id, len);
    h = (h ^ (uint32_t)kind) * 16777619u;
    h = (h ^ (uint32_t)pid) * 16777619u;
    for (i = 0; i < len; i++)
        h = (h ^ (unsigned char)id[i]) * 16777619u;
    /* FNV's low bits are weak and the index uses them: fold the high half in. */
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    k->hash = h != 0 ? h : 1;
    return GH_OK;
}

/* The key at the head of slot i of table which. */
static gh_lim_key_t *gh_lim_slot(int which, uint32_t i)
{
    unsigned char *base = (unsigned char *)gh_limits + gh_lim_tabs[which].off;

    return (gh_lim_key_t *)(void *)(base + (size_t)i * gh_lim_tabs[which].stride);
}

/* Finds key's entry by linear probing; with create, inserts a zeroed one when absent. Returns
 * NULL when absent (no create) or when the table is full. The caller holds the table's lock. The
 * probe is bounded even if a process died mid-update and left the table inconsistent. */
static void *gh_lim_find(int which, const gh_lim_key_t *key, int create)
{
    uint32_t *used = &gh_limits->used[which];
    uint32_t i = key->hash & GH_LIM_MASK, n;
    gh_lim_key_t *k = NULL;

    for (n = 0; n < GH_LIMITS_SLOTS; n++, i = (i + 1) & GH_LIM_MASK) {
        k = gh_lim_slot(which, i);
        if (k->hash == 0)
            break;
        if (k->hash == key->hash && k->kind == key->kind && k->pid == key->pid &&
            strcmp(k->id, key->id) == 0)
            return k;
    }
    if (!create || k == NULL || k->hash != 0 || *used >= GH_LIMITS_MAX_USED)
        return NULL;
    memset(k, 0, gh_lim_tabs[which].stride);
    *k = *key;
    (*used)++;
    return k;
}

/* Removes entry e with backward-shift deletion (no tombstones, so probe chains never grow with
 * churn): each later entry of the cluster moves into the hole unless its home lies cyclically
 * between the hole and itself. The caller holds the lock; e's slot may now hold another entry. */
static void gh_lim_delete(int which, void *e)
{
    size_t stride = gh_lim_tabs[which].stride;
    uint32_t i = (uint32_t)(((unsigned char *)e - (unsigned char *)gh_lim_slot(which, 0)) / stride);
    uint32_t j = i, n, home;
    gh_lim_key_t *kj;

    for (n = 0; n < GH_LIMITS_SLOTS; n++) {
        j = (j + 1) & GH_LIM_MASK;
        kj = gh_lim_slot(which, j);
        if (kj->hash == 0)
            break;
        home = kj->hash & GH_LIM_MASK;
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;
        memcpy(gh_lim_slot(which, i), kj, stride);
        i = j;
    }
    memset(gh_lim_slot(which, i), 0, stride);
    if (gh_limits->used[which] > 0)
        gh_limits->used[which]--;
}

/* Takes table's lock. A holder that died (EOWNERDEAD) leaves at most one half-done update of a
 * few counters, which is cheaper to accept than to lose the whole table: mark it consistent and go
 * on. GH_ERR (caller fails open) only when the lock is unusable. */
static int gh_lim_lock(int table)
{
    pthread_mutex_t *m = &gh_limits->mu[table].m;
    int rc = pthread_mutex_lock(m);

    if (rc == EOWNERDEAD) {
        gh_log_warn("limits: a process died holding the %s lock; recovering it",
                    gh_lim_lock_names[table]);
        if ((rc = pthread_mutex_consistent(m)) != 0)
            pthread_mutex_unlock(m);
    }
    if (rc != 0 && gh_lim_warn_ok())
        gh_log_error("limits: locking the %s lock: %s", gh_lim_lock_names[table], strerror(rc));
    return rc == 0 ? GH_OK : GH_ERR;
}

/* Releases table's lock. */
static void gh_lim_unlock(int table)
{
    pthread_mutex_unlock(&gh_limits->mu[table].m);
}

/* Maps the segment; the kernel zeroes it, so every table starts empty and only the mutexes need
 * setting up. The caller (the master, before fork) owns it until gh_limits_destroy. */
int gh_limits_create(void)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t size = sizeof(gh_limits_t);
    pthread_mutexattr_t attr;
    gh_limits_t *p;
    int rc, i;

    if (gh_limits != NULL) {
        gh_log_error("gh_limits_create: a segment already exists");
        return GH_ERR;
    }
    if (page > 0)
        size = (size + (size_t)page - 1) / (size_t)page * (size_t)page;
    /* Pages are only backed once touched: a table's untouched slots cost no memory. */
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gh_log_error("limits: mmap(%zu bytes, MAP_SHARED|MAP_ANONYMOUS): %s", size,
                     strerror(errno));
        return GH_ERR;
    }
    if ((rc = pthread_mutexattr_init(&attr)) == 0) {
        if ((rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)) == 0)
            rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
        for (i = 0; rc == 0 && i < GH_LIMITS_NTABLES; i++)
            rc = pthread_mutex_init(&p->mu[i].m, &attr);
        pthread_mutexattr_destroy(&attr);
    }
    if (rc != 0) {
        gh_log_error("limits: process-shared robust mutexes unavailable: %s", strerror(rc));
        munmap(p, size);
        return GH_ERR;
    }
    gh_limits = p;
    gh_limits_size = size;
    return GH_OK;
}

/* Unmaps this process's view; other processes keep theirs. The mutexes need no destroy: they
 * go with the last mapping. */
void gh_limits_destroy(void)
{
    if (gh_limits == NULL)
        return;
    if (munmap(gh_limits, gh_limits_size) != 0)
        gh_log_error("limits: munmap: %s", strerror(errno));
    gh_limits = NULL;
    gh_limits_size = 0;
}

/* Advances e's clock to now_ms and returns the second the window ends at. A clock stepped back
 * by a whole window or more restarts the window rather than freezing it until time catches up. */
static int64_t gh_lim_rate_clock(gh_lim_rate_t *e, int64_t now_ms)
{
    int64_t s = gh_lim_fdiv(now_ms, 1000);

    if (e->head - s >= GH_LIMITS_WINDOW_S) {
        memset(e->b, 0, sizeof(e->b));
        e->head = s;
    }
    if (s > e->head || e->head == 0)
        e->head = s;
    return e->head;
}

/* The bucket of second sec, emptied first when it still holds an older second. */
static gh_lim_bucket_t *gh_lim_bucket_at(gh_lim_rate_t *e, int64_t sec)
{
    gh_lim_bucket_t *b = &e->b[gh_lim_fmod(sec, GH_LIMITS_WINDOW_S)];

    if (b->sec != sec) {
        memset(b, 0, sizeof(*b));
        b->sec = sec;
    }
    return b;
}

/* Sums the window ending at second end into used[3]; newest[d] is the latest second with a
 * nonzero count of dimension d (INT64_MIN when none). */
static void gh_lim_rate_sum(const gh_lim_rate_t *e, int64_t end, int64_t used[3], int64_t newest[3])
{
    int i, d;

    used[0] = used[1] = used[2] = 0;
    newest[0] = newest[1] = newest[2] = INT64_MIN;
    for (i = 0; i < GH_LIMITS_WINDOW_S; i++) {
        const gh_lim_bucket_t *b = &e->b[i];

        if (b->sec <= end - GH_LIMITS_WINDOW_S || b->sec > end)
            continue;
        for (d = 0; d < 3; d++) {
            if (b->v[d] <= 0)
                continue;
            used[d] += b->v[d];
            if (b->sec > newest[d])
                newest[d] = b->sec;
        }
    }
}

/* 1 when a limit lim with used counted has room for need more (see gh_limits_admit). */
static int gh_lim_fits(int64_t lim, int64_t used, int64_t need)
{
    return lim < 0 || (lim > 0 && (used == 0 || need <= lim - used));
}

/* Seconds until dimension d of e has room for need again: the oldest buckets leave the window
 * first, so walk them until enough has gone (or all of it, for an over-large request). */
static int64_t gh_lim_retry_after(const gh_lim_rate_t *e, int64_t end, int d, int64_t lim,
                                  int64_t used, int64_t need, int64_t now_ms)
{
    int64_t excess = need <= lim ? used + need - lim : used, freed = 0, at = (end + 60) * 1000;
    int64_t s, r;

    if (lim == 0)
        return GH_LIMITS_WINDOW_S;
    for (s = end - GH_LIMITS_WINDOW_S + 1; s <= end; s++) {
        const gh_lim_bucket_t *b = &e->b[gh_lim_fmod(s, GH_LIMITS_WINDOW_S)];

        if (b->sec != s)
            continue;
        freed += b->v[d];
        if (freed >= excess) {
            at = (s + GH_LIMITS_WINDOW_S) * 1000;
            break;
        }
    }
    r = gh_lim_fdiv(at - now_ms + 999, 1000);
    return r < 1 ? 1 : r;
}

/* Sets a view from a limit and what is counted. */
static void gh_lim_view(gh_limit_view_t *v, int64_t lim, int64_t used, int64_t newest,
                        int64_t now_ms)
{
    v->limit = lim < 0 ? -1 : lim;
    v->remaining = lim < 0 ? -1 : used >= lim ? 0 : lim - used;
    v->reset_ms = lim < 0 ? 0 : newest == INT64_MIN ? now_ms : (newest + GH_LIMITS_WINDOW_S) * 1000;
}

/* Checks and counts one admission under the rate lock; the caller owns res and keeps cfg. */
int gh_limits_admit(int kind, const char *id, const gh_limit_cfg_t *cfg, int64_t est_in,
                    int64_t est_out, int64_t now_ms, gh_limit_result_t *res)
{
    gh_limit_result_t scratch, *rs = res != NULL ? res : &scratch;
    gh_limit_view_t *views[3] = {&rs->requests, &rs->input_tokens, &rs->output_tokens};
    int64_t lim[3] = {cfg != NULL ? cfg->rpm : -1, cfg != NULL ? cfg->itpm : -1,
                      cfg != NULL ? cfg->otpm : -1};
    int64_t need[3] = {1, est_in > 0 ? est_in : 0, est_out > 0 ? est_out : 0};
    int64_t used[3] = {0, 0, 0}, newest[3], end, r;
    gh_lim_rate_t *e;
    gh_lim_key_t key;
    int d;

    for (d = 0; d < 3; d++)
        gh_lim_view(views[d], lim[d], 0, INT64_MIN, now_ms);
    rs->limited = GH_LIMITED_NONE;
    rs->retry_after_s = 0;
    rs->admitted_ms = now_ms;
    if (lim[0] < 0 && lim[1] < 0 && lim[2] < 0)
        return GH_OK;
    if (gh_limits == NULL || gh_lim_key(&key, kind, id, 0) != GH_OK)
        return gh_lim_fail_open("no segment or an unusable id", id);
    if (gh_lim_lock(GH_LIMITS_TABLE_RATE) != GH_OK)
        return gh_lim_fail_open("rate lock unusable", id);
    e = gh_lim_find(GH_LIM_RATE, &key, 1);
    if (e == NULL) {
        gh_lim_unlock(GH_LIMITS_TABLE_RATE);
        return gh_lim_fail_open("rate table full", id);
    }
    end = gh_lim_rate_clock(e, now_ms);
    gh_lim_rate_sum(e, end, used, newest);
    for (d = 0; d < 3; d++) {
        if (gh_lim_fits(lim[d], used[d], need[d]))
            continue;
        r = gh_lim_retry_after(e, end, d, lim[d], used[d], need[d], now_ms);
        if (r > rs->retry_after_s)
            rs->retry_after_s = r;
        if (rs->limited == GH_LIMITED_NONE)
            rs->limited = d + 1;
    }
    if (rs->limited == GH_LIMITED_NONE) {
        gh_lim_bucket_t *b = gh_lim_bucket_at(e, end);

        for (d = 0; d < 3; d++) {
            b->v[d] += need[d];
            used[d] += need[d];
            if (need[d] > 0)
                newest[d] = end;
        }
    }
    gh_lim_unlock(GH_LIMITS_TABLE_RATE);
    for (d = 0; d < 3; d++)
        gh_lim_view(views[d], lim[d], used[d], newest[d], now_ms);
    /* Counted in a later second than the caller's clock: settle must find that second. */
    if (end > gh_lim_fdiv(now_ms, 1000))
        rs->admitted_ms = end * 1000;
    return rs->limited == GH_LIMITED_NONE ? GH_OK : GH_ERR;
}

/* Adds delta to a count, never below zero (a cancel or settle may meet a bucket already reset). */
static void gh_lim_add(int64_t *v, int64_t delta)
{
    *v = (delta < 0 && -delta > *v) ? 0 : *v + delta;
}

/* Shared body of settle and cancel: applies delta[3] to the bucket of admitted_ms if it is still
 * in the window; else, with late set, counts the positive part in the current second. */
static void gh_lim_adjust(int kind, const char *id, int64_t admitted_ms, const int64_t delta[3],
                          int late, int64_t now_ms)
{
    int64_t a = gh_lim_fdiv(admitted_ms, 1000), end;
    gh_lim_bucket_t *b;
    gh_lim_rate_t *e;
    gh_lim_key_t key;
    int d;

    if (gh_limits == NULL || gh_lim_key(&key, kind, id, 0) != GH_OK ||
        gh_lim_lock(GH_LIMITS_TABLE_RATE) != GH_OK)
        return;
    /* Absent: never tracked (unlimited or failed open) or swept idle: nothing to true up. */
    e = gh_lim_find(GH_LIM_RATE, &key, 0);
    if (e == NULL)
        goto cleanup;
    end = late ? gh_lim_rate_clock(e, now_ms) : e->head;
    b = &e->b[gh_lim_fmod(a, GH_LIMITS_WINDOW_S)];
    if (b->sec == a && a > end - GH_LIMITS_WINDOW_S) {
        for (d = 0; d < 3; d++)
            gh_lim_add(&b->v[d], delta[d]);
    } else if (late) {
        b = gh_lim_bucket_at(e, end);
        for (d = 1; d < 3; d++)
            if (delta[d] > 0)
                gh_lim_add(&b->v[d], delta[d]);
    }
cleanup:
    gh_lim_unlock(GH_LIMITS_TABLE_RATE);
}

/* Trues up token counts of a finished request; the caller keeps id. */
void gh_limits_settle(int kind, const char *id, int64_t admitted_ms, int64_t est_in,
                      int64_t est_out, int64_t act_in, int64_t act_out, int64_t now_ms)
{
    int64_t delta[3] = {0, (act_in > 0 ? act_in : 0) - (est_in > 0 ? est_in : 0),
                        (act_out > 0 ? act_out : 0) - (est_out > 0 ? est_out : 0)};

    gh_lim_adjust(kind, id, admitted_ms, delta, 1, now_ms);
}

/* Undoes one admission; the caller keeps id. */
void gh_limits_cancel(int kind, const char *id, int64_t admitted_ms, int64_t est_in,
                      int64_t est_out)
{
    int64_t delta[3] = {-1, -(est_in > 0 ? est_in : 0), -(est_out > 0 ? est_out : 0)};

    gh_lim_adjust(kind, id, admitted_ms, delta, 0, 0);
}

/* Takes one hold of (kind, id) for pid under the conc lock: the entity's count and pid's share
 * of it move together, so reap can give back exactly what a dead worker held. */
int gh_limits_enter(int kind, const char *id, int64_t max, int32_t pid)
{
    gh_lim_conc_t *e, *h;
    gh_lim_key_t key, hkey;
    int ret = GH_OK;

    if (max < 0)
        return GH_OK;
    if (gh_limits == NULL || gh_lim_key(&key, kind, id, 0) != GH_OK ||
        gh_lim_key(&hkey, kind, id, pid) != GH_OK)
        return gh_lim_fail_open("no segment or an unusable id", id);
    if (gh_lim_lock(GH_LIMITS_TABLE_CONC) != GH_OK)
        return gh_lim_fail_open("concurrency lock unusable", id);
    e = gh_lim_find(GH_LIM_CONC, &key, 1);
    if (e == NULL) {
        ret = gh_lim_fail_open("concurrency table full", id);
        goto cleanup;
    }
    if (e->count >= max) {
        ret = GH_ERR;
        goto cleanup;
    }
    h = gh_lim_find(GH_LIM_HOLD, &hkey, 1);
    if (h == NULL) {
        ret = gh_lim_fail_open("concurrency holds table full", id);
        goto cleanup;
    }
    h->count++;
    e->count++;
cleanup:
    /* An entity left with nothing in flight (max 0, or no room for the hold) is not kept. */
    if (e != NULL && e->count <= 0)
        gh_lim_delete(GH_LIM_CONC, e);
    gh_lim_unlock(GH_LIMITS_TABLE_CONC);
    return ret;
}

/* Gives back one hold of pid; untracked enters (unlimited, failed open) have none to give. */
void gh_limits_leave(int kind, const char *id, int32_t pid)
{
    gh_lim_conc_t *e, *h;
    gh_lim_key_t key, hkey;

    if (gh_limits == NULL || gh_lim_key(&key, kind, id, 0) != GH_OK ||
        gh_lim_key(&hkey, kind, id, pid) != GH_OK || gh_lim_lock(GH_LIMITS_TABLE_CONC) != GH_OK)
        return;
    h = gh_lim_find(GH_LIM_HOLD, &hkey, 0);
    if (h == NULL)
        goto cleanup;
    if (--h->count <= 0)
        gh_lim_delete(GH_LIM_HOLD, h);
    e = gh_lim_find(GH_LIM_CONC, &key, 0);
    if (e != NULL && --e->count <= 0)
        gh_lim_delete(GH_LIM_CONC, e);
cleanup:
    gh_lim_unlock(GH_LIMITS_TABLE_CONC);
}

/* Visits every entry of table which, taking lock for one chunk of slots at a time so workers
 * never wait long, and deletes those drop() picks; returns how many it deleted. A delete shifts
 * later entries back into the hole, so the same slot is looked at again. */
static int64_t gh_lim_scan(int which, int lock, int (*drop)(gh_lim_key_t *k, gh_lim_scan_t *sc),
                           gh_lim_scan_t *sc)
{
    int64_t dropped = 0;
    uint32_t base, i;

    for (base = 0; base < GH_LIMITS_SLOTS; base += GH_LIM_SWEEP_CHUNK) {
        if (gh_lim_lock(lock) != GH_OK)
            return dropped;
        for (i = base; i < base + GH_LIM_SWEEP_CHUNK; i++) {
            gh_lim_key_t *k = gh_lim_slot(which, i);

            if (k->hash == 0 || !drop(k, sc))
                continue;
            gh_lim_delete(which, k);
            dropped++;
            i--;
        }
        gh_lim_unlock(lock);
    }
    return dropped;
}

/* Scan callback of reap: a hold of the dead pid gives its count back to its entity. */
static int gh_lim_reap_one(gh_lim_key_t *k, gh_lim_scan_t *sc)
{
    gh_lim_conc_t *h = (gh_lim_conc_t *)(void *)k, *e;
    gh_lim_key_t key;

    if (k->pid != sc->pid)
        return 0;
    if (gh_lim_key(&key, k->kind, k->id, 0) == GH_OK &&
        (e = gh_lim_find(GH_LIM_CONC, &key, 0)) != NULL && (e->count -= h->count) <= 0)
        gh_lim_delete(GH_LIM_CONC, e);
    sc->released += h->count;
    return 1;
}

/* Releases every hold of pid. Other workers' deletes may shift an unscanned hold behind the
 * scan, so passes repeat until one finds nothing. */
void gh_limits_reap(int32_t pid)
{
    gh_lim_scan_t sc = {GH_LIM_HOLD, 0, pid, 0};

    if (gh_limits == NULL || pid == 0)
        return;
    while (gh_lim_scan(GH_LIM_HOLD, GH_LIMITS_TABLE_CONC, gh_lim_reap_one, &sc) > 0)
        ;
    if (sc.released > 0)
        gh_log_info("limits: released %" PRId64 " concurrency holds of dead pid %d", sc.released,
                    (int)pid);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t gh_lim_days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = gh_lim_fdiv(y, 400);
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Year and month (1-12) of day z since 1970-01-01 (H. Hinnant's civil_from_days). */
static void gh_lim_civil_from_days(int64_t z, int64_t *y, int64_t *m)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = gh_lim_fdiv(z, 146097);
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

/* Start (next = 0) or end (next = 1) of the period holding now_ms, in unix ms; -1 if unknown. */
static int64_t gh_lim_period(const char *period, int64_t now_ms, int next)
{
    int64_t day = gh_lim_fdiv(now_ms, GH_LIM_DAY_MS), y, m;

    if (period == NULL)
        return -1;
    if (strcmp(period, "1d") == 0)
        return (day + next) * GH_LIM_DAY_MS;
    if (strcmp(period, "1w") == 0) /* 1970-01-01 was a Thursday: Monday is 3 days before */
        return (day - gh_lim_fmod(day + 3, 7) + 7 * next) * GH_LIM_DAY_MS;
    if (strcmp(period, "1M") == 0) {
        gh_lim_civil_from_days(day, &y, &m);
        if (next && ++m > 12) {
            m = 1;
            y++;
        }
        return gh_lim_days_from_civil(y, m, 1) * GH_LIM_DAY_MS;
    }
    return -1;
}

/* The unix ms at which the period holding now_ms began. */
int64_t gh_limits_period_start_ms(const char *period, int64_t now_ms)
{
    return gh_lim_period(period, now_ms, 0);
}

/* The unix ms at which the period holding now_ms ends (the next one's start). */
int64_t gh_limits_period_end_ms(const char *period, int64_t now_ms)
{
    return gh_lim_period(period, now_ms, 1);
}

/* Reads the key's spend for the current period, seeding it outside the lock the first time; the
 * caller owns seed_arg and spent_out. */
int gh_limits_budget_check(const char *key_id, const char *period, double budget, int64_t now_ms,
                           double (*seed)(void *arg, int64_t period_start_ms), void *seed_arg,
                           double *spent_out)
{
    int64_t start = gh_limits_period_start_ms(period, now_ms);
    double spent = 0.0, s;
    gh_lim_budget_t *e;
    gh_lim_key_t key;
    int hit = 0;

    if (spent_out != NULL)
        *spent_out = 0.0;
    if (budget < 0 || isnan(budget))
        return GH_OK;
    if (start < 0 || gh_limits == NULL || gh_lim_key(&key, GH_LIMITS_KIND_KEY, key_id, 0) != GH_OK)
        return gh_lim_fail_open("no segment, an unknown period or an unusable id", key_id);
    if (gh_lim_lock(GH_LIMITS_TABLE_BUDGET) != GH_OK)
        return gh_lim_fail_open("budget lock unusable", key_id);
    e = gh_lim_find(GH_LIM_BUDGET, &key, 0);
    if (e != NULL && e->start_ms == start && strcmp(e->period, period) == 0) {
        spent = e->spent;
        hit = 1;
    }
    gh_lim_unlock(GH_LIMITS_TABLE_BUDGET);
    if (!hit) {
        /* The seed reads SQLite: never under a lock every worker needs. */
        s = seed != NULL ? seed(seed_arg, start) : 0.0;
        if (!(s >= 0.0)) { /* also NaN */
            gh_log_warn("limits: budget seed for '%s' returned %g; counting 0", key_id, s);
            s = 0.0;
        }
        spent = s;
        if (gh_lim_lock(GH_LIMITS_TABLE_BUDGET) != GH_OK)
            return gh_lim_fail_open("budget lock unusable", key_id);
        e = gh_lim_find(GH_LIM_BUDGET, &key, 1);
        if (e == NULL) {
            gh_lim_unlock(GH_LIMITS_TABLE_BUDGET);
            return gh_lim_fail_open("budget table full", key_id);
        }
        if (e->start_ms == start && strcmp(e->period, period) == 0) {
            spent = e->spent; /* another process seeded first: its adds since then count */
        } else if (e->start_ms <= start || strcmp(e->period, period) != 0) {
            /* New entry, a period that rolled over, or a changed period kind. A process whose
             * clock already reads the next period keeps its entry; this one decides on s. */
            snprintf(e->period, sizeof(e->period), "%s", period);
            e->start_ms = start;
            e->end_ms = gh_limits_period_end_ms(period, now_ms);
            e->spent = s;
        }
        gh_lim_unlock(GH_LIMITS_TABLE_BUDGET);
    }
    if (spent_out != NULL)
        *spent_out = spent;
    return spent >= budget ? GH_ERR : GH_OK;
}

/* Adds cost_usd to a seeded period's spend; see quota.h for why an unseeded one drops it. */
void gh_limits_budget_add(const char *key_id, const char *period, double cost_usd, int64_t now_ms)
{
    int64_t start = gh_limits_period_start_ms(period, now_ms);
    gh_lim_budget_t *e;
    gh_lim_key_t key;

    if (!(cost_usd > 0.0) || start < 0 || gh_limits == NULL ||
        gh_lim_key(&key, GH_LIMITS_KIND_KEY, key_id, 0) != GH_OK ||
        gh_lim_lock(GH_LIMITS_TABLE_BUDGET) != GH_OK)
        return;
    e = gh_lim_find(GH_LIM_BUDGET, &key, 0);
    if (e != NULL && e->start_ms == start && strcmp(e->period, period) == 0)
        e->spent += cost_usd;
    gh_lim_unlock(GH_LIMITS_TABLE_BUDGET);
}

/* Names a provider key in the cooldown table. */
static int gh_lim_cool_key(gh_lim_key_t *k, int64_t provider_key_id)
{
    char id[32];

    snprintf(id, sizeof(id), "%" PRId64, provider_key_id);
    return gh_lim_key(k, GH_LIMITS_KIND_PROVIDER_KEY, id, 0);
}

/* Extends a provider key's cooldown; a full table leaves the key in rotation (fail open). */
void gh_limits_cooldown(int64_t provider_key_id, int64_t until_ms)
{
    gh_lim_cool_t *e;
    gh_lim_key_t key;

    if (until_ms <= 0 || gh_limits == NULL || gh_lim_cool_key(&key, provider_key_id) != GH_OK ||
        gh_lim_lock(GH_LIMITS_TABLE_COOLDOWN) != GH_OK)
        return;
    e = gh_lim_find(GH_LIM_COOL, &key, 1);
    if (e != NULL && until_ms > e->until_ms)
        e->until_ms = until_ms;
    gh_lim_unlock(GH_LIMITS_TABLE_COOLDOWN);
    if (e == NULL)
        gh_lim_fail_open("cooldown table full", key.id);
}

/* Ends a provider key's cooldown at once. Called for a key just created: SQLite may hand a new
 * key the id of one deleted a moment ago, and the new key must not inherit that cooldown. */
void gh_limits_cooldown_clear(int64_t provider_key_id)
{
    gh_lim_cool_t *e;
    gh_lim_key_t key;

    if (gh_limits == NULL || gh_lim_cool_key(&key, provider_key_id) != GH_OK ||
        gh_lim_lock(GH_LIMITS_TABLE_COOLDOWN) != GH_OK)
        return;
    e = gh_lim_find(GH_LIM_COOL, &key, 0);
    if (e != NULL)
        e->until_ms = 0;
    gh_lim_unlock(GH_LIMITS_TABLE_COOLDOWN);
}

/* Returns when a provider key's cooldown ends, or 0; an expired entry is dropped on the way. */
int64_t gh_limits_cooldown_until(int64_t provider_key_id, int64_t now_ms)
{
    gh_lim_cool_t *e;
    gh_lim_key_t key;
    int64_t until = 0;

    if (gh_limits == NULL || gh_lim_cool_key(&key, provider_key_id) != GH_OK ||
        gh_lim_lock(GH_LIMITS_TABLE_COOLDOWN) != GH_OK)
        return 0;
    e = gh_lim_find(GH_LIM_COOL, &key, 0);
    if (e != NULL) {
        if (e->until_ms > now_ms)
            until = e->until_ms;
        else
            gh_lim_delete(GH_LIM_COOL, e);
    }
    gh_lim_unlock(GH_LIMITS_TABLE_COOLDOWN);
    return until;
}

/* Scan callback of sweep: 1 when entry k holds nothing worth keeping at sc->now_ms. */
static int gh_lim_idle(gh_lim_key_t *k, gh_lim_scan_t *sc)
{
    int64_t used[3], newest[3], s = gh_lim_fdiv(sc->now_ms, 1000);
    gh_lim_rate_t *e = (gh_lim_rate_t *)(void *)k;

    if (sc->which == GH_LIM_BUDGET)
        return ((gh_lim_budget_t *)(void *)k)->end_ms <= sc->now_ms;
    if (sc->which == GH_LIM_COOL)
        return ((gh_lim_cool_t *)(void *)k)->until_ms <= sc->now_ms;
    gh_lim_rate_sum(e, s > e->head ? s : e->head, used, newest);
    return used[0] == 0 && used[1] == 0 && used[2] == 0;
}

/* Drops idle rate windows, ended budget periods and expired cooldowns. An entry shifted past the
 * scan by a concurrent delete waits for the next sweep, which is harmless. */
void gh_limits_sweep(int64_t now_ms)
{
    gh_lim_scan_t sc = {GH_LIM_RATE, now_ms, 0, 0};

    if (gh_limits == NULL)
        return;
    gh_lim_scan(GH_LIM_RATE, GH_LIMITS_TABLE_RATE, gh_lim_idle, &sc);
    sc.which = GH_LIM_BUDGET;
    gh_lim_scan(GH_LIM_BUDGET, GH_LIMITS_TABLE_BUDGET, gh_lim_idle, &sc);
    sc.which = GH_LIM_COOL;
    gh_lim_scan(GH_LIM_COOL, GH_LIMITS_TABLE_COOLDOWN, gh_lim_idle, &sc);
}

/* Counts one refusal a client saw, by GH_LIMITS_REFUSED_* reason. */
void gh_limits_count_refusal(int reason)
{
    if (gh_limits == NULL || reason < 0 || reason >= GH_LIMITS_NREASONS)
        return;
    atomic_fetch_add_explicit(&gh_limits->refusals[reason], 1, memory_order_relaxed);
}

/* Copies the refusal counters into out (zeros without a segment). */
void gh_limits_stats(uint64_t out[GH_LIMITS_NREASONS])
{
    int i;

    for (i = 0; i < GH_LIMITS_NREASONS; i++)
        out[i] = gh_limits != NULL
                     ? atomic_load_explicit(&gh_limits->refusals[i], memory_order_relaxed)
                     : 0;
}

/* How many calls admitted because the module could not decide (full table, no segment...). */
uint64_t gh_limits_fail_opens(void)
{
    return gh_limits != NULL ? atomic_load_explicit(&gh_limits->fail_opens, memory_order_relaxed)
                             : 0;
}

/* Tests only: takes a table's lock and keeps it (see quota.h). */
int gh_limits_test_lock(int table)
{
    if (gh_limits == NULL || table < 0 || table >= GH_LIMITS_NTABLES)
        return GH_ERR;
    return gh_lim_lock(table);
}
