/* fuzz_translate.c: libFuzzer target for the OpenAI translators: requests, answers, errors and
 * streams must never crash or leak, and whatever they produce must be valid JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "buf.h"
#include "gh.h"
#include "oai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts on a broken invariant; assert() would vanish under NDEBUG. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* Checks that s[0..n) is one JSON value. */
static void check_json(const char *s, size_t n)
{
    json_tokener *tok = json_tokener_new_ex(256);
    json_object *o;

    CHECK(tok != NULL);
    o = json_tokener_parse_ex(tok, s, (int)n);
    CHECK(o != NULL && json_tokener_get_error(tok) == json_tokener_success);
    json_object_put(o);
    json_tokener_free(tok);
}

/* Checks SSE text as the translators write it: "event: X" and "data: JSON" lines, events ended
 * by blank lines, data either JSON or [DONE]. */
static void check_sse(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t len;
        CHECK(nl != NULL); /* every line is complete */
        len = (size_t)(nl - (s + i));
        if (len >= 6 && memcmp(s + i, "data: ", 6) == 0) {
            if (!(len == 12 && memcmp(s + i + 6, "[DONE]", 6) == 0))
                check_json(s + i + 6, len - 6);
        } else {
            CHECK(len == 0 || (len > 7 && memcmp(s + i, "event: ", 7) == 0));
        }
        i += len + 1;
    }
}

/* Translates the input as a request of one kind and checks the result. */
static void fuzz_request(gh_oai_kind_t kind, const char *buf, size_t len)
{
    gh_oai_opts_t opts = {(int)(len % 3) * 1000};
    gh_oai_req_t req;
    char err[256], param[128];
    int status = 0;
    int rc =
        gh_oai_request(kind, buf, len, &opts, &req, &status, err, sizeof err, param, sizeof param);

    if (rc == GH_OK) {
        CHECK(status == 200 && req.body != NULL && req.model[0] != '\0');
        CHECK(req.upstream_path != NULL);
        check_json(req.body, req.body_len);
    } else {
        CHECK(req.body == NULL && (status == 400 || status == 500));
        CHECK(strlen(err) > 0);
    }
    gh_oai_req_free(&req);
}

/* Feeds the input to a stream translator, one event per line ("NAME DATA"). */
static void fuzz_stream(gh_oai_kind_t kind, uint8_t flags, const char *buf, size_t len)
{
    gh_buf_t out = GH_BUF_INIT;
    gh_oai_stream_t *s = gh_oai_stream_new(kind, (flags & 1) ? "m" : NULL, (flags & 2) != 0);
    size_t i = 0;

    CHECK(s != NULL);
    while (i < len) {
        const char *line = buf + i, *nl = memchr(line, '\n', len - i), *sp;
        size_t n = nl != NULL ? (size_t)(nl - line) : len - i;
        sp = memchr(line, ' ', n);
        if (sp != NULL)
            (void)gh_oai_stream_event(s, line, (size_t)(sp - line), sp + 1,
                                      n - (size_t)(sp - line) - 1, &out);
        else
            (void)gh_oai_stream_event(s, "", 0, line, n, &out);
        i += n + 1;
    }
    CHECK(gh_oai_stream_finish(s, (flags & 4) != 0, &out) == GH_OK);
    CHECK(gh_oai_stream_closed(s));
    gh_oai_stream_free(s);
    check_sse(out.data != NULL ? out.data : "", out.len);
    gh_buf_free(&out);
}

/* The first byte picks what is exercised, the second its variant; the rest is the input. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gh_buf_t out = GH_BUF_INIT;
    const char *buf;
    size_t len;
    uint8_t mode, variant;

    if (size < 2)
        return 0;
    mode = data[0] % 4;
    variant = data[1];
    buf = (const char *)data + 2;
    len = size - 2;
    switch (mode) {
    case 0:
        fuzz_request((gh_oai_kind_t)(variant % 3), buf, len);
        break;
    case 1:
        if (gh_oai_response((gh_oai_kind_t)(variant % 3), (variant & 4) ? "m" : NULL, buf, len,
                            &out) == GH_OK)
            check_json(out.data, out.len);
        break;
    case 2:
        CHECK(gh_oai_error(400 + variant, buf, len, &out) == GH_OK);
        check_json(out.data, out.len);
        break;
    default:
        fuzz_stream((gh_oai_kind_t)(variant % 2), (uint8_t)(variant >> 1), buf, len);
        break;
    }
    gh_buf_free(&out);
    return 0;
}
