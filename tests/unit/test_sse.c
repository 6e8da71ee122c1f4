/* test_sse.c: unit tests of the incremental server-sent-events splitter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gh.h"
#include "sse.h"

/* One logged event, as on_event writes it. */
#define EV(name, data) name "\x1f" data "\x1e"

/* What the callback saw: every event appended as "name\x1f" data "\x1e", plus a count. */
typedef struct {
    char *log;
    size_t len;
    size_t cap;
    size_t count;
    size_t stop_at; /* return GH_ERR from this event (1-based); 0 = never */
} seen_t;

/* Appends n bytes to the log, growing it as needed. */
static void seen_put(seen_t *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->log = realloc(s->log, s->cap);
        assert_non_null(s->log);
    }
    memcpy(s->log + s->len, p, n);
    s->len += n;
    s->log[s->len] = '\0';
}

/* Records one event; checks that both strings are NUL-terminated at their lengths. */
static int on_event(void *arg, const char *event, size_t event_len, const char *data,
                    size_t data_len)
{
    seen_t *s = arg;
    assert_int_equal(event[event_len], '\0');
    assert_int_equal(data[data_len], '\0');
    seen_put(s, event, event_len);
    seen_put(s, "\x1f", 1);
    seen_put(s, data, data_len);
    seen_put(s, "\x1e", 1);
    s->count++;
    return s->stop_at != 0 && s->count >= s->stop_at ? GH_ERR : GH_OK;
}

/* Feeds text to a fresh parser in pieces cut at the given offsets (ascending) and returns the
 * log of events; *rc gets the first failure of gh_sse_feed, if any. The caller frees the log. */
static char *run_cuts(const char *text, size_t len, const size_t *cuts, size_t ncuts,
                      size_t max_event, int *rc, size_t *count)
{
    gh_sse_parser_t p;
    seen_t s = {0};
    size_t prev = 0;

    gh_sse_init(&p, on_event, &s);
    p.max_event = max_event;
    *rc = GH_OK;
    for (size_t c = 0; c <= ncuts && *rc == GH_OK; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        *rc = gh_sse_feed(&p, text + prev, end - prev);
        prev = end;
    }
    if (count != NULL)
        *count = s.count;
    assert_int_equal(p.events, s.count);
    gh_sse_free(&p);
    if (s.log == NULL) {
        s.log = calloc(1, 1);
        assert_non_null(s.log);
    }
    return s.log;
}

/* Feeds the NUL-terminated text in one piece and returns the log of events. */
static char *run(const char *text, int *rc)
{
    return run_cuts(text, strlen(text), NULL, 0, 0, rc, NULL);
}

/* Asserts that text, fed at once, yields the log want and feed result GH_OK. */
static void expect(const char *text, const char *want)
{
    int rc;
    char *log = run(text, &rc);
    assert_int_equal(rc, GH_OK);
    assert_string_equal(log, want);
    free(log);
}

static const char anthropic_stream[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\","
    "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\","
    "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,"
    "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
    "\"text\":\"\"}}\n"
    "\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"Hello\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"!\\nHow can I help?\"}}\n"
    "\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n"
    "\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
    "\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n"
    "\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n"
    "\n";

static const char *const anthropic_names[] = {
    "message_start",       "content_block_start", "ping",          "content_block_delta",
    "content_block_delta", "content_block_stop",  "message_delta", "message_stop",
};

/* Rewrites every "\n" of text as eol into a fresh heap string. */
static char *with_eol(const char *text, const char *eol, size_t *outlen)
{
    size_t n = strlen(text), e = strlen(eol), o = 0;
    char *out = malloc(n * e + 1);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\n') {
            memcpy(out + o, eol, e);
            o += e;
        } else {
            out[o++] = text[i];
        }
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

/* The log the Anthropic stream must produce, built from its own lines. */
static char *anthropic_log(void)
{
    seen_t s = {0};
    const char *p = anthropic_stream;
    size_t k = 0;
    while ((p = strstr(p, "data: ")) != NULL) {
        const char *e = strchr(p, '\n');
        seen_put(&s, anthropic_names[k], strlen(anthropic_names[k]));
        seen_put(&s, "\x1f", 1);
        seen_put(&s, p + 6, (size_t)(e - p - 6));
        seen_put(&s, "\x1e", 1);
        k++;
        p = e;
    }
    assert_int_equal(k, GH_ARRAY_LEN(anthropic_names));
    return s.log;
}

/* Splits text at every single offset, at every pair of nearby offsets and byte by byte, and
 * checks that the events never change. */
static void check_all_splits(const char *text, size_t len, const char *want)
{
    size_t cuts[2], count;
    int rc;
    char *log;

    log = run_cuts(text, len, NULL, 0, 0, &rc, &count);
    assert_int_equal(rc, GH_OK);
    assert_int_equal(count, GH_ARRAY_LEN(anthropic_names));
    assert_string_equal(log, want);
    free(log);

    for (size_t i = 0; i <= len; i++) {
        cuts[0] = i;
        log = run_cuts(text, len, cuts, 1, 0, &rc, NULL);
        assert_int_equal(rc, GH_OK);
        assert_string_equal(log, want);
        free(log);
        for (size_t j = i; j <= len && j < i + 24; j++) {
            cuts[1] = j;
            log = run_cuts(text, len, cuts, 2, 0, &rc, NULL);
            assert_int_equal(rc, GH_OK);
            assert_string_equal(log, want);
            free(log);
        }
    }

    size_t *every = malloc(len * sizeof *every);
    assert_non_null(every);
    for (size_t i = 0; i < len; i++)
        every[i] = i;
    log = run_cuts(text, len, every, len, 0, &rc, NULL);
    assert_int_equal(rc, GH_OK);
    assert_string_equal(log, want);
    free(log);
    free(every);
}

/* A real Anthropic stream gives the same eight events however the network splits it. */
static void test_anthropic_stream_lf(void **state)
{
    char *want = anthropic_log();
    (void)state;
    check_all_splits(anthropic_stream, strlen(anthropic_stream), want);
    free(want);
}

/* The same with CRLF line ends, including a CR ending one chunk and its LF starting the next. */
static void test_anthropic_stream_crlf(void **state)
{
    size_t n;
    char *want = anthropic_log(), *text = with_eol(anthropic_stream, "\r\n", &n);
    (void)state;
    check_all_splits(text, n, want);
    free(text);
    free(want);
}

/* The same with bare CR line ends. */
static void test_anthropic_stream_cr(void **state)
{
    size_t n;
    char *want = anthropic_log(), *text = with_eol(anthropic_stream, "\r", &n);
    (void)state;
    check_all_splits(text, n, want);
    free(text);
    free(want);
}

/* Line ends may be mixed freely; "\n\r" is two line ends, not one. */
static void test_mixed_line_ends(void **state)
{
    (void)state;
    expect("data: a\r\n\r\ndata: b\r\rdata: c\n\ndata: d\r\n\n",
           EV("message", "a") EV("message", "b") EV("message", "c") EV("message", "d"));
    expect("data: a\n\rdata: b\n\r", EV("message", "a") EV("message", "b"));
    /* A CR that ends a chunk is followed by a chunk that starts with another CR. */
    size_t cuts[] = {8};
    int rc;
    char *log = run_cuts("data: a\r\rdata: b\r\r", 18, cuts, 1, 0, &rc, NULL);
    assert_int_equal(rc, GH_OK);
    assert_string_equal(log, EV("message", "a") EV("message", "b"));
    free(log);
}

/* Several data lines are joined with '\n'; one leading space is removed from each value. */
static void test_multiline_data(void **state)
{
    (void)state;
    expect("data: a\ndata:b\ndata\ndata:  c\ndata:\n\n", EV("message", "a\nb\n\n c\n"));
    expect("data\n\n", EV("message", ""));
    expect("data:\n\n", EV("message", ""));
    expect("data: \n\n", EV("message", ""));
    expect("data:x:y: z\n\n", EV("message", "x:y: z"));
}

/* Comments and unknown fields are ignored; an event without data is not dispatched. */
static void test_comments_and_fields(void **state)
{
    (void)state;
    expect(": ping\n\n", "");
    expect(":\n\n:x\n\n", "");
    expect(":comment\ndata: x\n: another\n\n", EV("message", "x"));
    expect("id: 1\nretry: 5\nfoo\nfoo: bar\nDATA: no\nData: no\ndata : no\ndata: yes\n\n",
           EV("message", "yes"));
    expect("event: lonely\n\n", "");
    expect("\n\n\n", "");
}

/* The event name defaults to "message", and never carries over to the next event. */
static void test_event_names(void **state)
{
    (void)state;
    expect("data: x\n\n", EV("message", "x"));
    expect("event:\ndata: x\n\n", EV("message", "x"));
    expect("event: a\ndata: 1\n\ndata: 2\n\n", EV("a", "1") EV("message", "2"));
    expect("event: a\n\ndata: 1\n\n", EV("message", "1"));
    expect("event: a\nevent: b\ndata: 1\n\n", EV("b", "1"));
    expect("data: 1\nevent:  two spaces\n\n", EV(" two spaces", "1"));
    expect("event\ndata: 1\n\n", EV("message", "1"));
}

/* An event still open when the parser is freed is dropped, and the parser can be reused. */
static void test_unfinished_and_reuse(void **state)
{
    gh_sse_parser_t p;
    seen_t s = {0};
    (void)state;

    gh_sse_init(&p, on_event, &s);
    assert_int_equal(gh_sse_feed(&p, "data: a\n\ndata: b\n", 17), GH_OK);
    assert_int_equal(gh_sse_feed(&p, "data: partial", 13), GH_OK);
    assert_int_equal(gh_sse_feed(&p, NULL, 0), GH_OK);
    assert_int_equal(s.count, 1);
    assert_int_equal(p.events, 1);
    gh_sse_free(&p);
    assert_int_equal(s.count, 1);

    gh_sse_init(&p, on_event, &s);
    assert_int_equal(gh_sse_feed(&p, "data: c\n\n", 9), GH_OK);
    assert_int_equal(s.count, 2);
    assert_int_equal(p.events, 1);
    gh_sse_free(&p);
    gh_sse_free(&p);
    assert_string_equal(s.log, EV("message", "a") EV("message", "c"));
    free(s.log);
}

/* A callback returning GH_ERR stops the parser: the feed fails and nothing more is delivered. */
static void test_callback_stops(void **state)
{
    gh_sse_parser_t p;
    seen_t s = {0};
    (void)state;

    s.stop_at = 2;
    gh_sse_init(&p, on_event, &s);
    assert_int_equal(gh_sse_feed(&p, anthropic_stream, strlen(anthropic_stream)), GH_ERR);
    assert_int_equal(s.count, 2);
    assert_int_equal(gh_sse_feed(&p, "data: more\n\n", 12), GH_ERR);
    assert_int_equal(gh_sse_feed(&p, "", 0), GH_ERR);
    assert_int_equal(s.count, 2);
    gh_sse_free(&p);
    free(s.log);

    /* Stopping on the very first event, which ends a chunk exactly. */
    memset(&s, 0, sizeof s);
    s.stop_at = 1;
    gh_sse_init(&p, on_event, &s);
    assert_int_equal(gh_sse_feed(&p, "data: x\n", 8), GH_OK);
    assert_int_equal(gh_sse_feed(&p, "\n", 1), GH_ERR);
    assert_int_equal(s.count, 1);
    gh_sse_free(&p);
    free(s.log);
}

/* Feeds text with max_event at every split offset and checks the result is always want_rc. */
static void check_limit(const char *text, size_t max_event, int want_rc, size_t want_count)
{
    size_t len = strlen(text), count;
    int rc;
    char *log = run_cuts(text, len, NULL, 0, max_event, &rc, &count);
    assert_int_equal(rc, want_rc);
    assert_int_equal(count, want_count);
    free(log);
    for (size_t i = 0; i <= len; i++) {
        log = run_cuts(text, len, &i, 1, max_event, &rc, &count);
        if (rc != want_rc || count != want_count)
            fail_msg("split at %zu of \"%s\": rc %d count %zu", i, text, rc, count);
        free(log);
    }
}

/* An event larger than max_event fails the feed, wherever the stream is split. */
static void test_max_event(void **state)
{
    (void)state;
    check_limit("data: 0123456789abcdef\n\n", 16, GH_OK, 1);
    check_limit("data: 0123456789abcdefg\n\n", 16, GH_ERR, 0);
    check_limit("data: 01234567\ndata: 0123456\n\n", 16, GH_OK, 1);
    check_limit("data: 01234567\ndata: 01234567\n\n", 16, GH_ERR, 0);
    check_limit("event: 0123456789\ndata: 012345\n\n", 16, GH_OK, 1);
    check_limit("event: 0123456789\ndata: 0123456\n\n", 16, GH_ERR, 0);
    check_limit("data: 0123456789\nevent: 0123456\n\n", 16, GH_ERR, 0);
    /* The budget is per event: many events of the full size pass. */
    check_limit("data: 0123456789abcdef\n\ndata: 0123456789abcdef\n\n", 16, GH_OK, 2);
    /* Comments and ignored fields cost nothing however long they are. */
    check_limit(": 0123456789abcdef0123456789abcdef\ndata: x\n\n", 16, GH_OK, 1);
    check_limit("id: 0123456789abcdef0123456789abcdef\ndata: x\n\n", 16, GH_OK, 1);
    check_limit("data0123456789abcdef0123456789abcdef\ndata: x\n\n", 16, GH_OK, 1);

    /* The 16 MiB default. */
    size_t n = ((size_t)16 << 20) + 64, count;
    char *big = malloc(n);
    int rc;
    assert_non_null(big);
    memcpy(big, "data: ", 6);
    memset(big + 6, 'x', n - 6);
    big[n - 2] = '\n';
    big[n - 1] = '\n';
    char *log = run_cuts(big, n, NULL, 0, 0, &rc, &count);
    assert_int_equal(rc, GH_ERR);
    free(log);
    /* Exactly 16 MiB of data is still allowed, fed in 64 KiB chunks. */
    size_t ok = ((size_t)16 << 20) + 8;
    big[ok - 2] = '\n';
    big[ok - 1] = '\n';
    size_t cuts[260], nc = 0;
    for (size_t c = 65536; c < ok && nc < GH_ARRAY_LEN(cuts); c += 65536)
        cuts[nc++] = c;
    log = run_cuts(big, ok, cuts, nc, 0, &rc, &count);
    assert_int_equal(rc, GH_OK);
    assert_int_equal(count, 1);
    free(log);
    free(big);
}

/* Payload bytes, NUL included, pass through untouched; long lines grow the buffers. */
static void test_binary_and_long(void **state)
{
    static const char text[] = "event: e\0v\ndata: a\0b\n\n";
    gh_sse_parser_t p;
    seen_t s = {0};
    (void)state;

    gh_sse_init(&p, on_event, &s);
    assert_int_equal(gh_sse_feed(&p, text, sizeof text - 1), GH_OK);
    assert_int_equal(s.len, 8);
    assert_memory_equal(s.log, EV("e\0v", "a\0b"), 8);
    gh_sse_free(&p);
    free(s.log);

    /* A 1 MiB data line delivered in odd-sized chunks. */
    size_t n = (1u << 20) + 8;
    char *line = malloc(n);
    assert_non_null(line);
    memcpy(line, "data: ", 6);
    for (size_t i = 6; i < n - 2; i++)
        line[i] = (char)('a' + i % 26);
    line[n - 2] = '\n';
    line[n - 1] = '\n';
    memset(&s, 0, sizeof s);
    gh_sse_init(&p, on_event, &s);
    for (size_t off = 0; off < n; off += 997) {
        size_t k = n - off < 997 ? n - off : 997;
        assert_int_equal(gh_sse_feed(&p, line + off, k), GH_OK);
    }
    assert_int_equal(s.count, 1);
    assert_int_equal(s.len, 7 + 1 + (n - 8) + 1);
    assert_memory_equal(s.log + 8, line + 6, n - 8);
    gh_sse_free(&p);
    free(s.log);
    free(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anthropic_stream_lf), cmocka_unit_test(test_anthropic_stream_crlf),
        cmocka_unit_test(test_anthropic_stream_cr), cmocka_unit_test(test_mixed_line_ends),
        cmocka_unit_test(test_multiline_data),      cmocka_unit_test(test_comments_and_fields),
        cmocka_unit_test(test_event_names),         cmocka_unit_test(test_unfinished_and_reuse),
        cmocka_unit_test(test_callback_stops),      cmocka_unit_test(test_max_event),
        cmocka_unit_test(test_binary_and_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
