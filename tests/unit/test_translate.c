/* test_translate.c: golden-file and unit tests of the OpenAI <-> Anthropic translators. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "buf.h"
#include "gh.h"
#include "oai.h"

/* Golden cases live in tests/golden as file pairs; the prefix of a name picks the API:
 *   NAME.in.json / NAME.out.json          OpenAI request -> Anthropic request body
 *   NAME.resp.in.json / NAME.resp.out.json Anthropic answer -> OpenAI answer
 *   NAME.stream.in / NAME.stream.out       Anthropic SSE stream -> OpenAI SSE stream
 * chat_* is Chat Completions, responses_* the Responses API, completions_* legacy completions.
 * A stream name containing "_usage" asks for stream_options.include_usage; one containing
 * "_broken" ends with gh_oai_stream_finish(broken = 1). GH_GOLDEN_DIR overrides the directory;
 * GH_GOLDEN_ACTUAL=DIR writes what the translators produced into DIR, to review or diff. */

#define MIN_GOLDEN_CASES 40
#define FIXED_CLOCK ((time_t)1700000000)
#define MODEL_CHAT "gpt-4o"
#define MODEL_COMPLETIONS "gpt-3.5-turbo-instruct"

typedef enum { CASE_REQUEST = 0, CASE_ANSWER, CASE_STREAM } case_type_t;

/* One golden case, the state of its cmocka test. */
typedef struct {
    char name[200];
    char label[220]; /* the test's name: NAME plus .request, .answer or .stream */
    case_type_t type;
    gh_oai_kind_t kind;
} golden_t;

static char golden_dir[4096];

/* The fixed clock every golden "created" comes from. */
static time_t fixed_clock(void)
{
    return FIXED_CLOCK;
}

/* Finds the golden directory: GH_GOLDEN_DIR, else GH_SRCDIR/tests/golden (set by make check),
 * else next to this source file. */
static void find_golden_dir(void)
{
    const char *env = getenv("GH_GOLDEN_DIR"), *src = getenv("GH_SRCDIR");
    const char *slash;

    if (env != NULL && env[0] != '\0') {
        snprintf(golden_dir, sizeof golden_dir, "%s", env);
    } else if (src != NULL && src[0] != '\0') {
        snprintf(golden_dir, sizeof golden_dir, "%s/tests/golden", src);
    } else {
        /* __FILE__ is .../tests/unit/test_translate.c: go up to tests/ */
        slash = strrchr(__FILE__, '/');
        if (slash == NULL) {
            snprintf(golden_dir, sizeof golden_dir, "../golden");
        } else {
            snprintf(golden_dir, sizeof golden_dir, "%.*s/../golden", (int)(slash - __FILE__),
                     __FILE__);
        }
    }
}

/* Reads a whole file into a malloc'd NUL-terminated buffer (NULL when missing). */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto done;
    buf = malloc((size_t)n + 1);
    if (buf == NULL)
        goto done;
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
        goto done;
    }
    buf[n] = '\0';
    if (len != NULL)
        *len = (size_t)n;
done:
    fclose(f);
    return buf;
}

/* Reads the golden file NAME+SUFFIX; fails the test when it is missing. */
static char *golden_file(const golden_t *g, const char *suffix, size_t *len)
{
    char path[4608];
    char *s;

    snprintf(path, sizeof path, "%s/%s%s", golden_dir, g->name, suffix);
    s = slurp(path, len);
    if (s == NULL)
        fail_msg("golden %s: cannot read %s", g->name, path);
    return s;
}

/* Writes the produced output when GH_GOLDEN_ACTUAL names a directory; JSON is pretty-printed. */
static void write_actual(const golden_t *g, const char *suffix, const char *text, size_t len)
{
    const char *dir = getenv("GH_GOLDEN_ACTUAL");
    char path[4608];
    json_object *o = NULL;
    FILE *f;

    if (dir == NULL || dir[0] == '\0')
        return;
    snprintf(path, sizeof path, "%s/%s%s", dir, g->name, suffix);
    f = fopen(path, "wb");
    assert_non_null(f);
    if (strstr(suffix, ".json") != NULL)
        o = json_tokener_parse(text);
    if (o != NULL) {
        fprintf(f, "%s\n",
                json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                      JSON_C_TO_STRING_SPACED |
                                                      JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    } else {
        fwrite(text, 1, len, f);
    }
    fclose(f);
}

/* Fails the test unless the two JSON texts are semantically equal. */
static void assert_json_equal(const char *name, const char *what, const char *expected,
                              const char *actual)
{
    json_object *e = json_tokener_parse(expected), *a = json_tokener_parse(actual);
    int same = e != NULL && a != NULL && json_object_equal(e, a);

    if (!same) {
        print_error("golden %s (%s):\nexpected: %s\nactual:   %s\n", name, what,
                    e != NULL ? json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN)
                              : "(not JSON)",
                    a != NULL ? json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN) : actual);
    }
    json_object_put(e);
    json_object_put(a);
    if (!same)
        fail_msg("golden %s: %s differs", name, what);
}

/* One event of an SSE text. */
typedef struct {
    char *event; /* "" when the event had no name */
    char *data;
} sse_ev_t;

/* Splits SSE text (LF line ends, events ended by a blank line) into events; returns the count
 * and a malloc'd array the caller frees with free_events. */
static size_t split_sse(const char *text, sse_ev_t **out)
{
    size_t n = 0, cap = 16;
    sse_ev_t *evs = calloc(cap, sizeof *evs);
    char *copy = strdup(text), *p = copy, *line;
    char *ev = NULL, *data = NULL;

    assert_non_null(evs);
    assert_non_null(copy);
    while (p != NULL) {
        line = p;
        p = strchr(p, '\n');
        if (p != NULL)
            *p++ = '\0';
        if (line[0] == '\0') {
            if (data != NULL) {
                if (n == cap) {
                    cap *= 2;
                    evs = realloc(evs, cap * sizeof *evs);
                    assert_non_null(evs);
                }
                evs[n].event = strdup(ev != NULL ? ev : "");
                evs[n].data = strdup(data);
                n++;
            }
            ev = data = NULL;
        } else if (strncmp(line, "event: ", 7) == 0) {
            ev = line + 7;
        } else if (strncmp(line, "data: ", 6) == 0) {
            data = line + 6; /* the translators never write multi-line data */
        }
    }
    free(copy);
    *out = evs;
    return n;
}

/* Frees what split_sse returned. */
static void free_events(sse_ev_t *evs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(evs[i].event);
        free(evs[i].data);
    }
    free(evs);
}

/* Request case: translate NAME.in.json and compare with NAME.out.json. */
static void run_request(const golden_t *g)
{
    gh_oai_opts_t opts = {4096};
    gh_oai_req_t req;
    size_t len;
    char *in = golden_file(g, ".in.json", &len), *want;
    char err[512], param[128];
    int status = 0;
    int rc = gh_oai_request(g->kind, in, len, &opts, &req, &status, err, sizeof err, param,
                            sizeof param);

    if (rc != GH_OK)
        fail_msg("golden %s: request refused (%d, param '%s'): %s", g->name, status, param, err);
    assert_int_equal(status, 200);
    assert_non_null(req.body);
    assert_int_equal(strlen(req.body), req.body_len);
    write_actual(g, ".out.json", req.body, req.body_len);
    want = golden_file(g, ".out.json", NULL);
    assert_json_equal(g->name, "request body", want, req.body);
    gh_oai_req_free(&req);
    free(in);
    free(want);
}

/* Answer case: translate NAME.resp.in.json and compare with NAME.resp.out.json. */
static void run_answer(const golden_t *g)
{
    gh_buf_t out = GH_BUF_INIT;
    size_t len;
    char *in = golden_file(g, ".resp.in.json", &len), *want;
    const char *model = g->kind == GH_OAI_COMPLETIONS ? MODEL_COMPLETIONS : MODEL_CHAT;

    if (gh_oai_response(g->kind, model, in, len, &out) != GH_OK)
        fail_msg("golden %s: answer not translated", g->name);
    write_actual(g, ".resp.out.json", out.data, out.len);
    want = golden_file(g, ".resp.out.json", NULL);
    assert_json_equal(g->name, "answer", want, out.data);
    gh_buf_free(&out);
    free(in);
    free(want);
}

/* Stream case: feed every event of NAME.stream.in, finish, and compare the events produced with
 * NAME.stream.out (names exactly, data as JSON, [DONE] literally). Also checks that the
 * translator stays closed afterwards. */
static void run_stream(const golden_t *g)
{
    gh_buf_t out = GH_BUF_INIT;
    char *in = golden_file(g, ".stream.in", NULL), *want;
    sse_ev_t *evs, *wev, *aev;
    size_t n = split_sse(in, &evs), nw, na, before;
    gh_oai_stream_t *s = gh_oai_stream_new(g->kind, MODEL_CHAT, strstr(g->name, "_usage") != NULL);

    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(gh_oai_stream_event(s, evs[i].event, strlen(evs[i].event), evs[i].data,
                                             strlen(evs[i].data), &out),
                         GH_OK);
    assert_int_equal(gh_oai_stream_finish(s, strstr(g->name, "_broken") != NULL, &out), GH_OK);
    assert_true(gh_oai_stream_closed(s));
    before = out.len;
    assert_int_equal(gh_oai_stream_finish(s, 1, &out), GH_OK);
    assert_int_equal(out.len, before);
    gh_oai_stream_free(s);
    write_actual(g, ".stream.out", out.data != NULL ? out.data : "", out.len);
    want = golden_file(g, ".stream.out", NULL);

    nw = split_sse(want, &wev);
    na = split_sse(out.data != NULL ? out.data : "", &aev);
    for (size_t i = 0; i < nw && i < na; i++) {
        char what[64];
        snprintf(what, sizeof what, "event %zu", i);
        if (strcmp(wev[i].event, aev[i].event) != 0)
            fail_msg("golden %s: event %zu is '%s', expected '%s'", g->name, i, aev[i].event,
                     wev[i].event);
        if (strcmp(wev[i].data, "[DONE]") == 0 || strcmp(aev[i].data, "[DONE]") == 0)
            assert_string_equal(aev[i].data, wev[i].data);
        else
            assert_json_equal(g->name, what, wev[i].data, aev[i].data);
    }
    if (nw != na)
        fail_msg("golden %s: %zu events, expected %zu", g->name, na, nw);
    free_events(evs, n);
    free_events(wev, nw);
    free_events(aev, na);
    gh_buf_free(&out);
    free(in);
    free(want);
}

/* The cmocka body of every golden case. */
static void test_golden(void **state)
{
    const golden_t *g = *state;

    gh_oai_set_clock(fixed_clock);
    if (g->type == CASE_REQUEST)
        run_request(g);
    else if (g->type == CASE_ANSWER)
        run_answer(g);
    else
        run_stream(g);
    gh_oai_set_clock(NULL);
}

/* Tells the API of a case from its name's prefix. */
static int kind_of(const char *name, gh_oai_kind_t *kind)
{
    if (strncmp(name, "chat_", 5) == 0)
        *kind = GH_OAI_CHAT;
    else if (strncmp(name, "responses_", 10) == 0)
        *kind = GH_OAI_RESPONSES;
    else if (strncmp(name, "completions_", 12) == 0)
        *kind = GH_OAI_COMPLETIONS;
    else
        return GH_ERR;
    return GH_OK;
}

/* If file ends with suffix, copies the part before it into name and returns 1. */
static int strip_suffix(const char *file, const char *suffix, char *name, size_t sz)
{
    size_t n = strlen(file), m = strlen(suffix);

    if (n <= m || strcmp(file + n - m, suffix) != 0 || n - m >= sz)
        return 0;
    memcpy(name, file, n - m);
    name[n - m] = '\0';
    return 1;
}

/* Lists the golden cases of the directory, sorted by file name. */
static size_t load_cases(golden_t **out)
{
    struct dirent **list = NULL;
    golden_t *cases;
    int n = scandir(golden_dir, &list, NULL, alphasort);
    size_t count = 0;

    if (n < 0) {
        fprintf(stderr, "test_translate: cannot open golden directory %s\n", golden_dir);
        *out = NULL;
        return 0;
    }
    cases = calloc((size_t)n + 1, sizeof *cases);
    assert_non_null(cases);
    for (int i = 0; i < n; i++) {
        const char *f = list[i]->d_name;
        golden_t *g = &cases[count];
        if (strip_suffix(f, ".resp.in.json", g->name, sizeof g->name))
            g->type = CASE_ANSWER;
        else if (strip_suffix(f, ".stream.in", g->name, sizeof g->name))
            g->type = CASE_STREAM;
        else if (strip_suffix(f, ".in.json", g->name, sizeof g->name))
            g->type = CASE_REQUEST;
        else
            g->name[0] = '\0';
        if (g->name[0] != '\0') {
            if (kind_of(g->name, &g->kind) != GH_OK) {
                fprintf(stderr, "test_translate: %s: unknown prefix\n", f);
                abort();
            }
            count++;
        }
        free(list[i]);
    }
    free(list);
    *out = cases;
    return count;
}

/* ---- targeted unit tests ---- */

/* Result of one request translation. */
typedef struct {
    int rc;
    int status;
    char err[512];
    char param[160];
    gh_oai_req_t req;
} tr_t;

/* Translates body (a C string) as kind with default options. */
static void translate(gh_oai_kind_t kind, const char *body, tr_t *t)
{
    gh_oai_opts_t opts = {0};

    memset(t, 0, sizeof *t);
    t->rc = gh_oai_request(kind, body, strlen(body), &opts, &t->req, &t->status, t->err,
                           sizeof t->err, t->param, sizeof t->param);
}

/* Asserts that body is refused with 400, naming param, with a message containing needle. */
static void expect_400(gh_oai_kind_t kind, const char *body, const char *param, const char *needle)
{
    tr_t t;

    translate(kind, body, &t);
    if (t.rc != GH_ERR || t.status != 400 || strcmp(t.param, param) != 0 ||
        strstr(t.err, needle) == NULL)
        fail_msg("body %s: rc %d status %d param '%s' (want '%s') err '%s' (want '%s')", body, t.rc,
                 t.status, t.param, param, t.err, needle);
    assert_null(t.req.body);
    gh_oai_req_free(&t.req);
}

/* n > 1 cannot be served: Anthropic returns one choice. */
static void test_n_greater_than_one(void **state)
{
    (void)state;
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"n\":2,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
               "n", "'n'");
    expect_400(GH_OAI_COMPLETIONS, "{\"model\":\"m\",\"n\":3,\"prompt\":\"x\"}", "n", "'n'");
}

/* Tool call arguments that are not a JSON object are refused, naming the exact parameter. */
static void test_bad_arguments_json(void **state)
{
    (void)state;
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
               "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"type\":\"function\","
               "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}},{\"id\":\"b\",\"type\":"
               "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{not json\"}}]}]}",
               "messages[1].tool_calls[1].function.arguments", "JSON object");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":"
               "\"a\",\"function\":{\"name\":\"f\",\"arguments\":\"[1,2]\"}}]}]}",
               "messages[0].tool_calls[0].function.arguments", "JSON object");
    expect_400(GH_OAI_RESPONSES,
               "{\"model\":\"m\",\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\","
               "\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}]}",
               "input[0].arguments", "JSON object");
}

/* The Responses features that need stored state are refused clearly. */
static void test_stateful_responses(void **state)
{
    (void)state;
    expect_400(GH_OAI_RESPONSES,
               "{\"model\":\"m\",\"input\":\"hi\",\"previous_response_id\":\"resp_1\"}",
               "previous_response_id",
               "gatehouse does not store responses: previous_response_id is not supported");
    expect_400(GH_OAI_RESPONSES, "{\"model\":\"m\",\"input\":\"hi\",\"conversation\":\"conv_1\"}",
               "conversation", "does not store conversations");
    expect_400(GH_OAI_RESPONSES, "{\"model\":\"m\",\"input\":\"hi\",\"background\":true}",
               "background", "background");
    expect_400(GH_OAI_RESPONSES,
               "{\"model\":\"m\",\"input\":[{\"type\":\"item_reference\",\"id\":\"msg_1\"}]}",
               "input[0].type", "item_reference");
}

/* Legacy completions do not stream (as the Bifrost document says). */
static void test_streaming_legacy(void **state)
{
    (void)state;
    expect_400(GH_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"stream\":true}", "stream",
               "streaming is not supported for text completions");
    assert_null(gh_oai_stream_new(GH_OAI_COMPLETIONS, "m", 0));
}

/* Malformed bodies and wrong types give 400 with the parameter named. */
static void test_malformed_requests(void **state)
{
    (void)state;
    expect_400(GH_OAI_CHAT, "{\"model\":", "", "JSON");
    expect_400(GH_OAI_CHAT, "[1,2]", "", "JSON");
    expect_400(GH_OAI_CHAT, "{\"model\":\"m\"} trailing", "", "JSON");
    expect_400(GH_OAI_CHAT, "{\"messages\":[]}", "model", "'model'");
    expect_400(GH_OAI_CHAT, "{\"model\":\"m\"}", "messages", "'messages'");
    expect_400(GH_OAI_CHAT, "{\"model\":\"m\",\"messages\":[]}", "messages", "non-empty");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"only\"}]}",
               "messages", "at least one");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}",
               "messages[0].role", "not supported");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"stream\":\"yes\",\"messages\":[{\"role\":\"user\",\"content\":"
               "\"x\"}]}",
               "stream", "boolean");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":"
               "\"x\"}]}",
               "max_tokens", "positive");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"temperature\":\"hot\",\"messages\":[{\"role\":\"user\","
               "\"content\":\"x\"}]}",
               "temperature", "temperature");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"tool_choice\":\"sometimes\",\"tools\":[{\"type\":\"function\","
               "\"function\":{\"name\":\"f\"}}],\"messages\":[{\"role\":\"user\",\"content\":"
               "\"x\"}]}",
               "tool_choice", "tool_choice");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{}}],"
               "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
               "tools[0].function.name", "name");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"tools\":[{\"type\":\"code_interpreter\"}],\"messages\":[{"
               "\"role\":\"user\",\"content\":\"x\"}]}",
               "tools[0].type", "function");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
               "messages[0].tool_call_id", "tool_call_id");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
               "{\"name\":\"x\"}},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
               "response_format.json_schema.schema", "schema");
    expect_400(GH_OAI_RESPONSES, "{\"model\":\"m\"}", "input", "'input'");
    expect_400(GH_OAI_RESPONSES,
               "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"web_search_preview\"}]}",
               "tools[0].type", "web_search_preview");
    expect_400(GH_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", "prompt",
               "one string");
    expect_400(GH_OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[1,2,3]}", "prompt", "one string");
}

/* Content parts that Anthropic cannot take are refused with the part's path. */
static void test_bad_content(void **state)
{
    (void)state;
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
               "\"image_url\",\"image_url\":{\"url\":\"ftp://x/y.png\"}}]}]}",
               "messages[0].content[0].image_url", "http(s)");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
               "\"image_url\",\"image_url\":{\"url\":\"data:image/bmp;base64,Qk0=\"}}]}]}",
               "messages[0].content[0].image_url", "image/bmp");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
               "\"input_audio\",\"input_audio\":{\"data\":\"x\",\"format\":\"wav\"}}]}]}",
               "messages[0].content[0].type", "input_audio");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"file\","
               "\"file\":{\"filename\":\"x\"}}]}]}",
               "messages[0].content[0].file", "file_data");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":"
               "\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}}]}]}",
               "messages[0].content[0].type", "assistant");
}

/* Thinking budgets below Anthropic's minimum are refused; unknown efforts too. */
static void test_reasoning_limits(void **state)
{
    (void)state;
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"reasoning\":{\"max_tokens\":500},\"messages\":[{\"role\":"
               "\"user\",\"content\":\"x\"}]}",
               "reasoning.max_tokens", "1024");
    expect_400(GH_OAI_CHAT,
               "{\"model\":\"m\",\"reasoning_effort\":\"extreme\",\"messages\":[{\"role\":"
               "\"user\",\"content\":\"x\"}]}",
               "reasoning_effort", "reasoning_effort");
    expect_400(GH_OAI_RESPONSES, "{\"model\":\"m\",\"input\":\"x\",\"reasoning\":{\"effort\":1}}",
               "reasoning.effort", "reasoning.effort");
}

/* The request record: model, stream flags and upstream path. */
static void test_request_fields(void **state)
{
    tr_t t;

    (void)state;
    translate(GH_OAI_CHAT,
              "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
              "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
              &t);
    assert_int_equal(t.rc, GH_OK);
    assert_int_equal(t.status, 200);
    assert_string_equal(t.req.model, "gpt-4o");
    assert_true(t.req.stream);
    assert_true(t.req.include_usage);
    assert_string_equal(t.req.upstream_path, "/v1/messages");
    assert_non_null(strstr(t.req.body, "\"max_tokens\":4096"));
    gh_oai_req_free(&t.req);
    assert_null(t.req.body);

    translate(GH_OAI_RESPONSES, "{\"model\":\"claude\",\"input\":\"x\"}", &t);
    assert_int_equal(t.rc, GH_OK);
    assert_false(t.req.stream);
    assert_string_equal(t.req.upstream_path, "/v1/messages");
    assert_null(strstr(t.req.body, "\"stream\""));
    gh_oai_req_free(&t.req);

    translate(GH_OAI_COMPLETIONS, "{\"model\":\"claude-2\",\"prompt\":\"x\"}", &t);
    assert_int_equal(t.rc, GH_OK);
    assert_string_equal(t.req.upstream_path, "/v1/complete");
    gh_oai_req_free(&t.req);

    /* a model name that does not fit the record is refused rather than cut */
    {
        char body[600];
        snprintf(body, sizeof body,
                 "{\"model\":\"%0200d\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 0);
        expect_400(GH_OAI_CHAT, body, "model", "too long");
    }
    gh_oai_req_free(NULL);
}

/* One expected error conversion. */
typedef struct {
    int status;
    const char *body;
    const char *message;
    const char *type;
    const char *code; /* NULL: JSON null */
} err_case_t;

/* Anthropic error answers become OpenAI's error shape with the type the SDKs expect. */
static void test_error_mapping(void **state)
{
    static const err_case_t cases[] = {
        {400,
         "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":"
         "\"messages: roles must alternate\"}}",
         "messages: roles must alternate", "invalid_request_error", NULL},
        {401,
         "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"invalid "
         "x-api-key\"}}",
         "invalid x-api-key", "authentication_error", "invalid_api_key"},
        {403, "{\"type\":\"error\",\"error\":{\"type\":\"permission_error\",\"message\":\"no\"}}",
         "no", "permission_error", NULL},
        {404,
         "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\",\"message\":\"model: "
         "claude-9\"}}",
         "model: claude-9", "invalid_request_error", "model_not_found"},
        {404,
         "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\",\"message\":\"Not "
         "found\"}}",
         "Not found", "invalid_request_error", "not_found"},
        {413,
         "{\"type\":\"error\",\"error\":{\"type\":\"request_too_large\",\"message\":\"too "
         "big\"}}",
         "too big", "invalid_request_error", "request_too_large"},
        {429,
         "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow "
         "down\"}}",
         "slow down", "rate_limit_error", "rate_limit_exceeded"},
        {500, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"oops\"}}",
         "oops", "server_error", NULL},
        {529,
         "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
         "\"Overloaded\"}}",
         "Overloaded", "server_error", "overloaded"},
        {402, "{\"type\":\"error\",\"error\":{\"type\":\"billing_error\",\"message\":\"pay\"}}",
         "pay", "insufficient_quota", "insufficient_quota"},
        {502, "<html>Bad Gateway</html>\n", "<html>Bad Gateway</html>", "server_error", NULL},
        {429, "", "The upstream API answered with HTTP status 429.", "rate_limit_error",
         "rate_limit_exceeded"},
        {401, "{\"unexpected\":true}", "{\"unexpected\":true}", "authentication_error",
         "invalid_api_key"},
        {418, "teapot \xff\xfe", "teapot", "invalid_request_error", NULL},
    };
    (void)state;
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        gh_buf_t out = GH_BUF_INIT;
        json_object *doc, *err, *v;
        assert_int_equal(gh_oai_error(cases[i].status, cases[i].body, strlen(cases[i].body), &out),
                         GH_OK);
        doc = json_tokener_parse(out.data);
        assert_non_null(doc);
        assert_true(json_object_object_get_ex(doc, "error", &err));
        assert_true(json_object_object_get_ex(err, "message", &v));
        assert_string_equal(json_object_get_string(v), cases[i].message);
        assert_true(json_object_object_get_ex(err, "type", &v));
        assert_string_equal(json_object_get_string(v), cases[i].type);
        assert_true(json_object_object_get_ex(err, "param", &v));
        assert_null(v);
        assert_true(json_object_object_get_ex(err, "code", &v));
        if (cases[i].code == NULL)
            assert_null(v);
        else
            assert_string_equal(json_object_get_string(v), cases[i].code);
        json_object_put(doc);
        gh_buf_free(&out);
    }
}

/* gatehouse's own errors in OpenAI's shape. */
static void test_error_body(void **state)
{
    gh_buf_t out = GH_BUF_INIT;

    (void)state;
    assert_int_equal(
        gh_oai_error_body(404, "The model 'x' does not exist", "model", "model_not_found", &out),
        GH_OK);
    assert_json_equal("error_body", "404",
                      "{\"error\":{\"message\":\"The model 'x' does not exist\","
                      "\"type\":\"invalid_request_error\",\"param\":\"model\","
                      "\"code\":\"model_not_found\"}}",
                      out.data);
    gh_buf_reset(&out);
    assert_int_equal(gh_oai_error_body(501, "embeddings are not supported", NULL, "", &out), GH_OK);
    assert_json_equal("error_body", "501",
                      "{\"error\":{\"message\":\"embeddings are not "
                      "supported\",\"type\":\"server_error\",\"param\":null,"
                      "\"code\":null}}",
                      out.data);
    gh_buf_free(&out);
}

/* Feeds one named event given as a C string. */
static int feed(gh_oai_stream_t *s, const char *event, const char *data, gh_buf_t *out)
{
    return gh_oai_stream_event(s, event, strlen(event), data, strlen(data), out);
}

/* Stream edge cases: unnamed events, bad JSON, events after the close, no events at all. */
static void test_stream_edges(void **state)
{
    gh_buf_t out = GH_BUF_INIT;
    gh_oai_stream_t *s;
    size_t len;

    (void)state;
    gh_oai_set_clock(fixed_clock);
    s = gh_oai_stream_new(GH_OAI_CHAT, NULL, 0);
    assert_non_null(s);
    /* ping is skipped without parsing; broken JSON in a real event is an error */
    assert_int_equal(feed(s, "ping", "not json", &out), GH_OK);
    assert_int_equal(feed(s, "content_block_delta", "{\"type\":", &out), GH_ERR);
    /* no event name: the data's type is used; the upstream model is echoed when none given */
    assert_int_equal(feed(s, "",
                          "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":"
                          "\"claude-x\",\"usage\":{\"input_tokens\":3}}}",
                          &out),
                     GH_OK);
    assert_non_null(strstr(out.data, "\"model\":\"claude-x\""));
    assert_non_null(strstr(out.data, "\"id\":\"chatcmpl-msg_1\""));
    /* out-of-range and missing block indexes are ignored */
    assert_int_equal(feed(s, "content_block_start",
                          "{\"type\":\"content_block_start\",\"index\":99999999,"
                          "\"content_block\":{\"type\":\"text\",\"text\":\"x\"}}",
                          &out),
                     GH_OK);
    assert_int_equal(feed(s, "content_block_delta",
                          "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\","
                          "\"text\":\"x\"}}",
                          &out),
                     GH_OK);
    assert_int_equal(feed(s, "message_stop", "{\"type\":\"message_stop\"}", &out), GH_OK);
    assert_true(gh_oai_stream_closed(s));
    assert_non_null(strstr(out.data, "\"finish_reason\":\"stop\""));
    assert_non_null(strstr(out.data, "data: [DONE]\n\n"));
    len = out.len;
    assert_int_equal(feed(s, "message_stop", "{\"type\":\"message_stop\"}", &out), GH_OK);
    assert_int_equal(gh_oai_stream_finish(s, 0, &out), GH_OK);
    assert_int_equal(out.len, len);
    gh_oai_stream_free(s);

    /* a stream that ends before anything arrived still closes properly */
    gh_buf_reset(&out);
    s = gh_oai_stream_new(GH_OAI_RESPONSES, "m", 0);
    assert_non_null(s);
    assert_int_equal(gh_oai_stream_finish(s, 0, &out), GH_OK);
    assert_non_null(strstr(out.data, "event: response.created\n"));
    assert_non_null(strstr(out.data, "event: response.completed\n"));
    gh_oai_stream_free(s);
    gh_oai_stream_free(NULL);
    gh_buf_free(&out);
    gh_oai_set_clock(NULL);
}

/* Answers that are not Anthropic documents are reported, not translated. */
static void test_bad_answers(void **state)
{
    gh_buf_t out = GH_BUF_INIT;
    static const char *const bodies[] = {"", "nope", "[]", "{\"type\":\"message\"}",
                                         "{\"content\":\"text\"}"};

    (void)state;
    for (size_t i = 0; i < GH_ARRAY_LEN(bodies); i++) {
        assert_int_equal(gh_oai_response(GH_OAI_CHAT, "m", bodies[i], strlen(bodies[i]), &out),
                         GH_ERR);
        assert_int_equal(gh_oai_response(GH_OAI_RESPONSES, "m", bodies[i], strlen(bodies[i]), &out),
                         GH_ERR);
        assert_int_equal(
            gh_oai_response(GH_OAI_COMPLETIONS, "m", bodies[i], strlen(bodies[i]), &out), GH_ERR);
    }
    assert_int_equal(out.len, 0);
    gh_buf_free(&out);
}

/* The byte buffer: appends, formatted text past the first allocation, reset and detach. */
static void test_buf(void **state)
{
    gh_buf_t b = GH_BUF_INIT;
    char big[1000];
    char *p;
    size_t n;

    (void)state;
    assert_int_equal(gh_buf_append(&b, NULL, 0), GH_OK);
    assert_string_equal(b.data, "");
    assert_int_equal(gh_buf_puts(&b, "ab"), GH_OK);
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(gh_buf_printf(&b, "%s-%d", big, 7), GH_OK);
    assert_int_equal(b.len, 2 + 999 + 2);
    assert_int_equal(strlen(b.data), b.len);
    assert_string_equal(b.data + b.len - 2, "-7");
    gh_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(gh_buf_printf(&b, "%d", 42), GH_OK);
    p = gh_buf_detach(&b, &n);
    assert_string_equal(p, "42");
    assert_int_equal(n, 2);
    assert_null(b.data);
    free(p);
    p = gh_buf_detach(&b, NULL);
    assert_string_equal(p, "");
    free(p);
    gh_buf_free(&b);
}

/* Runs the unit tests, then one cmocka test per golden case. */
int main(void)
{
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_n_greater_than_one),
        cmocka_unit_test(test_bad_arguments_json),
        cmocka_unit_test(test_stateful_responses),
        cmocka_unit_test(test_streaming_legacy),
        cmocka_unit_test(test_malformed_requests),
        cmocka_unit_test(test_bad_content),
        cmocka_unit_test(test_reasoning_limits),
        cmocka_unit_test(test_request_fields),
        cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_error_body),
        cmocka_unit_test(test_stream_edges),
        cmocka_unit_test(test_bad_answers),
        cmocka_unit_test(test_buf),
    };
    struct CMUnitTest *golden;
    golden_t *cases;
    size_t n;
    int failed;

    find_golden_dir();
    failed = cmocka_run_group_tests_name("translate", unit, NULL, NULL);
    n = load_cases(&cases);
    if (n < MIN_GOLDEN_CASES) {
        fprintf(stderr, "test_translate: %zu golden cases in %s, expected at least %d\n", n,
                golden_dir, MIN_GOLDEN_CASES);
        free(cases);
        return 1;
    }
    golden = calloc(n, sizeof *golden);
    if (golden == NULL)
        return 1;
    for (size_t i = 0; i < n; i++) {
        static const char *const kinds[] = {"request", "answer", "stream"};
        snprintf(cases[i].label, sizeof cases[i].label, "%s.%s", cases[i].name,
                 kinds[cases[i].type]);
        golden[i].name = cases[i].label;
        golden[i].test_func = test_golden;
        golden[i].initial_state = &cases[i];
    }
    failed += _cmocka_run_group_tests("golden", golden, n, NULL, NULL);
    free(golden);
    free(cases);
    return failed != 0;
}
