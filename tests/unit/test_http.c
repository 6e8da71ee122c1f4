/* test_http.c: unit tests of request-head parsing, chunked bodies and the proxy's header rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gh.h"
#include "http.h"
#include "proxy.h"

/* Parses a string literal head (copied, since parsing writes into the buffer). */
static int parse(const char *text, gh_http_head_t *h, char **keep)
{
    size_t len = strlen(text);
    char *buf = malloc(len + 1);
    memcpy(buf, text, len + 1);
    *keep = buf;
    return gh_http_parse_head(buf, len, h);
}

static void test_typical_head(void **state)
{
    gh_http_head_t h;
    char *buf;
    const gh_header_t *v;
    (void)state;

    assert_int_equal(parse("POST /v1/messages?beta=true HTTP/1.1\r\n"
                           "Host: localhost\r\n"
                           "Content-Type: application/json\r\n"
                           "anthropic-version:2023-06-01\r\n"
                           "X-Api-Key:   gh-vk-abc   \r\n"
                           "Content-Length: 42\r\n\r\n",
                           &h, &buf),
                     0);
    assert_string_equal(h.method, "POST");
    assert_string_equal(h.path, "/v1/messages");
    assert_string_equal(h.query, "beta=true");
    assert_int_equal(h.version_minor, 1);
    assert_int_equal(h.content_length, 42);
    assert_true(h.keep_alive);
    assert_false(h.chunked);
    v = gh_http_header(&h, "x-api-key");
    assert_non_null(v);
    assert_int_equal(v->value_len, 9);
    assert_memory_equal(v->value, "gh-vk-abc", 9);
    v = gh_http_header(&h, "ANTHROPIC-VERSION");
    assert_non_null(v);
    assert_string_equal(v->value, "2023-06-01");
    assert_null(gh_http_header(&h, "authorization"));
    free(buf);
}

static void test_keep_alive_rules(void **state)
{
    gh_http_head_t h;
    char *buf;
    (void)state;

    assert_int_equal(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &h, &buf), 0);
    assert_false(h.keep_alive);
    free(buf);
    assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &h, &buf), 0);
    assert_false(h.keep_alive);
    free(buf);
    assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &h, &buf), 0);
    assert_true(h.keep_alive);
    free(buf);
    assert_int_equal(parse("GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n", &h, &buf), 0);
    assert_false(h.keep_alive);
    free(buf);
    /* LF-only line ends are accepted */
    assert_int_equal(parse("GET /x HTTP/1.1\nExpect: 100-continue\n\n", &h, &buf), 0);
    assert_true(h.expect_continue);
    assert_null(h.query);
    free(buf);
}

static void test_bad_heads(void **state)
{
    gh_http_head_t h;
    char *buf;
    char big[GH_HTTP_MAX_HEADERS * 8 + 64];
    size_t i, n;
    (void)state;

    assert_int_equal(parse("GARBAGE\r\n\r\n", &h, &buf), 400);
    free(buf);
    assert_int_equal(parse("GET / HTTP/2.0\r\n\r\n", &h, &buf), 505);
    free(buf);
    assert_int_equal(parse("GET / FTP/1.0\r\n\r\n", &h, &buf), 400);
    free(buf);
    assert_int_equal(parse("GET noslash HTTP/1.1\r\n\r\n", &h, &buf), 400);
    free(buf);
    assert_int_equal(parse("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", &h, &buf), 400);
    free(buf);
    assert_int_equal(parse("GET / HTTP/1.1\r\nNoColon\r\n\r\n", &h, &buf), 400);
    free(buf);
    assert_int_equal(parse("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", &h, &buf), 400);
    free(buf);
    assert_int_equal(
        parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", &h, &buf), 400);
    free(buf);
    assert_int_equal(
        parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", &h, &buf), 0);
    free(buf);
    assert_int_equal(parse("POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", &h, &buf), 400);
    free(buf);
    assert_int_equal(parse("POST / HTTP/1.1\r\nContent-Length: 5\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n",
                           &h, &buf),
                     400);
    free(buf);
    assert_int_equal(parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", &h, &buf), 501);
    free(buf);
    n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\n");
    for (i = 0; i <= GH_HTTP_MAX_HEADERS; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "h%zu: v\r\n", i % 10);
    snprintf(big + n, sizeof(big) - n, "\r\n");
    assert_int_equal(parse(big, &h, &buf), 431);
    free(buf);
}

static void test_absolute_form(void **state)
{
    gh_http_head_t h;
    char *buf;
    (void)state;

    assert_int_equal(parse("POST http://gw:8080/v1/messages?x=1 HTTP/1.1\r\n\r\n", &h, &buf), 0);
    assert_string_equal(h.path, "/v1/messages");
    assert_string_equal(h.query, "x=1");
    free(buf);
}

typedef struct {
    char buf[256];
    size_t len;
} sink_t;

/* Collects decoded body bytes. */
static int sink_append(void *arg, const char *p, size_t n)
{
    sink_t *s = arg;
    if (s->len + n > sizeof(s->buf))
        return GH_ERR;
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return GH_OK;
}

static void test_chunked_any_split(void **state)
{
    const char *wire = "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
    size_t len = strlen(wire), split;
    (void)state;

    for (split = 0; split <= len; split++) {
        gh_chunked_t d;
        sink_t s;
        size_t used = 0, used2 = 0;
        int rc;

        memset(&d, 0, sizeof(d));
        memset(&s, 0, sizeof(s));
        rc = gh_chunked_decode(&d, wire, split, &used, sink_append, &s);
        assert_true(rc == 0 || split == len);
        assert_int_equal(used, split);
        rc = gh_chunked_decode(&d, wire + split, len - split, &used2, sink_append, &s);
        assert_int_equal(rc, 1);
        assert_int_equal(s.len, 12);
        assert_memory_equal(s.buf, "hello, world", 12);
    }
}

static void test_chunked_bad(void **state)
{
    const char *bad[] = {"zz\r\n", "5\r\nhelloXX", "\r\n", "1234567890123456789\r\n"};
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gh_chunked_t d;
        sink_t s;
        size_t used;
        memset(&d, 0, sizeof(d));
        memset(&s, 0, sizeof(s));
        assert_int_equal(gh_chunked_decode(&d, bad[i], strlen(bad[i]), &used, sink_append, &s), -1);
    }
}

static void test_forward_rules(void **state)
{
    (void)state;
    /* credentials and hop-by-hop headers never go upstream */
    assert_false(gh_proxy_forward_req_header("x-api-key", 9));
    assert_false(gh_proxy_forward_req_header("Authorization", 13));
    assert_false(gh_proxy_forward_req_header("Host", 4));
    assert_false(gh_proxy_forward_req_header("Content-Length", 14));
    assert_false(gh_proxy_forward_req_header("Connection", 10));
    assert_false(gh_proxy_forward_req_header("Transfer-Encoding", 17));
    assert_false(gh_proxy_forward_req_header("x-gatehouse-debug", 17));
    /* everything the API uses passes */
    assert_true(gh_proxy_forward_req_header("anthropic-version", 17));
    assert_true(gh_proxy_forward_req_header("anthropic-beta", 14));
    assert_true(gh_proxy_forward_req_header("anthropic-dangerous-direct-browser-access", 41));
    assert_true(gh_proxy_forward_req_header("x-stainless-os", 14));
    assert_true(gh_proxy_forward_req_header("Content-Type", 12));
    assert_true(gh_proxy_forward_req_header("User-Agent", 10));
    /* response side: framing is ours, everything else is relayed */
    assert_false(gh_proxy_forward_resp_header("Content-Length", 14));
    assert_false(gh_proxy_forward_resp_header("transfer-encoding", 17));
    assert_true(gh_proxy_forward_resp_header("request-id", 10));
    assert_true(gh_proxy_forward_resp_header("retry-after", 11));
    assert_true(gh_proxy_forward_resp_header("anthropic-ratelimit-requests-remaining", 38));
    assert_true(gh_proxy_forward_resp_header("content-type", 12));
}

static void test_reasons(void **state)
{
    (void)state;
    assert_string_equal(gh_http_reason(200), "OK");
    assert_string_equal(gh_http_reason(413), "Payload Too Large");
    assert_string_equal(gh_http_reason(529), "Overloaded");
    assert_true(gh_http_name_eq("Content-TYPE", 12, "content-type"));
    assert_false(gh_http_name_eq("Content-TYP", 11, "content-type"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typical_head),      cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_bad_heads),         cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_chunked_any_split), cmocka_unit_test(test_chunked_bad),
        cmocka_unit_test(test_forward_rules),     cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
