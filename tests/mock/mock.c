/* mock.c: gh-mock, a fast fake of Anthropic's API that integration tests and benchmarks use. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <json-c/json.h>

#define MOCK_MAX_BODY (64 * 1024 * 1024)
#define MOCK_RECORD_MAX 2000
#define MOCK_BACKLOG 4096
#define ADD(b, lit) evbuffer_add((b), (lit), sizeof(lit) - 1)

enum route { R_MESSAGES, R_COUNT, R_MODELS, R_MODEL };
enum scen { SC_OK, SC_TOOL, SC_THINKING, SC_SLOW, SC_CUT, SC_SSE_ERROR, SC_ECHO, SC_ERROR,
            SC_BAD_BODY, SC_UNKNOWN };
enum phase { PH_WAIT, PH_STREAM, PH_CUT };
enum op { OP_END, OP_START, OP_TEXT, OP_TOOL, OP_THINK, OP_PING, OP_WORDS, OP_ECHO, OP_SAY,
          OP_JSON, OP_THOUGHT, OP_SIGN, OP_STOP, OP_DELTA, OP_FINISH };

/* One Anthropic error kind: HTTP status, reason phrase, error.type and error.message. */
struct mock_err {
    int status;
    const char *reason, *type, *message;
};

static const struct mock_err errs[] = {
    {400, "Bad Request", "invalid_request_error", "gh-mock: invalid request"},
    {401, "Unauthorized", "authentication_error", "invalid x-api-key"},
    {403, "Forbidden", "permission_error",
     "Your API key does not have permission to use the specified resource."},
    {404, "Not Found", "not_found_error", "Not found"},
    {413, "Request Entity Too Large", "request_too_large",
     "Request exceeds the maximum allowed number of bytes."},
    {429, "Too Many Requests", "rate_limit_error",
     "Number of requests has exceeded your rate limit"},
    {500, "Internal Server Error", "api_error", "Internal server error"},
    {502, "Bad Gateway", "api_error", "Bad gateway"},
    {503, "Service Unavailable", "api_error", "Service unavailable"},
    {529, "Overloaded", "overloaded_error", "Overloaded"},
};

static const struct {
    const char *name;
    int scen;
} scen_names[] = {
    {"ok", SC_OK},     {"tool", SC_TOOL},           {"thinking", SC_THINKING},
    {"slow", SC_SLOW}, {"sse-error", SC_SSE_ERROR}, {"cut", SC_CUT},
    {"echo", SC_ECHO},
};

static const struct {
    const char *id, *name, *created;
} models[] = {
    {"claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"},
    {"claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"},
    {"claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"},
    {"claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-14T00:00:00Z"},
    {"claude-opus-4-20250514", "Claude Opus 4", "2025-05-14T00:00:00Z"},
};

/* One step of a stream plan; OP_WORDS repeats x-mock-events times, OP_JSON's arg picks a piece. */
struct step {
    unsigned char op, index, arg;
};

static const struct step plan_text[] = {
    {OP_START, 0, 0}, {OP_TEXT, 0, 0},  {OP_PING, 0, 0},   {OP_WORDS, 0, 0},
    {OP_STOP, 0, 0},  {OP_DELTA, 0, 0}, {OP_FINISH, 0, 0}, {OP_END, 0, 0},
};
static const struct step plan_echo[] = {
    {OP_START, 0, 0}, {OP_TEXT, 0, 0},  {OP_PING, 0, 0},   {OP_ECHO, 0, 0},
    {OP_STOP, 0, 0},  {OP_DELTA, 0, 0}, {OP_FINISH, 0, 0}, {OP_END, 0, 0},
};
static const struct step plan_tool[] = {
    {OP_START, 0, 0}, {OP_TEXT, 0, 0}, {OP_PING, 0, 0}, {OP_SAY, 0, 0},   {OP_STOP, 0, 0},
    {OP_TOOL, 1, 0},  {OP_JSON, 1, 0}, {OP_JSON, 1, 1}, {OP_JSON, 1, 2},  {OP_STOP, 1, 0},
    {OP_DELTA, 0, 0}, {OP_FINISH, 0, 0}, {OP_END, 0, 0},
};
static const struct step plan_thinking[] = {
    {OP_START, 0, 0}, {OP_THINK, 0, 0}, {OP_PING, 0, 0},  {OP_THOUGHT, 0, 0},
    {OP_SIGN, 0, 0},  {OP_STOP, 0, 0},  {OP_TEXT, 1, 0},  {OP_WORDS, 1, 0},
    {OP_STOP, 1, 0},  {OP_DELTA, 0, 0}, {OP_FINISH, 0, 0}, {OP_END, 0, 0},
};
static const char *const json_pieces[] = {"{\\\"loca", "tion\\\": \\\"Pa", "ris\\\"}"};

/* Everything known about one API request; pointers borrow from root or from the request. */
struct call {
    unsigned long id;
    int route, scen, stream;
    const struct mock_err *err; /* SC_ERROR */
    const char *bad;            /* SC_UNKNOWN: the scenario name; SC_BAD_BODY: the reason */
    long events, interval_ms, delay_ms, in_tok, out_tok, cache_c, cache_r, retry_after, cut_after;
    const char *model, *body;
    size_t model_len, body_len;
    struct json_object *root; /* parsed body, owned by whoever owns the call */
};

/* A request answered later (delay, pacing, cut). Heap jobs own themselves and c.root; the
 * request belongs to evhttp until the connection drops, then to the job (see job_closed). */
struct job {
    struct job *prev, *next;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event timer;
    struct call c;
    const struct step *plan;
    int phase, pi, heap;
    long rep, sent;
};

static const struct {
    const char *name;
    size_t off;
    long max;
} tunables[] = {
    {"events", offsetof(struct call, events), 1000000},
    {"interval-ms", offsetof(struct call, interval_ms), 3600000},
    {"delay-ms", offsetof(struct call, delay_ms), 3600000},
    {"input-tokens", offsetof(struct call, in_tok), 1000000000},
    {"output-tokens", offsetof(struct call, out_tok), 1000000000},
    {"cache-creation", offsetof(struct call, cache_c), 1000000000},
    {"cache-read", offsetof(struct call, cache_r), 1000000000},
    {"retry-after", offsetof(struct call, retry_after), 86400},
    {"cut-after", offsetof(struct call, cut_after), 1000000},
};

static struct {
    struct event_base *base;
    struct evhttp *http;
    struct evbuffer *scratch;
    struct json_tokener *tok;
    struct job *jobs;
    struct json_object *rec[MOCK_RECORD_MAX];
    size_t rec_head, rec_count;
    unsigned long next_id, requests, streams_open, streams_done;
    char port[8];
    int record, verbose;
} g;

static void job_fire(evutil_socket_t fd, short what, void *arg);

/* Appends s[0..n) to b as a quoted JSON string; bytes >= 0x80 pass through unchanged. */
static void json_escape(struct evbuffer *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, run = 0;

    ADD(b, "\"");
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[7] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15], 0};
        const char *e = esc;

        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        evbuffer_add(b, s + run, i - run);
        run = i + 1;
        if (ch == '"' || ch == '\\') {
            esc[1] = (char)ch;
            esc[2] = 0;
        } else if (ch == '\n') {
            e = "\\n";
        } else if (ch == '\r') {
            e = "\\r";
        } else if (ch == '\t') {
            e = "\\t";
        }
        evbuffer_add(b, e, strlen(e));
    }
    evbuffer_add(b, s + run, n - run);
    ADD(b, "\"");
}

/* Adds the headers every answer carries (request id, rate limits, served-by, content type). */
static void add_headers(struct evhttp_request *req, unsigned long id, const char *ctype)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char rid[40];

    snprintf(rid, sizeof(rid), "req_mock_%lu", id);
    evhttp_add_header(h, "request-id", rid);
    evhttp_add_header(h, "anthropic-ratelimit-requests-limit", "1000");
    evhttp_add_header(h, "anthropic-ratelimit-requests-remaining", "999");
    evhttp_add_header(h, "anthropic-ratelimit-requests-reset", "2030-01-01T00:00:00Z");
    evhttp_add_header(h, "x-mock-served-by", g.port);
    evhttp_add_header(h, "Content-Type", ctype);
}

/* Sends what the request's output buffer holds as a JSON answer; evhttp owns req afterwards. */
static void reply_json(struct evhttp_request *req, unsigned long id, int status,
                       const char *reason)
{
    add_headers(req, id, "application/json");
    evhttp_send_reply(req, status, reason, NULL);
}


/* Returns the error kind for an HTTP status, or NULL when the mock has none. */
static const struct mock_err *find_err(long status)
{
    size_t i;

    for (i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
        if (errs[i].status == status)
            return &errs[i];
    return NULL;
}

/* Answers with Anthropic's error shape; msg NULL means e's own message; detail (may be NULL) is
 * appended to it. evhttp owns req afterwards. */
static void reply_error(struct evhttp_request *req, const struct call *c, const struct mock_err *e,
                        const char *msg, const char *detail)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    char text[320], num[24];
    int n;

    n = snprintf(text, sizeof(text), "%s%.200s", msg != NULL ? msg : e->message,
                 detail != NULL ? detail : "");
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(text))
        n = (int)sizeof(text) - 1;
    evbuffer_add_printf(b, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":", e->type);
    json_escape(b, text, (size_t)n);
    ADD(b, "}}");
    if (e->status == 429) {
        snprintf(num, sizeof(num), "%ld", c->retry_after);
        evhttp_add_header(evhttp_request_get_output_headers(req), "retry-after", num);
    }
    reply_json(req, c->id, e->status, e->reason);
}

/* Answers 405 with an Allow header listing the methods the path takes. */
static void reply_405(struct evhttp_request *req, const struct call *c, const char *allow)
{
    static const struct mock_err e405 = {405, "Method Not Allowed", "invalid_request_error",
                                         "Method not allowed"};

    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    reply_error(req, c, &e405, NULL, NULL);
}

/* Appends the "usage" member shared by messages and message_start events. */
static void put_usage(struct evbuffer *b, const struct call *c, long out)
{
    evbuffer_add_printf(b,
                        "\"usage\":{\"input_tokens\":%ld,\"cache_creation_input_tokens\":%ld,"
                        "\"cache_read_input_tokens\":%ld,\"output_tokens\":%ld}",
                        c->in_tok, c->cache_c, c->cache_r, out);
}

/* Appends the non-streaming Messages answer for c's scenario to b. */
static void put_message(struct evbuffer *b, const struct call *c)
{
    const char *stop = "end_turn";

    evbuffer_add_printf(b, "{\"id\":\"msg_mock_%lu\",\"type\":\"message\",\"role\":\"assistant\","
                           "\"model\":", c->id);
    json_escape(b, c->model, c->model_len);
    ADD(b, ",\"content\":[");
    switch (c->scen) {
    case SC_TOOL:
        ADD(b, "{\"type\":\"tool_use\",\"id\":\"toolu_mock_1\",\"name\":\"get_weather\","
               "\"input\":{\"location\":\"Paris\"}}");
        stop = "tool_use";
        break;
    case SC_THINKING:
        ADD(b, "{\"type\":\"thinking\",\"thinking\":\"Let me think\",\"signature\":\"sig_mock\"},"
               "{\"type\":\"text\",\"text\":\"Hello from mock\"}");
        break;
    case SC_ECHO:
        ADD(b, "{\"type\":\"text\",\"text\":");
        json_escape(b, c->body, c->body_len);
        ADD(b, "}");
        break;
    default:
        ADD(b, "{\"type\":\"text\",\"text\":\"Hello from mock\"}");
        break;
    }
    evbuffer_add_printf(b, "],\"stop_reason\":\"%s\",\"stop_sequence\":null,", stop);
    put_usage(b, c, c->out_tok);
    ADD(b, "}");
}

/* Appends model i of the static catalogue as an Anthropic model object. */
static void put_model(struct evbuffer *b, size_t i)
{
    evbuffer_add_printf(b, "{\"type\":\"model\",\"id\":\"%s\",\"display_name\":\"%s\","
                           "\"created_at\":\"%s\"}", models[i].id, models[i].name,
                        models[i].created);
}

/* Returns the catalogue index of a model id, or -1. */
static long model_index(const char *id)
{
    size_t i;

    for (i = 0; i < sizeof(models) / sizeof(models[0]); i++)
        if (strcmp(models[i].id, id) == 0)
            return (long)i;
    return -1;
}

/* Answers GET /v1/models with Anthropic's list shape, honouring limit, after_id and before_id. */
static void reply_models(struct evhttp_request *req, const struct call *c)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    long n = (long)(sizeof(models) / sizeof(models[0])), limit = 20, start = 0, end = n, i;
    const char *after, *before, *lim;
    struct evkeyvalq q;
    char *endp;
    int more;

    memset(&q, 0, sizeof(q));
    q.tqh_last = &q.tqh_first;
    if (query != NULL && evhttp_parse_query_str(query, &q) != 0) {
        reply_error(req, c, find_err(400), "gh-mock: malformed query string", NULL);
        return;
    }
    lim = evhttp_find_header(&q, "limit");
    after = evhttp_find_header(&q, "after_id");
    before = evhttp_find_header(&q, "before_id");
    if (lim != NULL) {
        limit = strtol(lim, &endp, 10);
        if (endp == lim || *endp != '\0' || limit < 1 || limit > 1000) {
            evhttp_clear_headers(&q);
            reply_error(req, c, find_err(400), "limit: must be between 1 and 1000", NULL);
            return;
        }
    }
    if (after != NULL)
        start = (i = model_index(after)) < 0 ? n : i + 1;
    if (before != NULL)
        end = (i = model_index(before)) < 0 ? 0 : i;
    if (before != NULL && after == NULL) { /* the page just before before_id */
        start = end - limit > 0 ? end - limit : 0;
        more = start > 0;
    } else {
        more = start + limit < end;
        end = more ? start + limit : end;
    }
    if (start > end)
        start = end;
    ADD(b, "{\"data\":[");
    for (i = start; i < end; i++) {
        if (i > start)
            ADD(b, ",");
        put_model(b, (size_t)i);
    }
    evbuffer_add_printf(b, "],\"has_more\":%s,", more ? "true" : "false");
    if (start < end)
        evbuffer_add_printf(b, "\"first_id\":\"%s\",\"last_id\":\"%s\"}", models[start].id,
                            models[end - 1].id);
    else
        ADD(b, "\"first_id\":null,\"last_id\":null}");
    evhttp_clear_headers(&q);
    reply_json(req, c->id, 200, "OK");
}

/* Sends the final non-streaming answer for c (errors included); evhttp owns req afterwards. */
static void answer(struct evhttp_request *req, const struct call *c)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    const char *id;
    long i;

    switch (c->scen) {
    case SC_ERROR:
        reply_error(req, c, c->err, NULL, NULL);
        return;
    case SC_BAD_BODY:
        reply_error(req, c, find_err(400), c->bad, NULL);
        return;
    case SC_UNKNOWN:
        reply_error(req, c, find_err(400), "gh-mock: unknown scenario: ", c->bad);
        return;
    default:
        break;
    }
    switch (c->route) {
    case R_COUNT:
        evbuffer_add_printf(b, "{\"input_tokens\":%ld}", c->in_tok);
        break;
    case R_MODELS:
        reply_models(req, c);
        return;
    case R_MODEL:
        id = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)) + strlen("/v1/models/");
        if ((i = model_index(id)) < 0) {
            reply_error(req, c, find_err(404), "model not found: ", id);
            return;
        }
        put_model(b, (size_t)i);
        break;
    default:
        put_message(b, c);
        break;
    }
    reply_json(req, c->id, 200, "OK");
}

/* Tells whether c is answered as an SSE stream. */
static int is_streaming(const struct call *c)
{
    return c->route == R_MESSAGES && c->stream && c->scen <= SC_ECHO;
}

/* Appends the head of a content_block_delta event up to the delta's value. */
static void delta_head(struct evbuffer *b, int index, const char *type, const char *field)
{
    evbuffer_add_printf(b,
                        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
                        "\"index\":%d,\"delta\":{\"type\":\"%s\",\"%s\":",
                        index, type, field);
}

/* Writes the SSE event of plan step s of job j into g.scratch. */
static void put_event(const struct job *j, const struct step *s)
{
    static const char block_start[] =
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":%d,"
        "\"content_block\":%s}\n\n";
    struct evbuffer *b = g.scratch;
    const struct call *c = &j->c;

    switch (s->op) {
    case OP_START:
        evbuffer_add_printf(b, "event: message_start\ndata: {\"type\":\"message_start\","
                               "\"message\":{\"id\":\"msg_mock_%lu\",\"type\":\"message\","
                               "\"role\":\"assistant\",\"model\":", c->id);
        json_escape(b, c->model, c->model_len);
        ADD(b, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,");
        put_usage(b, c, 1);
        ADD(b, "}}\n\n");
        break;
    case OP_TEXT:
        evbuffer_add_printf(b, block_start, s->index, "{\"type\":\"text\",\"text\":\"\"}");
        break;
    case OP_TOOL:
        evbuffer_add_printf(b, block_start, s->index,
                            "{\"type\":\"tool_use\",\"id\":\"toolu_mock_1\","
                            "\"name\":\"get_weather\",\"input\":{}}");
        break;
    case OP_THINK:
        evbuffer_add_printf(b, block_start, s->index,
                            "{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}");
        break;
    case OP_PING:
        ADD(b, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
        break;
    case OP_WORDS:
        delta_head(b, s->index, "text_delta", "text");
        evbuffer_add_printf(b, "\"w%ld \"}}\n\n", j->rep);
        break;
    case OP_ECHO:
        delta_head(b, s->index, "text_delta", "text");
        json_escape(b, c->body, c->body_len);
        ADD(b, "}}\n\n");
        break;
    case OP_SAY:
        delta_head(b, s->index, "text_delta", "text");
        ADD(b, "\"Let me check\"}}\n\n");
        break;
    case OP_JSON:
        delta_head(b, s->index, "input_json_delta", "partial_json");
        evbuffer_add_printf(b, "\"%s\"}}\n\n", json_pieces[s->arg]);
        break;
    case OP_THOUGHT:
        delta_head(b, s->index, "thinking_delta", "thinking");
        ADD(b, "\"Let me think\"}}\n\n");
        break;
    case OP_SIGN:
        delta_head(b, s->index, "signature_delta", "signature");
        ADD(b, "\"sig_mock\"}}\n\n");
        break;
    case OP_STOP:
        evbuffer_add_printf(b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\","
                               "\"index\":%d}\n\n", s->index);
        break;
    case OP_DELTA:
        evbuffer_add_printf(b, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":"
                               "{\"stop_reason\":\"%s\",\"stop_sequence\":null},"
                               "\"usage\":{\"output_tokens\":%ld}}\n\n",
                            c->scen == SC_TOOL ? "tool_use" : "end_turn", c->out_tok);
        break;
    case OP_FINISH:
        ADD(b, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        break;
    default:
        break;
    }
}

/* Returns j's current plan step, skipping an OP_WORDS step that has repeated often enough. */
static const struct step *plan_peek(struct job *j)
{
    while (j->plan[j->pi].op == OP_WORDS && j->rep >= j->c.events) {
        j->pi++;
        j->rep = 0;
    }
    return &j->plan[j->pi];
}

/* (Re)arms j's timer to fire in ms milliseconds. */
static void job_arm(struct job *j, long ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(&j->timer, &tv);
}

/* Ends j's bookkeeping (stream counters, timer, list, root) and frees it when it is a heap job.
 * Never touches j->req: whoever calls this has handed the request back to evhttp or freed it. */
static void job_release(struct job *j)
{
    if (is_streaming(&j->c)) {
        g.streams_open--;
        g.streams_done++;
    }
    if (!j->heap)
        return;
    event_del(&j->timer);
    if (j->prev != NULL)
        j->prev->next = j->next;
    else
        g.jobs = j->next;
    if (j->next != NULL)
        j->next->prev = j->prev;
    json_object_put(j->c.root);
    free(j);
}

/* Connection close callback of a parked job: the client went away (or the server is shutting
 * down). A request evhttp detached from the dying connection is ours to free. */
static void job_closed(struct evhttp_connection *evcon, void *arg)
{
    struct job *j = arg;

    (void)evcon;
    if (g.verbose)
        fprintf(stderr, "gh-mock: req_mock_%lu: connection closed early\n", j->c.id);
    if (evhttp_request_get_connection(j->req) == NULL)
        evhttp_request_free(j->req);
    job_release(j);
}

/* Drops j's connection without finishing the answer, once evhttp has flushed what was sent. */
static void job_cut(struct job *j)
{
    struct evhttp_connection *evcon = j->evcon;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);

    j->phase = PH_CUT;
    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        job_arm(j, 1);
        return;
    }
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    job_release(j);
    evhttp_connection_free(evcon); /* frees the request, still queued on the connection */
}

/* Sends the status line and SSE headers of j's stream and picks its event plan. */
static void stream_start(struct job *j)
{
    add_headers(j->req, j->c.id, "text/event-stream; charset=utf-8");
    evhttp_add_header(evhttp_request_get_output_headers(j->req), "Cache-Control", "no-cache");
    evhttp_send_reply_start(j->req, 200, "OK");
    j->plan = j->c.scen == SC_TOOL       ? plan_tool
              : j->c.scen == SC_THINKING ? plan_thinking
              : j->c.scen == SC_ECHO     ? plan_echo
                                         : plan_text;
    j->phase = PH_STREAM;
}

/* Ends j's stream with the terminating chunk and releases the job. */
static void stream_finish(struct job *j)
{
    if (j->heap)
        evhttp_connection_set_closecb(j->evcon, NULL, NULL);
    evhttp_send_reply_end(j->req);
    job_release(j);
}

/* Sends j's next events, each as its own chunk, until the stream ends, is cut, or has to wait
 * x-mock-interval-ms for its timer. */
static void stream_pump(struct job *j)
{
    int limited = j->c.scen == SC_CUT || j->c.scen == SC_SSE_ERROR;
    const struct step *s;

    for (;;) {
        s = plan_peek(j);
        if (limited && (j->sent >= j->c.cut_after || s->op == OP_END)) {
            if (j->c.scen == SC_CUT) {
                job_cut(j);
                return;
            }
            ADD(g.scratch, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
                           "\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
            evhttp_send_reply_chunk(j->req, g.scratch);
            stream_finish(j);
            return;
        }
        if (s->op == OP_END) {
            stream_finish(j);
            return;
        }
        put_event(j, s);
        evhttp_send_reply_chunk(j->req, g.scratch);
        if (s->op == OP_WORDS)
            j->rep++;
        else
            j->pi++;
        j->sent++;
        if (!limited && plan_peek(j)->op == OP_END) {
            stream_finish(j);
            return;
        }
        if (j->c.interval_ms > 0) {
            job_arm(j, j->c.interval_ms);
            return;
        }
    }
}

/* Timer callback of a parked job: the delay is over, or the next paced event is due. */
static void job_fire(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;

    (void)fd;
    (void)what;
    if (j->phase == PH_CUT) {
        job_cut(j);
    } else if (j->phase == PH_STREAM) {
        stream_pump(j);
    } else if (is_streaming(&j->c)) {
        stream_start(j);
        stream_pump(j);
    } else if (j->c.scen == SC_CUT) {
        job_cut(j);
    } else {
        evhttp_connection_set_closecb(j->evcon, NULL, NULL);
        answer(j->req, &j->c);
        job_release(j);
    }
}

/* Parks req in a new heap job that fires after c->delay_ms; on success the job owns c->root. */
static int job_start(struct evhttp_request *req, const struct call *c)
{
    struct job *j = calloc(1, sizeof(*j));

    if (j == NULL)
        return -1;
    j->req = req;
    j->evcon = evhttp_request_get_connection(req);
    j->c = *c;
    j->heap = 1;
    j->phase = PH_WAIT;
    if (j->evcon == NULL || evtimer_assign(&j->timer, g.base, job_fire, j) != 0) {
        free(j);
        return -1;
    }
    j->next = g.jobs;
    if (g.jobs != NULL)
        g.jobs->prev = j;
    g.jobs = j;
    evhttp_connection_set_closecb(j->evcon, job_closed, j);
    job_arm(j, c->delay_ms);
    return 0;
}

/* Answers an API call now (inline stream or JSON) or parks it in a job; frees c->root unless a
 * job took it. */
static void dispatch(struct evhttp_request *req, struct call *c)
{
    int streaming = is_streaming(c);
    struct job inl;

    if (streaming)
        g.streams_open++;
    if (c->delay_ms > 0 || c->scen == SC_CUT || (streaming && c->interval_ms > 0)) {
        if (job_start(req, c) == 0)
            return;
        if (streaming)
            g.streams_open--;
        reply_error(req, c, find_err(500), "gh-mock: out of memory", NULL);
    } else if (streaming) {
        memset(&inl, 0, sizeof(inl));
        inl.req = req;
        inl.c = *c;
        stream_start(&inl);
        stream_pump(&inl);
    } else {
        answer(req, c);
    }
    json_object_put(c->root);
}

/* Parses a non-negative decimal header value capped at max; returns def when it is not one. */
static long parse_num(const char *v, long def, long max)
{
    char *end;
    long n;

    errno = 0;
    n = strtol(v, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (end == v || *end != '\0' || errno != 0 || n < 0)
        return def;
    return n > max ? max : n;
}

/* Reads x-mock-* tunables into c and points *scen and *key at the x-mock-scenario and x-api-key
 * values (borrowed from req), in one pass over the headers. */
static void read_headers(struct evhttp_request *req, struct call *c, const char **scen,
                         const char **key)
{
    const struct evkeyval *kv;
    size_t i;

    for (kv = evhttp_request_get_input_headers(req)->tqh_first; kv; kv = kv->next.tqe_next) {
        if (strncasecmp(kv->key, "x-mock-", 7) != 0) {
            if (strcasecmp(kv->key, "x-api-key") == 0)
                *key = kv->value;
            continue;
        }
        if (strcasecmp(kv->key + 7, "scenario") == 0) {
            *scen = kv->value;
            continue;
        }
        for (i = 0; i < sizeof(tunables) / sizeof(tunables[0]); i++) {
            if (strcasecmp(kv->key + 7, tunables[i].name) == 0) {
                long *dst = (long *)(void *)((char *)c + tunables[i].off);
                *dst = parse_num(kv->value, *dst, tunables[i].max);
                break;
            }
        }
    }
}

/* Parses the body as one JSON object into c->root (caller owns it) and notes model, stream and
 * the raw body (borrowed from req). Returns 0, or -1 with c->bad saying why. */
static int parse_body(struct evhttp_request *req, struct call *c)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in), end;
    const char *p = n > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
    struct json_object *root, *v;

    c->body = p;
    c->body_len = n;
    c->bad = "gh-mock: request body is not valid JSON";
    if (n == 0 || p == NULL)
        return -1;
    json_tokener_reset(g.tok);
    if ((root = json_tokener_parse_ex(g.tok, p, (int)n)) == NULL)
        return -1;
    for (end = json_tokener_get_parse_end(g.tok); end < n; end++)
        if (p[end] != ' ' && p[end] != '\t' && p[end] != '\r' && p[end] != '\n')
            break;
    if (end < n || !json_object_is_type(root, json_type_object)) {
        c->bad = "gh-mock: request body must be one JSON object";
        json_object_put(root);
        return -1;
    }
    c->root = root;
    if (json_object_object_get_ex(root, "model", &v) && json_object_is_type(v, json_type_string)) {
        c->model = json_object_get_string(v);
        c->model_len = (size_t)json_object_get_string_len(v);
    }
    if (json_object_object_get_ex(root, "stream", &v) && json_object_is_type(v, json_type_boolean))
        c->stream = json_object_get_boolean(v);
    return 0;
}

/* Sets c->scen from the x-mock-scenario value, else from a "mock-<scenario>" model, else ok. */
static void pick_scenario(struct call *c, const char *name)
{
    char *end;
    long status;
    size_t i;

    if (name == NULL && strncmp(c->model, "mock-", 5) == 0)
        name = c->model + 5;
    if (name == NULL || *name == '\0')
        return;
    for (i = 0; i < sizeof(scen_names) / sizeof(scen_names[0]); i++) {
        if (strcasecmp(name, scen_names[i].name) == 0) {
            c->scen = scen_names[i].scen;
            return;
        }
    }
    status = strtol(name, &end, 10);
    if (end != name && *end == '\0' && (c->err = find_err(status)) != NULL) {
        c->scen = SC_ERROR;
        return;
    }
    c->scen = SC_UNKNOWN;
    c->bad = name;
}

/* Handles a request to an Anthropic API route: tunables, key checks, body, scenario, answer. */
static void on_api(struct evhttp_request *req, struct call *c)
{
    const char *scen = NULL, *key = NULL;

    c->events = 3;
    c->delay_ms = -1;
    c->in_tok = 11;
    c->out_tok = 7;
    c->retry_after = 1;
    c->cut_after = 2;
    c->model = "claude-mock";
    c->model_len = strlen(c->model);
    c->body = "";
    read_headers(req, c, &scen, &key);
    if ((c->route == R_MESSAGES || c->route == R_COUNT) && parse_body(req, c) != 0)
        c->scen = SC_BAD_BODY;
    else
        pick_scenario(c, scen);
    if (key != NULL && strncmp(key, "bad-", 4) == 0) {
        c->scen = SC_ERROR;
        c->err = find_err(401);
    } else if (key != NULL && strncmp(key, "limited-", 8) == 0) {
        c->scen = SC_ERROR;
        c->err = find_err(429);
    }
    if (c->delay_ms < 0)
        c->delay_ms = c->scen == SC_SLOW ? 2000 : 0;
    if (g.verbose)
        fprintf(stderr, "gh-mock: req_mock_%lu %s scenario=%d%s status=%d delay=%ldms\n", c->id,
                evhttp_request_get_uri(req), c->scen, c->stream ? " stream" : "",
                c->scen == SC_ERROR ? c->err->status : c->scen >= SC_BAD_BODY ? 400 : 200,
                c->delay_ms);
    dispatch(req, c);
}

/* Returns the name of an HTTP method. */
static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "UNKNOWN";
    }
}

/* Adds one header to the JSON object h under its lowercased name; a repeated header's values
 * are joined with ", ". Returns 0/-1. */
static int record_header(struct json_object *h, const char *name, const char *value)
{
    size_t kl = strlen(name), vl = strlen(value), ol, i;
    char *key = malloc(kl + 1), *joined = NULL;
    struct json_object *old, *v;
    int rc = -1;

    if (key == NULL)
        goto done;
    for (i = 0; i <= kl; i++)
        key[i] = (char)tolower((unsigned char)name[i]);
    if (json_object_object_get_ex(h, key, &old)) {
        ol = (size_t)json_object_get_string_len(old);
        if ((joined = malloc(ol + 2 + vl)) == NULL)
            goto done;
        memcpy(joined, json_object_get_string(old), ol);
        memcpy(joined + ol, ", ", 2);
        memcpy(joined + ol + 2, value, vl);
        v = json_object_new_string_len(joined, (int)(ol + 2 + vl));
    } else {
        v = json_object_new_string(value);
    }
    if (v == NULL || json_object_object_add(h, key, v) != 0) {
        json_object_put(v);
        goto done;
    }
    rc = 0;
done:
    free(joined);
    free(key);
    return rc;
}

/* Appends a JSON description of req to the ring of recorded requests, dropping the oldest once
 * it holds MOCK_RECORD_MAX. The ring owns the objects. Returns 0/-1. */
static int record(struct evhttp_request *req, const char *path, unsigned long id,
                  enum evhttp_cmd_type m)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in), slot;
    struct json_object *o = json_object_new_object(), *h = json_object_new_object();
    const struct evkeyval *kv;
    char rid[40];
    int rc = -1;

    if (o == NULL || h == NULL)
        goto done;
    for (kv = evhttp_request_get_input_headers(req)->tqh_first; kv; kv = kv->next.tqe_next)
        if (record_header(h, kv->key, kv->value) != 0)
            goto done;
    snprintf(rid, sizeof(rid), "req_mock_%lu", id);
    json_object_object_add(o, "request_id", json_object_new_string(rid));
    json_object_object_add(o, "method", json_object_new_string(method_name(m)));
    json_object_object_add(o, "path", json_object_new_string(path));
    json_object_object_add(o, "query", json_object_new_string(query != NULL ? query : ""));
    json_object_object_add(o, "headers", h);
    h = NULL;
    json_object_object_add(
        o, "body",
        json_object_new_string_len(n > 0 ? (const char *)evbuffer_pullup(in, -1) : "", (int)n));
    json_object_object_add(o, "body_len", json_object_new_int64((int64_t)n));
    if (g.rec_count == MOCK_RECORD_MAX) {
        json_object_put(g.rec[g.rec_head]);
        g.rec[g.rec_head] = o;
        g.rec_head = (g.rec_head + 1) % MOCK_RECORD_MAX;
    } else {
        slot = (g.rec_head + g.rec_count++) % MOCK_RECORD_MAX;
        g.rec[slot] = o;
    }
    o = NULL;
    rc = 0;
done:
    json_object_put(h);
    json_object_put(o);
    return rc;
}

/* Forgets every recorded request. */
static void records_clear(void)
{
    size_t i;

    for (i = 0; i < g.rec_count; i++)
        json_object_put(g.rec[(g.rec_head + i) % MOCK_RECORD_MAX]);
    g.rec_head = g.rec_count = 0;
}

/* Answers GET /_mock/requests with the recorded requests, oldest first. */
static void reply_records(struct evhttp_request *req, const struct call *c)
{
    struct json_object *arr = json_object_new_array();
    const char *s;
    size_t i, len = 0;

    if (arr == NULL) {
        reply_error(req, c, find_err(500), "gh-mock: out of memory", NULL);
        return;
    }
    for (i = 0; i < g.rec_count; i++)
        json_object_array_add(arr, json_object_get(g.rec[(g.rec_head + i) % MOCK_RECORD_MAX]));
    s = json_object_to_json_string_length(
        arr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    evbuffer_add(evhttp_request_get_output_buffer(req), s, len);
    json_object_put(arr);
    reply_json(req, c->id, 200, "OK");
}

/* Handles the /_mock control paths (never recorded). */
static void on_admin(struct evhttp_request *req, struct call *c, const char *path,
                     enum evhttp_cmd_type m)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);

    if (strcmp(path, "/_mock/requests") == 0) {
        if (m != EVHTTP_REQ_GET)
            return reply_405(req, c, "GET");
        reply_records(req, c);
    } else if (strcmp(path, "/_mock/reset") == 0) {
        if (m != EVHTTP_REQ_POST)
            return reply_405(req, c, "POST");
        records_clear();
        g.requests = g.streams_done = 0;
        ADD(b, "{\"ok\":true}");
        reply_json(req, c->id, 200, "OK");
    } else if (strcmp(path, "/_mock/stats") == 0) {
        if (m != EVHTTP_REQ_GET)
            return reply_405(req, c, "GET");
        evbuffer_add_printf(b, "{\"requests\":%lu,\"streams_open\":%lu,\"streams_done\":%lu}",
                            g.requests, g.streams_open, g.streams_done);
        reply_json(req, c->id, 200, "OK");
    } else {
        reply_error(req, c, find_err(404), "gh-mock: no such control path: ", path);
    }
}

/* evhttp's catch-all callback: records the request, then routes it. evhttp owns req. */
static void on_request(struct evhttp_request *req, void *arg)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    int get = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD;
    struct call c;

    (void)arg;
    memset(&c, 0, sizeof(c));
    c.id = ++g.next_id;
    if (path == NULL || *path == '\0')
        path = "/";
    if (strncmp(path, "/_mock", 6) == 0 && (path[6] == '/' || path[6] == '\0'))
        return on_admin(req, &c, path, m);
    g.requests++;
    if (g.record && record(req, path, c.id, m) != 0)
        fprintf(stderr, "gh-mock: could not record req_mock_%lu\n", c.id);
    if (strcmp(path, "/v1/messages") == 0) {
        if (m != EVHTTP_REQ_POST)
            return reply_405(req, &c, "POST");
        c.route = R_MESSAGES;
    } else if (strcmp(path, "/v1/messages/count_tokens") == 0) {
        if (m != EVHTTP_REQ_POST)
            return reply_405(req, &c, "POST");
        c.route = R_COUNT;
    } else if (strcmp(path, "/v1/models") == 0 || strncmp(path, "/v1/models/", 11) == 0) {
        if (!get)
            return reply_405(req, &c, "GET, HEAD");
        c.route = path[10] == '/' ? R_MODEL : R_MODELS;
    } else if (strcmp(path, "/") == 0 || strcmp(path, "/healthz") == 0) {
        if (!get)
            return reply_405(req, &c, "GET, HEAD");
        ADD(evhttp_request_get_output_buffer(req), "{\"ok\":true}");
        return reply_json(req, c.id, 200, "OK");
    } else {
        return reply_error(req, &c, find_err(404), "gh-mock: no such path: ", path);
    }
    on_api(req, &c);
}

/* Parses HOST:PORT, [V6]:PORT or a bare PORT ("localhost" and "" mean 127.0.0.1) into ss.
 * Returns 0/-1. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    const char *colon = strrchr(spec, ':'), *ports = colon != NULL ? colon + 1 : spec;
    size_t hl = colon != NULL ? (size_t)(colon - spec) : 0;
    char host[128];
    long port;
    char *end;

    if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') {
        spec++;
        hl -= 2;
    }
    if (hl >= sizeof(host))
        return -1;
    memcpy(host, spec, hl);
    host[hl] = '\0';
    if (hl == 0 || strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    port = strtol(ports, &end, 10);
    if (end == ports || *end != '\0' || port < 0 || port > 65535)
        return -1;
    memset(ss, 0, sizeof(*ss));
    if (evutil_inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)port);
        *len = sizeof(*sin);
    } else if (evutil_inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short)port);
        *len = sizeof(*sin6);
    } else {
        return -1;
    }
    return 0;
}

/* Writes "PORT\n" to path through path.tmp and rename(2), so readers never see half a file. */
static int write_port_file(const char *path, unsigned port)
{
    size_t n = strlen(path) + 5;
    char *tmp = malloc(n);
    FILE *f = NULL;
    int rc = -1;

    if (tmp == NULL)
        goto done;
    snprintf(tmp, n, "%s.tmp", path);
    if ((f = fopen(tmp, "w")) == NULL || fprintf(f, "%u\n", port) < 0)
        goto done;
    if (fclose(f) != 0) {
        f = NULL;
        goto done;
    }
    f = NULL;
    if (rename(tmp, path) != 0)
        goto done;
    rc = 0;
done:
    if (f != NULL)
        fclose(f);
    free(tmp);
    return rc;
}

/* SIGTERM/SIGINT: leave the event loop so main() can clean up and exit 0. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    event_base_loopbreak(g.base);
}

/* Binds the listener and the evhttp server, then reports the port on stdout and in port_file.
 * The listener belongs to g.http afterwards. Returns 0/-1. */
static int start_server(const char *listen_spec, const char *port_file)
{
    struct sockaddr_storage ss, bound;
    socklen_t len = 0, blen = sizeof(bound);
    struct evconnlistener *lev;
    char addr[64];
    unsigned port;
    const void *ip;

    if (parse_listen(listen_spec, &ss, &len) != 0) {
        fprintf(stderr, "gh-mock: bad --listen value: %s\n", listen_spec);
        return -1;
    }
    lev = evconnlistener_new_bind(g.base, NULL, NULL,
                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                  MOCK_BACKLOG, (struct sockaddr *)&ss, (int)len);
    if (lev == NULL) {
        fprintf(stderr, "gh-mock: cannot listen on %s: %s\n", listen_spec, strerror(errno));
        return -1;
    }
    if (evhttp_bind_listener(g.http, lev) == NULL) {
        evconnlistener_free(lev);
        return -1;
    }
    if (getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&bound, &blen) != 0)
        return -1;
    if (bound.ss_family == AF_INET6) {
        port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        ip = &((struct sockaddr_in6 *)&bound)->sin6_addr;
    } else {
        port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        ip = &((struct sockaddr_in *)&bound)->sin_addr;
    }
    if (evutil_inet_ntop(bound.ss_family, ip, addr, sizeof(addr)) == NULL)
        strcpy(addr, "?");
    snprintf(g.port, sizeof(g.port), "%u", port);
    if (port_file != NULL && write_port_file(port_file, port) != 0) {
        fprintf(stderr, "gh-mock: cannot write %s: %s\n", port_file, strerror(errno));
        return -1;
    }
    printf(bound.ss_family == AF_INET6 ? "gh-mock listening on [%s]:%u\n"
                                       : "gh-mock listening on %s:%u\n", addr, port);
    fflush(stdout);
    return 0;
}

/* Runs the mock: parse flags, raise the fd limit, serve until SIGTERM/SIGINT, free everything. */
int main(int argc, char **argv)
{
    const char *listen_spec = "127.0.0.1:0", *port_file = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    struct rlimit rl;
    int i, rc = 1;

    g.record = 1;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_spec = argv[++i];
        } else if (strncmp(argv[i], "--listen=", 9) == 0) {
            listen_spec = argv[i] + 9;
        } else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) {
            port_file = argv[++i];
        } else if (strncmp(argv[i], "--port-file=", 12) == 0) {
            port_file = argv[i] + 12;
        } else if (strcmp(argv[i], "--no-record") == 0) {
            g.record = 0;
        } else if (strcmp(argv[i], "--verbose") == 0) {
            g.verbose = 1;
        } else {
            fprintf(stderr, "usage: gh-mock [--listen HOST:PORT] [--port-file FILE] "
                            "[--no-record] [--verbose]\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    g.base = event_base_new();
    g.http = g.base != NULL ? evhttp_new(g.base) : NULL;
    g.scratch = evbuffer_new();
    g.tok = json_tokener_new_ex(256);
    if (g.http == NULL || g.scratch == NULL || g.tok == NULL)
        goto done;
    json_tokener_set_flags(g.tok, JSON_TOKENER_STRICT);
    evhttp_set_max_body_size(g.http, MOCK_MAX_BODY);
    evhttp_set_allowed_methods(g.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                           EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                           EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(g.http, "application/json");
    evhttp_set_gencb(g.http, on_request, NULL);
    if (start_server(listen_spec, port_file) != 0)
        goto done;
    sigterm = evsignal_new(g.base, SIGTERM, on_signal, NULL);
    sigint = evsignal_new(g.base, SIGINT, on_signal, NULL);
    if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) != 0 ||
        evsignal_add(sigint, NULL) != 0)
        goto done;
    if (event_base_dispatch(g.base) < 0)
        goto done;
    rc = 0;
done:
    if (g.http != NULL)
        evhttp_free(g.http); /* closes every connection; close callbacks free parked jobs */
    while (g.jobs != NULL)
        job_release(g.jobs);
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    if (g.scratch != NULL)
        evbuffer_free(g.scratch);
    if (g.tok != NULL)
        json_tokener_free(g.tok);
    records_clear();
    if (g.base != NULL)
        event_base_free(g.base);
    libevent_global_shutdown();
    return rc;
}
