/* test_recorder.c: unit tests of shm.c and recorder.c: publishing, draining, dead writers, a full
 * segment, records crossing fork, and the recorder process's signal protocol. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "gh.h"
#include "recorder.h"
#include "shm.h"
#include "store.h"
#include "usage.h"

/* Monotonic microseconds, the clock slots are stamped with. */
static uint64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Sleeps ms milliseconds. */
static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* A fresh segment and a migrated in-memory database for every test; state owns the db. */
static int setup(void **state)
{
    sqlite3 *db = NULL;

    if (gh_shm_create() != GH_OK)
        return -1;
    if (gh_store_open(":memory:", &db) != GH_OK || gh_store_migrate(db, 0) != GH_OK) {
        gh_store_close(db);
        gh_shm_destroy();
        return -1;
    }
    *state = db;
    return 0;
}

/* Releases what setup made and restores the default stale threshold. */
static int teardown(void **state)
{
    gh_store_close(*state);
    gh_shm_destroy();
    gh_recorder_set_stale_us(0);
    return 0;
}

/* Runs a query that returns one integer. */
static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Runs SQL that must succeed. */
static void exec_ok(sqlite3 *db, const char *sql)
{
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
}

/* Fills r as a plausible finished request with id id; variant changes every field a little. */
static void make_rec(gh_usage_rec_t *r, const char *id, int variant)
{
    char buf[64];

    memset(r, 0, sizeof(*r));
    gh_usage_set(r->request_id, sizeof(r->request_id), id, strlen(id));
    snprintf(r->started_at, sizeof(r->started_at), "2026-01-02T03:04:%02d.%03dZ", variant % 60,
             variant % 1000);
    snprintf(buf, sizeof(buf), "vk_%d", variant);
    gh_usage_set(r->key_id, sizeof(r->key_id), buf, strlen(buf));
    snprintf(r->endpoint, sizeof(r->endpoint), "/v1/messages");
    snprintf(r->model_requested, sizeof(r->model_requested), "claude-sonnet-4-5");
    snprintf(r->provider, sizeof(r->provider), "anthropic");
    snprintf(r->model, sizeof(r->model), "claude-sonnet-4-5-20250929");
    snprintf(r->upstream_request_id, sizeof(r->upstream_request_id), "req_up_%d", variant);
    r->status = 200;
    r->attempts = 1 + variant % 3;
    r->stream = variant % 2;
    r->latency_ms = 100 + variant;
    r->ttft_ms = 10 + variant;
    r->tokens.input = 1000 + variant;
    r->tokens.output = 500 + variant;
    r->tokens.cache_creation = 2000 + variant;
    r->tokens.cache_read = 10000 + variant;
    r->cost_usd = 0.021 + variant / 1e6;
}

/* Publishes count records "<prefix>-<i>", all of which must find a slot. */
static void publish_many(const char *prefix, int count)
{
    gh_usage_rec_t r;
    char id[40];
    int i;

    for (i = 0; i < count; i++) {
        snprintf(id, sizeof(id), "%s-%d", prefix, i);
        make_rec(&r, id, i);
        assert_int_equal(gh_shm_usage_publish(&r), GH_OK);
    }
}

/* Counts slots in state. */
static unsigned count_state(uint32_t state)
{
    unsigned i, n = 0;

    for (i = 0; i < gh_shm->nslots; i++)
        if (atomic_load(&gh_shm->slots[i].state) == state)
            n++;
    return n;
}

/* Finds the slot holding request id (in any state); -1 when none. */
static int find_slot(const char *id)
{
    unsigned i;

    for (i = 0; i < gh_shm->nslots; i++)
        if (strcmp(gh_shm->slots[i].rec.request_id, id) == 0)
            return (int)i;
    return -1;
}

/* Asserts column col of the current row is NULL, or the text want. */
static void assert_text_col(sqlite3_stmt *st, int col, const char *want)
{
    if (want == NULL) {
        assert_int_equal(sqlite3_column_type(st, col), SQLITE_NULL);
        return;
    }
    assert_int_equal(sqlite3_column_type(st, col), SQLITE_TEXT);
    assert_string_equal((const char *)sqlite3_column_text(st, col), want);
}

/* Checks the usage_log row of r->request_id against r, column by column ("" and -1 as NULL). */
static void assert_row(sqlite3 *db, const gh_usage_rec_t *r)
{
    static const char sql[] =
        "SELECT request_id, started_at, key_id, endpoint, model_requested, provider, model,"
        " status, error_type, input_tokens, output_tokens, cache_creation_input_tokens,"
        " cache_read_input_tokens, cost_usd, latency_ms, ttft_ms, attempts, stream,"
        " upstream_request_id, typeof(cost_usd) FROM usage_log WHERE request_id = ?1";
    sqlite3_stmt *st = NULL;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, r->request_id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_text_col(st, 0, r->request_id);
    assert_text_col(st, 1, r->started_at);
    assert_text_col(st, 2, r->key_id[0] ? r->key_id : NULL);
    assert_text_col(st, 3, r->endpoint);
    assert_text_col(st, 4, r->model_requested[0] ? r->model_requested : NULL);
    assert_text_col(st, 5, r->provider[0] ? r->provider : NULL);
    assert_text_col(st, 6, r->model[0] ? r->model : NULL);
    assert_int_equal(sqlite3_column_int64(st, 7), r->status);
    assert_text_col(st, 8, r->error_type[0] ? r->error_type : NULL);
    assert_int_equal(sqlite3_column_int64(st, 9), r->tokens.input);
    assert_int_equal(sqlite3_column_int64(st, 10), r->tokens.output);
    assert_int_equal(sqlite3_column_int64(st, 11), r->tokens.cache_creation);
    assert_int_equal(sqlite3_column_int64(st, 12), r->tokens.cache_read);
    assert_true(sqlite3_column_double(st, 13) == r->cost_usd);
    assert_int_equal(sqlite3_column_int64(st, 14), r->latency_ms);
    if (r->ttft_ms < 0)
        assert_int_equal(sqlite3_column_type(st, 15), SQLITE_NULL);
    else
        assert_int_equal(sqlite3_column_int64(st, 15), r->ttft_ms);
    assert_int_equal(sqlite3_column_int64(st, 16), r->attempts);
    assert_int_equal(sqlite3_column_int64(st, 17), r->stream != 0);
    assert_text_col(st, 18, r->upstream_request_id[0] ? r->upstream_request_id : NULL);
    assert_string_equal((const char *)sqlite3_column_text(st, 19), "real");
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* The segment starts empty and as described. */
static void test_create(void **state)
{
    (void)state;
    assert_non_null(gh_shm);
    assert_int_equal(gh_shm->magic, GH_SHM_MAGIC);
    assert_int_equal(gh_shm->nslots, GH_USAGE_SLOTS);
    assert_int_equal(count_state(GH_SLOT_FREE), GH_USAGE_SLOTS);
    assert_int_equal(atomic_load(&gh_shm->usage_published), 0);
    assert_int_equal(gh_shm_create(), GH_ERR); /* one segment per process tree */
}

/* N records, each field reaching its column; "" and -1 become NULL; a second drain adds
 * nothing. */
static void test_drain_rows(void **state)
{
    sqlite3 *db = *state;
    gh_usage_rec_t recs[5];
    int i;

    make_rec(&recs[0], "req_a", 0);
    make_rec(&recs[1], "req_b", 1);
    /* an unauthenticated request refused before routing */
    recs[1].key_id[0] = '\0';
    recs[1].model_requested[0] = recs[1].provider[0] = recs[1].model[0] = '\0';
    recs[1].upstream_request_id[0] = '\0';
    snprintf(recs[1].error_type, sizeof(recs[1].error_type), "authentication_error");
    recs[1].status = 401;
    recs[1].ttft_ms = -1;
    recs[1].attempts = 0;
    memset(&recs[1].tokens, 0, sizeof(recs[1].tokens));
    recs[1].cost_usd = 0.0;
    make_rec(&recs[2], "req_c", 2);
    snprintf(recs[2].error_type, sizeof(recs[2].error_type), "overloaded_error");
    recs[2].status = 529;
    recs[2].attempts = 3;
    make_rec(&recs[3], "req_d", 3);
    recs[3].tokens.input = INT64_C(5000000000); /* past 32 bits */
    /* non-ASCII survives */
    make_rec(&recs[4], "req_e", 4);
    snprintf(recs[4].model_requested, sizeof(recs[4].model_requested), "mod\xc3\xa8le");
    for (i = 0; i < 5; i++)
        assert_int_equal(gh_shm_usage_publish(&recs[i]), GH_OK);
    assert_int_equal(atomic_load(&gh_shm->usage_published), 5);
    assert_int_equal(count_state(GH_SLOT_READY), 5);

    assert_int_equal(gh_recorder_drain(db), 5);
    assert_int_equal(query_int(db, "SELECT count(*) FROM usage_log"), 5);
    for (i = 0; i < 5; i++)
        assert_row(db, &recs[i]);
    assert_int_equal(count_state(GH_SLOT_FREE), GH_USAGE_SLOTS);
    assert_int_equal(atomic_load(&gh_shm->usage_written), 5);
    /* rows appear in publication order */
    assert_int_equal(query_int(db, "SELECT count(*) FROM usage_log a JOIN usage_log b"
                                   " ON a.id < b.id WHERE a.request_id > b.request_id"),
                     0);

    assert_int_equal(gh_recorder_drain(db), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM usage_log"), 5);
    assert_int_equal(atomic_load(&gh_shm->usage_written), 5);
    /* the daily view sees them */
    assert_int_equal(query_int(db, "SELECT sum(requests) FROM usage_daily"), 5);
    assert_int_equal(query_int(db, "SELECT sum(errors) FROM usage_daily"), 2);
}

/* A slot READY again after its row was committed (the recorder died before freeing it) and the
 * same id published twice both end as one row. */
static void test_no_duplicates(void **state)
{
    sqlite3 *db = *state;
    gh_usage_rec_t r;
    int idx;

    make_rec(&r, "req_dup", 7);
    assert_int_equal(gh_shm_usage_publish(&r), GH_OK);
    assert_int_equal(gh_recorder_drain(db), 1);
    idx = find_slot("req_dup");
    assert_true(idx >= 0);
    assert_int_equal(atomic_load(&gh_shm->slots[idx].state), GH_SLOT_FREE);
    /* the crash: the commit happened, the free did not */
    atomic_store(&gh_shm->slots[idx].state, GH_SLOT_READY);
    assert_int_equal(gh_recorder_drain(db), 0);
    assert_int_equal(atomic_load(&gh_shm->slots[idx].state), GH_SLOT_FREE);
    assert_int_equal(gh_shm_usage_publish(&r), GH_OK);
    assert_int_equal(gh_shm_usage_publish(&r), GH_OK);
    assert_int_equal(gh_recorder_drain(db), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM usage_log WHERE request_id='req_dup'"), 1);
    assert_int_equal(count_state(GH_SLOT_FREE), GH_USAGE_SLOTS);
}

/* Puts slot idx in WRITING as if pid had claimed it age_us ago. */
static void fake_writing(int idx, int32_t pid, uint64_t age_us)
{
    gh_usage_slot_t *s = &gh_shm->slots[idx];

    atomic_store(&s->state, GH_SLOT_WRITING);
    atomic_store(&s->pid, pid);
    atomic_store(&s->claimed_us, pid != 0 ? mono_us() - age_us : 0);
}

/* Returns the pid of a child that has already exited and been reaped. */
static pid_t dead_pid(void)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return pid;
}

/* A WRITING slot is freed only once its writer is dead and the claim is old; a live writer keeps
 * its slot however slow; a slot whose writer never stored its pid is freed much later. */
static void test_dead_writer(void **state)
{
    sqlite3 *db = *state;
    pid_t dead = dead_pid();

    fake_writing(10, (int32_t)dead, 1000000); /* dead, but younger than the default 2 s */
    fake_writing(11, (int32_t)getpid(), 60000000);
    fake_writing(12, (int32_t)dead, 3000000); /* dead and older than 2 s */
    assert_int_equal(gh_recorder_drain(db), 0);
    assert_int_equal(atomic_load(&gh_shm->slots[10].state), GH_SLOT_WRITING);
    assert_int_equal(atomic_load(&gh_shm->slots[11].state), GH_SLOT_WRITING);
    assert_int_equal(atomic_load(&gh_shm->slots[12].state), GH_SLOT_FREE);
    assert_int_equal(atomic_load(&gh_shm->slots[12].pid), 0);

    gh_recorder_set_stale_us(10000); /* 10 ms; 300 ms for a slot without a pid */
    fake_writing(13, 0, 0);
    assert_int_equal(gh_recorder_drain(db), 0);
    assert_int_equal(atomic_load(&gh_shm->slots[10].state), GH_SLOT_FREE);
    assert_int_equal(atomic_load(&gh_shm->slots[11].state), GH_SLOT_WRITING);
    assert_int_equal(atomic_load(&gh_shm->slots[13].state), GH_SLOT_WRITING);
    sleep_ms(50);
    assert_int_equal(gh_recorder_drain(db), 0);
    assert_int_equal(atomic_load(&gh_shm->slots[13].state), GH_SLOT_WRITING);
    sleep_ms(300);
    assert_int_equal(gh_recorder_drain(db), 0);
    assert_int_equal(atomic_load(&gh_shm->slots[13].state), GH_SLOT_FREE);
    assert_int_equal(atomic_load(&gh_shm->slots[11].state), GH_SLOT_WRITING);

    /* the freed slots are usable again; the live writer's slot is not taken */
    atomic_store(&gh_shm->slots[11].state, GH_SLOT_FREE);
    assert_int_equal(count_state(GH_SLOT_FREE), GH_USAGE_SLOTS);
    assert_int_equal(query_int(db, "SELECT count(*) FROM usage_log"), 0);
}

/* With every slot taken, publishing fails at once and counts the loss; draining makes room. */
static void test_full(void **state)
{
    sqlite3 *db = *state;
    gh_usage_rec_t r;

    publish_many("full", GH_USAGE_SLOTS);
    assert_int_equal(count_state(GH_SLOT_READY), GH_USAGE_SLOTS);
    make_rec(&r, "one-too-many", 1);
    assert_int_equal(gh_shm_usage_publish(&r), GH_ERR);
    assert_int_equal(gh_shm_usage_publish(&r), GH_ERR);
    assert_int_equal(atomic_load(&gh_shm->usage_dropped), 2);
    assert_int_equal(atomic_load(&gh_shm->usage_published), GH_USAGE_SLOTS);
    assert_int_equal(gh_recorder_drain(db), GH_USAGE_SLOTS);
    assert_int_equal(query_int(db, "SELECT count(DISTINCT request_id) FROM usage_log"),
                     GH_USAGE_SLOTS);
    assert_int_equal(gh_shm_usage_publish(&r), GH_OK);
    assert_int_equal(gh_recorder_drain(db), 1);
    assert_int_equal(atomic_load(&gh_shm->usage_written), GH_USAGE_SLOTS + 1);
}

/* Records published by forked children reach the parent's drain: several children publish at
 * once while the parent drains, and every record lands exactly once. */
static void test_fork_publishers(void **state)
{
    enum { CHILDREN = 4, EACH = GH_USAGE_SLOTS / 4 - 24 }; /* fits even if nothing drains */
    sqlite3 *db = *state;
    pid_t pids[CHILDREN];
    int i, status, total = 0, live = CHILDREN;

    for (i = 0; i < CHILDREN; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char prefix[16];
            gh_usage_rec_t r;
            char id[40];
            int j;

            snprintf(prefix, sizeof(prefix), "child%d", i);
            for (j = 0; j < EACH; j++) {
                snprintf(id, sizeof(id), "%s-%d", prefix, j);
                make_rec(&r, id, j);
                /* the parent drains meanwhile; a full segment would be a test failure */
                if (gh_shm_usage_publish(&r) != GH_OK)
                    _exit(1);
            }
            _exit(0);
        }
    }
    while (live > 0) {
        int n = gh_recorder_drain(db);

        assert_true(n >= 0);
        total += n;
        for (i = 0; i < CHILDREN; i++) {
            if (pids[i] != 0 && waitpid(pids[i], &status, WNOHANG) == pids[i]) {
                assert_true(WIFEXITED(status));
                assert_int_equal(WEXITSTATUS(status), 0);
                pids[i] = 0;
                live--;
            }
        }
    }
    total += gh_recorder_drain(db);
    assert_int_equal(total, CHILDREN * EACH);
    assert_int_equal(query_int(db, "SELECT count(DISTINCT request_id) FROM usage_log"),
                     CHILDREN * EACH);
    assert_int_equal(query_int(db, "SELECT count(*) FROM usage_log WHERE request_id LIKE"
                                   " 'child3-%' AND input_tokens = 1000 + CAST(substr("
                                   "request_id, 8) AS INTEGER)"),
                     EACH);
    assert_int_equal(atomic_load(&gh_shm->usage_published), CHILDREN * EACH);
    assert_int_equal(atomic_load(&gh_shm->usage_written), CHILDREN * EACH);
    assert_int_equal(atomic_load(&gh_shm->usage_dropped), 0);
}

/* A database that cannot take the batch leaves every record READY for the next drain; a
 * failure part-way through rolls the whole batch back. */
static void test_db_error_retried(void **state)
{
    sqlite3 *db = *state;

    publish_many("retry", 10);
    exec_ok(db, "ALTER TABLE usage_log RENAME TO usage_log_away");
    assert_int_equal(gh_recorder_drain(db), -1);
    assert_int_equal(count_state(GH_SLOT_READY), 10);
    exec_ok(db, "ALTER TABLE usage_log_away RENAME TO usage_log");

    /* the 6th row rolls back the transaction holding the first five */
    exec_ok(db, "CREATE TRIGGER boom BEFORE INSERT ON usage_log WHEN NEW.request_id = 'retry-5'"
                " BEGIN SELECT RAISE(ROLLBACK, 'boom'); END");
    assert_int_equal(gh_recorder_drain(db), -1);
    assert_int_equal(count_state(GH_SLOT_READY), 10);
    assert_int_equal(query_int(db, "SELECT count(*) FROM usage_log"), 0);
    assert_int_equal(sqlite3_get_autocommit(db), 1);
    exec_ok(db, "DROP TRIGGER boom");

    assert_int_equal(gh_recorder_drain(db), 10);
    assert_int_equal(count_state(GH_SLOT_READY), 0);
    assert_int_equal(atomic_load(&gh_shm->usage_written), 10);
}

/* A row the database refuses on its own is dropped (and counted) without holding up the rest. */
static void test_bad_row_dropped(void **state)
{
    sqlite3 *db = *state;

    exec_ok(db, "CREATE TRIGGER refuse BEFORE INSERT ON usage_log WHEN NEW.request_id = 'bad-1'"
                " BEGIN SELECT RAISE(ABORT, 'refused'); END");
    publish_many("bad", 3);
    assert_int_equal(gh_recorder_drain(db), 2);
    assert_int_equal(count_state(GH_SLOT_FREE), GH_USAGE_SLOTS);
    assert_int_equal(query_int(db, "SELECT count(*) FROM usage_log WHERE request_id = 'bad-1'"), 0);
    assert_int_equal(atomic_load(&gh_shm->usage_written), 2);
    assert_int_equal(atomic_load(&gh_shm->usage_dropped), 1);
}

/* Records a worker left incomplete get what a row needs: an id, a start time; NaN cost is 0. */
static void test_repairs(void **state)
{
    sqlite3 *db = *state;
    gh_usage_rec_t r;

    make_rec(&r, "", 1);
    r.started_at[0] = '\0';
    r.cost_usd = NAN;
    assert_int_equal(gh_shm_usage_publish(&r), GH_OK);
    assert_int_equal(gh_shm_usage_publish(&r), GH_OK);
    assert_int_equal(gh_recorder_drain(db), 2);
    assert_int_equal(query_int(db, "SELECT count(DISTINCT request_id) FROM usage_log"
                                   " WHERE request_id LIKE 'req_gh_%'"),
                     2);
    assert_int_equal(query_int(db, "SELECT count(*) FROM usage_log WHERE length(started_at) = 24"
                                   " AND cost_usd = 0.0"),
                     2);
}

/* Ids are "req_gh_" + 24 hex digits and unique, with or without a segment, across fork too. */
static void test_request_ids(void **state)
{
    enum { N = 2000 };
    char(*ids)[40] = calloc(N, sizeof(*ids));
    char child_id[40];
    int i, j, fds[2], status, dups = 0;
    pid_t pid;
    gh_shm_t *saved = gh_shm;

    (void)state;
    assert_non_null(ids);
    for (i = 0; i < N; i++) {
        if (i == N / 2)
            gh_shm = NULL; /* the second half without a segment */
        gh_shm_request_id(ids[i], sizeof(ids[i]));
        assert_int_equal(strlen(ids[i]), 31);
        assert_memory_equal(ids[i], "req_gh_", 7);
        for (j = 7; j < 31; j++)
            assert_non_null(strchr("0123456789abcdef", ids[i][j]));
    }
    /* a child without a segment draws its own random part, so it cannot repeat the parent */
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char id[40];

        gh_shm_request_id(id, sizeof(id));
        _exit(write(fds[1], id, sizeof(id)) == (ssize_t)sizeof(id) ? 0 : 1);
    }
    assert_int_equal(read(fds[0], child_id, sizeof(child_id)), (ssize_t)sizeof(child_id));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(fds[0]);
    close(fds[1]);
    assert_int_equal(strlen(child_id), 31);
    assert_memory_not_equal(child_id + 15, ids[N - 1] + 15, 8);
    gh_shm = saved;
    for (i = 0; i < N; i++)
        for (j = i + 1; j < N; j++)
            dups += strcmp(ids[i], ids[j]) == 0;
    free(ids);
    assert_int_equal(dups, 0);
    assert_int_equal(atomic_load(&gh_shm->request_seq), N / 2);
}

/* The epoch moves on every bump, shared through the segment, and process-local without one. */
static void test_epoch(void **state)
{
    gh_shm_t *saved = gh_shm;
    uint64_t e0, l0;

    (void)state;
    e0 = gh_shm_epoch();
    gh_shm_epoch_bump();
    gh_shm_epoch_bump();
    assert_int_equal(gh_shm_epoch(), e0 + 2);
    assert_int_equal(atomic_load(&gh_shm->config_epoch), e0 + 2);
    gh_shm = NULL;
    l0 = gh_shm_epoch();
    gh_shm_epoch_bump();
    assert_int_equal(gh_shm_epoch(), l0 + 1);
    gh_shm = saved;
    assert_int_equal(gh_shm_epoch(), e0 + 2);
}

/* Without a segment, publishing and draining fail cleanly. */
static void test_no_segment(void **state)
{
    sqlite3 *db = *state;
    gh_shm_t *saved = gh_shm;
    gh_usage_rec_t r;

    make_rec(&r, "nowhere", 1);
    gh_shm = NULL;
    assert_int_equal(gh_shm_usage_publish(&r), GH_ERR);
    assert_int_equal(gh_recorder_drain(db), -1);
    gh_shm = saved;
    assert_int_equal(gh_shm_usage_publish(NULL), GH_ERR);
    assert_int_equal(gh_recorder_drain(NULL), -1);
}

/* The recorder process: keeps recording after SIGTERM (workers may still finish requests), and
 * on SIGUSR1 does a final drain and exits 0 with every record in the file. */
static void test_run_signals(void **state)
{
    char dir[] = "/tmp/gh-recorder-XXXXXX", path[256], side[300];
    sqlite3 *file_db = NULL;
    sigset_t block, old;
    int status;
    pid_t pid;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/gatehouse.db", dir);
    assert_int_equal(gh_store_open(path, &file_db), GH_OK);
    assert_int_equal(gh_store_migrate(file_db, 0), GH_OK);
    gh_store_close(file_db);
    file_db = NULL;

    /* Blocked across fork, as the master does, so no signal can kill the child before it takes
     * them over. */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGUSR1);
    assert_int_equal(sigprocmask(SIG_BLOCK, &block, &old), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(gh_recorder_run(path));
    assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);

    publish_many("run-a", 200);
    sleep_ms(60);
    assert_int_equal(kill(pid, SIGTERM), 0);
    sleep_ms(60);
    assert_int_equal(waitpid(pid, &status, WNOHANG), 0); /* still there after SIGTERM */
    publish_many("run-b", 200);
    sleep_ms(60);
    publish_many("run-c", 50);
    assert_int_equal(kill(pid, SIGUSR1), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    assert_int_equal(count_state(GH_SLOT_FREE), GH_USAGE_SLOTS);
    assert_int_equal(atomic_load(&gh_shm->usage_written), 450);
    assert_int_equal(gh_store_open(path, &file_db), GH_OK);
    assert_int_equal(query_int(file_db, "SELECT count(DISTINCT request_id) FROM usage_log"), 450);
    assert_int_equal(query_int(file_db, "SELECT count(*) FROM usage_log"), 450);
    gh_store_close(file_db);

    unlink(path);
    snprintf(side, sizeof(side), "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", path);
    unlink(side);
    assert_int_equal(rmdir(dir), 0);
}

/* A recorder that cannot open its database says so in its exit status. */
static void test_run_bad_db(void **state)
{
    int status;
    pid_t pid;

    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(gh_recorder_run("/nonexistent-dir-gh/x/gatehouse.db"));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
}

/* Runs every test above, each with a fresh segment and database, after initialising libsodium. */
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_publishers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_db_error_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_row_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repairs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_signals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_bad_db, setup, teardown),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
