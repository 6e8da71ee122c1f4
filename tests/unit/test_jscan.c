/* test_jscan.c: unit tests of the top-level JSON member scanner, string decoder and quoter. */
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

enum { K_MODEL, K_STREAM, K_MESSAGES, K_MISSING, K_COUNT };

static const char *const keys[K_COUNT] = {"model", "stream", "messages", "missing"};

/* Scans the NUL-terminated json for the keys above into spans; returns the scanner's result. */
static int scan(const char *json, gh_jspan_t spans[K_COUNT], size_t *err)
{
    return gh_jscan_object(json, strlen(json), keys, K_COUNT, spans, err);
}

/* Asserts that json is rejected and that the error offset is want. */
static void assert_invalid_at(const char *json, size_t len, size_t want)
{
    gh_jspan_t spans[K_COUNT];
    size_t err = (size_t)-1;
    int rc = gh_jscan_object(json, len, keys, K_COUNT, spans, &err);
    if (rc != GH_ERR || err != want)
        fail_msg("%s: rc %d err_off %zu, want GH_ERR at %zu", json, rc, err, want);
    for (size_t k = 0; k < K_COUNT; k++)
        assert_int_equal(spans[k].type, GH_JSON_ABSENT);
}

/* Asserts that the NUL-terminated json is rejected with error offset want. */
static void invalid(const char *json, size_t want)
{
    assert_invalid_at(json, strlen(json), want);
}

/* Asserts that the NUL-terminated json is accepted. */
static void valid(const char *json)
{
    gh_jspan_t spans[K_COUNT];
    size_t err = 0;
    if (scan(json, spans, &err) != GH_OK)
        fail_msg("%s: rejected at %zu", json, err);
}

/* Asserts that span covers exactly the text want inside json. */
static void assert_span_text(const char *json, size_t off, size_t len, const char *want)
{
    assert_int_equal(len, strlen(want));
    assert_memory_equal(json + off, want, len);
}

/* Decodes a string span into a fresh heap buffer; the caller frees it. */
static char *decode(const char *json, const gh_jspan_t *span, long *outlen)
{
    size_t cap = span->len + 1;
    char *out = malloc(cap);
    assert_non_null(out);
    *outlen = gh_jscan_string(json, span, out, cap);
    return out;
}

static const char messages_body[] =
    "{\"model\":\"claude-sonnet-4-5-20250929\",\"max_tokens\":32000,"
    "\"system\":[{\"type\":\"text\",\"text\":\"You are Claude Code.\","
    "\"cache_control\":{\"type\":\"ephemeral\"}}],"
    "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
    "\"fix the \\\"bug\\\" in main.c\\n\\tplease \\u00e9\\ud83d\\ude00\"}]},"
    "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_1\","
    "\"name\":\"Read\",\"input\":{\"file_path\":\"/src/main.c\",\"limit\":-1.5e+3}}]}],"
    "\"tools\":[],\"temperature\":1,\"metadata\":{\"user_id\":\"u_1\",\"model\":\"nested\"},"
    "\"stream\":true}";

/* A typical Claude Code Messages body: model, stream and messages are found with exact spans. */
static void test_messages_body(void **state)
{
    gh_jspan_t s[K_COUNT];
    size_t err = 99;
    long n;
    (void)state;

    assert_int_equal(scan(messages_body, s, &err), GH_OK);
    assert_int_equal(s[K_MODEL].type, GH_JSON_STRING);
    assert_span_text(messages_body, s[K_MODEL].off, s[K_MODEL].len,
                     "\"claude-sonnet-4-5-20250929\"");
    assert_span_text(messages_body, s[K_MODEL].member_off, s[K_MODEL].member_len,
                     "\"model\":\"claude-sonnet-4-5-20250929\"");
    assert_int_equal(s[K_STREAM].type, GH_JSON_TRUE);
    assert_span_text(messages_body, s[K_STREAM].off, s[K_STREAM].len, "true");
    assert_span_text(messages_body, s[K_STREAM].member_off, s[K_STREAM].member_len,
                     "\"stream\":true");
    assert_int_equal(s[K_MESSAGES].type, GH_JSON_ARRAY);
    assert_int_equal(messages_body[s[K_MESSAGES].off], '[');
    assert_int_equal(messages_body[s[K_MESSAGES].off + s[K_MESSAGES].len - 1], ']');
    assert_int_equal(messages_body[s[K_MESSAGES].off + s[K_MESSAGES].len], ',');
    assert_int_equal(s[K_MISSING].type, GH_JSON_ABSENT);

    char *m = decode(messages_body, &s[K_MODEL], &n);
    assert_int_equal(n, 26);
    assert_string_equal(m, "claude-sonnet-4-5-20250929");
    free(m);
}

/* Keys inside nested objects or arrays never match, whatever their position. */
static void test_nested_keys_ignored(void **state)
{
    gh_jspan_t s[K_COUNT];
    const char *a = "{\"metadata\":{\"model\":\"x\"},\"model\":\"y\"}";
    const char *b = "{\"messages\":[{\"model\":\"x\"}]}";
    const char *c = "{\"a\":[[{\"model\":1}]],\"b\":{\"c\":{\"model\":2,\"stream\":false}},"
                    "\"d\":[\"model\",\"stream\"]}";
    const char *d = "{\"model\":\"y\",\"metadata\":{\"model\":\"x\"}}";
    (void)state;

    assert_int_equal(scan(a, s, NULL), GH_OK);
    assert_int_equal(s[K_MODEL].type, GH_JSON_STRING);
    assert_span_text(a, s[K_MODEL].off, s[K_MODEL].len, "\"y\"");

    assert_int_equal(scan(b, s, NULL), GH_OK);
    assert_int_equal(s[K_MODEL].type, GH_JSON_ABSENT);
    assert_int_equal(s[K_MESSAGES].type, GH_JSON_ARRAY);

    assert_int_equal(scan(c, s, NULL), GH_OK);
    assert_int_equal(s[K_MODEL].type, GH_JSON_ABSENT);
    assert_int_equal(s[K_STREAM].type, GH_JSON_ABSENT);

    assert_int_equal(scan(d, s, NULL), GH_OK);
    assert_span_text(d, s[K_MODEL].off, s[K_MODEL].len, "\"y\"");
}

/* Escapes in values are kept raw in the span and decoded by gh_jscan_string. */
static void test_value_escapes(void **state)
{
    const char *j =
        "{\"model\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u20AC\\ud83d\\ude00\\u0041\"}";
    const char want[] = "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                        "A";
    gh_jspan_t s[K_COUNT];
    long n;
    (void)state;

    assert_int_equal(scan(j, s, NULL), GH_OK);
    assert_int_equal(s[K_MODEL].type, GH_JSON_STRING);
    assert_int_equal(s[K_MODEL].off, 9);
    assert_int_equal(s[K_MODEL].len, strlen(j) - 10);
    char *m = decode(j, &s[K_MODEL], &n);
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(m, want, sizeof want);
    free(m);
}

/* Keys are compared after unescaping; near misses do not match. */
static void test_escaped_keys(void **state)
{
    gh_jspan_t s[K_COUNT];
    const char *a = "{\"mo\\u0064el\":\"x\",\"\\u0073tream\":false,\"mess\\u0061ges\":[]}";
    const char *b =
        "{\"model\\u0000\":\"x\",\"mode\":1,\"modelx\":2,\"Model\":3,\"\\u006dodel\\n\":4}";
    const char *c = "{\"\\u006d\\u006f\\u0064\\u0065\\u006c\":\"z\"}";
    const char *d = "{\"\\\"model\":1,\"model\\\\\":2}";
    const char *e = "{\"caf\\u00e9\":1}";
    const char *const ek[] = {"caf\xc3\xa9"};
    (void)state;

    assert_int_equal(scan(a, s, NULL), GH_OK);
    assert_int_equal(s[K_MODEL].type, GH_JSON_STRING);
    assert_span_text(a, s[K_MODEL].member_off, s[K_MODEL].member_len, "\"mo\\u0064el\":\"x\"");
    assert_int_equal(s[K_STREAM].type, GH_JSON_FALSE);
    assert_int_equal(s[K_MESSAGES].type, GH_JSON_ARRAY);

    assert_int_equal(scan(b, s, NULL), GH_OK);
    assert_int_equal(s[K_MODEL].type, GH_JSON_ABSENT);

    assert_int_equal(scan(c, s, NULL), GH_OK);
    assert_span_text(c, s[K_MODEL].off, s[K_MODEL].len, "\"z\"");

    assert_int_equal(scan(d, s, NULL), GH_OK);
    assert_int_equal(s[K_MODEL].type, GH_JSON_ABSENT);

    assert_int_equal(gh_jscan_object(e, strlen(e), ek, 1, s, NULL), GH_OK);
    assert_int_equal(s[0].type, GH_JSON_NUMBER);
}

/* A repeated key reports its last occurrence, for member and value alike. */
static void test_duplicate_keys(void **state)
{
    gh_jspan_t s[K_COUNT];
    const char *j = "{\"model\":\"a\",\"stream\":true,\"model\":\"bb\",\"stream\":null}";
    const char *twice[] = {"model", "model"};
    (void)state;

    assert_int_equal(scan(j, s, NULL), GH_OK);
    assert_span_text(j, s[K_MODEL].off, s[K_MODEL].len, "\"bb\"");
    assert_int_equal(s[K_MODEL].member_off, 27);
    assert_int_equal(s[K_STREAM].type, GH_JSON_NULL);

    /* A key asked for twice fills both spans. */
    assert_int_equal(gh_jscan_object(j, strlen(j), twice, 2, s, NULL), GH_OK);
    assert_int_equal(s[0].off, s[1].off);
    assert_int_equal(s[1].type, GH_JSON_STRING);
}

/* White space is allowed around every token and is never part of a span. */
static void test_whitespace(void **state)
{
    gh_jspan_t s[K_COUNT];
    const char *j = " \t\r\n{ \"model\" \t:\r\n \"x\" , \"stream\"\n:\n[ 1 , { } , [ ] ] \n"
                    ",\"messages\":{ \"a\" : [ ] }\t} \r\n\t";
    (void)state;

    assert_int_equal(scan(j, s, NULL), GH_OK);
    assert_span_text(j, s[K_MODEL].off, s[K_MODEL].len, "\"x\"");
    assert_span_text(j, s[K_MODEL].member_off, s[K_MODEL].member_len, "\"model\" \t:\r\n \"x\"");
    assert_int_equal(s[K_STREAM].type, GH_JSON_ARRAY);
    assert_span_text(j, s[K_STREAM].off, s[K_STREAM].len, "[ 1 , { } , [ ] ]");
    assert_int_equal(s[K_MESSAGES].type, GH_JSON_OBJECT);
    assert_span_text(j, s[K_MESSAGES].off, s[K_MESSAGES].len, "{ \"a\" : [ ] }");

    valid("{}");
    valid(" {} ");
    valid("{ }");
    valid("\n{\"\":\"\"}\n");
}

/* Every value type is reported with its exact raw text. */
static void test_value_types(void **state)
{
    static const struct {
        const char *text;
        gh_json_type_t type;
    } cases[] = {
        {"\"\"", GH_JSON_STRING},
        {"\"s p\\u0041\"", GH_JSON_STRING},
        {"0", GH_JSON_NUMBER},
        {"-0", GH_JSON_NUMBER},
        {"123", GH_JSON_NUMBER},
        {"-1.5e+10", GH_JSON_NUMBER},
        {"0.0", GH_JSON_NUMBER},
        {"1E-2", GH_JSON_NUMBER},
        {"9e9", GH_JSON_NUMBER},
        {"12345678901234567890123", GH_JSON_NUMBER},
        {"true", GH_JSON_TRUE},
        {"false", GH_JSON_FALSE},
        {"null", GH_JSON_NULL},
        {"{}", GH_JSON_OBJECT},
        {"{\"a\":{\"b\":[1,{\"c\":null}]}}", GH_JSON_OBJECT},
        {"[]", GH_JSON_ARRAY},
        {"[1,\"a\",true,false,null,[],{}]", GH_JSON_ARRAY},
    };
    char j[256];
    gh_jspan_t s[K_COUNT];
    (void)state;

    for (size_t c = 0; c < GH_ARRAY_LEN(cases); c++) {
        /* Both as the first and as the last member, so the following byte varies. */
        snprintf(j, sizeof j, "{\"stream\":%s,\"model\":%s}", cases[c].text, cases[c].text);
        assert_int_equal(scan(j, s, NULL), GH_OK);
        assert_int_equal(s[K_STREAM].type, cases[c].type);
        assert_int_equal(s[K_MODEL].type, cases[c].type);
        assert_span_text(j, s[K_STREAM].off, s[K_STREAM].len, cases[c].text);
        assert_span_text(j, s[K_MODEL].off, s[K_MODEL].len, cases[c].text);
        assert_int_equal(s[K_STREAM].member_off, 1);
        assert_int_equal(s[K_MODEL].member_off + s[K_MODEL].member_len, strlen(j) - 1);
    }
}

/* Replaces the bytes [off, off + len) of json with rep into a fresh heap string. */
static char *splice(const char *json, size_t off, size_t len, const char *rep)
{
    size_t n = strlen(json), r = strlen(rep);
    char *out = malloc(n - len + r + 1);
    assert_non_null(out);
    memcpy(out, json, off);
    memcpy(out + off, rep, r);
    memcpy(out + off + r, json + off + len, n - off - len + 1);
    return out;
}

/* member_off/member_len are exact: replacing or removing a member keeps the document valid. */
static void test_member_splice(void **state)
{
    gh_jspan_t s[K_COUNT], t[K_COUNT];
    long n;
    (void)state;

    assert_int_equal(scan(messages_body, s, NULL), GH_OK);

    char *r = splice(messages_body, s[K_MODEL].member_off, s[K_MODEL].member_len,
                     "\"model\" : \"claude-opus-4-1\"");
    assert_int_equal(scan(r, t, NULL), GH_OK);
    char *m = decode(r, &t[K_MODEL], &n);
    assert_string_equal(m, "claude-opus-4-1");
    assert_int_equal(t[K_STREAM].type, GH_JSON_TRUE);
    free(m);
    free(r);

    /* The value alone can be replaced with any other value. */
    r = splice(messages_body, s[K_STREAM].off, s[K_STREAM].len, "false");
    assert_int_equal(scan(r, t, NULL), GH_OK);
    assert_int_equal(t[K_STREAM].type, GH_JSON_FALSE);
    free(r);

    /* Removing the last member along with the comma before it. */
    r = splice(messages_body, s[K_STREAM].member_off - 1, s[K_STREAM].member_len + 1, "");
    assert_int_equal(scan(r, t, NULL), GH_OK);
    assert_int_equal(t[K_STREAM].type, GH_JSON_ABSENT);
    assert_int_equal(t[K_MODEL].type, GH_JSON_STRING);
    free(r);

    /* Removing the first member along with the comma after it. */
    r = splice(messages_body, s[K_MODEL].member_off, s[K_MODEL].member_len + 1, "");
    assert_int_equal(scan(r, t, NULL), GH_OK);
    assert_int_equal(t[K_MODEL].type, GH_JSON_ABSENT);
    assert_int_equal(t[K_STREAM].type, GH_JSON_TRUE);
    free(r);

    /* Replacing a whole nested member. */
    r = splice(messages_body, s[K_MESSAGES].member_off, s[K_MESSAGES].member_len,
               "\"messages\":[]");
    assert_int_equal(scan(r, t, NULL), GH_OK);
    assert_int_equal(t[K_MESSAGES].len, 2);
    free(r);
}

/* Documents that are not one JSON object fail with the offset of the fault. */
static void test_invalid_structure(void **state)
{
    (void)state;
    invalid("", 0);
    invalid("   ", 3);
    invalid("{\"a\":1} x", 8);
    invalid("{\"a\":1}{}", 7);
    invalid("{}}", 2);
    invalid("{\"a\":1}}", 7);
    invalid("[1]", 0);
    invalid("[]", 0);
    invalid("\"a\"", 0);
    invalid("1", 0);
    invalid("null", 0);
    invalid("{", 1);
    invalid("{\"a\"", 4);
    invalid("{\"a\":", 5);
    invalid("{\"a\":1", 6);
    invalid("{\"a\":1,", 7);
    invalid("{\"a\":1,}", 7);
    invalid("{\"a\":[1,]}", 8);
    invalid("{\"a\":[,1]}", 6);
    invalid("{,\"a\":1}", 1);
    invalid("{\"a\" 1}", 5);
    invalid("{\"a\"::1}", 5);
    invalid("{\"a\":1 \"b\":2}", 7);
    invalid("{\"a\":1,,\"b\":2}", 7);
    invalid("{\"a\":[1}]", 7);
    invalid("{\"a\":{\"b\":1]}", 11);
    invalid("{\"a\":[1 2]}", 8);
    invalid("{'a':1}", 1);
    invalid("{a:1}", 1);
    invalid("{1:1}", 1);
    invalid("{\"a\":tru}", 5);
    invalid("{\"a\":nul}", 5);
    invalid("{\"a\":True}", 5);
    invalid("{\"a\":falsey}", 10);
    invalid("{\"a\":undefined}", 5);
    invalid("{\"a\":NaN}", 5);
    invalid("{\"a\":+1}", 5);
    invalid("\xef\xbb\xbf{}", 0);
    invalid("{\"a\":1}\x0b", 7);
    assert_invalid_at("{\"a\":1}\0", 8, 7);
    assert_invalid_at("{\"a\":\0}", 7, 5);
}

/* Numbers follow the exact RFC 8259 grammar. */
static void test_invalid_numbers(void **state)
{
    (void)state;
    invalid("{\"a\":01}", 6);
    invalid("{\"a\":-01}", 7);
    invalid("{\"a\":00}", 6);
    invalid("{\"a\":1.}", 7);
    invalid("{\"a\":1.e5}", 7);
    invalid("{\"a\":.5}", 5);
    invalid("{\"a\":-}", 6);
    invalid("{\"a\":-a}", 6);
    invalid("{\"a\":--1}", 6);
    invalid("{\"a\":1e}", 7);
    invalid("{\"a\":1e+}", 8);
    invalid("{\"a\":1E-x}", 8);
    invalid("{\"a\":1.5.}", 8);
    invalid("{\"a\":0x10}", 6);
    invalid("{\"a\":1", 6);
    valid("{\"a\":-0.0e-0}");
    valid("{\"a\":[0,-0,1e5,1E+5,10.01]}");
}

/* Strings reject raw control characters, bad escapes, lone surrogates and missing quotes. */
static void test_invalid_strings(void **state)
{
    char j[64];
    (void)state;
    invalid("{\"a\":\"abc", 9);
    invalid("{\"a\":\"abc\\", 10);
    invalid("{\"a\":\"abc\\\"}", 12);
    invalid("{\"a\":\"\\x\"}", 7);
    invalid("{\"a\":\"\\U0041\"}", 7);
    invalid("{\"a\":\"\\'\"}", 7);
    invalid("{\"a\":\"\\u12G4\"}", 8);
    invalid("{\"a\":\"\\u12\"}", 8);
    invalid("{\"a\":\"\\u\"}", 8);
    invalid("{\"a\":\"x\ny\"}", 7);
    invalid("{\"a\":\"x\ty\"}", 7);
    invalid("{\"a\":\"\x1f\"}", 6);
    invalid("{\"a\":\"\\ud800\"}", 6);
    invalid("{\"a\":\"\\udc00\"}", 6);
    invalid("{\"a\":\"\\udbff\\u0041\"}", 6);
    invalid("{\"a\":\"\\ud800\\ud800\"}", 6);
    invalid("{\"a\":\"\\ud800\\n\"}", 6);
    invalid("{\"a\":\"\\ud800\"", 6);
    invalid("{\"a\x01\":1}", 3);
    invalid("{\"\\q\":1}", 3);
    valid("{\"a\":\"\\ud800\\udc00\\udbff\\udfff\"}");
    valid("{\"a\":\"\x7f\xff\xfe\xc0\x80 invalid utf-8 is accepted\"}");

    /* A control character at every offset of strings long enough for the wide scan paths. */
    for (size_t len = 1; len < 40; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            memset(j, 'x', sizeof j);
            memcpy(j, "{\"a\":\"", 6);
            j[6 + pos] = (char)(pos % 2 ? 0x1f : 0x01);
            memcpy(j + 6 + len, "\"}", 3);
            invalid(j, 6 + pos);
            /* A bad escape letter, unless the backslash would escape the closing quote. */
            if (pos + 1 < len) {
                j[6 + pos] = '\\';
                j[7 + pos] = 'q';
                invalid(j, 7 + pos);
            }
        }
    }
}

/* Nesting is limited to GH_JSCAN_MAX_DEPTH containers, the outer object included. */
static void test_depth(void **state)
{
    size_t n = GH_JSCAN_MAX_DEPTH + 16;
    char *j = malloc(8 * n + 16);
    size_t o;
    gh_jspan_t s[K_COUNT];
    size_t err = 0;
    (void)state;
    assert_non_null(j);

    /* The outer object and 255 arrays: exactly the limit. */
    o = 0;
    o += (size_t)sprintf(j, "{\"model\":");
    for (size_t d = 1; d < GH_JSCAN_MAX_DEPTH; d++)
        j[o++] = '[';
    for (size_t d = 1; d < GH_JSCAN_MAX_DEPTH; d++)
        j[o++] = ']';
    j[o++] = '}';
    j[o] = '\0';
    assert_int_equal(scan(j, s, &err), GH_OK);
    assert_int_equal(s[K_MODEL].type, GH_JSON_ARRAY);
    assert_int_equal(s[K_MODEL].len, 2 * (GH_JSCAN_MAX_DEPTH - 1));

    /* One more level (depth 257) is refused at the bracket that opens it. */
    o = 0;
    o += (size_t)sprintf(j, "{\"model\":");
    for (size_t d = 0; d < GH_JSCAN_MAX_DEPTH; d++)
        j[o++] = '[';
    for (size_t d = 0; d < GH_JSCAN_MAX_DEPTH; d++)
        j[o++] = ']';
    j[o++] = '}';
    j[o] = '\0';
    invalid(j, 9 + GH_JSCAN_MAX_DEPTH - 1);

    /* The same with objects. */
    o = 0;
    j[o++] = '{';
    for (size_t d = 1; d <= GH_JSCAN_MAX_DEPTH; d++)
        o += (size_t)sprintf(j + o, "\"a\":{");
    j[o] = '\0';
    invalid(j, o - 1);
    free(j);

    /* Deep but bounded documents are cheap: 100k sibling arrays at depth 2. */
    n = 100000;
    j = malloc(3 * n + 16);
    assert_non_null(j);
    o = (size_t)sprintf(j, "{\"a\":[");
    for (size_t d = 0; d < n; d++) {
        memcpy(j + o, "[],", 3);
        o += 3;
    }
    memcpy(j + o - 1, "]}", 3);
    valid(j);
    free(j);
}

/* Bad arguments are refused rather than dereferenced. */
static void test_arguments(void **state)
{
    gh_jspan_t s[1];
    size_t err = 5;
    (void)state;
    assert_int_equal(gh_jscan_object(NULL, 0, NULL, 0, NULL, &err), GH_ERR);
    assert_int_equal(err, 0);
    assert_int_equal(gh_jscan_object("{}", 2, NULL, 0, NULL, NULL), GH_OK);
    assert_int_equal(gh_jscan_object("{}", 2, NULL, 1, s, NULL), GH_ERR);
    assert_int_equal(gh_jscan_object("{\"model\":1}", 11, keys, 1, s, &err), GH_OK);
    assert_int_equal(s[0].type, GH_JSON_NUMBER);
    /* Only len bytes are read: the closing brace lies beyond it. */
    assert_int_equal(gh_jscan_object("{\"model\":1}", 10, keys, 1, s, &err), GH_ERR);
    assert_int_equal(err, 10);
}

/* gh_jscan_string checks its output size, including the NUL, and refuses bad spans. */
static void test_string_decode(void **state)
{
    const char *j = "{\"model\":\"hello\",\"stream\":\"\\u00e9\",\"messages\":\"\\u0000z\"}";
    gh_jspan_t s[K_COUNT];
    char out[16];
    (void)state;

    assert_int_equal(scan(j, s, NULL), GH_OK);
    assert_int_equal(gh_jscan_string(j, &s[K_MODEL], out, 6), 5);
    assert_string_equal(out, "hello");
    assert_int_equal(gh_jscan_string(j, &s[K_MODEL], out, 5), -1);
    assert_int_equal(gh_jscan_string(j, &s[K_MODEL], out, 1), -1);
    assert_int_equal(gh_jscan_string(j, &s[K_MODEL], out, 0), -1);
    assert_int_equal(gh_jscan_string(j, &s[K_STREAM], out, 3), 2);
    assert_string_equal(out, "\xc3\xa9");
    assert_int_equal(gh_jscan_string(j, &s[K_STREAM], out, 2), -1);
    assert_int_equal(gh_jscan_string(j, &s[K_MESSAGES], out, sizeof out), 2);
    assert_memory_equal(out, "\0z", 3);
    assert_int_equal(gh_jscan_string(j, &s[K_MISSING], out, sizeof out), -1);
    assert_int_equal(gh_jscan_string(NULL, &s[K_MODEL], out, sizeof out), -1);
    assert_int_equal(gh_jscan_string(j, NULL, out, sizeof out), -1);
    assert_int_equal(gh_jscan_string(j, &s[K_MODEL], NULL, sizeof out), -1);

    /* Non-string spans are refused. */
    const char *k = "{\"model\":12,\"stream\":[\"a\"]}";
    assert_int_equal(scan(k, s, NULL), GH_OK);
    assert_int_equal(gh_jscan_string(k, &s[K_MODEL], out, sizeof out), -1);
    assert_int_equal(gh_jscan_string(k, &s[K_STREAM], out, sizeof out), -1);
}

/* Decodes raw (a quoted JSON string literal) through a hand-made span. */
static long decode_raw(const char *raw, char *out, size_t outsz)
{
    gh_jspan_t span = {GH_JSON_STRING, 0, strlen(raw), 0, strlen(raw)};
    return gh_jscan_string(raw, &span, out, outsz);
}

/* A hand-made span is validated: lone surrogates, bad escapes and stray bytes are errors. */
static void test_string_decode_invalid(void **state)
{
    char out[64];
    (void)state;
    assert_int_equal(decode_raw("\"\\ud800\"", out, sizeof out), -1);
    assert_int_equal(decode_raw("\"\\udc00\"", out, sizeof out), -1);
    assert_int_equal(decode_raw("\"a\\ud83dx\"", out, sizeof out), -1);
    assert_int_equal(decode_raw("\"\\ud83d\\u0041\"", out, sizeof out), -1);
    assert_int_equal(decode_raw("\"\\ud83d\\ude0\"", out, sizeof out), -1);
    assert_int_equal(decode_raw("\"\\u12\"", out, sizeof out), -1);
    assert_int_equal(decode_raw("\"\\x\"", out, sizeof out), -1);
    assert_int_equal(decode_raw("\"\\\"", out, sizeof out), -1);
    assert_int_equal(decode_raw("\"a\"b\"", out, sizeof out), -1);
    assert_int_equal(decode_raw("\"a\nb\"", out, sizeof out), -1);
    assert_int_equal(decode_raw("\"abc", out, sizeof out), -1);
    assert_int_equal(decode_raw("abc\"", out, sizeof out), -1);
    assert_int_equal(decode_raw("\"", out, sizeof out), -1);
    assert_int_equal(decode_raw("\"\"", out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(decode_raw("\"\\ud83d\\ude00\"", out, sizeof out), 4);
    assert_string_equal(out, "\xf0\x9f\x98\x80");
    assert_int_equal(decode_raw("\"\\ud83d\\ude00\"", out, 4), -1);
    assert_int_equal(decode_raw("\"\\u07ff\\u0800\\uffff\"", out, sizeof out), 8);
    assert_string_equal(out, "\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf");
}

/* gh_json_quote escapes exactly '"', '\\' and control bytes and checks its output size. */
static void test_quote(void **state)
{
    const char in[] = "a\"b\\c\n\r\t\b\f\x01\x1f\x7f/\xc3\xa9\xff";
    const char want[] = "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\x7f/\xc3\xa9\xff\"";
    char out[128];
    (void)state;

    assert_int_equal(gh_json_quote(in, sizeof in - 1, out, sizeof out), sizeof want - 1);
    assert_string_equal(out, want);
    assert_int_equal(gh_json_quote(in, sizeof in - 1, out, sizeof want), sizeof want - 1);
    assert_string_equal(out, want);
    for (size_t sz = 0; sz < sizeof want; sz++)
        assert_int_equal(gh_json_quote(in, sizeof in - 1, out, sz), -1);
    assert_int_equal(gh_json_quote("", 0, out, 3), 2);
    assert_string_equal(out, "\"\"");
    assert_int_equal(gh_json_quote(NULL, 0, out, 3), 2);
    assert_int_equal(gh_json_quote("", 0, out, 2), -1);
    assert_int_equal(gh_json_quote(NULL, 1, out, sizeof out), -1);
    assert_int_equal(gh_json_quote("a", 1, NULL, 0), -1);
    assert_int_equal(gh_json_quote("\0", 1, out, sizeof out), 8);
    assert_string_equal(out, "\"\\u0000\"");
}

/* Quotes s, embeds it as the value of "model" and checks that it scans and decodes back. */
static void round_trip(const char *s, size_t slen)
{
    size_t cap = 6 * slen + 32;
    char *q = malloc(cap), *doc = malloc(cap + 16), *back = malloc(slen + 1);
    gh_jspan_t sp[K_COUNT];
    long qn, dn;
    assert_non_null(q);
    assert_non_null(doc);
    assert_non_null(back);

    qn = gh_json_quote(s, slen, q, cap);
    assert_true(qn >= 2);
    int dl = snprintf(doc, cap + 16, "{\"model\":%s}", q);
    assert_int_equal(gh_jscan_object(doc, (size_t)dl, keys, K_COUNT, sp, NULL), GH_OK);
    assert_int_equal(sp[K_MODEL].type, GH_JSON_STRING);
    assert_int_equal(sp[K_MODEL].len, (size_t)qn);
    dn = gh_jscan_string(doc, &sp[K_MODEL], back, slen + 1);
    assert_int_equal(dn, (long)slen);
    assert_memory_equal(back, s, slen);
    free(q);
    free(doc);
    free(back);
}

/* Every byte value, and pseudo-random strings, survive quote -> scan -> decode. */
static void test_quote_round_trip(void **state)
{
    char all[256];
    char buf[200];
    uint32_t x = 12345;
    (void)state;

    for (int c = 0; c < 256; c++) {
        all[c] = (char)c;
        round_trip(all + c, 1);
    }
    round_trip(all, sizeof all);
    round_trip("", 0);
    for (int r = 0; r < 2000; r++) {
        size_t n = (size_t)(r % 199);
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            /* Mostly printable with some specials, to hit runs of every length. */
            unsigned v = (x >> 16) & 0xff;
            buf[i] = (char)(v < 200 ? 'a' + v % 26 : v);
        }
        round_trip(buf, n);
    }
}

/* A large body, like a 300 KB Claude Code request, with long strings full of escapes. */
static void test_large_body(void **state)
{
    size_t n = 4u << 20, o = 0;
    char *j = malloc(n + 64);
    gh_jspan_t s[K_COUNT];
    (void)state;
    assert_non_null(j);

    o += (size_t)sprintf(j, "{\"messages\":[\"");
    while (o < n - 16) {
        static const char chunk[] = "int main(void) {\\n\\treturn \\\"\\u00e9\\\";\\n} ";
        memcpy(j + o, chunk, sizeof chunk - 1);
        o += sizeof chunk - 1;
    }
    o += (size_t)sprintf(j + o, "\"],\"model\":\"m\",\"stream\":false}");
    assert_int_equal(gh_jscan_object(j, o, keys, K_COUNT, s, NULL), GH_OK);
    assert_int_equal(s[K_MESSAGES].type, GH_JSON_ARRAY);
    assert_int_equal(s[K_STREAM].type, GH_JSON_FALSE);
    assert_span_text(j, s[K_MODEL].off, s[K_MODEL].len, "\"m\"");
    free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_messages_body),
        cmocka_unit_test(test_nested_keys_ignored),
        cmocka_unit_test(test_value_escapes),
        cmocka_unit_test(test_escaped_keys),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_whitespace),
        cmocka_unit_test(test_value_types),
        cmocka_unit_test(test_member_splice),
        cmocka_unit_test(test_invalid_structure),
        cmocka_unit_test(test_invalid_numbers),
        cmocka_unit_test(test_invalid_strings),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_arguments),
        cmocka_unit_test(test_string_decode),
        cmocka_unit_test(test_string_decode_invalid),
        cmocka_unit_test(test_quote),
        cmocka_unit_test(test_quote_round_trip),
        cmocka_unit_test(test_large_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
