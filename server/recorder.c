/* recorder.c: the recorder process: drains usage slots from shared memory into usage_log. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "gh.h"
#include "log.h"
#include "recorder.h"
#include "shm.h"
#include "store.h"
#include "usage.h"

#define GH_REC_STALE_US 2000000u       /* a dead writer's WRITING slot is freed after this */
#define GH_REC_NOPID_FACTOR 30u        /* ... and one whose writer never stored its pid: x30 */
#define GH_REC_TICK_NS 20000000L       /* drain period: 20 ms */
#define GH_REC_IDLE_SCAN_US 1000000u   /* full scan at least this often, even with no publish */
#define GH_REC_BACKOFF_MAX_US 1000000u /* longest wait between retries after a database error */
#define GH_REC_STOP_GRACE_US 10000000u /* after the master's SIGTERM, without SIGUSR1 */
#define GH_REC_FINAL_RETRY_US 5000000u /* how long the last drain retries a failing database */
#define GH_REC_LOG_INTERVAL_US 5000000u

/* One READY slot picked up by a drain. */
typedef struct {
    uint64_t claimed_us;
    uint32_t idx;
    int bad; /* the row itself was refused: free the slot without retrying it */
} gh_rec_item_t;

static const char gh_rec_insert_sql[] =
    "INSERT INTO usage_log (request_id, started_at, key_id, endpoint, model_requested, provider,"
    " model, status, error_type, input_tokens, output_tokens, cache_creation_input_tokens,"
    " cache_read_input_tokens, cost_usd, latency_ms, ttft_ms, attempts, stream,"
    " upstream_request_id)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    " ON CONFLICT(request_id) DO NOTHING";

static uint64_t gh_rec_stale_us = GH_REC_STALE_US;

/* The recorder is one single-threaded process, so its per-drain scratch can be static: the batch
 * being written, and when each slot was first seen WRITING without a pid (0 = not seen). */
static gh_rec_item_t gh_rec_items[GH_USAGE_SLOTS];
static uint64_t gh_rec_nopid_since[GH_USAGE_SLOTS];

/* Rate limit of database error lines: a full disk would otherwise log 50 lines a second. */
static struct {
    uint64_t last_us;
    unsigned long suppressed;
    unsigned long failures; /* failed drains since the last success */
} gh_rec_err;

/* See recorder.h. */
void gh_recorder_set_stale_us(uint64_t us)
{
    gh_rec_stale_us = us != 0 ? us : GH_REC_STALE_US;
}

/* Monotonic microseconds, the clock workers stamp claimed_us with. */
static uint64_t gh_rec_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Logs a failed database call with sqlite's message, at most once per GH_REC_LOG_INTERVAL_US;
 * must run before any ROLLBACK replaces the message. */
static void gh_rec_db_error(sqlite3 *db, const char *call)
{
    uint64_t now = gh_rec_now_us();

    if (gh_rec_err.last_us != 0 && now - gh_rec_err.last_us < GH_REC_LOG_INTERVAL_US) {
        gh_rec_err.suppressed++;
        return;
    }
    if (gh_rec_err.suppressed > 0)
        gh_log_error("%s: %s (and %lu more failures since the last report; records wait in "
                     "shared memory and are retried)",
                     call, sqlite3_errmsg(db), gh_rec_err.suppressed);
    else
        gh_log_error("%s: %s (records wait in shared memory and are retried)", call,
                     sqlite3_errmsg(db));
    gh_rec_err.last_us = now;
    gh_rec_err.suppressed = 0;
}

/* Returns slot to the pool. pid and claimed_us are cleared first so that the next claimer's
 * WRITING state never shows a previous writer's pid (see gh_rec_check_writing). */
static void gh_rec_free_slot(gh_usage_slot_t *s)
{
    atomic_store_explicit(&s->pid, 0, memory_order_relaxed);
    atomic_store_explicit(&s->claimed_us, 0, memory_order_relaxed);
    atomic_store_explicit(&s->state, GH_SLOT_FREE, memory_order_release);
}

/* Frees slot idx when it is stuck in WRITING because its writer died mid-copy. A writer that is
 * merely slow (stopped, swapped out) is alive and keeps its slot. A slot whose pid is still 0 was
 * claimed an instant ago, or its writer died between the claim and storing its pid; only the
 * second stays that way, so it is freed after a much longer wait measured by the recorder. */
static void gh_rec_check_writing(gh_usage_slot_t *s, uint32_t idx, uint64_t now)
{
    int32_t pid = atomic_load_explicit(&s->pid, memory_order_relaxed);
    uint64_t claimed = atomic_load_explicit(&s->claimed_us, memory_order_relaxed);
    uint32_t expected = GH_SLOT_WRITING;

    if (pid <= 0) {
        if (gh_rec_nopid_since[idx] == 0) {
            gh_rec_nopid_since[idx] = now;
            return;
        }
        if (now - gh_rec_nopid_since[idx] <= gh_rec_stale_us * GH_REC_NOPID_FACTOR)
            return;
    } else {
        gh_rec_nopid_since[idx] = 0;
        if (claimed >= now || now - claimed <= gh_rec_stale_us)
            return;
        /* EPERM means the pid exists (someone else's process): keep the slot. */
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            return;
    }
    gh_rec_nopid_since[idx] = 0;
    /* The compare-exchange loses to a writer that finished after all (WRITING -> READY). */
    atomic_store_explicit(&s->claimed_us, 0, memory_order_relaxed);
    atomic_store_explicit(&s->pid, 0, memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&s->state, &expected, GH_SLOT_FREE,
                                                 memory_order_release, memory_order_relaxed))
        return;
    if (pid > 0)
        gh_log_warn("freed usage slot %u left half-written by dead pid %d", idx, (int)pid);
    else
        gh_log_warn("freed usage slot %u claimed by a writer that never finished", idx);
}

/* Orders a batch by publication time, so usage_log ids follow the order requests finished. */
static int gh_rec_item_cmp(const void *a, const void *b)
{
    const gh_rec_item_t *x = a, *y = b;

    if (x->claimed_us != y->claimed_us)
        return x->claimed_us < y->claimed_us ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Binds a text field of the record: "" becomes NULL for nullable columns. The record is read in
 * place (SQLITE_STATIC): a READY slot belongs to the recorder until it frees it. strnlen guards
 * against a writer that left a field unterminated. */
static int gh_rec_bind_text(sqlite3_stmt *st, int col, const char *s, size_t cap, int nullable)
{
    size_t n = strnlen(s, cap);

    if (n == 0 && nullable)
        return sqlite3_bind_null(st, col);
    return sqlite3_bind_text(st, col, s, (int)n, SQLITE_STATIC);
}

/* Binds every column of rec to the insert statement st. Returns an SQLITE_ code. */
static int gh_rec_bind(sqlite3_stmt *st, const gh_usage_rec_t *rec)
{
    double cost = rec->cost_usd;
    int rc = SQLITE_OK;

    /* SQLite stores NaN as NULL, which cost_usd's NOT NULL would refuse. */
    if (!isfinite(cost))
        cost = 0.0;
#define GH_BIND(call)                                                                              \
    do {                                                                                           \
        if (rc == SQLITE_OK)                                                                       \
            rc = (call);                                                                           \
    } while (0)
    GH_BIND(gh_rec_bind_text(st, 1, rec->request_id, sizeof(rec->request_id), 0));
    GH_BIND(gh_rec_bind_text(st, 2, rec->started_at, sizeof(rec->started_at), 0));
    GH_BIND(gh_rec_bind_text(st, 3, rec->key_id, sizeof(rec->key_id), 1));
    GH_BIND(gh_rec_bind_text(st, 4, rec->endpoint, sizeof(rec->endpoint), 0));
    GH_BIND(gh_rec_bind_text(st, 5, rec->model_requested, sizeof(rec->model_requested), 1));
    GH_BIND(gh_rec_bind_text(st, 6, rec->provider, sizeof(rec->provider), 1));
    GH_BIND(gh_rec_bind_text(st, 7, rec->model, sizeof(rec->model), 1));
    GH_BIND(sqlite3_bind_int(st, 8, rec->status));
    GH_BIND(gh_rec_bind_text(st, 9, rec->error_type, sizeof(rec->error_type), 1));
    GH_BIND(sqlite3_bind_int64(st, 10, rec->tokens.input));
    GH_BIND(sqlite3_bind_int64(st, 11, rec->tokens.output));
    GH_BIND(sqlite3_bind_int64(st, 12, rec->tokens.cache_creation));
    GH_BIND(sqlite3_bind_int64(st, 13, rec->tokens.cache_read));
    GH_BIND(sqlite3_bind_double(st, 14, cost));
    GH_BIND(sqlite3_bind_int64(st, 15, rec->latency_ms));
    GH_BIND(rec->ttft_ms < 0 ? sqlite3_bind_null(st, 16)
                             : sqlite3_bind_int64(st, 16, rec->ttft_ms));
    GH_BIND(sqlite3_bind_int(st, 17, rec->attempts));
    GH_BIND(sqlite3_bind_int(st, 18, rec->stream != 0));
    GH_BIND(
        gh_rec_bind_text(st, 19, rec->upstream_request_id, sizeof(rec->upstream_request_id), 1));
#undef GH_BIND
    return rc;
}

/* Fills the two fields a row cannot do without, should a worker have left them empty: an empty
 * request_id would make every such record a duplicate of the first. Written into the slot itself
 * so a retry after a failed transaction uses the same values. */
static void gh_rec_repair(gh_usage_rec_t *rec)
{
    if (rec->request_id[0] == '\0') {
        gh_shm_request_id(rec->request_id, sizeof(rec->request_id));
        gh_log_warn("usage record without request_id; recorded as %s", rec->request_id);
    }
    if (rec->started_at[0] == '\0')
        gh_usage_now_iso(rec->started_at, sizeof(rec->started_at));
}

/* Whether an insert failure is about the row itself (retrying would fail forever and hold up
 * every later record) rather than about the database (full, locked, I/O), which is retried. */
static int gh_rec_row_error(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
        return 1;
    default:
        return 0;
    }
}

/* Inserts one slot's record with the shared statement st. Returns the number of rows it added
 * (0 for a request_id already present), or -1 for a database error that aborts the batch; a row
 * refused on its own is logged and marked bad. */
static int gh_rec_insert_one(sqlite3 *db, sqlite3_stmt *st, gh_rec_item_t *it)
{
    gh_usage_rec_t *rec = &gh_shm->slots[it->idx].rec;
    int src, added = -1;

    gh_rec_repair(rec);
    src = gh_rec_bind(st, rec);
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    if (src == SQLITE_DONE) {
        added = sqlite3_changes(db);
    } else if (gh_rec_row_error(src) && !sqlite3_get_autocommit(db)) {
        /* The statement failed alone; the transaction and the other rows go on. */
        gh_log_error("sqlite3_step(INSERT INTO usage_log) refused record %.*s: %s; dropping it",
                     (int)strnlen(rec->request_id, sizeof(rec->request_id)), rec->request_id,
                     sqlite3_errmsg(db));
        it->bad = 1;
        added = 0;
    } else {
        gh_rec_db_error(db, "sqlite3_step(INSERT INTO usage_log)");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return added;
}

/* Scans every slot: READY ones are collected, WRITING ones checked for a dead writer. Returns
 * how many were collected into gh_rec_items. */
static size_t gh_rec_collect(void)
{
    uint32_t n = gh_shm->nslots, i;
    uint64_t now = gh_rec_now_us();
    size_t nready = 0;

    if (n == 0 || n > GH_USAGE_SLOTS)
        n = GH_USAGE_SLOTS;
    for (i = 0; i < n; i++) {
        gh_usage_slot_t *s = &gh_shm->slots[i];
        /* acquire pairs with the writer's release of READY: the record is complete */
        uint32_t state = atomic_load_explicit(&s->state, memory_order_acquire);

        if (state == GH_SLOT_READY) {
            gh_rec_items[nready].claimed_us =
                atomic_load_explicit(&s->claimed_us, memory_order_relaxed);
            gh_rec_items[nready].idx = i;
            gh_rec_items[nready].bad = 0;
            nready++;
        }
        if (state == GH_SLOT_WRITING)
            gh_rec_check_writing(s, i, now);
        else
            gh_rec_nopid_since[i] = 0;
    }
    return nready;
}

/* See recorder.h. One transaction per drain keeps a busy gateway at one fsync-free commit per
 * 20 ms; slots are freed only after COMMIT, so a crash in between leaves them READY and the next
 * drain's insert skips the rows already there. db is the caller's. */
int gh_recorder_drain(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    char *err = NULL;
    size_t nready, i;
    uint64_t bad = 0;
    int inserted = 0, rc = -1;

    if (gh_shm == NULL || db == NULL) {
        gh_log_error("gh_recorder_drain: no shared-memory segment or database");
        return -1;
    }
    nready = gh_rec_collect();
    if (nready == 0)
        return 0; /* nothing to write says nothing about the database's health */
    qsort(gh_rec_items, nready, sizeof(gh_rec_items[0]), gh_rec_item_cmp);
    if (sqlite3_prepare_v2(db, gh_rec_insert_sql, -1, &st, NULL) != SQLITE_OK) {
        gh_rec_db_error(db, "sqlite3_prepare_v2(INSERT INTO usage_log)");
        goto done;
    }
    /* IMMEDIATE takes the write lock up front, so a busy database fails here (after the busy
     * timeout) instead of half-way through the batch. */
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        gh_rec_db_error(db, "sqlite3_exec(BEGIN IMMEDIATE)");
        goto done;
    }
    for (i = 0; i < nready; i++) {
        int added = gh_rec_insert_one(db, st, &gh_rec_items[i]);

        if (added < 0)
            goto done;
        inserted += added;
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        gh_rec_db_error(db, "sqlite3_exec(COMMIT)");
        goto done;
    }
    for (i = 0; i < nready; i++) {
        bad += (uint64_t)gh_rec_items[i].bad;
        gh_rec_free_slot(&gh_shm->slots[gh_rec_items[i].idx]);
    }
    /* Durably handled records count as written (duplicates included), so that
     * published == written + in flight; refused ones are lost and counted as dropped. */
    atomic_fetch_add(&gh_shm->usage_written, (uint64_t)nready - bad);
    if (bad > 0)
        atomic_fetch_add(&gh_shm->usage_dropped, bad);
    rc = inserted;
done:
    sqlite3_finalize(st);
    if (rc < 0 && !sqlite3_get_autocommit(db) &&
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, &err) != SQLITE_OK) {
        gh_log_error("sqlite3_exec(ROLLBACK): %s", err != NULL ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
    }
    if (rc >= 0 && gh_rec_err.failures > 0) {
        gh_log_info("usage_log writes work again after %lu failed attempts", gh_rec_err.failures);
        gh_rec_err.failures = 0;
        gh_rec_err.last_us = 0;
        gh_rec_err.suppressed = 0;
    } else if (rc < 0) {
        gh_rec_err.failures++;
    }
    return rc;
}

/* Counts the slots in state, for the exit report. */
static unsigned gh_rec_count(uint32_t state)
{
    uint32_t n = gh_shm->nslots, i;
    unsigned c = 0;

    if (n == 0 || n > GH_USAGE_SLOTS)
        n = GH_USAGE_SLOTS;
    for (i = 0; i < n; i++)
        if (atomic_load_explicit(&gh_shm->slots[i].state, memory_order_acquire) == state)
            c++;
    return c;
}

/* Last drain before exit; a failing database gets a few more seconds, since whatever stays in
 * shared memory now is lost. Returns GH_OK when nothing READY was left behind. */
static int gh_rec_final_drain(sqlite3 *db)
{
    uint64_t end = gh_rec_now_us() + GH_REC_FINAL_RETRY_US;
    struct timespec pause = {0, 100000000L};
    unsigned left, writing;

    while (gh_recorder_drain(db) < 0 && gh_rec_now_us() < end)
        nanosleep(&pause, NULL);
    left = gh_rec_count(GH_SLOT_READY);
    writing = gh_rec_count(GH_SLOT_WRITING);
    if (writing > 0)
        gh_log_warn("%u usage records were still being written at exit and are lost", writing);
    if (left > 0) {
        gh_log_error("%u usage records could not be written to usage_log and are lost", left);
        return GH_ERR;
    }
    return GH_OK;
}

/* Sets the dispositions the recorder needs whatever the master left behind: handlers copied
 * from the master would only set the master's flags in this process. */
static void gh_rec_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
}

/* See recorder.h. The stop signals stay blocked and are taken with sigtimedwait, which doubles as
 * the 20 ms sleep: no handler, no race between checking a flag and sleeping. The database
 * connection is opened here, after fork, and closed before returning. */
int gh_recorder_run(const char *db_path)
{
    sigset_t set, old;
    siginfo_t si;
    sqlite3 *db = NULL;
    pid_t master = getppid();
    uint64_t now, deadline = 0, next_try = 0, last_scan = 0, last_pub = 0, backoff;
    int rc = 1, stopping = 0, final = 0, master_gone = 0, force = 1, fails = 0, sig;

    gh_log_set_role("recorder");
    /* The master dying must not strand records: SIGTERM starts the grace period. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
        gh_log_warn("prctl(PR_SET_PDEATHSIG) failed: %s", strerror(errno));
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &set, &old) != 0) {
        gh_log_error("sigprocmask(SIG_BLOCK) failed: %s", strerror(errno));
        return 1;
    }
    gh_rec_signals();
    if (gh_shm == NULL) {
        gh_log_error("gh_recorder_run: no shared-memory segment");
        goto done;
    }
    if (gh_store_open(db_path, &db) != GH_OK)
        goto done;
    gh_log_debug("recording usage into %s", db_path);
    for (;;) {
        struct timespec tick = {0, GH_REC_TICK_NS};

        now = gh_rec_now_us();
        /* Checked as well as PDEATHSIG, which a master dying before prctl would escape. (The
         * master may be pid 1 in a container, so a parent of 1 alone proves nothing.) */
        if (!master_gone && getppid() != master) {
            master_gone = 1;
            stopping = 1;
            if (deadline == 0 || deadline > now + GH_REC_STOP_GRACE_US)
                deadline = now + GH_REC_STOP_GRACE_US;
            gh_log_warn("the master is gone; exiting within %u s", GH_REC_STOP_GRACE_US / 1000000u);
        }
        if (now >= next_try) {
            uint64_t pub = atomic_load(&gh_shm->usage_published);

            /* Read before the scan: a publish completing during the scan changes it, so the
             * next tick scans again. Between publishes a slow scan finds dead writers' slots. */
            if (force || fails > 0 || pub != last_pub || now - last_scan >= GH_REC_IDLE_SCAN_US) {
                last_scan = now;
                if (gh_recorder_drain(db) < 0) {
                    fails++;
                    backoff = (uint64_t)(GH_REC_TICK_NS / 1000) << (fails < 6 ? fails : 6);
                    if (backoff > GH_REC_BACKOFF_MAX_US)
                        backoff = GH_REC_BACKOFF_MAX_US;
                    next_try = now + backoff;
                } else {
                    fails = 0;
                    force = 0;
                    last_pub = pub;
                }
            }
        }
        if (final || (deadline != 0 && now >= deadline))
            break;
        sig = sigtimedwait(&set, &si, &tick);
        if (sig == SIGUSR1) {
            final = 1;
        } else if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
            /* si_code <= 0: sent by a process (kill, sigqueue), not by the terminal driver */
            int from_master = si.si_code <= 0 && si.si_pid == master;

            if (!stopping)
                gh_log_info("signal %d: draining until the workers are gone", sig);
            stopping = 1;
            /* A signal from elsewhere reached the master too, which will send SIGUSR1. */
            if (deadline == 0 && (from_master || master_gone))
                deadline = now + GH_REC_STOP_GRACE_US;
        }
    }
    if (!final)
        gh_log_warn("no word from the master within %u s of the stop; final drain",
                    GH_REC_STOP_GRACE_US / 1000000u);
    rc = gh_rec_final_drain(db) == GH_OK ? 0 : 1;
    gh_log_debug("recorder done: %llu usage records written, %llu dropped",
                 (unsigned long long)atomic_load(&gh_shm->usage_written),
                 (unsigned long long)atomic_load(&gh_shm->usage_dropped));
done:
    gh_store_close(db);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return rc;
}
