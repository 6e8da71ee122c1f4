/* test_route.c: unit tests of model resolution (force_model, aliases, pins, parameters, routes),
 * allowlists on resolved names, and the byte-preserving body rewrite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gh.h"
#include "jscan.h"
#include "route.h"
#include "store.h"

static gh_provider_t provs[2];
static gh_provset_t ps = {provs, 2, 1};

static int setup(void **state)
{
    sqlite3 *db = NULL;
    (void)state;
    provs[0].name = (char *)"backup";
    provs[1].name = (char *)"anthropic";
    if (gh_store_open(":memory:", &db) != GH_OK || gh_store_migrate(db, 0) != GH_OK)
        return -1;
    if (sqlite3_exec(db,
                     "INSERT INTO routes (id, name, enforce_context, max_input_tokens) VALUES "
                     "(1, 'smart', 1, 1000), (2, 'ghost', 0, NULL);"
                     "INSERT INTO route_targets VALUES (1, 0, 'anthropic', 'claude-opus-4-5'),"
                     "(1, 1, 'missing', 'x'), (1, 2, 'backup', 'claude-sonnet-4-5'),"
                     "(2, 0, 'missing', 'y');",
                     NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    if (gh_route_load(db) != GH_OK)
        return -1;
    gh_store_close(db);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gh_route_free();
    return 0;
}

static void test_plain_model_goes_to_default_provider(void **state)
{
    gh_resolved_t r;
    char err[256];
    (void)state;
    assert_int_equal(gh_route_resolve(&ps, NULL, "claude-sonnet-4-5", &r, err, sizeof(err)), GH_OK);
    assert_int_equal(r.ntargets, 1);
    assert_string_equal(r.targets[0].prov->name, "anthropic");
    assert_string_equal(r.targets[0].model, "claude-sonnet-4-5");
    assert_string_equal(r.name, "claude-sonnet-4-5");
    assert_string_equal(r.params, "");
    assert_false(r.is_route);
}

static void test_route_chain_skips_missing_providers(void **state)
{
    gh_resolved_t r;
    char err[256];
    (void)state;
    assert_int_equal(gh_route_count(), 2);
    assert_int_equal(gh_route_resolve(&ps, NULL, "smart", &r, err, sizeof(err)), GH_OK);
    assert_true(r.is_route);
    assert_int_equal(r.ntargets, 2);
    assert_string_equal(r.targets[0].prov->name, "anthropic");
    assert_string_equal(r.targets[0].model, "claude-opus-4-5");
    assert_string_equal(r.targets[1].prov->name, "backup");
    assert_string_equal(r.targets[1].model, "claude-sonnet-4-5");
    assert_true(r.enforce_context);
    assert_int_equal(r.max_input_tokens, 1000);
    assert_int_equal(gh_route_resolve(&ps, NULL, "ghost", &r, err, sizeof(err)), GH_ERR);
    assert_non_null(strstr(err, "ghost"));
}

static void test_pins_and_params(void **state)
{
    gh_resolved_t r;
    char err[256];
    (void)state;
    assert_int_equal(gh_route_resolve(&ps, NULL, "backup/claude-3-haiku", &r, err, sizeof(err)),
                     GH_OK);
    assert_string_equal(r.pinned, "backup");
    assert_string_equal(r.targets[0].prov->name, "backup");
    assert_string_equal(r.targets[0].model, "claude-3-haiku");
    assert_int_equal(gh_route_resolve(&ps, NULL,
                                      "anthropic:claude-3-5-sonnet?temperature=0.7&top_k=40&"
                                      "stop_reason_hint=x%y&flag=true",
                                      &r, err, sizeof(err)),
                     GH_OK);
    assert_string_equal(r.pinned, "anthropic");
    assert_string_equal(r.targets[0].model, "claude-3-5-sonnet");
    assert_string_equal(
        r.params, "\"temperature\":0.7,\"top_k\":40,\"stop_reason_hint\":\"x%y\",\"flag\":true");
    /* parameters without a pin */
    assert_int_equal(gh_route_resolve(&ps, NULL, "smart?temperature=0", &r, err, sizeof(err)),
                     GH_OK);
    assert_true(r.is_route);
    assert_string_equal(r.params, "\"temperature\":0");
    /* an unknown provider before ':' is an error; before '/' it is just part of a name */
    assert_int_equal(gh_route_resolve(&ps, NULL, "nope:claude", &r, err, sizeof(err)), GH_ERR);
    assert_non_null(strstr(err, "nope"));
    assert_int_equal(gh_route_resolve(&ps, NULL, "org/model", &r, err, sizeof(err)), GH_OK);
    assert_string_equal(r.targets[0].model, "org/model");
    assert_int_equal(gh_route_resolve(&ps, NULL, "m?bad key=1", &r, err, sizeof(err)), GH_ERR);
    assert_int_equal(gh_route_resolve(&ps, NULL, "m?novalue", &r, err, sizeof(err)), GH_ERR);
}

static void test_force_model_and_aliases(void **state)
{
    gh_vkey_t k;
    char *from[] = {(char *)"fast"}, *to[] = {(char *)"backup/claude-haiku-4-5"};
    gh_resolved_t r;
    char err[256];
    (void)state;

    memset(&k, 0, sizeof(k));
    k.models_all = 1;
    k.alias_from = from;
    k.alias_to = to;
    k.naliases = 1;
    assert_int_equal(gh_route_resolve(&ps, &k, "fast", &r, err, sizeof(err)), GH_OK);
    assert_string_equal(r.targets[0].prov->name, "backup");
    assert_string_equal(r.targets[0].model, "claude-haiku-4-5");
    assert_int_equal(gh_route_resolve(&ps, &k, "claude-x", &r, err, sizeof(err)), GH_OK);
    assert_string_equal(r.targets[0].model, "claude-x");
    snprintf(k.force_model, sizeof(k.force_model), "smart");
    assert_int_equal(gh_route_resolve(&ps, &k, "fast", &r, err, sizeof(err)), GH_OK);
    assert_true(r.is_route);
    assert_string_equal(r.targets[0].model, "claude-opus-4-5");
}

static void test_allowlist_on_resolved_names(void **state)
{
    char *pats[] = {(char *)"claude-sonnet-*"};
    gh_vkey_t k;
    gh_resolved_t r;
    char err[256];
    (void)state;

    memset(&k, 0, sizeof(k));
    k.models = pats;
    k.nmodels = 1;
    assert_int_equal(gh_route_resolve(&ps, &k, "backup/claude-sonnet-4-5", &r, err, sizeof(err)),
                     GH_OK);
    assert_true(gh_route_allowed(&k, &r));
    assert_int_equal(gh_route_resolve(&ps, &k, "backup/claude-opus-4-5", &r, err, sizeof(err)),
                     GH_OK);
    assert_false(gh_route_allowed(&k, &r));
    assert_int_equal(gh_route_resolve(&ps, &k, "smart", &r, err, sizeof(err)), GH_OK);
    assert_false(gh_route_allowed(&k, &r)); /* a route is allowed by its own name */
    pats[0] = (char *)"backup/*";
    assert_int_equal(gh_route_resolve(&ps, &k, "backup/claude-opus-4-5", &r, err, sizeof(err)),
                     GH_OK);
    assert_true(gh_route_allowed(&k, &r));
}

/* Checks that out is a valid object whose model is want_model. */
static void assert_model(const char *out, size_t len, const char *want_model)
{
    static const char *const keys[] = {"model"};
    gh_jspan_t sp;
    char m[200];
    assert_int_equal(gh_jscan_object(out, len, keys, 1, &sp, NULL), GH_OK);
    assert_true(gh_jscan_string(out, &sp, m, sizeof(m)) >= 0);
    assert_string_equal(m, want_model);
}

static void test_rewrite_body(void **state)
{
    const char *body =
        "{ \"model\" : \"smart\", \"temperature\":1,\n \"messages\":[{\"model\":\"x\"}],"
        " \"max_tokens\" : 5 }";
    char *out = NULL;
    size_t len = 0;
    (void)state;

    assert_int_equal(gh_route_rewrite_body(body, strlen(body), "claude-opus-4-5", "", &out, &len),
                     GH_OK);
    assert_string_equal(out, "{ \"model\" : \"claude-opus-4-5\", \"temperature\":1,\n "
                             "\"messages\":[{\"model\":\"x\"}], \"max_tokens\" : 5 }");
    assert_model(out, len, "claude-opus-4-5");
    free(out);
    assert_int_equal(gh_route_rewrite_body(body, strlen(body), "m2",
                                           "\"temperature\":0.7,\"top_k\":40", &out, &len),
                     GH_OK);
    assert_string_equal(out, "{ \"model\" : \"m2\", \n \"messages\":[{\"model\":\"x\"}], "
                             "\"max_tokens\" : 5 ,\"temperature\":0.7,\"top_k\":40}");
    assert_model(out, len, "m2");
    free(out);
    /* the replaced member is the last one */
    body = "{\"model\":\"a\",\"top_k\":3}";
    assert_int_equal(gh_route_rewrite_body(body, strlen(body), "a", "\"top_k\":9", &out, &len),
                     GH_OK);
    assert_string_equal(out, "{\"model\":\"a\",\"top_k\":9}");
    free(out);
    /* quotes in the new model are escaped */
    assert_int_equal(gh_route_rewrite_body(body, strlen(body), "we\"ird", "", &out, &len), GH_OK);
    assert_model(out, len, "we\"ird");
    free(out);
    assert_int_equal(gh_route_rewrite_body("[1]", 3, "a", "", &out, &len), GH_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_model_goes_to_default_provider),
        cmocka_unit_test(test_route_chain_skips_missing_providers),
        cmocka_unit_test(test_pins_and_params),
        cmocka_unit_test(test_force_model_and_aliases),
        cmocka_unit_test(test_allowlist_on_resolved_names),
        cmocka_unit_test(test_rewrite_body),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
