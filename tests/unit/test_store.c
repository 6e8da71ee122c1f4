/* test_store.c: unit tests of store.c: migrations, the master-key binding, providers, bootstrap. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "crypto.h"
#include "gh.h"
#include "store.h"

/* What each test gets: a migrated in-memory database and random keys; state owns it. */
typedef struct {
    sqlite3 *db;
    gh_keys_t keys;
} fixture_t;

/* Opens and migrates an in-memory database and clears the bootstrap environment. */
static int setup_db(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    unsetenv("ANTHROPIC_API_KEY");
    unsetenv("ANTHROPIC_BASE_URL");
    randombytes_buf(&f->keys, sizeof(f->keys));
    if (gh_store_open(":memory:", &f->db) != GH_OK || gh_store_migrate(f->db, 0) != GH_OK) {
        gh_store_close(f->db);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

/* Closes what setup_db opened. */
static int teardown_db(void **state)
{
    fixture_t *f = *state;

    gh_store_close(f->db);
    free(f);
    unsetenv("ANTHROPIC_API_KEY");
    unsetenv("ANTHROPIC_BASE_URL");
    return 0;
}

/* Runs a query that returns one integer, for assertions. */
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

/* Creates a provider in f's database without asking for its id; keeps the many calls short. */
static int create(fixture_t *f, const char *name, const char *url, int timeout_ms,
                  const char *const *secrets, const int *weights, size_t n)
{
    return gh_store_provider_create(f->db, &f->keys, name, url, timeout_ms, secrets, weights, n,
                                    NULL);
}

/* Returns the version of the newest embedded migration. */
static int latest_version(void)
{
    assert_true(gh_migrations_count > 0);
    return gh_migrations[gh_migrations_count - 1].version;
}

/* Migrations reach the newest version, and running them again changes nothing. */
static void test_migrate_latest_and_idempotent(void **state)
{
    sqlite3 *db = NULL;
    int changes;

    (void)state;
    assert_int_equal(gh_store_open(":memory:", &db), GH_OK);
    assert_int_equal(gh_store_version(db), 0);
    assert_int_equal(gh_store_migrate(db, 0), GH_OK);
    assert_int_equal(gh_store_version(db), latest_version());
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                                   "name IN ('meta', 'providers', 'provider_keys')"),
                     3);
    /* A second run changes nothing at all. */
    changes = sqlite3_total_changes(db);
    assert_int_equal(gh_store_migrate(db, 0), GH_OK);
    assert_int_equal(gh_store_version(db), latest_version());
    assert_int_equal(sqlite3_total_changes(db), changes);
    /* Foreign keys are on for the connection. */
    assert_int_equal(query_int(db, "PRAGMA foreign_keys"), 1);
    gh_store_close(db);
}

/* upto stops at the version asked for; a later call goes on from there. */
static void test_migrate_upto(void **state)
{
    sqlite3 *db = NULL;
    int first = gh_migrations[0].version;

    (void)state;
    assert_int_equal(gh_store_open(":memory:", &db), GH_OK);
    assert_int_equal(gh_store_migrate(db, first), GH_OK);
    assert_int_equal(gh_store_version(db), first);
    /* Asking for a version already reached does nothing; it never goes back. */
    assert_int_equal(gh_store_migrate(db, first), GH_OK);
    assert_int_equal(gh_store_version(db), first);
    /* From there, the rest is applied. */
    assert_int_equal(gh_store_migrate(db, 0), GH_OK);
    assert_int_equal(gh_store_version(db), latest_version());
    assert_int_equal(gh_store_migrate(db, -1), GH_ERR);
    gh_store_close(db);
}

/* Each level upgrades to the next with the data of the previous one intact: a level-1 database
 * holding a provider becomes a level-2 database with the same provider and the new tables. */
static void test_upgrade_keeps_data(void **state)
{
    sqlite3 *db = NULL;
    int v;

    (void)state;
    assert_int_equal(gh_store_open(":memory:", &db), GH_OK);
    for (v = 1; v < latest_version(); v++) {
        char sql[160];
        assert_int_equal(gh_store_migrate(db, v), GH_OK);
        assert_int_equal(gh_store_version(db), v);
        snprintf(sql, sizeof(sql),
                 "INSERT INTO providers (name, base_url) VALUES ('p%d', 'http://h%d')", v, v);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(gh_store_migrate(db, v + 1), GH_OK);
        assert_int_equal(gh_store_version(db), v + 1);
        assert_int_equal(query_int(db, "SELECT count(*) FROM providers"), v);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM providers WHERE base_url = 'http://h%d'",
                 v);
        assert_int_equal(query_int(db, sql), 1);
    }
    /* level 2 brought the governance tables, the seeded prices and the daily view */
    assert_true(query_int(db, "SELECT count(*) FROM model_prices") >= 10);
    assert_int_equal(query_int(db, "SELECT count(*) FROM usage_daily"), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM virtual_keys"), 0);
    gh_store_close(db);
}

/* A database from a newer gatehouse (higher user_version) is refused untouched. */
static void test_migrate_refuses_newer_db(void **state)
{
    char sql[64];
    sqlite3 *db = NULL;

    (void)state;
    assert_int_equal(gh_store_open(":memory:", &db), GH_OK);
    snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", latest_version() + 1);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(gh_store_migrate(db, 0), GH_ERR);
    assert_int_equal(gh_store_version(db), latest_version() + 1);
    gh_store_close(db);
}

/* A migration that fails is rolled back whole: no table of it remains and the version stays. */
static void test_migrate_failure_rolls_back(void **state)
{
    sqlite3 *db = NULL;

    (void)state;
    assert_int_equal(gh_store_open(":memory:", &db), GH_OK);
    /* A table in the way makes migration 1 fail after it has created others. */
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE provider_keys (x)", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(gh_store_migrate(db, 0), GH_ERR);
    assert_int_equal(gh_store_version(db), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN ('meta', "
                                   "'providers')"),
                     0);
    assert_int_not_equal(sqlite3_get_autocommit(db), 0);
    gh_store_close(db);
}

/* Providers with weighted keys come back from the database exactly, keys decrypted. */
static void test_provider_round_trip(void **state)
{
    fixture_t *f = *state;
    const char *secrets[] = {"sk-ant-api03-first-key-AAAA", "sk-ant-api03-second-key-BBBB"};
    const int weights[] = {3, 1};
    gh_provider_t *p = NULL;
    size_t n = 0;
    int64_t id = 0;

    assert_int_equal(gh_store_provider_create(f->db, &f->keys, "primary", "https://up.example/v0//",
                                              1234, secrets, weights, 2, &id),
                     GH_OK);
    assert_true(id > 0);
    assert_int_equal(gh_store_providers_load(f->db, &f->keys, &p, &n), GH_OK);
    assert_int_equal(n, 1);
    assert_int_equal(p[0].id, id);
    assert_string_equal(p[0].name, "primary");
    assert_string_equal(p[0].base_url, "https://up.example/v0");
    assert_int_equal(p[0].timeout_ms, 1234);
    assert_int_equal(p[0].nkeys, 2);
    assert_string_equal(p[0].keys[0].secret, secrets[0]);
    assert_string_equal(p[0].keys[0].last4, "AAAA");
    assert_int_equal(p[0].keys[0].weight, 3);
    assert_string_equal(p[0].keys[1].secret, secrets[1]);
    assert_string_equal(p[0].keys[1].last4, "BBBB");
    assert_int_equal(p[0].keys[1].weight, 1);
    assert_true(p[0].keys[0].id < p[0].keys[1].id);
    gh_store_providers_free(p, n);

    /* A second provider loads after the first; timeout 0 means the default. */
    assert_int_equal(gh_store_provider_create(f->db, &f->keys, "second.backup-1", "http://h:1", 0,
                                              secrets, NULL, 1, &id),
                     GH_OK);
    assert_int_equal(gh_store_providers_load(f->db, &f->keys, &p, &n), GH_OK);
    assert_int_equal(n, 2);
    assert_string_equal(p[1].name, "second.backup-1");
    assert_int_equal(p[1].timeout_ms, GH_DEFAULT_UPSTREAM_TIMEOUT_MS);
    assert_int_equal(p[1].nkeys, 1);
    assert_int_equal(p[1].keys[0].weight, 1);
    gh_store_providers_free(p, n);

    /* Another master key cannot load them. */
    {
        gh_keys_t other;

        randombytes_buf(&other, sizeof(other));
        assert_int_equal(gh_store_providers_load(f->db, &other, &p, &n), GH_ERR);
        assert_null(p);
        assert_int_equal(n, 0);
    }
}

/* Loading an empty providers table gives no array and a count of zero. */
static void test_provider_load_empty(void **state)
{
    fixture_t *f = *state;
    gh_provider_t *p = (gh_provider_t *)f;
    size_t n = 7;

    assert_int_equal(gh_store_providers_load(f->db, &f->keys, &p, &n), GH_OK);
    assert_null(p);
    assert_int_equal(n, 0);
    gh_store_providers_free(p, n);
}

/* Bad names, URLs, timeouts, keys and weights are refused, and duplicates roll back. */
static void test_provider_validation(void **state)
{
    fixture_t *f = *state;
    const char *one[] = {"sk-one"};
    const char *bad_key[] = {"sk-one\r\nx-evil: 1"};
    const char *empty_key[] = {""};
    const int zero_weight[] = {0};

    assert_int_equal(create(f, "", "https://a", 0, one, NULL, 1), GH_ERR);
    assert_int_equal(create(f, "a/b", "https://a", 0, one, NULL, 1), GH_ERR);
    assert_int_equal(create(f, "a b", "https://a", 0, one, NULL, 1), GH_ERR);
    assert_int_equal(create(f, "a", "ftp://a", 0, one, NULL, 1), GH_ERR);
    assert_int_equal(create(f, "a", "api.example.com", 0, one, NULL, 1), GH_ERR);
    assert_int_equal(create(f, "a", "https://", 0, one, NULL, 1), GH_ERR);
    assert_int_equal(create(f, "a", "https:///", 0, one, NULL, 1), GH_ERR);
    assert_int_equal(create(f, "a", "https://a b", 0, one, NULL, 1), GH_ERR);
    assert_int_equal(create(f, "a", "https://a", -1, one, NULL, 1), GH_ERR);
    assert_int_equal(create(f, "a", "https://a", 0, one, NULL, 0), GH_ERR);
    assert_int_equal(create(f, "a", "https://a", 0, one, zero_weight, 1), GH_ERR);
    assert_int_equal(create(f, "a", "https://a", 0, empty_key, NULL, 1), GH_ERR);
    assert_int_equal(create(f, "a", "https://a", 0, bad_key, NULL, 1), GH_ERR);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM providers"), 0);

    /* A duplicate name is refused and leaves no half-created rows behind. */
    assert_int_equal(create(f, "a", "HTTPS://a", 0, one, NULL, 1), GH_OK);
    assert_int_equal(create(f, "a", "https://b", 0, one, NULL, 1), GH_ERR);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM providers"), 1);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM provider_keys"), 1);
    /* The connection is usable afterwards: no transaction was left open. */
    assert_int_not_equal(sqlite3_get_autocommit(f->db), 0);
}

/* The stored key_sealed blob does not contain the plaintext key. */
static void test_sealed_blob_hides_plaintext(void **state)
{
    fixture_t *f = *state;
    const char *secrets[] = {"test-provider-secret-value-1234"};
    sqlite3_stmt *st = NULL;
    const void *blob;
    int len;

    assert_int_equal(create(f, "p", "https://a", 0, secrets, NULL, 1), GH_OK);
    assert_int_equal(
        sqlite3_prepare_v2(f->db, "SELECT key_sealed, key_last4 FROM provider_keys", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_type(st, 0), SQLITE_BLOB);
    blob = sqlite3_column_blob(st, 0);
    len = sqlite3_column_bytes(st, 0);
    assert_non_null(blob);
    assert_null(memmem(blob, (size_t)len, secrets[0], strlen(secrets[0])));
    assert_null(memmem(blob, (size_t)len, "very-secret", 11));
    assert_string_equal((const char *)sqlite3_column_text(st, 1), "1234");
    sqlite3_finalize(st);
}

/* ANTHROPIC_API_KEY creates provider anthropic once; without it nothing is created. */
static void test_bootstrap(void **state)
{
    fixture_t *f = *state;
    gh_provider_t *p = NULL;
    size_t n = 0;

    /* Without ANTHROPIC_API_KEY nothing happens. */
    assert_int_equal(gh_store_bootstrap(f->db, &f->keys), GH_OK);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM providers"), 0);

    assert_int_equal(setenv("ANTHROPIC_API_KEY", "sk-ant-bootstrap-key-9876", 1), 0);
    assert_int_equal(setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9999/", 1), 0);
    assert_int_equal(gh_store_bootstrap(f->db, &f->keys), GH_OK);
    assert_int_equal(gh_store_bootstrap(f->db, &f->keys), GH_OK);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM providers"), 1);
    assert_int_equal(gh_store_providers_load(f->db, &f->keys, &p, &n), GH_OK);
    assert_int_equal(n, 1);
    assert_string_equal(p[0].name, "anthropic");
    assert_string_equal(p[0].base_url, "http://127.0.0.1:9999");
    assert_int_equal(p[0].timeout_ms, GH_DEFAULT_UPSTREAM_TIMEOUT_MS);
    assert_int_equal(p[0].nkeys, 1);
    assert_string_equal(p[0].keys[0].secret, "sk-ant-bootstrap-key-9876");
    assert_string_equal(p[0].keys[0].last4, "9876");
    assert_int_equal(p[0].keys[0].weight, 1);
    gh_store_providers_free(p, n);
}

/* Without ANTHROPIC_BASE_URL the bootstrapped provider uses the default URL. */
static void test_bootstrap_default_url(void **state)
{
    fixture_t *f = *state;
    gh_provider_t *p = NULL;
    size_t n = 0;

    assert_int_equal(setenv("ANTHROPIC_API_KEY", "sk-ant-bootstrap-key", 1), 0);
    assert_int_equal(gh_store_bootstrap(f->db, &f->keys), GH_OK);
    assert_int_equal(gh_store_providers_load(f->db, &f->keys, &p, &n), GH_OK);
    assert_int_equal(n, 1);
    assert_string_equal(p[0].base_url, GH_DEFAULT_BASE_URL);
    gh_store_providers_free(p, n);
}

/* Bootstrap leaves a database that already has providers alone. */
static void test_bootstrap_skips_existing_providers(void **state)
{
    fixture_t *f = *state;
    const char *one[] = {"sk-one"};

    assert_int_equal(create(f, "mine", "https://a", 0, one, NULL, 1), GH_OK);
    assert_int_equal(setenv("ANTHROPIC_API_KEY", "sk-ant-bootstrap-key", 1), 0);
    assert_int_equal(gh_store_bootstrap(f->db, &f->keys), GH_OK);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM providers WHERE name = 'anthropic'"),
                     0);
}

/* The first check stores the fingerprint; the same keys pass; other keys fail once rows exist. */
static void test_check_keys(void **state)
{
    fixture_t *f = *state;
    const char *one[] = {"sk-one"};
    char hex[GH_HASH_HEX_LEN + 1];
    sqlite3_stmt *st = NULL;
    gh_keys_t other;

    randombytes_buf(&other, sizeof(other));
    /* First use stores the fingerprint. */
    assert_int_equal(gh_store_check_keys(f->db, &f->keys), GH_OK);
    sodium_bin2hex(hex, sizeof(hex), f->keys.check, sizeof(f->keys.check));
    assert_int_equal(sqlite3_prepare_v2(f->db,
                                        "SELECT value FROM meta WHERE key = 'master_key_check'", -1,
                                        &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), hex);
    sqlite3_finalize(st);
    /* The same keys pass again. */
    assert_int_equal(gh_store_check_keys(f->db, &f->keys), GH_OK);
    /* Other keys fail once something is encrypted. */
    assert_int_equal(create(f, "p", "https://a", 0, one, NULL, 1), GH_OK);
    assert_int_equal(gh_store_check_keys(f->db, &other), GH_ERR);
    assert_int_not_equal(sqlite3_get_autocommit(f->db), 0);
    /* And the right keys still pass afterwards. */
    assert_int_equal(gh_store_check_keys(f->db, &f->keys), GH_OK);
}

/* A changed key with nothing encrypted yet rebinds the database. */
static void test_check_keys_rebinds_without_rows(void **state)
{
    fixture_t *f = *state;
    gh_keys_t other;

    randombytes_buf(&other, sizeof(other));
    assert_int_equal(gh_store_check_keys(f->db, &f->keys), GH_OK);
    /* Nothing encrypted yet, so nothing can be lost: the new key takes over the binding. */
    assert_int_equal(gh_store_check_keys(f->db, &other), GH_OK);
    assert_int_equal(gh_store_check_keys(f->db, &other), GH_OK);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM meta"), 1);
}

/* With rows but no fingerprint, the key must open a row before it is stored. */
static void test_check_keys_without_stored_check(void **state)
{
    fixture_t *f = *state;
    const char *one[] = {"sk-one"};
    gh_keys_t other;

    randombytes_buf(&other, sizeof(other));
    /* Rows but no fingerprint (e.g. the meta row was lost): the keys must open a row. */
    assert_int_equal(create(f, "p", "https://a", 0, one, NULL, 1), GH_OK);
    assert_int_equal(gh_store_check_keys(f->db, &other), GH_ERR);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM meta"), 0);
    assert_int_equal(gh_store_check_keys(f->db, &f->keys), GH_OK);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM meta"), 1);
    assert_int_equal(gh_store_check_keys(f->db, &other), GH_ERR);
}

/* A file database is in WAL mode with the documented PRAGMAs and survives a reopen. */
static void test_wal_on_file(void **state)
{
    char dir[64], path[96], wal[104], shm[104];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/gh-test-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/gatehouse.db", dir);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    snprintf(shm, sizeof(shm), "%s-shm", path);
    assert_int_equal(gh_store_open(path, &db), GH_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    assert_int_equal(query_int(db, "PRAGMA synchronous"), 1); /* NORMAL */
    assert_int_equal(query_int(db, "PRAGMA busy_timeout"), 5000);
    assert_int_equal(gh_store_migrate(db, 0), GH_OK);
    gh_store_close(db);
    /* Reopening a migrated file keeps its version. */
    assert_int_equal(gh_store_open(path, &db), GH_OK);
    assert_int_equal(gh_store_version(db), latest_version());
    gh_store_close(db);
    unlink(wal);
    unlink(shm);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
}

/* An unopenable path fails cleanly and closing NULL is harmless. */
static void test_open_failure(void **state)
{
    sqlite3 *db = (sqlite3 *)state;

    assert_int_equal(gh_store_open("/nonexistent/gh-test-dir/gatehouse.db", &db), GH_ERR);
    assert_null(db);
    gh_store_close(NULL);
}

/* Runs every test above after initialising libsodium. */
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_latest_and_idempotent),
        cmocka_unit_test(test_migrate_upto),
        cmocka_unit_test(test_upgrade_keeps_data),
        cmocka_unit_test(test_migrate_refuses_newer_db),
        cmocka_unit_test(test_migrate_failure_rolls_back),
        cmocka_unit_test_setup_teardown(test_provider_round_trip, setup_db, teardown_db),
        cmocka_unit_test_setup_teardown(test_provider_load_empty, setup_db, teardown_db),
        cmocka_unit_test_setup_teardown(test_provider_validation, setup_db, teardown_db),
        cmocka_unit_test_setup_teardown(test_sealed_blob_hides_plaintext, setup_db, teardown_db),
        cmocka_unit_test_setup_teardown(test_bootstrap, setup_db, teardown_db),
        cmocka_unit_test_setup_teardown(test_bootstrap_default_url, setup_db, teardown_db),
        cmocka_unit_test_setup_teardown(test_bootstrap_skips_existing_providers, setup_db,
                                        teardown_db),
        cmocka_unit_test_setup_teardown(test_check_keys, setup_db, teardown_db),
        cmocka_unit_test_setup_teardown(test_check_keys_rebinds_without_rows, setup_db,
                                        teardown_db),
        cmocka_unit_test_setup_teardown(test_check_keys_without_stored_check, setup_db,
                                        teardown_db),
        cmocka_unit_test(test_wal_on_file),
        cmocka_unit_test(test_open_failure),
    };

    if (gh_crypto_init() != GH_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
