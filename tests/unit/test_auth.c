/* test_auth.c: unit tests of credential extraction, allowlist globs, key lookup by keyed hash,
 * expiry and revocation, and price lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "auth.h"
#include "crypto.h"
#include "gh.h"
#include "http.h"
#include "store.h"

static gh_keys_t keys;

/* Parses a head from a literal; the buffer is returned for freeing. */
static char *head(const char *text, gh_http_head_t *h)
{
    char *b = strdup(text);
    assert_int_equal(gh_http_parse_head(b, strlen(b), h), 0);
    return b;
}

static void test_extract(void **state)
{
    gh_http_head_t h;
    const char *k;
    size_t n;
    char *b;
    (void)state;

    b = head("POST / HTTP/1.1\r\nx-api-key: gh-vk-one\r\n\r\n", &h);
    assert_int_equal(gh_auth_extract(&h, &k, &n), GH_OK);
    assert_int_equal(n, 9);
    assert_memory_equal(k, "gh-vk-one", 9);
    free(b);
    b = head("POST / HTTP/1.1\r\nAuthorization: Bearer gh-vk-two\r\n\r\n", &h);
    assert_int_equal(gh_auth_extract(&h, &k, &n), GH_OK);
    assert_memory_equal(k, "gh-vk-two", n);
    free(b);
    b = head("POST / HTTP/1.1\r\nauthorization: token   gh-vk-3\r\n\r\n", &h);
    assert_int_equal(gh_auth_extract(&h, &k, &n), GH_OK);
    assert_memory_equal(k, "gh-vk-3", n);
    free(b);
    b = head("POST / HTTP/1.1\r\nAuthorization: Basic abc\r\n\r\n", &h);
    assert_int_equal(gh_auth_extract(&h, &k, &n), GH_ERR);
    free(b);
    b = head("POST / HTTP/1.1\r\nAuthorization: Bearer \r\nx-api-key:\r\n\r\n", &h);
    assert_int_equal(gh_auth_extract(&h, &k, &n), GH_ERR);
    free(b);
    /* x-api-key wins when both are sent */
    b = head("POST / HTTP/1.1\r\nAuthorization: Bearer a\r\nX-Api-Key: b\r\n\r\n", &h);
    assert_int_equal(gh_auth_extract(&h, &k, &n), GH_OK);
    assert_memory_equal(k, "b", 1);
    free(b);
}

static void test_glob(void **state)
{
    (void)state;
    assert_true(gh_auth_glob("claude-sonnet-*", "claude-sonnet-4-5-20250929"));
    assert_false(gh_auth_glob("claude-sonnet-*", "claude-opus-4-5"));
    assert_true(gh_auth_glob("*", "anthropic/claude-opus-4-5"));
    assert_true(gh_auth_glob("anthropic/*", "anthropic/claude-opus-4-5"));
    assert_true(gh_auth_glob("claude-?-haiku*", "claude-3-haiku-20240307"));
    assert_true(gh_auth_glob("claude-[34]-*", "claude-3-opus"));
    assert_false(gh_auth_glob("claude-[34]-*", "claude-5-opus"));
    assert_true(gh_auth_glob("exact", "exact"));
    assert_false(gh_auth_glob("exact", "exact2"));
    assert_false(gh_auth_glob("Claude-*", "claude-x"));
}

static void test_model_allowed(void **state)
{
    gh_vkey_t all = {.models_all = 1};
    char *pats[] = {(char *)"claude-sonnet-*", (char *)"claude-3-haiku-20240307"};
    gh_vkey_t some = {.models = pats, .nmodels = 2};
    gh_vkey_t none = {.models = NULL, .nmodels = 0};
    (void)state;

    assert_true(gh_auth_model_allowed(&all, "anything"));
    assert_true(gh_auth_model_allowed(&some, "claude-sonnet-4-5"));
    assert_true(gh_auth_model_allowed(&some, "claude-3-haiku-20240307"));
    assert_false(gh_auth_model_allowed(&some, "claude-opus-4-5"));
    assert_false(gh_auth_model_allowed(&none, "claude-sonnet-4-5"));
}

static void test_parse_time(void **state)
{
    int64_t ms;
    (void)state;

    assert_int_equal(gh_auth_parse_time("1970-01-01T00:00:00Z", &ms), GH_OK);
    assert_int_equal(ms, 0);
    assert_int_equal(gh_auth_parse_time("2026-11-22T01:02:03.456Z", &ms), GH_OK);
    assert_int_equal(ms, 1795309323456LL);
    assert_int_equal(gh_auth_parse_time("2026-11-22", &ms), GH_OK);
    assert_int_equal(ms, 1795305600000LL);
    assert_int_equal(gh_auth_parse_time("2000-02-29T12:00:00+00:00", &ms), GH_OK);
    assert_int_equal(ms, 951825600000LL);
    assert_int_equal(gh_auth_parse_time("2026-13-01", &ms), GH_ERR);
    assert_int_equal(gh_auth_parse_time("yesterday", &ms), GH_ERR);
    assert_int_equal(gh_auth_parse_time("2026-01-01T00:00:00+02:00", &ms), GH_ERR);
}

/* Inserts a virtual key row whose secret is secret. */
static void insert_key(sqlite3 *db, const char *id, const char *secret, const char *models,
                       const char *expires, int revoked)
{
    char hash[GH_HASH_HEX_LEN + 1], sql[1024];
    gh_secret_hash_hex(&keys, secret, strlen(secret), hash);
    snprintf(sql, sizeof(sql),
             "INSERT INTO virtual_keys (id, name, key_hash, key_last4, models, expires_at, "
             "revoked_at) VALUES ('%s', 'name-%s', '%s', 'abcd', %s, %s, %s)",
             id, id, hash, models, expires, revoked ? "'2026-01-01T00:00:00.000Z'" : "NULL");
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
}

static void test_lookup(void **state)
{
    sqlite3 *db = NULL;
    const gh_vkey_t *k;
    int64_t now = 1795309323456LL;
    (void)state;

    assert_int_equal(gh_store_open(":memory:", &db), GH_OK);
    assert_int_equal(gh_store_migrate(db, 0), GH_OK);
    insert_key(db, "vk_a", "gh-vk-secret-a", "NULL", "NULL", 0);
    insert_key(db, "vk_b", "gh-vk-secret-b", "'[\"claude-sonnet-*\"]'", "NULL", 0);
    insert_key(db, "vk_c", "gh-vk-secret-c", "'[]'", "'2020-01-01T00:00:00.000Z'", 0);
    insert_key(db, "vk_d", "gh-vk-secret-d", "NULL", "NULL", 1);
    assert_int_equal(gh_auth_load(db), GH_OK);
    assert_int_equal(gh_auth_nkeys(), 4);

    assert_int_equal(gh_auth_lookup(&keys, "gh-vk-secret-a", 14, now, &k), GH_AUTH_OK);
    assert_string_equal(k->id, "vk_a");
    assert_true(k->models_all);
    assert_int_equal(k->rpm_limit, -1);
    assert_true(k->budget_usd < 0);
    assert_int_equal(gh_auth_lookup(&keys, "gh-vk-secret-b", 14, now, &k), GH_AUTH_OK);
    assert_true(gh_auth_model_allowed(k, "claude-sonnet-4-5"));
    assert_false(gh_auth_model_allowed(k, "claude-opus-4-5"));
    assert_int_equal(gh_auth_lookup(&keys, "gh-vk-secret-c", 14, now, &k), GH_AUTH_EXPIRED);
    assert_false(gh_auth_model_allowed(k, "claude-sonnet-4-5"));
    assert_int_equal(gh_auth_lookup(&keys, "gh-vk-secret-d", 14, now, &k), GH_AUTH_REVOKED);
    assert_int_equal(gh_auth_lookup(&keys, "gh-vk-secret-x", 14, now, &k), GH_AUTH_UNKNOWN);
    assert_null(k);
    /* a prefix of a real secret is not that secret */
    assert_int_equal(gh_auth_lookup(&keys, "gh-vk-secret-a", 13, now, &k), GH_AUTH_UNKNOWN);
    assert_int_equal(gh_auth_lookup(&keys, "", 0, now, &k), GH_AUTH_MISSING);

    /* a revoke seen after a reload */
    assert_int_equal(sqlite3_exec(db, "UPDATE virtual_keys SET revoked_at = 'x' WHERE id='vk_a'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(gh_auth_load(db), GH_OK);
    assert_int_equal(gh_auth_lookup(&keys, "gh-vk-secret-a", 14, now, &k), GH_AUTH_REVOKED);
    gh_auth_free();
    gh_store_close(db);
}

static void test_prices(void **state)
{
    sqlite3 *db = NULL;
    const gh_price_t *p;
    (void)state;

    assert_int_equal(gh_store_open(":memory:", &db), GH_OK);
    assert_int_equal(gh_store_migrate(db, 0), GH_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO model_prices VALUES ('claude-sonnet-4-5-20250929', "
                                  "1, 2, 3, 4, NULL, 'now'), ('claude-*', 9, 9, 9, 9, NULL, 'now')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(gh_auth_load(db), GH_OK);
    assert_true(gh_auth_nprices() >= 3);
    p = gh_auth_price("claude-sonnet-4-5-20250929"); /* exact row beats every pattern */
    assert_non_null(p);
    assert_true(p->input_per_mtok == 1.0 && p->cache_read_per_mtok == 4.0);
    p = gh_auth_price("claude-sonnet-4-5"); /* the seeded 'claude-sonnet-4-5*' beats 'claude-*' */
    assert_non_null(p);
    assert_true(p->input_per_mtok == 3.0 && p->output_per_mtok == 15.0);
    assert_true(p->cache_write_per_mtok == 3.75 && p->cache_read_per_mtok == 0.30);
    p = gh_auth_price("claude-haiku-4-5-20251001");
    assert_non_null(p);
    assert_true(p->input_per_mtok == 1.0 && p->output_per_mtok == 5.0);
    /* the 2026 models: the longest pattern wins between 'claude-opus-5-5*' and 'claude-opus-5*' */
    p = gh_auth_price("claude-opus-5-5-20261001");
    assert_non_null(p);
    assert_true(p->input_per_mtok == 4.0 && p->output_per_mtok == 20.0);
    p = gh_auth_price("claude-opus-5");
    assert_true(p != NULL && p->input_per_mtok == 5.0 && p->cache_read_per_mtok == 0.50);
    p = gh_auth_price("claude-sonnet-5-5");
    assert_true(p != NULL && p->input_per_mtok == 2.0 && p->cache_read_per_mtok == 0.10);
    p = gh_auth_price("claude-haiku-5-5");
    assert_true(p != NULL && p->output_per_mtok == 0.50 && p->cache_write_per_mtok == 0.125);
    p = gh_auth_price("claude-unknown"); /* only the catch-all */
    assert_non_null(p);
    assert_true(p->input_per_mtok == 9.0);
    assert_null(gh_auth_price("gpt-4o"));
    assert_null(gh_auth_price("gpt-4o")); /* a remembered miss stays a miss */
    /* the remembered answer follows the model asked for, and a reload forgets it */
    p = gh_auth_price("claude-sonnet-4-5-20250929");
    assert_true(p != NULL && p->input_per_mtok == 1.0);
    p = gh_auth_price("claude-sonnet-4-5-20250929");
    assert_true(p != NULL && p->input_per_mtok == 1.0);
    assert_true(gh_auth_price("claude-unknown")->input_per_mtok == 9.0);
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE model_prices SET input_per_mtok = 7 "
                                  "WHERE model = 'claude-sonnet-4-5-20250929'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    p = gh_auth_price("claude-sonnet-4-5-20250929"); /* the cache still has the old row */
    assert_true(p != NULL && p->input_per_mtok == 1.0);
    assert_int_equal(gh_auth_load(db), GH_OK);
    p = gh_auth_price("claude-sonnet-4-5-20250929");
    assert_true(p != NULL && p->input_per_mtok == 7.0);
    gh_auth_free();
    gh_store_close(db);
}

/* One master key for every test, from a fixed environment value. */
static int setup(void **state)
{
    (void)state;
    setenv("GATEHOUSE_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 1);
    if (gh_crypto_init() != GH_OK || gh_keys_load("/nonexistent", &keys) != GH_OK)
        return -1;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extract),       cmocka_unit_test(test_glob),
        cmocka_unit_test(test_model_allowed), cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_lookup),        cmocka_unit_test(test_prices),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
