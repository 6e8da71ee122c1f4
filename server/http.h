/* http.h: the HTTP/1.1 server side: request-head parsing, chunked bodies, keep-alive
 * connections on libevent bufferevents, and plain or streamed responses. */
#ifndef GH_HTTP_H
#define GH_HTTP_H

#include <event2/event.h>
#include <event2/util.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#define GH_HTTP_MAX_HEADERS 128
#define GH_HTTP_MAX_HEAD (64 * 1024) /* request line + headers */

typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} gh_header_t;

/* A parsed request head. Every pointer points into the buffer given to gh_http_parse_head, which
 * the caller owns and keeps alive as long as the head is used. */
typedef struct {
    const char *method;
    const char *target; /* as sent: path and query */
    const char *path;   /* NUL-terminated, without the query */
    size_t path_len;
    const char *query; /* after '?', NUL-terminated, or NULL */
    int version_minor; /* HTTP/1.x */
    size_t nheaders;
    int64_t content_length; /* -1 when absent */
    int chunked;
    int keep_alive;
    int expect_continue;
    gh_header_t headers[GH_HTTP_MAX_HEADERS]; /* last: only nheaders entries are ever set */
} gh_http_head_t;

/* Parses a request head of len bytes (request line and header lines, each ended by CRLF or LF,
 * the final empty line included or not) in place: NULs are written over separators. Returns 0 on
 * success or the HTTP status to answer with: 400 (malformed, conflicting Content-Length,
 * Transfer-Encoding other than chunked together with Content-Length), 431 (too many headers),
 * 501 (unsupported transfer coding), 505 (not HTTP/1.x). */
int gh_http_parse_head(char *buf, size_t len, gh_http_head_t *out);

/* Finds a header by case-insensitive name; NULL when absent. */
const gh_header_t *gh_http_header(const gh_http_head_t *h, const char *name);

/* Case-insensitive comparison of a header name with a NUL-terminated string. */
int gh_http_name_eq(const char *name, size_t len, const char *want);

/* Incremental decoder of a chunked request body. */
typedef struct {
    int state;
    uint64_t chunk_left;
    size_t line_len;
    int done;
} gh_chunked_t;

/* Decodes as much of in[0..len) as possible, appending body bytes through append(arg, p, n).
 * *used receives the bytes consumed. Returns 1 when the last chunk and trailers were read, 0 when
 * more input is needed, -1 on malformed input or when append fails. */
int gh_chunked_decode(gh_chunked_t *d, const char *in, size_t len, size_t *used,
                      int (*append)(void *arg, const char *p, size_t n), void *arg);

typedef struct gh_http_server gh_http_server_t;
typedef struct gh_conn gh_conn_t;

/* One request, owned by its connection from the head's arrival until the response is finished
 * (gh_http_respond or gh_http_stream_end) or the client goes away. */
typedef struct gh_http_req {
    char *head_buf; /* owned: the bytes head points into */
    char *body;     /* owned: NUL-terminated for convenience, body_len excludes it */
    size_t body_len;
    size_t body_cap;
    gh_conn_t *conn;
    gh_http_server_t *server;
    uint64_t start_us; /* monotonic time the head was complete */
    int is_head_method;
    int streaming; /* a streamed response has begun */
    int responded; /* the status line has been queued */
    char peer[64];
    /* Set by the handler that keeps the request past its call. on_abort runs when the client
     * goes away or the server is force-stopped; the handler must then free its own state and
     * never touch req again. on_drain runs when queued output falls below the low watermark. */
    void (*on_abort)(void *arg);
    void (*on_drain)(void *arg);
    /* Streamed request bodies (see gh_http_server_set_streaming): the handler runs as soon as the
     * head is in; body bytes collect in body_in as they arrive, body_done says the body ended,
     * and on_body runs after each arrival. */
    struct evbuffer *body_in;
    int body_streaming;
    int body_done;
    void (*on_body)(void *arg);
    void *handler_arg;
    gh_http_head_t head; /* last, with its large header array, so it is never zeroed whole */
} gh_http_req_t;

typedef void (*gh_http_handler_t)(gh_http_req_t *req, void *arg);

/* Creates a server that runs handler for every complete request on base. max_body bounds a
 * request body (413 beyond it). The caller owns the result. */
gh_http_server_t *gh_http_server_new(struct event_base *base, size_t max_body,
                                     gh_http_handler_t handler, void *arg);

/* Requests for which wants(head) returns 1 are handed to the handler as soon as their head is
 * in, with the body streaming into req->body_in (up to max_body bytes, 413 beyond), so large
 * uploads are never held whole in memory. */
void gh_http_server_set_streaming(gh_http_server_t *srv,
                                  int (*wants)(const gh_http_head_t *head, void *arg),
                                  size_t max_body);

/* The handler took bytes out of req->body_in: reading from the client resumes when it had been
 * paused for a full buffer. */
void gh_http_body_consumed(gh_http_req_t *req);

/* Takes ownership of an accepted, non-blocking socket and serves it. */
int gh_http_server_adopt(gh_http_server_t *srv, evutil_socket_t fd, const struct sockaddr *sa,
                         int salen);

/* Stops keep-alive: idle connections close now, busy ones after their response. */
void gh_http_server_drain(gh_http_server_t *srv);

/* Number of open connections and of requests being handled. */
size_t gh_http_server_conns(const gh_http_server_t *srv);
size_t gh_http_server_busy(const gh_http_server_t *srv);

/* Closes every connection (aborting handlers) and frees the server. */
void gh_http_server_free(gh_http_server_t *srv);

/* Queues a complete response. headers is zero or more "Name: value\r\n" lines (may be NULL);
 * Content-Length is added. The request is finished and freed when this returns. */
void gh_http_respond(gh_http_req_t *req, int status, const char *headers, size_t headers_len,
                     const char *body, size_t body_len);

/* Begins a streamed response (chunked on HTTP/1.1, close-delimited on 1.0). */
void gh_http_stream_begin(gh_http_req_t *req, int status, const char *headers, size_t headers_len);

/* Queues body bytes of a streamed response. */
void gh_http_stream_write(gh_http_req_t *req, const void *data, size_t len);

/* Ends a streamed response; the request is finished and freed when this returns. */
void gh_http_stream_end(gh_http_req_t *req);

/* Bytes queued towards the client and not yet written to the socket. */
size_t gh_http_pending(const gh_http_req_t *req);

/* The reason phrase of a status code. */
const char *gh_http_reason(int status);

/* Microseconds on the monotonic clock. */
uint64_t gh_now_us(void);

/* Unix milliseconds on the wall clock (shared across processes: cool-downs, limits, budgets). */
int64_t gh_wall_ms(void);

/* Copies the value of query parameter name (not URL-decoded) into out; returns out, or NULL
 * when query (may be NULL) has no such parameter. */
const char *gh_http_query_param(const char *query, const char *name, char *out, size_t outsz);

#endif
