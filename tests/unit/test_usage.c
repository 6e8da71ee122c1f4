/* test_usage.c: unit tests of usage.c: token extraction from answers and streams, cost, helpers. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gh.h"
#include "buf.h"
#include "usage.h"

/* Feeds a NUL-terminated string to gh_usage_from_message. */
static int from_message(const char *json, gh_tokens_t *t)
{
    return gh_usage_from_message(json, strlen(json), t);
}

/* Feeds one SSE event, both parts as NUL-terminated strings. */
static int from_sse(const char *event, const char *data, gh_tokens_t *t)
{
    return gh_usage_from_sse(event, strlen(event), data, strlen(data), t);
}

/* Checks all four counts at once. */
static void assert_tokens(const gh_tokens_t *t, int64_t in, int64_t out, int64_t cw, int64_t cr)
{
    assert_int_equal(t->input, in);
    assert_int_equal(t->output, out);
    assert_int_equal(t->cache_creation, cw);
    assert_int_equal(t->cache_read, cr);
}

/* A complete Messages answer: all four counts are read. */
static void test_message_all_fields(void **state)
{
    const char *json =
        "{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","
        "\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}],\"stop_reason\":\"end_turn\","
        "\"usage\":{\"input_tokens\":12,\"output_tokens\":34,"
        "\"cache_creation_input_tokens\":56,\"cache_read_input_tokens\":78,"
        "\"service_tier\":\"standard\"}}";
    gh_tokens_t t = {0, 0, 0, 0};

    (void)state;
    assert_int_equal(from_message(json, &t), GH_OK);
    assert_tokens(&t, 12, 34, 56, 78);
}

/* Absent or null counts leave what was there; a usage object with nothing in it still counts as
 * found. */
static void test_message_missing_fields(void **state)
{
    gh_tokens_t t = {1, 2, 3, 4};

    (void)state;
    assert_int_equal(from_message("{\"usage\":{\"output_tokens\":9}}", &t), GH_OK);
    assert_tokens(&t, 1, 9, 3, 4);
    assert_int_equal(from_message("{\"usage\":{\"input_tokens\":null,"
                                  "\"cache_read_input_tokens\":\"7\","
                                  "\"cache_creation_input_tokens\":-5}}",
                                  &t),
                     GH_OK);
    assert_tokens(&t, 1, 9, 3, 4);
    assert_int_equal(from_message("{\"usage\":{}}", &t), GH_OK);
    assert_tokens(&t, 1, 9, 3, 4);
    assert_int_equal(from_message("{\"type\":\"message\"}", &t), GH_ERR);
    assert_int_equal(from_message("{\"usage\":[1,2]}", &t), GH_ERR);
    assert_int_equal(from_message("{\"usage\":null}", &t), GH_ERR);
    assert_tokens(&t, 1, 9, 3, 4);
}

/* A "usage" key inside the content (a tool input the model wrote) is not the bill. */
static void test_message_nested_usage_ignored(void **state)
{
    const char *only_nested =
        "{\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"report\","
        "\"input\":{\"usage\":{\"input_tokens\":999999,\"output_tokens\":999999}}}],"
        "\"model\":\"claude-x\"}";
    const char *both =
        "{\"content\":[{\"type\":\"tool_use\",\"input\":{\"usage\":{\"input_tokens\":999999,"
        "\"output_tokens\":999999,\"cache_read_input_tokens\":999999}}}],"
        "\"usage\":{\"input_tokens\":5,\"output_tokens\":6}}";
    const char *text_mention = "{\"content\":[{\"type\":\"text\",\"text\":\"\\\"usage\\\":{"
                               "\\\"input_tokens\\\":7}\"}],\"usage\":{\"input_tokens\":8}}";
    gh_tokens_t t = {0, 0, 0, 0};

    (void)state;
    assert_int_equal(from_message(only_nested, &t), GH_ERR);
    assert_tokens(&t, 0, 0, 0, 0);
    assert_int_equal(from_message(both, &t), GH_OK);
    assert_tokens(&t, 5, 6, 0, 0);
    memset(&t, 0, sizeof(t));
    assert_int_equal(from_message(text_mention, &t), GH_OK);
    assert_tokens(&t, 8, 0, 0, 0);
}

/* Invalid, truncated, empty or odd input: GH_ERR, t untouched, no crash. */
static void test_message_invalid(void **state)
{
    static const char *bad[] = {
        "",
        "{",
        "not json",
        "{\"usage\":{\"input_tokens\":1",
        "{\"usage\":{\"input_tokens\":1,}}x",
        "[{\"usage\":{\"input_tokens\":1}}]",
        "\"usage\"",
        "42",
        "null",
    };
    const char ok[] = "{\"usage\":{\"input_tokens\":3}}";
    char *deep;
    gh_tokens_t t = {1, 1, 1, 1};
    size_t i;

    (void)state;
    for (i = 0; i < GH_ARRAY_LEN(bad); i++) {
        assert_int_equal(from_message(bad[i], &t), GH_ERR);
        assert_tokens(&t, 1, 1, 1, 1);
    }
    assert_int_equal(gh_usage_from_message(NULL, 10, &t), GH_ERR);
    assert_int_equal(gh_usage_from_message(ok, sizeof(ok) - 1, NULL), GH_ERR);
    /* The length is honoured: a cut before the end is incomplete, no NUL needed after it. */
    assert_int_equal(gh_usage_from_message(ok, sizeof(ok) - 3, &t), GH_ERR);
    assert_tokens(&t, 1, 1, 1, 1);
    assert_int_equal(gh_usage_from_message(ok, sizeof(ok) - 1, &t), GH_OK);
    assert_tokens(&t, 3, 1, 1, 1);
    /* Far deeper nesting than the parser allows: refused, not a stack overflow. */
    deep = malloc(200002);
    assert_non_null(deep);
    memset(deep, '[', 100000);
    memset(deep + 100000, ']', 100000);
    deep[200000] = '\0';
    assert_int_equal(from_message(deep, &t), GH_ERR);
    free(deep);
}

/* Tool inputs nest; a usage object after a deep one is still found. */
static void test_message_deep_content(void **state)
{
    char buf[4096];
    size_t n = 0;
    int i;
    gh_tokens_t t = {0, 0, 0, 0};

    (void)state;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{\"content\":");
    for (i = 0; i < 100; i++)
        buf[n++] = '[';
    for (i = 0; i < 100; i++)
        buf[n++] = ']';
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, ",\"usage\":{\"output_tokens\":4}}");
    assert_int_equal(gh_usage_from_message(buf, n, &t), GH_OK);
    assert_tokens(&t, 0, 4, 0, 0);
}

/* message_start sets every count; a later message_delta with only output_tokens replaces only
 * that one; other events change nothing. */
static void test_sse_start_then_delta(void **state)
{
    gh_tokens_t t = {0, 0, 0, 0};

    (void)state;
    assert_int_equal(from_sse("message_start",
                              "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
                              "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],"
                              "\"usage\":{\"input_tokens\":25,\"output_tokens\":1,"
                              "\"cache_creation_input_tokens\":100,"
                              "\"cache_read_input_tokens\":200}}}",
                              &t),
                     GH_OK);
    assert_tokens(&t, 25, 1, 100, 200);
    assert_int_equal(from_sse("content_block_delta",
                              "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{"
                              "\"type\":\"text_delta\",\"text\":\"usage\"},"
                              "\"usage\":{\"output_tokens\":777}}",
                              &t),
                     GH_OK);
    assert_int_equal(from_sse("ping", "{\"type\": \"ping\"}", &t), GH_OK);
    assert_tokens(&t, 25, 1, 100, 200);
    assert_int_equal(from_sse("message_delta",
                              "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
                              "\"end_turn\",\"stop_sequence\":null},"
                              "\"usage\":{\"output_tokens\":15}}",
                              &t),
                     GH_OK);
    assert_tokens(&t, 25, 15, 100, 200);
    /* Cumulative: a second delta replaces, it does not add. */
    assert_int_equal(from_sse("message_delta", "{\"usage\":{\"output_tokens\":40}}", &t), GH_OK);
    assert_tokens(&t, 25, 40, 100, 200);
    assert_int_equal(from_sse("message_stop", "{\"type\":\"message_stop\"}", &t), GH_OK);
    assert_tokens(&t, 25, 40, 100, 200);
}

/* Newer API versions repeat the input and cache counts in message_delta: they replace too,
 * while null counts are ignored. */
static void test_sse_delta_cache_fields(void **state)
{
    gh_tokens_t t = {0, 0, 0, 0};

    (void)state;
    from_sse("message_start",
             "{\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1,"
             "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0}}}",
             &t);
    assert_tokens(&t, 10, 1, 0, 0);
    assert_int_equal(from_sse("message_delta",
                              "{\"type\":\"message_delta\",\"usage\":{\"input_tokens\":11,"
                              "\"cache_creation_input_tokens\":300,"
                              "\"cache_read_input_tokens\":4000,\"output_tokens\":50}}",
                              &t),
                     GH_OK);
    assert_tokens(&t, 11, 50, 300, 4000);
    assert_int_equal(from_sse("message_delta",
                              "{\"usage\":{\"input_tokens\":null,\"cache_creation_input_tokens\":"
                              "null,\"cache_read_input_tokens\":null,\"output_tokens\":60}}",
                              &t),
                     GH_OK);
    assert_tokens(&t, 11, 60, 300, 4000);
}

/* A repeated message_start (a replayed event) does not double anything. */
static void test_sse_counted_once(void **state)
{
    const char *start = "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":7,"
                        "\"output_tokens\":2,\"cache_read_input_tokens\":9}}}";
    gh_tokens_t t = {0, 0, 0, 0};

    (void)state;
    from_sse("message_start", start, &t);
    from_sse("message_start", start, &t);
    assert_tokens(&t, 7, 2, 0, 9);
    from_sse("message_delta", "{\"usage\":{\"output_tokens\":5}}", &t);
    from_sse("message_delta", "{\"usage\":{\"output_tokens\":5}}", &t);
    assert_tokens(&t, 7, 5, 0, 9);
}

/* message_start reads message.usage only; the event name decides, and broken data is ignored. */
static void test_sse_odd_events(void **state)
{
    gh_tokens_t t = {1, 2, 3, 4};

    (void)state;
    /* a top-level usage in message_start is not where Anthropic puts it */
    assert_int_equal(from_sse("message_start", "{\"usage\":{\"input_tokens\":99}}", &t), GH_OK);
    /* message_delta with data shaped like message_start: not read */
    assert_int_equal(
        from_sse("message_delta", "{\"message\":{\"usage\":{\"input_tokens\":99}}}", &t), GH_OK);
    /* event names are compared exactly, with their length */
    assert_int_equal(
        gh_usage_from_sse("message_delta", 12, "{\"usage\":{\"input_tokens\":99}}", 29, &t), GH_OK);
    assert_int_equal(from_sse("message", "{\"usage\":{\"input_tokens\":99}}", &t), GH_OK);
    assert_int_equal(from_sse("message_delta", "{\"usage\":{\"input_tokens\":99", &t), GH_OK);
    assert_int_equal(from_sse("message_delta", "", &t), GH_OK);
    assert_int_equal(from_sse("message_start", "[]", &t), GH_OK);
    assert_int_equal(from_sse("message_start", "{\"message\":[]}", &t), GH_OK);
    assert_int_equal(gh_usage_from_sse("message_delta", 13, NULL, 0, &t), GH_OK);
    assert_int_equal(gh_usage_from_sse(NULL, 0, "{}", 2, &t), GH_OK);
    assert_int_equal(gh_usage_from_sse("message_delta", 13, "{}", 2, NULL), GH_OK);
    assert_tokens(&t, 1, 2, 3, 4);
}

/* Each kind of token at its own rate, summed and divided once. */
static void test_cost(void **state)
{
    const gh_price_t sonnet = {3.0, 15.0, 3.75, 0.30};
    const gh_tokens_t t = {1000, 500, 2000, 10000};
    const gh_tokens_t zero = {0, 0, 0, 0};
    const gh_tokens_t only_read = {0, 0, 0, 1000000};
    double expected = (1000 * 3.0 + 500 * 15.0 + 2000 * 3.75 + 10000 * 0.30) / 1e6;

    (void)state;
    assert_true(fabs(expected - 0.021) < 1e-15);
    assert_true(fabs(gh_usage_cost(&sonnet, &t) - 0.021) < 1e-12);
    assert_true(gh_usage_cost(&sonnet, &zero) == 0.0);
    assert_true(fabs(gh_usage_cost(&sonnet, &only_read) - 0.30) < 1e-12);
    assert_true(gh_usage_cost(NULL, &t) == 0.0);
    assert_true(gh_usage_cost(&sonnet, NULL) == 0.0);
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ": 24 characters, digits where digits belong. */
static void test_now_iso(void **state)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    char buf[32], small[11];
    size_t i;

    (void)state;
    memset(buf, 'x', sizeof(buf));
    gh_usage_now_iso(buf, sizeof(buf));
    assert_int_equal(strlen(buf), 24);
    for (i = 0; i < 24; i++) {
        if (shape[i] == 'd')
            assert_true(isdigit((unsigned char)buf[i]));
        else
            assert_int_equal(buf[i], shape[i]);
    }
    assert_true(strncmp(buf, "2020", 4) > 0);
    gh_usage_now_iso(small, sizeof(small));
    assert_int_equal(strlen(small), 10);
    assert_int_equal(small[4], '-');
    gh_usage_now_iso(NULL, 0);
}

/* Copies, truncates and terminates; never splits a UTF-8 character. */
/* The printf-free formatters agree with gmtime_r/snprintf over a wide range of inputs. */
static void test_fmt_against_libc(void **state)
{
    static const int64_t samples[] = {0,
                                      1,
                                      59,
                                      86399,
                                      86400,
                                      951782400 /* 2000-02-29 */,
                                      1709164800 /* 2024-02-29 */,
                                      1767225599,
                                      4102444800,
                                      253402300799 /* 9999-12-31T23:59:59 */};
    int64_t sec;
    size_t i;
    (void)state;

    for (i = 0; i < GH_ARRAY_LEN(samples) + 200000; i++) {
        char mine[GH_ISO_SEC_LEN + 1], ref[64];
        struct tm tm;
        time_t t;
        sec = i < GH_ARRAY_LEN(samples) ? samples[i]
                                        : (int64_t)(i - GH_ARRAY_LEN(samples)) * 1266133 + 17;
        if (sec > 253402300799)
            break;
        t = (time_t)sec;
        gmtime_r(&t, &tm);
        snprintf(ref, sizeof(ref), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        gh_fmt_iso_sec(mine, sec);
        mine[GH_ISO_SEC_LEN] = '\0';
        assert_string_equal(mine, ref);
        gh_fmt_iso_sec(mine, sec); /* the memoised answer is the same */
        assert_string_equal(mine, ref);
    }
    {
        static const int64_t ints[] = {0,   7,    -7,        10,        99,
                                       100, -100, 123456789, INT64_MAX, INT64_MIN};
        for (i = 0; i < GH_ARRAY_LEN(ints); i++) {
            char mine[24], ref[24];
            size_t n = gh_fmt_i64(mine, ints[i]);
            mine[n] = '\0';
            snprintf(ref, sizeof(ref), "%lld", (long long)ints[i]);
            assert_string_equal(mine, ref);
        }
    }
    {
        char hex[9];
        gh_fmt_hex32(hex, 0xdeadbeefu);
        hex[8] = '\0';
        assert_string_equal(hex, "deadbeef");
        gh_fmt_hex32(hex, 0x1u);
        assert_string_equal(hex, "00000001");
    }
    {
        char iso[32], small[8];
        gh_usage_iso(1709164800123, iso, sizeof(iso));
        assert_string_equal(iso, "2024-02-29T00:00:00.123Z");
        gh_usage_iso(1709164800007, small, sizeof(small));
        assert_string_equal(small, "2024-02");
    }
}

static void test_set(void **state)
{
    char dst[8];
    const char *fits = "abcde\xc3\xa9xyz";     /* é ends exactly at the 7-byte cut */
    const char *euro = "abcde\xe2\x82\xacxyz"; /* € (3 bytes) straddles it */

    (void)state;
    gh_usage_set(dst, sizeof(dst), "hello", 5);
    assert_string_equal(dst, "hello");
    gh_usage_set(dst, sizeof(dst), "hello world", 11);
    assert_string_equal(dst, "hello w");
    gh_usage_set(dst, sizeof(dst), "hello world", 3);
    assert_string_equal(dst, "hel");
    gh_usage_set(dst, sizeof(dst), fits, strlen(fits));
    assert_string_equal(dst, "abcde\xc3\xa9");
    gh_usage_set(dst, sizeof(dst), euro, strlen(euro));
    assert_string_equal(dst, "abcde");
    gh_usage_set(dst, sizeof(dst), "abcdef\xc3\xa9", 8);
    assert_string_equal(dst, "abcdef");
    gh_usage_set(dst, sizeof(dst), "abcd\xc3\xa9", 6);
    assert_string_equal(dst, "abcd\xc3\xa9");
    gh_usage_set(dst, sizeof(dst), NULL, 4);
    assert_string_equal(dst, "");
    gh_usage_set(dst, sizeof(dst), "", 0);
    assert_string_equal(dst, "");
    gh_usage_set(dst, 1, "abc", 3);
    assert_string_equal(dst, "");
    gh_usage_set(NULL, 0, "abc", 3);
}

/* Runs every test above. */
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_all_fields),
        cmocka_unit_test(test_message_missing_fields),
        cmocka_unit_test(test_message_nested_usage_ignored),
        cmocka_unit_test(test_message_invalid),
        cmocka_unit_test(test_message_deep_content),
        cmocka_unit_test(test_sse_start_then_delta),
        cmocka_unit_test(test_sse_delta_cache_fields),
        cmocka_unit_test(test_sse_counted_once),
        cmocka_unit_test(test_sse_odd_events),
        cmocka_unit_test(test_cost),
        cmocka_unit_test(test_now_iso),
        cmocka_unit_test(test_fmt_against_libc),
        cmocka_unit_test(test_set),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
