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
#include <time.h>
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
#define MOCK_RECORD_UPLOAD 4096            /* bytes of an upload's body that are recorded */
#define MOCK_FILES_MAX (256 * 1024 * 1024) /* bytes of file content kept in all */
#define MOCK_CHUNK (64 * 1024)             /* download chunk */
#define MOCK_BATCH_MAX 100000              /* requests in one message batch */
#define MOCK_FILES_BETA "files-api-2025-04-14"
#define MOCK_BACKLOG 4096
#define N_ELEM(a) (sizeof(a) / sizeof((a)[0]))
#define ADD(b, lit) evbuffer_add((b), (lit), sizeof(lit) - 1)
#define GETS (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD)

/* Routes before R_HEALTH are Anthropic API routes, the rest the mock's own. */
enum route {
    R_MESSAGES,
    R_COUNT,
    R_MODELS,
    R_BATCHES,
    R_BATCH,
    R_CANCEL,
    R_RESULTS,
    R_FILES,
    R_FILE,
    R_CONTENT,
    R_HEALTH,
    R_RECORDS,
    R_RESET,
    R_STATS
};
/* Scenarios up to SC_ECHO answer successfully (and may stream); the rest are errors. */
enum scen {
    SC_OK,
    SC_TOOL,
    SC_THINKING,
    SC_SLOW,
    SC_CUT,
    SC_SSE_ERROR,
    SC_ECHO,
    SC_ERROR,
    SC_BAD_BODY,
    SC_UNKNOWN
};
enum phase { PH_WAIT, PH_STREAM, PH_CUT, PH_XFER };
/* Stream plan steps; B1 marks a step of content block 1 instead of block 0. */
enum op {
    OP_END,
    OP_START,
    OP_TEXT,
    OP_TOOL,
    OP_THINK,
    OP_PING,
    OP_WORDS,
    OP_ECHO,
    OP_SAY,
    OP_JSON1,
    OP_JSON2,
    OP_JSON3,
    OP_THOUGHT,
    OP_SIGN,
    OP_STOP,
    OP_DELTA,
    OP_FINISH
};
#define B1 0x80

/* One Anthropic error kind: HTTP status, reason phrase, error.type and error.message. */
struct mock_err {
    int status;
    const char *reason, *type, *message;
};

static const struct mock_err errs[] = {
    {400, "Bad Request", "invalid_request_error", "gh-mock: invalid request"},
    {401, "Unauthorized", "authentication_error", "invalid x-api-key"},
    {403, "Forbidden", "permission_error", "Your API key does not have permission"},
    {404, "Not Found", "not_found_error", "Not found"},
    {405, "Method Not Allowed", "invalid_request_error", "Method not allowed"},
    {413, "Request Entity Too Large", "request_too_large", "Request exceeds the maximum size"},
    {429, "Too Many Requests", "rate_limit_error", "Number of requests has exceeded your limit"},
    {500, "Internal Server Error", "api_error", "Internal server error"},
    {502, "Bad Gateway", "api_error", "Bad gateway"},
    {503, "Service Unavailable", "api_error", "Service unavailable"},
    {529, "Overloaded", "overloaded_error", "Overloaded"},
};

/* Named scenarios, indexed by enum scen; numeric ones ("529") are looked up in errs. */
static const char *const scen_names[] = {"ok",  "tool",      "thinking", "slow",
                                         "cut", "sse-error", "echo"};

static const struct {
    const char *id, *name, *created;
} models[] = {
    {"claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"},
    {"claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"},
    {"claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"},
    {"claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-14T00:00:00Z"},
    {"claude-opus-4-20250514", "Claude Opus 4", "2025-05-14T00:00:00Z"},
};

static const struct {
    const char *path;
    int route, methods;
    const char *allow;
} routes[] = {
    {"/v1/messages", R_MESSAGES, EVHTTP_REQ_POST, "POST"},
    {"/v1/messages/count_tokens", R_COUNT, EVHTTP_REQ_POST, "POST"},
    {"/v1/models", R_MODELS, GETS, "GET, HEAD"},
    {"/v1/messages/batches", R_BATCHES, GETS | EVHTTP_REQ_POST, "GET, HEAD, POST"},
    {"/v1/messages/batches/*", R_BATCH, GETS | EVHTTP_REQ_DELETE, "GET, HEAD, DELETE"},
    {"/v1/messages/batches/*/cancel", R_CANCEL, EVHTTP_REQ_POST, "POST"},
    {"/v1/messages/batches/*/results", R_RESULTS, EVHTTP_REQ_GET, "GET"},
    {"/v1/files", R_FILES, GETS | EVHTTP_REQ_POST, "GET, HEAD, POST"},
    {"/v1/files/*", R_FILE, GETS | EVHTTP_REQ_DELETE, "GET, HEAD, DELETE"},
    {"/v1/files/*/content", R_CONTENT, EVHTTP_REQ_GET, "GET"},
    {"/", R_HEALTH, GETS, "GET, HEAD"},
    {"/healthz", R_HEALTH, GETS, "GET, HEAD"},
    {"/_mock/requests", R_RECORDS, EVHTTP_REQ_GET, "GET"},
    {"/_mock/reset", R_RESET, EVHTTP_REQ_POST, "POST"},
    {"/_mock/stats", R_STATS, EVHTTP_REQ_GET, "GET"},
};

/* Anthropic's event sequences; OP_WORDS repeats x-mock-events times. */
static const unsigned char plan_text[] = {OP_START, OP_TEXT,  OP_PING,   OP_WORDS,
                                          OP_STOP,  OP_DELTA, OP_FINISH, OP_END};
static const unsigned char plan_echo[] = {OP_START, OP_TEXT,  OP_PING,   OP_ECHO,
                                          OP_STOP,  OP_DELTA, OP_FINISH, OP_END};
static const unsigned char plan_tool[] = {
    OP_START,      OP_TEXT,       OP_PING,      OP_SAY,   OP_STOP,   OP_TOOL | B1, OP_JSON1 | B1,
    OP_JSON2 | B1, OP_JSON3 | B1, OP_STOP | B1, OP_DELTA, OP_FINISH, OP_END};
static const unsigned char plan_thinking[] = {OP_START,     OP_THINK, OP_PING,      OP_THOUGHT,
                                              OP_SIGN,      OP_STOP,  OP_TEXT | B1, OP_WORDS | B1,
                                              OP_STOP | B1, OP_DELTA, OP_FINISH,    OP_END};

#define EV_BLOCK "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":%d,"
#define EV_DELTA(type, field)                                                                      \
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":%d,"            \
    "\"delta\":{\"type\":\"" type "\",\"" field "\":"

/* Events whose only variable part is the content block index (printf'd as %d). */
static const char *const ev_fixed[] = {
    [OP_TEXT] = EV_BLOCK "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    [OP_TOOL] = EV_BLOCK "\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_mock_1\","
                         "\"name\":\"get_weather\",\"input\":{}}}\n\n",
    [OP_THINK] = EV_BLOCK "\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\","
                          "\"signature\":\"\"}}\n\n",
    [OP_PING] = "event: ping\ndata: {\"type\":\"ping\"}\n\n",
    [OP_SAY] = EV_DELTA("text_delta", "text") "\"Let me check\"}}\n\n",
    [OP_JSON1] = EV_DELTA("input_json_delta", "partial_json") "\"{\\\"loca\"}}\n\n",
    [OP_JSON2] = EV_DELTA("input_json_delta", "partial_json") "\"tion\\\": \\\"Pa\"}}\n\n",
    [OP_JSON3] = EV_DELTA("input_json_delta", "partial_json") "\"ris\\\"}\"}}\n\n",
    [OP_THOUGHT] = EV_DELTA("thinking_delta", "thinking") "\"Let me think\"}}\n\n",
    [OP_SIGN] = EV_DELTA("signature_delta", "signature") "\"sig_mock\"}}\n\n",
    [OP_STOP] =
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":%d}\n\n",
    [OP_FINISH] = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
};

/* Everything known about one request; pointers borrow from root or from the request itself. */
struct call {
    unsigned long id;
    int route, method, scen, stream, batch_pending;
    const struct mock_err *err; /* SC_ERROR */
    const char *bad;            /* SC_UNKNOWN: the scenario name; SC_BAD_BODY: what is wrong */
    long events, interval_ms, delay_ms, in_tok, out_tok, cache_c, cache_r, retry_after, cut_after;
    long results_ms;
    const char *model, *body;
    size_t model_len, body_len;
    const char *host;         /* Host header, for results_url; NULL when absent */
    const char *msg_pfx;      /* put between "msg_mock_" and id in a message's id */
    char obj[80];             /* the {id} segment of the path, truncated */
    struct json_object *root; /* parsed body, owned by whoever owns the call */
};

static const struct call call_defaults = {
    .events = 3,
    .delay_ms = -1,
    .in_tok = 11,
    .out_tok = 7,
    .retry_after = 1,
    .cut_after = 2,
    .model = "claude-mock",
    .model_len = 11,
    .body = "",
    .msg_pfx = "",
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
    {"results-interval-ms", offsetof(struct call, results_ms), 3600000},
};

/* A stored file. Its id comes first so that lists can read it through a plain pointer. The
 * store holds one reference and every download one more, so deleting a file that is being
 * downloaded frees it only when the download ends. */
struct mfile {
    char id[32];
    unsigned refs;
    time_t created;
    char *name, *mime;
    unsigned char *data;
    size_t size;
};

enum batch_status { BS_IN_PROGRESS, BS_CANCELING, BS_ENDED };
enum { RC_PROCESSING, RC_SUCCEEDED, RC_ERRORED, RC_CANCELED, RC_EXPIRED, RC_N };

/* A message batch: its state, the usage its results report, and its requests (a JSON array it
 * holds a reference to). Its id comes first, as in struct mfile. */
struct batch {
    char id[40];
    char pfx[28]; /* message ids of its results: msg_mock_<pfx><request number> */
    int status, canceled;
    time_t created, ended, cancel_at;
    long counts[RC_N], in_tok, out_tok, cache_c, cache_r;
    struct json_object *requests;
};

/* Batches or files in creation order; lists show them newest first. */
struct list {
    void **v;
    size_t n, cap;
};

/* A request answered by a timer (delay, pacing, cut) or, with heap = 0, an inline stream. Heap
 * jobs own themselves and c.root; the request stays evhttp's unless the connection drops, and
 * then it is the job's to free (see job_closed). PH_XFER jobs send a chunked body from out (one
 * line per chunk) or from file (MOCK_CHUNK bytes per chunk, from off), and own both. */
struct job {
    struct job *prev, *next;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event timer;
    struct call c;
    const unsigned char *plan;
    int phase, pi, heap, polls;
    long rep, sent;
    struct evbuffer *out;
    struct mfile *file;
    size_t off;
};

static struct {
    struct event_base *base;
    struct evhttp *http;
    struct evbuffer *scratch; /* one SSE event at a time */
    struct json_tokener *tok;
    struct job *jobs;            /* live heap jobs */
    struct json_object *records; /* array of recorded requests, oldest first */
    unsigned long next_id, requests, streams_open, streams_done, next_batch, next_file;
    struct list batches, files;
    size_t file_bytes; /* content bytes of the stored files */
    char port[8];
    int record, verbose;
} g;

/* Appends s[0..n) to b as a quoted JSON string; bytes >= 0x80 pass through unchanged. */
static void json_escape(struct evbuffer *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, run = 0;

    ADD(b, "\"");
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[7] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15], 0};

        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        evbuffer_add(b, s + run, i - run);
        run = i + 1;
        if (ch == '"' || ch == '\\' || ch == '\n' || ch == '\t') {
            esc[1] = ch == '\n' ? 'n' : ch == '\t' ? 't' : (char)ch;
            esc[2] = 0;
        }
        evbuffer_add(b, esc, strlen(esc));
    }
    evbuffer_add(b, s + run, n - run);
    ADD(b, "\"");
}

/* Returns the error kind for an HTTP status, or NULL when the mock has none. */
static const struct mock_err *find_err(long status)
{
    size_t i;

    for (i = 0; i < N_ELEM(errs); i++)
        if (errs[i].status == status)
            return &errs[i];
    return NULL;
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

/* Sends what req's output buffer holds as a JSON answer; evhttp owns req afterwards. */
static void reply_json(struct evhttp_request *req, unsigned long id, int status, const char *reason)
{
    add_headers(req, id, "application/json");
    evhttp_send_reply(req, status, reason, NULL);
}

/* Answers in Anthropic's error shape; msg NULL means e's own message, detail (may be NULL) is
 * appended to it. evhttp owns req afterwards. */
static void reply_error(struct evhttp_request *req, const struct call *c, const struct mock_err *e,
                        const char *msg, const char *detail)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    char text[320], num[24];
    int n;

    n = snprintf(text, sizeof(text), "%s%.200s", msg != NULL ? msg : e->message,
                 detail != NULL ? detail : "");
    n = n < 0 ? 0 : n >= (int)sizeof(text) ? (int)sizeof(text) - 1 : n;
    evbuffer_add_printf(b, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":", e->type);
    json_escape(b, text, (size_t)n);
    ADD(b, "}}");
    if (e->status == 429) {
        snprintf(num, sizeof(num), "%ld", c->retry_after);
        evhttp_add_header(evhttp_request_get_output_headers(req), "retry-after", num);
    }
    reply_json(req, c->id, e->status, e->reason);
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
    evbuffer_add_printf(b,
                        "{\"id\":\"msg_mock_%s%lu\",\"type\":\"message\",\"role\":\"assistant\","
                        "\"model\":",
                        c->msg_pfx, c->id);
    json_escape(b, c->model, c->model_len);
    ADD(b, ",\"content\":[");
    if (c->scen == SC_TOOL) {
        ADD(b, "{\"type\":\"tool_use\",\"id\":\"toolu_mock_1\",\"name\":\"get_weather\","
               "\"input\":{\"location\":\"Paris\"}}");
    } else if (c->scen == SC_ECHO) {
        ADD(b, "{\"type\":\"text\",\"text\":");
        json_escape(b, c->body, c->body_len);
        ADD(b, "}");
    } else {
        if (c->scen == SC_THINKING)
            ADD(b, "{\"type\":\"thinking\",\"thinking\":\"Let me think\","
                   "\"signature\":\"sig_mock\"},");
        ADD(b, "{\"type\":\"text\",\"text\":\"Hello from mock\"}");
    }
    evbuffer_add_printf(b, "],\"stop_reason\":\"%s\",\"stop_sequence\":null,",
                        c->scen == SC_TOOL ? "tool_use" : "end_turn");
    put_usage(b, c, c->out_tok);
    ADD(b, "}");
}

/* Returns the catalogue index of a model id, or -1. */
static long model_index(const char *id)
{
    size_t i;

    for (i = 0; i < N_ELEM(models); i++)
        if (strcmp(models[i].id, id) == 0)
            return (long)i;
    return -1;
}

/* Picks the page of an n-item list (in display order) that the query's limit (1..1000, default
 * 20), after_id and before_id ask for: items [*first, *last), *more when the list goes on past
 * it. pos maps an id to its position, or -1 (an unknown id gives an empty page). Returns 0, or -1
 * after answering 400. */
static int page_range(struct evhttp_request *req, const struct call *c, long n,
                      long (*pos)(const char *), long *first, long *last, int *more)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    long limit = 20, start = 0, end = n, i;
    const char *after, *before, *lim;
    struct evkeyvalq q = {NULL, &q.tqh_first};
    char *endp;
    int rc = -1;

    if (query != NULL && evhttp_parse_query_str(query, &q) != 0) {
        reply_error(req, c, find_err(400), "gh-mock: malformed query string", NULL);
        return -1;
    }
    lim = evhttp_find_header(&q, "limit");
    after = evhttp_find_header(&q, "after_id");
    before = evhttp_find_header(&q, "before_id");
    if (lim != NULL && ((limit = strtol(lim, &endp, 10)) < 1 || limit > 1000 || *endp != '\0')) {
        reply_error(req, c, find_err(400), "limit: must be between 1 and 1000", NULL);
        goto done;
    }
    if (after != NULL)
        start = (i = pos(after)) < 0 ? n : i + 1;
    if (before != NULL)
        end = (i = pos(before)) < 0 ? 0 : i;
    if (before != NULL && after == NULL) { /* the page just before before_id */
        start = end - limit > 0 ? end - limit : 0;
        *more = start > 0;
    } else {
        *more = start + limit < end;
        end = *more ? start + limit : end;
    }
    *first = start > end ? end : start;
    *last = end;
    rc = 0;
done:
    evhttp_clear_headers(&q);
    return rc;
}

/* Answers GET /v1/models in Anthropic's list shape, honouring limit, after_id and before_id. */
static void reply_models(struct evhttp_request *req, const struct call *c)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    long start, end, i;
    int more;

    if (page_range(req, c, (long)N_ELEM(models), model_index, &start, &end, &more) != 0)
        return;
    ADD(b, "{\"data\":[");
    for (i = start; i < end; i++)
        evbuffer_add_printf(b,
                            "%s{\"type\":\"model\",\"id\":\"%s\",\"display_name\":\"%s\","
                            "\"created_at\":\"%s\"}",
                            i > start ? "," : "", models[i].id, models[i].name, models[i].created);
    evbuffer_add_printf(b, "],\"has_more\":%s,", more ? "true" : "false");
    if (start < end)
        evbuffer_add_printf(b, "\"first_id\":\"%s\",\"last_id\":\"%s\"}", models[start].id,
                            models[end - 1].id);
    else
        ADD(b, "\"first_id\":null,\"last_id\":null}");
    reply_json(req, c->id, 200, "OK");
}

/* Tells whether c is answered as an SSE stream. */
static int is_streaming(const struct call *c)
{
    return c->route == R_MESSAGES && c->stream && c->scen <= SC_ECHO;
}

/* Writes the SSE event of plan step op (with its B1 flag) of job j into g.scratch. */
static void put_event(const struct job *j, int op)
{
    struct evbuffer *b = g.scratch;
    const struct call *c = &j->c;
    int index = (op & B1) ? 1 : 0;

    switch (op & ~B1) {
    case OP_START:
        evbuffer_add_printf(b,
                            "event: message_start\ndata: {\"type\":\"message_start\","
                            "\"message\":{\"id\":\"msg_mock_%lu\",\"type\":\"message\","
                            "\"role\":\"assistant\",\"model\":",
                            c->id);
        json_escape(b, c->model, c->model_len);
        ADD(b, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,");
        put_usage(b, c, 1);
        ADD(b, "}}\n\n");
        break;
    case OP_WORDS:
        evbuffer_add_printf(b, EV_DELTA("text_delta", "text") "\"w%ld \"}}\n\n", index, j->rep);
        break;
    case OP_ECHO:
        evbuffer_add_printf(b, EV_DELTA("text_delta", "text"), index);
        json_escape(b, c->body, c->body_len);
        ADD(b, "}}\n\n");
        break;
    case OP_DELTA:
        evbuffer_add_printf(b,
                            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":"
                            "{\"stop_reason\":\"%s\",\"stop_sequence\":null},"
                            "\"usage\":{\"output_tokens\":%ld}}\n\n",
                            c->scen == SC_TOOL ? "tool_use" : "end_turn", c->out_tok);
        break;
    default:
        evbuffer_add_printf(b, ev_fixed[op & ~B1], index);
        break;
    }
}

/* Returns j's current plan step, skipping an OP_WORDS step that has repeated often enough. */
static int plan_peek(struct job *j)
{
    while ((j->plan[j->pi] & ~B1) == OP_WORDS && j->rep >= j->c.events) {
        j->pi++;
        j->rep = 0;
    }
    return j->plan[j->pi];
}

/* (Re)arms j's timer to fire in ms milliseconds. */
static void job_arm(struct job *j, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(&j->timer, &tv);
}

/* Drops one reference to a file, freeing it with the last. */
static void file_unref(struct mfile *f)
{
    if (f == NULL || --f->refs > 0)
        return;
    free(f->name);
    free(f->mime);
    free(f->data);
    free(f);
}

/* Ends j's bookkeeping (stream counters, timer, list, root, transfer) and frees it if it is a
 * heap job. Never touches j->req: the caller has handed the request back to evhttp or freed it. */
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
    if (j->out != NULL)
        evbuffer_free(j->out);
    file_unref(j->file);
    free(j);
}

/* Close callback of a parked job's connection: the client went away or the server is shutting
 * down. A request that evhttp detached from the dying connection is ours to free. */
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

/* Drops j's connection without finishing the answer, once evhttp has flushed what was sent (or
 * after 5 s of a client that does not read). */
static void job_cut(struct job *j)
{
    struct evhttp_connection *evcon = j->evcon;

    j->phase = PH_CUT;
    if (evbuffer_get_length(bufferevent_get_output(evhttp_connection_get_bufferevent(evcon))) &&
        j->polls++ < 1000) {
        job_arm(j, 5);
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
    if (j->heap) /* before reply_end, which may free the connection at once */
        evhttp_connection_set_closecb(j->evcon, NULL, NULL);
    evhttp_send_reply_end(j->req);
    job_release(j);
}

/* Sends j's next events, each as its own chunk, until the stream ends, is cut, or has to wait
 * x-mock-interval-ms for its timer. */
static void stream_pump(struct job *j)
{
    int limited = j->c.scen == SC_CUT || j->c.scen == SC_SSE_ERROR, op;

    for (;;) {
        op = plan_peek(j);
        if (limited && (j->sent >= j->c.cut_after || op == OP_END)) {
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
        if (op == OP_END) {
            stream_finish(j);
            return;
        }
        put_event(j, op);
        evhttp_send_reply_chunk(j->req, g.scratch);
        if ((op & ~B1) == OP_WORDS)
            j->rep++;
        else
            j->pi++;
        j->sent++;
        if (!limited && plan_peek(j) == OP_END) {
            stream_finish(j);
            return;
        }
        if (j->c.interval_ms > 0) {
            job_arm(j, j->c.interval_ms);
            return;
        }
    }
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
    for (i = 0; i < N_ELEM(scen_names); i++) {
        if (strcasecmp(name, scen_names[i]) == 0) {
            c->scen = (int)i;
            return;
        }
    }
    status = strtol(name, &end, 10);
    if (end != name && *end == '\0' && status != 405 && (c->err = find_err(status)) != NULL) {
        c->scen = SC_ERROR;
        return;
    }
    c->scen = SC_UNKNOWN;
    c->bad = name;
}

/* Timer callback of every heap job (defined below: answer, which it calls, starts jobs too). */
static void job_fire(evutil_socket_t fd, short what, void *arg);

/* Returns a new heap job for req (a copy of c, the job owning c->root) whose connection's close
 * callback frees it; its timer is not armed. Returns NULL when out of memory. */
static struct job *job_new(struct evhttp_request *req, const struct call *c)
{
    struct job *j = calloc(1, sizeof(*j));

    if (j == NULL)
        return NULL;
    j->req = req;
    j->evcon = evhttp_request_get_connection(req);
    j->c = *c;
    j->heap = 1;
    if (j->evcon == NULL || evtimer_assign(&j->timer, g.base, job_fire, j) != 0) {
        free(j);
        return NULL;
    }
    j->next = g.jobs;
    if (g.jobs != NULL)
        g.jobs->prev = j;
    g.jobs = j;
    evhttp_connection_set_closecb(j->evcon, job_closed, j);
    return j;
}

/* Write callback of a transfer: the last chunk has left, so the next one may follow (after
 * x-mock-results-interval-ms for batch results). */
static void xfer_sent(struct evhttp_connection *evcon, void *arg)
{
    struct job *j = arg;

    (void)evcon;
    job_arm(j, j->file == NULL ? j->c.results_ms : 0);
}

/* Sends the next chunk of j's transfer (one line of out, or MOCK_CHUNK bytes of file) and ends
 * the reply after the last one. */
static void xfer_pump(struct job *j)
{
    struct evbuffer_ptr eol;
    size_t n;

    if (j->file != NULL) {
        n = j->file->size - j->off < MOCK_CHUNK ? j->file->size - j->off : MOCK_CHUNK;
        evbuffer_add(g.scratch, j->file->data + j->off, n);
        j->off += n;
    } else {
        eol = evbuffer_search(j->out, "\n", 1, NULL);
        n = eol.pos < 0 ? evbuffer_get_length(j->out) : (size_t)eol.pos + 1;
        evbuffer_remove_buffer(j->out, g.scratch, n);
    }
    if (n > 0)
        evhttp_send_reply_chunk_with_cb(j->req, g.scratch, xfer_sent, j);
    evbuffer_drain(g.scratch, evbuffer_get_length(g.scratch));
    if (j->file != NULL ? j->off == j->file->size : evbuffer_get_length(j->out) == 0)
        stream_finish(j);
}

/* Starts a chunked 200 answer that a transfer job sends piece by piece: out's lines (the job
 * takes out) or file's bytes (the job takes a reference). evhttp owns req afterwards. */
static void xfer_start(struct evhttp_request *req, const struct call *c, const char *ctype,
                       struct evbuffer *out, struct mfile *file)
{
    struct job *j = job_new(req, c);

    if (j == NULL) {
        if (out != NULL)
            evbuffer_free(out);
        reply_error(req, c, find_err(500), "gh-mock: out of memory", NULL);
        return;
    }
    j->c.root = NULL; /* still the caller's */
    j->phase = PH_XFER;
    j->out = out;
    if ((j->file = file) != NULL)
        file->refs++;
    add_headers(req, c->id, ctype);
    evhttp_send_reply_start(req, 200, "OK");
    xfer_pump(j);
}

/* Appends item to l. Returns 0/-1. */
static int list_push(struct list *l, void *item)
{
    size_t cap = l->cap ? l->cap * 2 : 16;
    void **v;

    if (l->n == l->cap) {
        if ((v = realloc(l->v, cap * sizeof(*v))) == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = item;
    return 0;
}

/* Returns the index in l of the batch or file whose id is id, or -1. */
static long list_find(const struct list *l, const char *id)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        if (strcmp((const char *)l->v[i], id) == 0)
            return (long)i;
    return -1;
}

/* Removes the element at index i from l, keeping the order of the rest. */
static void list_del(struct list *l, size_t i)
{
    memmove(l->v + i, l->v + i + 1, (l->n - i - 1) * sizeof(*l->v));
    l->n--;
}

/* Position of a batch in the newest-first list, or -1. */
static long batch_pos(const char *id)
{
    long i = list_find(&g.batches, id);

    return i < 0 ? -1 : (long)g.batches.n - 1 - i;
}

/* Position of a file in the newest-first list, or -1. */
static long file_pos(const char *id)
{
    long i = list_find(&g.files, id);

    return i < 0 ? -1 : (long)g.files.n - 1 - i;
}

/* Answers a list route (batches or files, newest first) in Anthropic's page shape; put appends
 * one element. */
static void reply_list(struct evhttp_request *req, const struct call *c, const struct list *l,
                       long (*pos)(const char *),
                       void (*put)(struct evbuffer *, const void *, const struct call *))
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    long start, end, i;
    int more;

    if (page_range(req, c, (long)l->n, pos, &start, &end, &more) != 0)
        return;
    ADD(b, "{\"data\":[");
    for (i = start; i < end; i++) {
        if (i > start)
            ADD(b, ",");
        put(b, l->v[l->n - 1 - (size_t)i], c);
    }
    evbuffer_add_printf(b, "],\"has_more\":%s,", more ? "true" : "false");
    if (start < end)
        evbuffer_add_printf(b, "\"first_id\":\"%s\",\"last_id\":\"%s\"}",
                            (const char *)l->v[l->n - 1 - (size_t)start],
                            (const char *)l->v[l->n - (size_t)end]);
    else
        ADD(b, "\"first_id\":null,\"last_id\":null}");
    reply_json(req, c->id, 200, "OK");
}

/* Appends t as a quoted RFC 3339 UTC time, or null when t is 0. */
static void put_time(struct evbuffer *b, time_t t)
{
    struct tm tm;
    char s[40];

    if (t == 0 || gmtime_r(&t, &tm) == NULL ||
        strftime(s, sizeof(s), "\"%Y-%m-%dT%H:%M:%SZ\"", &tm) == 0)
        ADD(b, "null");
    else
        evbuffer_add(b, s, strlen(s));
}

/* Appends one message_batch object; results_url is built from the Host header of c. */
static void put_batch(struct evbuffer *b, const void *item, const struct call *c)
{
    static const char *const status[] = {"in_progress", "canceling", "ended"};
    const struct batch *m = item;
    char url[400];

    evbuffer_add_printf(b,
                        "{\"id\":\"%s\",\"type\":\"message_batch\",\"processing_status\":\"%s\","
                        "\"request_counts\":{\"processing\":%ld,\"succeeded\":%ld,\"errored\":%ld,"
                        "\"canceled\":%ld,\"expired\":%ld},\"ended_at\":",
                        m->id, status[m->status], m->counts[RC_PROCESSING], m->counts[RC_SUCCEEDED],
                        m->counts[RC_ERRORED], m->counts[RC_CANCELED], m->counts[RC_EXPIRED]);
    put_time(b, m->ended);
    ADD(b, ",\"created_at\":");
    put_time(b, m->created);
    ADD(b, ",\"expires_at\":");
    put_time(b, m->created + 86400);
    ADD(b, ",\"cancel_initiated_at\":");
    put_time(b, m->cancel_at);
    ADD(b, ",\"archived_at\":null,\"results_url\":");
    if (m->status == BS_ENDED) {
        if (c->host != NULL)
            snprintf(url, sizeof(url), "http://%.256s/v1/messages/batches/%s/results", c->host,
                     m->id);
        else
            snprintf(url, sizeof(url), "http://127.0.0.1:%s/v1/messages/batches/%s/results", g.port,
                     m->id);
        json_escape(b, url, strlen(url));
    } else {
        ADD(b, "null");
    }
    ADD(b, "}");
}

/* Frees a batch that no list holds any more. */
static void batch_free(struct batch *m)
{
    if (m == NULL)
        return;
    json_object_put(m->requests);
    free(m);
}

/* Ends a batch whose cancellation was asked for: every request still processing is canceled.
 * Called before a batch is looked at again, so only the cancel answer itself says "canceling". */
static void batch_settle(struct batch *m)
{
    if (m->status != BS_CANCELING)
        return;
    m->status = BS_ENDED;
    m->ended = time(NULL);
    m->counts[RC_CANCELED] = m->counts[RC_PROCESSING];
    m->counts[RC_PROCESSING] = 0;
    m->canceled = 1;
}

/* Returns the batch with id c->obj, settled, or NULL after answering 404. */
static struct batch *batch_find(struct evhttp_request *req, const struct call *c)
{
    long i = list_find(&g.batches, c->obj);

    if (i < 0) {
        reply_error(req, c, find_err(404), "gh-mock: no such message batch: ", c->obj);
        return NULL;
    }
    batch_settle(g.batches.v[i]);
    return g.batches.v[i];
}

/* Fills *t with the call that answers request i of batch m (its params.model picks the scenario,
 * as a Messages body's model does) and points *cid at its custom_id. Only valid requests (see
 * batch_create) may be asked for. */
static void batch_call(const struct batch *m, size_t i, struct call *t, const char **cid,
                       size_t *cid_len)
{
    struct json_object *item = json_object_array_get_idx(m->requests, i), *v, *params = NULL;

    *t = call_defaults;
    t->id = (unsigned long)i + 1;
    t->msg_pfx = m->pfx;
    t->in_tok = m->in_tok;
    t->out_tok = m->out_tok;
    t->cache_c = m->cache_c;
    t->cache_r = m->cache_r;
    json_object_object_get_ex(item, "custom_id", &v);
    *cid = json_object_get_string(v);
    *cid_len = (size_t)json_object_get_string_len(v);
    json_object_object_get_ex(item, "params", &params);
    json_object_object_get_ex(params, "model", &v);
    t->model = json_object_get_string(v);
    t->model_len = (size_t)json_object_get_string_len(v);
    pick_scenario(t, NULL);
    if (t->scen == SC_ECHO) {
        t->body = json_object_to_json_string_length(
            params, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &t->body_len);
    }
}

/* Appends the JSONL results of batch m, one line per request, in request order. */
static void put_results(struct evbuffer *b, const struct batch *m)
{
    size_t i, n = json_object_array_length(m->requests), cid_len;
    const struct mock_err *e;
    const char *cid, *msg;
    char text[320];
    struct call t;

    for (i = 0; i < n; i++) {
        batch_call(m, i, &t, &cid, &cid_len);
        ADD(b, "{\"custom_id\":");
        json_escape(b, cid, cid_len);
        if (m->canceled) {
            ADD(b, ",\"result\":{\"type\":\"canceled\"}}\n");
        } else if (t.scen == SC_ERROR || t.scen == SC_UNKNOWN) {
            e = t.scen == SC_ERROR ? t.err : find_err(400);
            msg = e->message;
            if (strncmp(t.model, "mock-error", 10) == 0) {
                msg = "gh-mock: requests for mock-error models always fail";
            } else if (t.scen == SC_UNKNOWN) {
                snprintf(text, sizeof(text), "gh-mock: unknown scenario: %.200s", t.bad);
                msg = text;
            }
            evbuffer_add_printf(b,
                                ",\"result\":{\"type\":\"errored\",\"error\":{\"type\":\"error\","
                                "\"error\":{\"type\":\"%s\",\"message\":",
                                e->type);
            json_escape(b, msg, strlen(msg));
            ADD(b, "}}}}\n");
        } else {
            ADD(b, ",\"result\":{\"type\":\"succeeded\",\"message\":");
            put_message(b, &t);
            ADD(b, "}}\n");
        }
    }
}

/* Checks one entry of a batch's requests: an object with a custom_id matching
 * ^[a-zA-Z0-9_-]{1,64}$ that seen (a set of custom_ids) does not hold yet, and params.model, a
 * non-empty string. Returns NULL, or what is wrong (to follow "requests.N"). */
static const char *batch_check(struct json_object *item, struct json_object *seen)
{
    struct json_object *v, *params;
    const char *id;
    size_t n, k;

    if (!json_object_is_type(item, json_type_object))
        return ": Input should be an object";
    if (!json_object_object_get_ex(item, "custom_id", &v) ||
        !json_object_is_type(v, json_type_string))
        return ".custom_id: Field required";
    id = json_object_get_string(v);
    n = (size_t)json_object_get_string_len(v);
    for (k = 0; k < n && (isalnum((unsigned char)id[k]) || id[k] == '_' || id[k] == '-'); k++)
        ;
    if (n == 0 || n > 64 || k < n)
        return ".custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'";
    if (json_object_object_get_ex(seen, id, NULL))
        return ".custom_id: must be unique within the batch";
    if (json_object_object_add(seen, id, NULL) != 0)
        return ": gh-mock: out of memory";
    if (!json_object_object_get_ex(item, "params", &params) ||
        !json_object_is_type(params, json_type_object))
        return ".params: Field required";
    if (!json_object_object_get_ex(params, "model", &v) ||
        !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
        return ".params.model: Field required";
    return NULL;
}

/* POST /v1/messages/batches: validates the requests, stores the batch (ended at once unless
 * x-mock-batch-status: in_progress) and answers its message_batch object. */
static void batch_create(struct evhttp_request *req, const struct call *c)
{
    struct json_object *reqs = NULL, *seen = json_object_new_object();
    struct batch *m = calloc(1, sizeof(*m));
    const char *why = NULL, *cid;
    size_t i, n = 0, cid_len;
    char text[200];
    struct call t;

    if (m == NULL || seen == NULL) {
        reply_error(req, c, find_err(500), "gh-mock: out of memory", NULL);
        goto done;
    }
    if (!json_object_object_get_ex(c->root, "requests", &reqs) ||
        !json_object_is_type(reqs, json_type_array) || (n = json_object_array_length(reqs)) < 1 ||
        n > MOCK_BATCH_MAX) {
        reply_error(req, c, find_err(400), "requests: must be an array of 1 to 100000 requests",
                    NULL);
        goto done;
    }
    for (i = 0; i < n && why == NULL; i++)
        why = batch_check(json_object_array_get_idx(reqs, i), seen);
    if (why != NULL) {
        snprintf(text, sizeof(text), "requests.%zu%s", i - 1, why);
        reply_error(req, c, find_err(400), text, NULL);
        goto done;
    }
    if (list_push(&g.batches, m) != 0) {
        reply_error(req, c, find_err(500), "gh-mock: out of memory", NULL);
        goto done;
    }
    snprintf(m->id, sizeof(m->id), "msgbatch_mock_%lu", ++g.next_batch);
    snprintf(m->pfx, sizeof(m->pfx), "b%lu_", g.next_batch);
    m->requests = json_object_get(reqs);
    m->created = time(NULL);
    m->in_tok = c->in_tok;
    m->out_tok = c->out_tok;
    m->cache_c = c->cache_c;
    m->cache_r = c->cache_r;
    if (c->batch_pending) {
        m->counts[RC_PROCESSING] = (long)n;
    } else {
        m->status = BS_ENDED;
        m->ended = m->created;
        for (i = 0; i < n; i++) {
            batch_call(m, i, &t, &cid, &cid_len);
            m->counts[t.scen == SC_ERROR || t.scen == SC_UNKNOWN ? RC_ERRORED : RC_SUCCEEDED]++;
        }
    }
    put_batch(evhttp_request_get_output_buffer(req), m, c);
    reply_json(req, c->id, 200, "OK");
    m = NULL;
done:
    batch_free(m);
    json_object_put(seen);
}

/* Answers the Message Batches routes. */
static void on_batches(struct evhttp_request *req, const struct call *c)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    struct evbuffer *out;
    struct batch *m;
    size_t i;

    if (c->route == R_BATCHES && c->method == EVHTTP_REQ_POST) {
        batch_create(req, c);
        return;
    }
    if (c->route == R_BATCHES) {
        for (i = 0; i < g.batches.n; i++)
            batch_settle(g.batches.v[i]);
        reply_list(req, c, &g.batches, batch_pos, put_batch);
        return;
    }
    if ((m = batch_find(req, c)) == NULL)
        return;
    if (c->route == R_CANCEL) {
        if (m->status == BS_IN_PROGRESS)
            m->status = BS_CANCELING;
        if (m->cancel_at == 0)
            m->cancel_at = time(NULL);
    } else if (c->route == R_RESULTS) {
        if (m->status != BS_ENDED) {
            reply_error(req, c, find_err(400),
                        "gh-mock: no results before the batch ends: ", m->id);
            return;
        }
        if ((out = evbuffer_new()) == NULL) {
            reply_error(req, c, find_err(500), "gh-mock: out of memory", NULL);
            return;
        }
        put_results(out, m);
        xfer_start(req, c, "application/x-jsonl", out, NULL);
        return;
    } else if (c->method == EVHTTP_REQ_DELETE) {
        if (m->status != BS_ENDED) {
            reply_error(req, c, find_err(400),
                        "gh-mock: cancel the batch before deleting it: ", m->id);
            return;
        }
        evbuffer_add_printf(b, "{\"id\":\"%s\",\"type\":\"message_batch_deleted\"}", m->id);
        list_del(&g.batches, (size_t)list_find(&g.batches, m->id));
        batch_free(m);
        reply_json(req, c->id, 200, "OK");
        return;
    }
    put_batch(b, m, c);
    reply_json(req, c->id, 200, "OK");
}

/* Appends one file metadata object. */
static void put_file(struct evbuffer *b, const void *item, const struct call *c)
{
    const struct mfile *f = item;

    (void)c;
    evbuffer_add_printf(b, "{\"id\":\"%s\",\"type\":\"file\",\"filename\":", f->id);
    json_escape(b, f->name, strlen(f->name));
    ADD(b, ",\"mime_type\":");
    json_escape(b, f->mime, strlen(f->mime));
    evbuffer_add_printf(b, ",\"size_bytes\":%zu,\"created_at\":", f->size);
    put_time(b, f->created);
    ADD(b, ",\"downloadable\":true}");
}

/* Tells whether an anthropic-beta header (repeated or comma-separated) names the Files API. */
static int has_files_beta(struct evhttp_request *req)
{
    const size_t bl = sizeof(MOCK_FILES_BETA) - 1;
    const struct evkeyval *kv;
    const char *p;
    size_t n;

    for (kv = evhttp_request_get_input_headers(req)->tqh_first; kv; kv = kv->next.tqe_next) {
        if (strcasecmp(kv->key, "anthropic-beta") != 0)
            continue;
        for (p = kv->value; *p != '\0'; p += n + (p[n] == ',')) {
            p += strspn(p, " \t");
            n = strcspn(p, ",");
            if (n >= bl && strncmp(p, MOCK_FILES_BETA, bl) == 0 && strspn(p + bl, " \t") == n - bl)
                return 1;
        }
    }
    return 0;
}

/* Returns a malloc'd copy of parameter name of a header value such as
 * 'form-data; name="file"; filename="a.pdf"' (quoted strings unescaped), or NULL. */
static char *header_param(const char *v, const char *name)
{
    size_t nl = strlen(name), k;
    const char *p = strchr(v, ';'), *key;
    char *out;
    int match;

    while (p != NULL && *p == ';') {
        for (p++; *p == ' ' || *p == '\t'; p++)
            ;
        key = p;
        p += strcspn(p, "=;");
        match = (size_t)(p - key) == nl && strncasecmp(key, name, nl) == 0;
        if (*p != '=')
            continue;
        if ((out = malloc(strlen(++p) + 1)) == NULL)
            return NULL;
        k = 0;
        if (*p == '"') {
            for (p++; *p != '\0' && *p != '"'; p++) {
                if (*p == '\\' && p[1] != '\0')
                    p++;
                out[k++] = *p;
            }
            p += strcspn(p, ";");
        } else {
            for (; *p != '\0' && *p != ';'; p++)
                out[k++] = *p;
            while (k > 0 && (out[k - 1] == ' ' || out[k - 1] == '\t'))
                k--;
        }
        out[k] = '\0';
        if (match)
            return out;
        free(out);
    }
    return NULL;
}

/* Reads the headers of one multipart part (hdr: NUL-terminated, CRLF-separated, changed in
 * place): *is_file tells whether its form field is "file"; *name and *mime get its filename and
 * content type (malloc'd, or NULL). */
static void mp_headers(char *hdr, int *is_file, char **name, char **mime)
{
    char *line = hdr, *next, *v, *field;
    size_t n;

    for (; line != NULL && *line != '\0'; line = next) {
        if ((next = strstr(line, "\r\n")) != NULL) {
            *next = '\0';
            next += 2;
        }
        if ((v = strchr(line, ':')) == NULL)
            continue;
        *v++ = '\0';
        v += strspn(v, " \t");
        for (n = strlen(v); n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'); n--)
            v[n - 1] = '\0';
        if (strcasecmp(line, "content-disposition") == 0) {
            field = header_param(v, "name");
            *is_file = field != NULL && strcmp(field, "file") == 0;
            free(field);
            free(*name);
            *name = header_param(v, "filename");
        } else if (strcasecmp(line, "content-type") == 0) {
            free(*mime);
            *mime = strdup(v);
        }
    }
}

/* Finds the part named "file" of req's multipart/form-data body without copying the body: its
 * content's offset and length, its filename and content type (malloc'd, NULL when absent; the
 * caller frees them). Returns NULL, or what is wrong. */
static const char *mp_find_file(struct evhttp_request *req, size_t *off, size_t *len, char **name,
                                char **mime)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    const char *ctype = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    const char *why = "file: Field required";
    char delim[80], two[2], *hdr = NULL, *b;
    struct evbuffer_ptr p, e, h, q;
    size_t dl, hl;
    int is_file = 0;

    if (ctype == NULL ||
        strncasecmp(ctype + strspn(ctype, " \t"), "multipart/form-data", 19) != 0 ||
        (b = header_param(ctype, "boundary")) == NULL)
        return "gh-mock: Content-Type must be multipart/form-data with a boundary";
    dl = strlen(b) + 4;
    if (dl > 4 && dl - 4 <= 70)
        snprintf(delim, sizeof(delim), "\r\n--%s", b);
    free(b);
    if (dl == 4 || dl - 4 > 70)
        return "gh-mock: bad multipart boundary";
    p = evbuffer_search(in, delim + 2, dl - 2, NULL);
    while (p.pos >= 0) {
        if (evbuffer_ptr_set(in, &p, dl - 2, EVBUFFER_PTR_ADD) != 0 ||
            evbuffer_copyout_from(in, &p, two, 2) != 2 || memcmp(two, "--", 2) == 0)
            break; /* the closing delimiter */
        e = evbuffer_search(in, "\r\n", 2, &p);
        h = evbuffer_search(in, "\r\n\r\n", 4, &p);
        why = "gh-mock: malformed multipart body";
        if (e.pos < 0 || h.pos < 0 || (hl = (size_t)(h.pos - e.pos)) > 16384 ||
            (hdr = malloc(hl + 1)) == NULL)
            break;
        hdr[hl > 2 ? hl - 2 : 0] = '\0'; /* the part's header lines, between two CRLFs */
        if (hl > 2 && (evbuffer_ptr_set(in, &e, 2, EVBUFFER_PTR_ADD) != 0 ||
                       evbuffer_copyout_from(in, &e, hdr, hl - 2) != (ev_ssize_t)(hl - 2)))
            break;
        is_file = 0;
        free(*name);
        free(*mime);
        *name = *mime = NULL;
        mp_headers(hdr, &is_file, name, mime);
        free(hdr);
        hdr = NULL;
        if (evbuffer_ptr_set(in, &h, 4, EVBUFFER_PTR_ADD) != 0)
            break;
        if ((q = evbuffer_search(in, delim, dl, &h)).pos < 0)
            break;
        if (is_file) {
            *off = (size_t)h.pos;
            *len = (size_t)(q.pos - h.pos);
            return NULL;
        }
        why = "file: Field required";
        p = q;
        if (evbuffer_ptr_set(in, &p, 2, EVBUFFER_PTR_ADD) != 0)
            break;
    }
    free(hdr);
    free(*name);
    free(*mime);
    *name = *mime = NULL;
    return why;
}

/* POST /v1/files: stores the multipart body's "file" part and answers its metadata. */
static void file_upload(struct evhttp_request *req, const struct call *c)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    char *name = NULL, *mime = NULL;
    struct mfile *f = NULL;
    struct evbuffer_ptr p;
    size_t off = 0, len = 0;
    const char *why = mp_find_file(req, &off, &len, &name, &mime);

    if (why != NULL) {
        reply_error(req, c, find_err(400), why, NULL);
        goto done;
    }
    if (len > MOCK_FILES_MAX - g.file_bytes) {
        reply_error(req, c, find_err(413),
                    "gh-mock: the file store is full (256 MiB in all); delete files first", NULL);
        goto done;
    }
    if ((f = calloc(1, sizeof(*f))) == NULL)
        goto oom;
    f->refs = 1;
    f->name = name != NULL && *name != '\0' ? name : strdup("upload");
    f->mime = mime != NULL && *mime != '\0' ? mime : strdup("application/octet-stream");
    if (f->name == name)
        name = NULL;
    if (f->mime == mime)
        mime = NULL;
    if (f->name == NULL || f->mime == NULL || (f->data = malloc(len > 0 ? len : 1)) == NULL ||
        evbuffer_ptr_set(in, &p, off, EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(in, &p, f->data, len) != (ev_ssize_t)len ||
        list_push(&g.files, f) != 0)
        goto oom;
    snprintf(f->id, sizeof(f->id), "file_mock_%lu", ++g.next_file);
    f->created = time(NULL);
    f->size = len;
    g.file_bytes += len;
    put_file(evhttp_request_get_output_buffer(req), f, c);
    reply_json(req, c->id, 200, "OK");
    f = NULL;
    goto done;
oom:
    reply_error(req, c, find_err(500), "gh-mock: out of memory", NULL);
done:
    file_unref(f);
    free(name);
    free(mime);
}

/* Answers the Files API routes, which all want the Files beta header. */
static void on_files(struct evhttp_request *req, const struct call *c)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    struct mfile *f;
    long i;

    if (!has_files_beta(req)) {
        reply_error(req, c, find_err(400),
                    "gh-mock: the Files API is in beta; send anthropic-beta: " MOCK_FILES_BETA,
                    NULL);
        return;
    }
    if (c->route == R_FILES) {
        if (c->method == EVHTTP_REQ_POST)
            file_upload(req, c);
        else
            reply_list(req, c, &g.files, file_pos, put_file);
        return;
    }
    if ((i = list_find(&g.files, c->obj)) < 0) {
        reply_error(req, c, find_err(404), "gh-mock: no such file: ", c->obj);
        return;
    }
    f = g.files.v[i];
    if (c->route == R_CONTENT) {
        xfer_start(req, c, f->mime, NULL, f);
        return;
    }
    if (c->method == EVHTTP_REQ_DELETE) {
        evbuffer_add_printf(b, "{\"id\":\"%s\",\"type\":\"file_deleted\"}", f->id);
        list_del(&g.files, (size_t)i);
        g.file_bytes -= f->size;
        file_unref(f);
    } else {
        put_file(b, f, c);
    }
    reply_json(req, c->id, 200, "OK");
}

/* Sends the final non-streaming answer for c, errors included, or starts a chunked one (batch
 * results, file content); evhttp owns req afterwards. */
static void answer(struct evhttp_request *req, const struct call *c)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);

    if (c->scen == SC_ERROR)
        reply_error(req, c, c->err, NULL, NULL);
    else if (c->scen == SC_BAD_BODY)
        reply_error(req, c, find_err(400), c->bad, NULL);
    else if (c->scen == SC_UNKNOWN)
        reply_error(req, c, find_err(400), "gh-mock: unknown scenario: ", c->bad);
    else if (c->route == R_MODELS)
        reply_models(req, c);
    else if (c->route >= R_BATCHES && c->route <= R_RESULTS)
        on_batches(req, c);
    else if (c->route >= R_FILES)
        on_files(req, c);
    else {
        if (c->route == R_COUNT)
            evbuffer_add_printf(b, "{\"input_tokens\":%ld}", c->in_tok);
        else
            put_message(b, c);
        reply_json(req, c->id, 200, "OK");
    }
}

/* Timer callback of a parked job: its delay is over, or its next paced step (or transfer chunk)
 * is due. */
static void job_fire(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;

    (void)fd;
    (void)what;
    if (j->phase == PH_CUT ||
        (j->phase == PH_WAIT && j->c.scen == SC_CUT && !is_streaming(&j->c))) {
        job_cut(j);
    } else if (j->phase == PH_STREAM) {
        stream_pump(j);
    } else if (j->phase == PH_XFER) {
        xfer_pump(j);
    } else if (is_streaming(&j->c)) {
        stream_start(j);
        stream_pump(j);
    } else {
        evhttp_connection_set_closecb(j->evcon, NULL, NULL);
        answer(j->req, &j->c);
        job_release(j);
    }
}

/* Parks req in a new heap job that fires after c->delay_ms; on success the job owns c->root.
 * Returns 0/-1. */
static int job_start(struct evhttp_request *req, const struct call *c)
{
    struct job *j = job_new(req, c);

    if (j == NULL)
        return -1;
    job_arm(j, c->delay_ms);
    return 0;
}

/* Answers an API call now (JSON or an unpaced stream) or parks it in a job; frees c->root
 * unless a job took it. */
static void dispatch(struct evhttp_request *req, struct call *c)
{
    int streaming = is_streaming(c);
    struct job inl;

    g.streams_open += streaming;
    if (c->delay_ms > 0 || c->scen == SC_CUT || (streaming && c->interval_ms > 0)) {
        if (job_start(req, c) == 0)
            return;
        g.streams_open -= streaming;
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

/* Reads the x-mock-* tunables and the Host header into c and points *scen and *key at the
 * x-mock-scenario and x-api-key values (all borrowed from req), in one pass over the headers. */
static void read_headers(struct evhttp_request *req, struct call *c, const char **scen,
                         const char **key)
{
    const struct evkeyval *kv;
    size_t i;

    for (kv = evhttp_request_get_input_headers(req)->tqh_first; kv; kv = kv->next.tqe_next) {
        if (strncasecmp(kv->key, "x-mock-", 7) != 0) {
            if (strcasecmp(kv->key, "x-api-key") == 0)
                *key = kv->value;
            else if (strcasecmp(kv->key, "host") == 0)
                c->host = kv->value;
        } else if (strcasecmp(kv->key + 7, "scenario") == 0) {
            *scen = kv->value;
        } else if (strcasecmp(kv->key + 7, "batch-status") == 0) {
            c->batch_pending = strcasecmp(kv->value, "in_progress") == 0;
        } else {
            for (i = 0; i < N_ELEM(tunables); i++) {
                if (strcasecmp(kv->key + 7, tunables[i].name) == 0) {
                    long *dst = (long *)(void *)((char *)c + tunables[i].off);
                    *dst = parse_num(kv->value, *dst, tunables[i].max);
                    break;
                }
            }
        }
    }
}

/* Parses the body as one JSON object into c->root (the caller owns it) and notes model, stream
 * and the raw body (borrowed from req). Returns 0, or -1 with c->bad saying why. */
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

/* Handles a request to an Anthropic API route: tunables, key checks, body, scenario, answer. */
static void on_api(struct evhttp_request *req, struct call *c)
{
    const char *scen = NULL, *key = NULL;

    read_headers(req, c, &scen, &key);
    if ((c->route == R_MESSAGES || c->route == R_COUNT ||
         (c->route == R_BATCHES && c->method == EVHTTP_REQ_POST)) &&
        parse_body(req, c) != 0)
        c->scen = SC_BAD_BODY;
    else
        pick_scenario(c, scen);
    if (key != NULL && strncmp(key, "bad-", 4) == 0) {
        c->scen = SC_ERROR;
        c->err = find_err(401);
    } else if (key != NULL && strncmp(key, "limited-", 8) == 0) {
        c->scen = SC_ERROR;
        c->err = find_err(429);
    } else if (key != NULL && strncmp(key, "status-", 7) == 0) {
        /* "status-NNN-anything": this key always gets error NNN, so one provider of a fallback
         * chain can fail while another, on the same mock, succeeds */
        const struct mock_err *e = find_err(strtol(key + 7, NULL, 10));
        if (e != NULL) {
            c->scen = SC_ERROR;
            c->err = e;
        }
    } else if (key != NULL && strncmp(key, "cut-", 4) == 0) {
        c->scen = SC_CUT;
    }
    if (c->delay_ms < 0)
        c->delay_ms = c->scen == SC_SLOW ? 2000 : 0;
    if (g.verbose)
        fprintf(stderr, "gh-mock: req_mock_%lu %s -> %s%s, delay %ld ms\n", c->id,
                evhttp_request_get_uri(req),
                c->scen <= SC_ECHO    ? scen_names[c->scen]
                : c->scen == SC_ERROR ? c->err->type
                                      : "invalid_request_error",
                is_streaming(c) ? " (stream)" : "", c->delay_ms);
    dispatch(req, c);
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

/* Returns the length of the valid UTF-8 sequence at s[0..n), or 0 when there is none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len, i;
    unsigned cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] < 0xc2 || s[0] > 0xf4)
        return 0;
    len = s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
    if (len > n)
        return 0;
    cp = s[0] & (0x3fu >> (len - 1));
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* Returns a JSON string of the first MOCK_RECORD_UPLOAD bytes of an upload's body, with every
 * byte that is not part of valid UTF-8 replaced by U+FFFD, so that the records stay parseable
 * JSON after a binary upload. */
static struct json_object *upload_prefix(struct evbuffer *in)
{
    unsigned char raw[MOCK_RECORD_UPLOAD], out[3 * MOCK_RECORD_UPLOAD];
    ev_ssize_t got = evbuffer_copyout(in, raw, sizeof(raw));
    size_t n = got > 0 ? (size_t)got : 0, i = 0, o = 0, k;

    while (i < n) {
        if ((k = utf8_len(raw + i, n - i)) == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, raw + i, k);
            o += k;
            i += k;
        }
    }
    return json_object_new_string_len((const char *)out, (int)o);
}

/* Appends a JSON description of req to the ring of recorded requests, dropping the oldest once
 * it holds MOCK_RECORD_MAX; the ring owns the objects. An upload (POST /v1/files) records only the
 * start of its body (see upload_prefix) but its full body_len. Returns 0/-1. */
static int record(struct evhttp_request *req, const char *path, unsigned long id,
                  enum evhttp_cmd_type m)
{
    static const struct {
        int m;
        const char *name;
    } methods[] = {{EVHTTP_REQ_GET, "GET"},       {EVHTTP_REQ_POST, "POST"},
                   {EVHTTP_REQ_HEAD, "HEAD"},     {EVHTTP_REQ_PUT, "PUT"},
                   {EVHTTP_REQ_DELETE, "DELETE"}, {EVHTTP_REQ_OPTIONS, "OPTIONS"},
                   {EVHTTP_REQ_PATCH, "PATCH"}};
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)), *mname = "?";
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in), i;
    struct json_object *o = json_object_new_object(), *h = json_object_new_object();
    const struct evkeyval *kv;
    char rid[40];
    int rc = -1;

    if (o == NULL || h == NULL)
        goto done;
    for (kv = evhttp_request_get_input_headers(req)->tqh_first; kv; kv = kv->next.tqe_next)
        if (record_header(h, kv->key, kv->value) != 0)
            goto done;
    for (i = 0; i < N_ELEM(methods); i++)
        mname = methods[i].m == (int)m ? methods[i].name : mname;
    snprintf(rid, sizeof(rid), "req_mock_%lu", id);
    json_object_object_add(o, "request_id", json_object_new_string(rid));
    json_object_object_add(o, "method", json_object_new_string(mname));
    json_object_object_add(o, "path", json_object_new_string(path));
    json_object_object_add(o, "query", json_object_new_string(query != NULL ? query : ""));
    json_object_object_add(o, "headers", h);
    h = NULL;
    if (m == EVHTTP_REQ_POST && strcmp(path, "/v1/files") == 0)
        json_object_object_add(o, "body", upload_prefix(in));
    else
        json_object_object_add(
            o, "body",
            json_object_new_string_len(n > 0 ? (const char *)evbuffer_pullup(in, -1) : "", (int)n));
    json_object_object_add(o, "body_len", json_object_new_int64((int64_t)n));
    if (json_object_array_add(g.records, o) != 0)
        goto done;
    o = NULL;
    if (json_object_array_length(g.records) > MOCK_RECORD_MAX)
        json_object_array_del_idx(g.records, 0, 1);
    rc = 0;
done:
    json_object_put(h);
    json_object_put(o);
    return rc;
}

/* Answers the /_mock control routes and the health checks. */
static void on_admin(struct evhttp_request *req, const struct call *c)
{
    struct evbuffer *b = evhttp_request_get_output_buffer(req);
    const char *s;
    size_t len = 0;

    if (c->route == R_RECORDS) {
        s = json_object_to_json_string_length(
            g.records, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        evbuffer_add(b, s, len);
    } else if (c->route == R_STATS) {
        evbuffer_add_printf(b, "{\"requests\":%lu,\"streams_open\":%lu,\"streams_done\":%lu}",
                            g.requests, g.streams_open, g.streams_done);
    } else {
        if (c->route == R_RESET) {
            json_object_array_del_idx(g.records, 0, json_object_array_length(g.records));
            g.requests = g.streams_done = 0;
        }
        ADD(b, "{\"ok\":true}");
    }
    reply_json(req, c->id, 200, "OK");
}

/* Tells whether path matches pattern, where "*" stands for one non-empty path segment, which is
 * copied (truncated) to obj. */
static int route_match(const char *pattern, const char *path, char *obj, size_t size)
{
    size_t n;

    for (; *pattern != '\0'; pattern++) {
        if (*pattern == '*') {
            if ((n = strcspn(path, "/")) == 0)
                return 0;
            snprintf(obj, size, "%.*s", (int)(n < size ? n : size - 1), path);
            path += n;
        } else if (*path++ != *pattern) {
            return 0;
        }
    }
    return *path == '\0';
}

/* evhttp's catch-all callback: records the request, then routes it. evhttp owns req. */
static void on_request(struct evhttp_request *req, void *arg)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    struct call c = call_defaults;
    size_t i;

    (void)arg;
    c.id = ++g.next_id;
    if (path == NULL || *path == '\0')
        path = "/";
    if (strncmp(path, "/_mock/", 7) != 0) {
        g.requests++;
        if (g.record && record(req, path, c.id, m) != 0)
            fprintf(stderr, "gh-mock: could not record req_mock_%lu\n", c.id);
    }
    c.method = (int)m;
    for (i = 0; i < N_ELEM(routes) && !route_match(routes[i].path, path, c.obj, sizeof(c.obj)); i++)
        ;
    if (i == N_ELEM(routes)) {
        reply_error(req, &c, find_err(404), "gh-mock: no such path: ", path);
    } else if (!(routes[i].methods & (int)m)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", routes[i].allow);
        reply_error(req, &c, find_err(405), NULL, NULL);
    } else if ((c.route = routes[i].route) < R_HEALTH) {
        on_api(req, &c);
    } else {
        on_admin(req, &c);
    }
}

/* Parses HOST:PORT or [V6]:PORT ("localhost" means 127.0.0.1) into ss. Returns 0/-1. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, int *len)
{
    char buf[160];
    size_t n;

    if (strncmp(spec, "localhost:", 10) == 0)
        snprintf(buf, sizeof(buf), "127.0.0.1%s", spec + 9);
    else
        snprintf(buf, sizeof(buf), "%s", spec);
    n = strlen(buf);
    if (n > 2 && strcmp(buf + n - 2, ":0") == 0) /* libevent refuses port 0 but not a lack of one */
        buf[n - 2] = '\0';
    *len = (int)sizeof(*ss);
    return evutil_parse_sockaddr_port(buf, (struct sockaddr *)ss, len);
}

/* Writes "PORT\n" to path through path.tmp and rename(2), so readers never see half a file.
 * Returns 0/-1. */
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
    rc = fclose(f) == 0 && rename(tmp, path) == 0 ? 0 : -1;
    f = NULL;
done:
    if (f != NULL)
        fclose(f);
    free(tmp);
    return rc;
}

/* SIGTERM/SIGINT: leaves the event loop so main() can clean up and exit 0. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    event_base_loopbreak(g.base);
}

/* Binds the listener (then owned by g.http), notes the port, reports it on stdout and in
 * port_file. Returns 0/-1. */
static int start_server(const char *spec, const char *port_file)
{
    struct sockaddr_storage ss, bound;
    socklen_t blen = sizeof(bound);
    struct sockaddr_in6 *b6 = (struct sockaddr_in6 *)&bound;
    struct sockaddr_in *b4 = (struct sockaddr_in *)&bound;
    int len, v6, flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
    struct evconnlistener *lev;
    char addr[64];
    unsigned port;

    if (parse_listen(spec, &ss, &len) != 0) {
        fprintf(stderr, "gh-mock: bad --listen value: %s\n", spec);
        return -1;
    }
    lev = evconnlistener_new_bind(g.base, NULL, NULL, flags, MOCK_BACKLOG, (struct sockaddr *)&ss,
                                  len);
    if (lev == NULL || evhttp_bind_listener(g.http, lev) == NULL) {
        fprintf(stderr, "gh-mock: cannot listen on %s: %s\n", spec, strerror(errno));
        if (lev != NULL)
            evconnlistener_free(lev);
        return -1;
    }
    if (getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&bound, &blen) != 0)
        return -1;
    v6 = bound.ss_family == AF_INET6;
    port = ntohs(v6 ? b6->sin6_port : b4->sin_port);
    if (evutil_inet_ntop(bound.ss_family, v6 ? (void *)&b6->sin6_addr : (void *)&b4->sin_addr, addr,
                         sizeof(addr)) == NULL)
        strcpy(addr, "?");
    snprintf(g.port, sizeof(g.port), "%u", port);
    if (port_file != NULL && write_port_file(port_file, port) != 0) {
        fprintf(stderr, "gh-mock: cannot write %s: %s\n", port_file, strerror(errno));
        return -1;
    }
    printf(v6 ? "gh-mock listening on [%s]:%u\n" : "gh-mock listening on %s:%u\n", addr, port);
    fflush(stdout);
    return 0;
}

/* Runs the mock: parses flags, raises the fd limit, serves until SIGTERM/SIGINT, frees all. */
int main(int argc, char **argv)
{
    const char *spec = "127.0.0.1:0", *port_file = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    struct rlimit rl;
    int i, rc = 1;

    g.record = 1;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
            spec = argv[++i];
        else if (strncmp(argv[i], "--listen=", 9) == 0)
            spec = argv[i] + 9;
        else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
            port_file = argv[++i];
        else if (strncmp(argv[i], "--port-file=", 12) == 0)
            port_file = argv[i] + 12;
        else if (strcmp(argv[i], "--no-record") == 0)
            g.record = 0;
        else if (strcmp(argv[i], "--verbose") == 0)
            g.verbose = 1;
        else {
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
    g.records = json_object_new_array();
    if (g.http == NULL || g.scratch == NULL || g.tok == NULL || g.records == NULL)
        goto done;
    json_tokener_set_flags(g.tok, JSON_TOKENER_STRICT);
    evhttp_set_max_body_size(g.http, MOCK_MAX_BODY);
    evhttp_set_allowed_methods(g.http, GETS | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                           EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(g.http, "application/json");
    evhttp_set_gencb(g.http, on_request, NULL);
    if (start_server(spec, port_file) != 0)
        goto done;
    sigterm = evsignal_new(g.base, SIGTERM, on_signal, NULL);
    sigint = evsignal_new(g.base, SIGINT, on_signal, NULL);
    if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) != 0 ||
        evsignal_add(sigint, NULL) != 0 || event_base_dispatch(g.base) < 0)
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
    json_object_put(g.records);
    for (i = 0; i < (int)g.batches.n; i++)
        batch_free(g.batches.v[i]);
    for (i = 0; i < (int)g.files.n; i++)
        file_unref(g.files.v[i]);
    free(g.batches.v);
    free(g.files.v);
    if (g.base != NULL)
        event_base_free(g.base);
    libevent_global_shutdown();
    return rc;
}
