/* test_cli.c: unit tests of command-line and HOST:PORT parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cli.h"
#include "gh.h"

/* Parses a NULL-terminated argument list into cfg. */
static int parse(gh_config_t *cfg, const char **args, char *err, size_t errsz)
{
    char *argv[32];
    int argc = 0;

    argv[argc++] = (char *)"gatehouse";
    while (*args != NULL)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    gh_config_defaults(cfg);
    return gh_config_parse(cfg, argc, argv, err, errsz);
}

static void test_defaults(void **state)
{
    gh_config_t cfg;
    char err[256];
    const char *args[] = {NULL};
    (void)state;

    assert_int_equal(parse(&cfg, args, err, sizeof(err)), GH_OK);
    assert_string_equal(cfg.listen.host, "127.0.0.1");
    assert_string_equal(cfg.listen.port, "8080");
    assert_string_equal(cfg.admin_listen.port, "8081");
    assert_string_equal(cfg.data_dir, "./var");
    assert_true(cfg.workers >= 1);
    assert_int_equal(cfg.drain_timeout, 30);
    assert_int_equal(cfg.max_body, 32u * 1024 * 1024);
}

static void test_all_flags(void **state)
{
    gh_config_t cfg;
    char err[256];
    const char *args[] = {"--listen",
                          "0.0.0.0:9000",
                          "--admin-listen=[::1]:9001",
                          "--data-dir",
                          "/tmp/x",
                          "--workers=3",
                          "--drain-timeout",
                          "5",
                          "--max-body",
                          "2M",
                          NULL};
    (void)state;

    assert_int_equal(parse(&cfg, args, err, sizeof(err)), GH_OK);
    assert_string_equal(cfg.listen.host, "0.0.0.0");
    assert_string_equal(cfg.listen.port, "9000");
    assert_string_equal(cfg.admin_listen.host, "::1");
    assert_string_equal(cfg.admin_listen.port, "9001");
    assert_string_equal(cfg.data_dir, "/tmp/x");
    assert_int_equal(cfg.workers, 3);
    assert_int_equal(cfg.drain_timeout, 5);
    assert_int_equal(cfg.max_body, 2u * 1024 * 1024);
}

static void test_bad_flags(void **state)
{
    gh_config_t cfg;
    char err[256];
    const char *unknown[] = {"--frobnicate", NULL};
    const char *missing[] = {"--listen", NULL};
    const char *badport[] = {"--listen", "127.0.0.1:99999", NULL};
    const char *noport[] = {"--listen", "127.0.0.1", NULL};
    const char *zero_workers[] = {"--workers", "0", NULL};
    const char *neg_drain[] = {"--drain-timeout", "-1", NULL};
    const char *junk_num[] = {"--workers", "2x", NULL};
    const char *bad_size[] = {"--max-body", "12Q", NULL};
    const char *positional[] = {"serve", NULL};
    (void)state;

    assert_int_equal(parse(&cfg, unknown, err, sizeof(err)), GH_ERR);
    assert_non_null(strstr(err, "--frobnicate"));
    assert_int_equal(parse(&cfg, missing, err, sizeof(err)), GH_ERR);
    assert_non_null(strstr(err, "needs a value"));
    assert_int_equal(parse(&cfg, badport, err, sizeof(err)), GH_ERR);
    assert_int_equal(parse(&cfg, noport, err, sizeof(err)), GH_ERR);
    assert_int_equal(parse(&cfg, zero_workers, err, sizeof(err)), GH_ERR);
    assert_int_equal(parse(&cfg, neg_drain, err, sizeof(err)), GH_ERR);
    assert_int_equal(parse(&cfg, junk_num, err, sizeof(err)), GH_ERR);
    assert_int_equal(parse(&cfg, bad_size, err, sizeof(err)), GH_ERR);
    assert_int_equal(parse(&cfg, positional, err, sizeof(err)), GH_ERR);
}

static void test_version_help(void **state)
{
    gh_config_t cfg;
    char err[256];
    const char *v[] = {"--version", NULL};
    const char *h[] = {"--help", NULL};
    (void)state;

    assert_int_equal(parse(&cfg, v, err, sizeof(err)), GH_OK);
    assert_true(cfg.show_version);
    assert_int_equal(parse(&cfg, h, err, sizeof(err)), GH_OK);
    assert_true(cfg.show_help);
}

static void test_hostport(void **state)
{
    gh_hostport_t hp;
    (void)state;

    assert_int_equal(gh_parse_hostport(":8080", &hp), GH_OK);
    assert_string_equal(hp.host, "127.0.0.1");
    assert_string_equal(hp.port, "8080");
    assert_int_equal(gh_parse_hostport("localhost:0", &hp), GH_OK);
    assert_string_equal(hp.host, "localhost");
    assert_string_equal(hp.port, "0");
    assert_int_equal(gh_parse_hostport("[::]:443", &hp), GH_OK);
    assert_string_equal(hp.host, "::");
    assert_int_equal(gh_parse_hostport("::1:80", &hp), GH_ERR);
    assert_int_equal(gh_parse_hostport("[::1]80", &hp), GH_ERR);
    assert_int_equal(gh_parse_hostport("host:", &hp), GH_ERR);
    assert_int_equal(gh_parse_hostport("host:-1", &hp), GH_ERR);
    assert_int_equal(gh_parse_hostport("", &hp), GH_ERR);
    assert_int_equal(gh_parse_hostport("host:65536", &hp), GH_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),  cmocka_unit_test(test_all_flags),
        cmocka_unit_test(test_bad_flags), cmocka_unit_test(test_version_help),
        cmocka_unit_test(test_hostport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
