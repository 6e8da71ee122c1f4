/* http.c: a small HTTP/1.1 server on libevent bufferevents: it parses request heads and bodies,
 * keeps connections alive, and writes plain or streamed (chunked) responses with backpressure. */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "gh.h"
#include "http.h"
#include "log.h"

#define GH_HTTP_HEAD_TIMEOUT_S 30    /* a client must send a whole head/body within this */
#define GH_HTTP_IDLE_TIMEOUT_S 75    /* keep-alive connections with nothing to do */
#define GH_HTTP_WRITE_TIMEOUT_S 120  /* a client that reads nothing for this long is dropped */
#define GH_HTTP_LINGER_S 2           /* after an error answer, read and discard for this long */
#define GH_HTTP_DRAIN_GRACE_S 1      /* an idle connection's last chance to send a request */
#define GH_HTTP_OUT_LOW (64 * 1024)  /* output level under which a paused producer resumes */
#define GH_HTTP_IN_HIGH (256 * 1024) /* input held while a request is being handled */
#define GH_HTTP_BODY_HIGH (4 * 1024 * 1024) /* a streamed body buffered ahead of its consumer */

enum conn_state {
    CONN_READ_HEAD = 0,
    CONN_READ_BODY,
    CONN_READ_CHUNKED,
    CONN_HANDLING,
    CONN_CLOSING, /* flushing the last response, then close */
    CONN_LINGER,  /* write side shut, discarding input until EOF or timeout */
};

struct gh_conn {
    TAILQ_ENTRY(gh_conn) link;
    gh_http_server_t *srv;
    struct bufferevent *bev;
    gh_http_req_t *req;
    enum conn_state state;
    int keep_alive;
    gh_chunked_t chunk;
    char peer[64];
};

TAILQ_HEAD(gh_conn_list, gh_conn);

struct gh_http_server {
    struct event_base *base;
    size_t max_body;
    gh_http_handler_t handler;
    void *arg;
    int (*wants_stream)(const gh_http_head_t *head, void *arg);
    size_t max_stream_body;
    struct gh_conn_list conns;
    size_t nconns;
    size_t busy;
    int draining;
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

/* Returns the monotonic clock in microseconds. */
uint64_t gh_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* See http.h. */
int64_t gh_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* See http.h. */
const char *gh_http_query_param(const char *query, const char *name, char *out, size_t outsz)
{
    size_t nlen = strlen(name);
    const char *p = query;

    while (p != NULL && *p != '\0') {
        const char *amp = strchr(p, '&');
        size_t len = amp != NULL ? (size_t)(amp - p) : strlen(p);
        if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            snprintf(out, outsz, "%.*s", (int)(len - nlen - 1), p + nlen + 1);
            return out;
        }
        p = amp != NULL ? amp + 1 : NULL;
    }
    return NULL;
}

/* Maps the statuses gatehouse sends or relays to their reason phrases. */
const char *gh_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 529:
        return "Overloaded";
    default:
        return "Status";
    }
}

/* Compares a length-delimited header name with want, ignoring ASCII case. */
int gh_http_name_eq(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/* Linear search is fine: requests carry a few dozen headers at most. */
const gh_header_t *gh_http_header(const gh_http_head_t *h, const char *name)
{
    size_t i, nlen = strlen(name);
    for (i = 0; i < h->nheaders; i++)
        if (h->headers[i].name_len == nlen && strncasecmp(h->headers[i].name, name, nlen) == 0)
            return &h->headers[i];
    return NULL;
}

/* RFC 9110 token characters, used for methods and header names. */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Says whether a comma-separated header value holds token (ignoring case and spaces). */
static int value_has_token(const char *v, size_t len, const char *token)
{
    size_t tlen = strlen(token), i = 0;
    while (i < len) {
        size_t start, end;
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        start = i;
        while (i < len && v[i] != ',')
            i++;
        end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == tlen && strncasecmp(v + start, token, tlen) == 0)
            return 1;
    }
    return 0;
}

/* Ends the line starting at p (CRLF or LF) with a NUL and returns the start of the next line,
 * or NULL when no line end is found before end. */
static char *cut_line(char *p, char *end, size_t *line_len)
{
    char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
        return NULL;
    *line_len = (size_t)(nl - p);
    if (*line_len > 0 && p[*line_len - 1] == '\r')
        (*line_len)--;
    p[*line_len] = '\0';
    return nl + 1;
}

/* Parses the request line and headers in place (see http.h for the statuses returned). */
int gh_http_parse_head(char *buf, size_t len, gh_http_head_t *out)
{
    char *p = buf, *end = buf + len, *next, *sp1, *sp2, *q;
    size_t llen;
    int have_cl = 0, conn_close = 0, conn_keep = 0;

    /* the header array is filled up to nheaders; zeroing 4 KiB per request is not needed */
    memset(out, 0, offsetof(gh_http_head_t, headers));
    out->content_length = -1;

    /* RFC 9112 2.2: ignore empty lines before the request line. */
    while (p < end && (*p == '\r' || *p == '\n'))
        p++;
    next = cut_line(p, end, &llen);
    if (next == NULL) {
        /* a head given without its final line end */
        if (p >= end)
            return 400;
        llen = (size_t)(end - p);
        next = end;
        if (llen > 0 && p[llen - 1] == '\r')
            llen--;
        if (p + llen >= buf + len)
            return 400; /* no room for the NUL: callers always pass the terminator */
        p[llen] = '\0';
    }
    sp1 = memchr(p, ' ', llen);
    if (sp1 == NULL || sp1 == p)
        return 400;
    for (q = p; q < sp1; q++)
        if (!is_tchar((unsigned char)*q))
            return 400;
    *sp1 = '\0';
    sp2 = strchr(sp1 + 1, ' ');
    if (sp2 == NULL || sp2 == sp1 + 1)
        return 400;
    *sp2 = '\0';
    if (strncmp(sp2 + 1, "HTTP/1.", 7) != 0 || sp2[8] < '0' || sp2[8] > '9' || sp2[9] != '\0') {
        if (strncmp(sp2 + 1, "HTTP/", 5) == 0)
            return 505;
        return 400;
    }
    out->version_minor = sp2[8] - '0';
    out->method = p;
    out->target = sp1 + 1;
    for (q = sp1 + 1; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return 400;
    /* absolute-form (sent through forward proxies): keep only the path */
    q = sp1 + 1;
    if (strncasecmp(q, "http://", 7) == 0 || strncasecmp(q, "https://", 8) == 0) {
        q = strchr(q + 8 - (q[4] == ':' ? 1 : 0), '/');
        if (q == NULL)
            return 400;
    }
    if (*q != '/' && strcmp(q, "*") != 0)
        return 400;
    out->path = q;
    q = strchr(q, '?');
    if (q != NULL) {
        *q = '\0';
        out->query = q + 1;
    }
    out->path_len = strlen(out->path);

    p = next;
    while (p < end) {
        char *colon, *v, *ve;
        gh_header_t *h;

        next = cut_line(p, end, &llen);
        if (next == NULL) {
            llen = (size_t)(end - p);
            if (llen > 0 && p[llen - 1] == '\r')
                llen--;
            if (llen == 0)
                break;
            return 400; /* a header line without its line end */
        }
        if (llen == 0)
            break;
        if (*p == ' ' || *p == '\t')
            return 400; /* obsolete line folding */
        colon = memchr(p, ':', llen);
        if (colon == NULL || colon == p)
            return 400;
        for (q = p; q < colon; q++)
            if (!is_tchar((unsigned char)*q))
                return 400;
        if (out->nheaders >= GH_HTTP_MAX_HEADERS)
            return 431;
        v = colon + 1;
        ve = p + llen;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (q = v; q < ve; q++)
            if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
                return 400;
        *colon = '\0';
        *ve = '\0';
        h = &out->headers[out->nheaders++];
        h->name = p;
        h->name_len = (size_t)(colon - p);
        h->value = v;
        h->value_len = (size_t)(ve - v);

        if (gh_http_name_eq(h->name, h->name_len, "content-length")) {
            int64_t n = 0;
            if (h->value_len == 0 || h->value_len > 15)
                return 400;
            for (q = v; q < ve; q++) {
                if (*q < '0' || *q > '9')
                    return 400;
                n = n * 10 + (*q - '0');
            }
            if (have_cl && n != out->content_length)
                return 400;
            have_cl = 1;
            out->content_length = n;
        } else if (gh_http_name_eq(h->name, h->name_len, "transfer-encoding")) {
            if (!(h->value_len == 7 && strncasecmp(v, "chunked", 7) == 0))
                return 501;
            out->chunked = 1;
        } else if (gh_http_name_eq(h->name, h->name_len, "connection")) {
            conn_close |= value_has_token(v, h->value_len, "close");
            conn_keep |= value_has_token(v, h->value_len, "keep-alive");
        } else if (gh_http_name_eq(h->name, h->name_len, "expect")) {
            if (h->value_len == 12 && strncasecmp(v, "100-continue", 12) == 0)
                out->expect_continue = 1;
        }
        p = next;
    }
    if (out->chunked && have_cl)
        return 400; /* request smuggling guard (RFC 9112 6.1) */
    if (out->version_minor >= 1)
        out->keep_alive = !conn_close;
    else
        out->keep_alive = conn_keep && !conn_close;
    return 0;
}

enum { CH_SIZE = 0, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER, CH_DONE };

/* A byte-at-a-time state machine for sizes and line ends; chunk data is appended in runs. */
int gh_chunked_decode(gh_chunked_t *d, const char *in, size_t len, size_t *used,
                      int (*append)(void *arg, const char *p, size_t n), void *arg)
{
    size_t i = 0;

    while (i < len) {
        char c = in[i];
        switch (d->state) {
        case CH_SIZE:
            if (c >= '0' && c <= '9')
                d->chunk_left = d->chunk_left * 16 + (uint64_t)(c - '0');
            else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
                d->chunk_left = d->chunk_left * 16 + (uint64_t)((c | 0x20) - 'a' + 10);
            else if (c == ';' && d->line_len > 0)
                d->state = CH_EXT;
            else if (c == '\r' && d->line_len > 0)
                d->state = CH_SIZE_LF;
            else if (c == '\n' && d->line_len > 0)
                goto size_done;
            else
                return -1;
            if (d->state == CH_SIZE && ++d->line_len > 15)
                return -1;
            i++;
            break;
        case CH_EXT:
            if (c == '\r')
                d->state = CH_SIZE_LF;
            else if (c == '\n')
                goto size_done;
            i++;
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                return -1;
        size_done:
            i++;
            d->line_len = 0;
            d->state = d->chunk_left == 0 ? CH_TRAILER : CH_DATA;
            break;
        case CH_DATA: {
            size_t n = len - i;
            if ((uint64_t)n > d->chunk_left)
                n = (size_t)d->chunk_left;
            if (append(arg, in + i, n) != GH_OK)
                return -1;
            i += n;
            d->chunk_left -= n;
            if (d->chunk_left == 0)
                d->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            i++;
            if (c == '\n') {
                d->state = CH_SIZE;
                break;
            }
            if (c != '\r')
                return -1;
            d->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (c != '\n')
                return -1;
            i++;
            d->state = CH_SIZE;
            break;
        case CH_TRAILER:
            /* trailer lines are read and ignored; an empty line ends the body */
            i++;
            if (c == '\n') {
                if (d->line_len == 0) {
                    d->state = CH_DONE;
                    d->done = 1;
                    *used = i;
                    return 1;
                }
                d->line_len = 0;
            } else if (c != '\r') {
                if (++d->line_len > 8192)
                    return -1;
            }
            break;
        default:
            *used = i;
            return 1;
        }
    }
    *used = i;
    return d->done ? 1 : 0;
}

/* Frees a request and everything it owns. */
static void req_free(gh_http_req_t *req)
{
    if (req == NULL)
        return;
    if (req->body_in != NULL)
        evbuffer_free(req->body_in);
    free(req->head_buf);
    free(req->body);
    free(req);
}

/* Closes the connection now: aborts a handler still holding the request, frees everything. */
static void conn_free(gh_conn_t *c)
{
    gh_http_server_t *srv = c->srv;

    if (c->req != NULL) {
        gh_http_req_t *req = c->req;
        c->req = NULL;
        if (c->state == CONN_HANDLING) {
            srv->busy--;
            if (req->on_abort != NULL)
                req->on_abort(req->handler_arg);
        }
        req_free(req);
    }
    TAILQ_REMOVE(&srv->conns, c, link);
    srv->nconns--;
    if (c->bev != NULL) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    free(c);
}

/* Sets the read timeout that fits the state: short while a request arrives, long when idle,
 * none while the handler works (streams can last many minutes). */
static void conn_set_timeouts(gh_conn_t *c, int read_s)
{
    struct timeval rt = {read_s, 0}, wt = {GH_HTTP_WRITE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, read_s > 0 ? &rt : NULL, &wt);
}

/* After an error answer: shut our write side and read until the peer closes, so the client
 * sees the answer instead of a reset caused by unread request bytes. */
static void conn_linger(gh_conn_t *c)
{
    c->state = CONN_LINGER;
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    conn_set_timeouts(c, GH_HTTP_LINGER_S);
    bufferevent_enable(c->bev, EV_READ);
}

/* Sends the pieces of a response. When nothing is queued ahead of them they go straight to the
 * socket with one writev: the common case (a whole answer or an SSE event the client keeps up
 * with) then costs no EV_WRITE registration and no extra loop round trip. Whatever the kernel
 * does not take, or everything when output is already queued, goes to the bufferevent, which
 * keeps the order and the backpressure. */
static void conn_send(gh_conn_t *c, struct iovec *iov, int n)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    ssize_t w = 0;
    int i;

    if (evbuffer_get_length(out) == 0) {
        w = writev(bufferevent_getfd(c->bev), iov, n);
        if (w < 0)
            w = 0; /* EAGAIN, or an error the bufferevent reports when it writes the rest */
    }
    for (i = 0; i < n; i++) {
        size_t len = iov[i].iov_len;
        if ((size_t)w >= len) {
            w -= (ssize_t)len;
            continue;
        }
        evbuffer_add(out, (const char *)iov[i].iov_base + w, len - (size_t)w);
        w = 0;
    }
}

/* Formats the status line into buf (the version is always 1.1, RFC 9110 6.2). */
static size_t status_line(int status, char *buf, size_t bufsz)
{
    int n = snprintf(buf, bufsz, "HTTP/1.1 %d %s\r\n", status, gh_http_reason(status));
    return n > 0 && (size_t)n < bufsz ? (size_t)n : 0;
}

/* The Connection header a response needs, given the connection's state. */
static const char *connection_header(const gh_conn_t *c, const gh_http_req_t *req)
{
    int minor = req != NULL && req->head.method != NULL ? req->head.version_minor : 1;
    if (!c->keep_alive)
        return "Connection: close\r\n";
    return minor == 0 ? "Connection: keep-alive\r\n" : "";
}

/* Sends a small error answer made by the HTTP layer itself (before any handler ran) in
 * Anthropic's error shape, then closes. */
static void conn_fail(gh_conn_t *c, int status, const char *type, const char *msg)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char body[512], line[96];
    int n;

    n = snprintf(body, sizeof(body),
                 "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"%s\"}}", type, msg);
    c->keep_alive = 0;
    evbuffer_add(out, line, status_line(status, line, sizeof(line)));
    evbuffer_add_printf(out, "Content-Type: application/json\r\n%sContent-Length: %d\r\n\r\n",
                        connection_header(c, c->req), n);
    evbuffer_add(out, body, (size_t)n);
    req_free(c->req);
    c->req = NULL;
    c->state = CONN_CLOSING;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_WRITE);
}

/* Marks the request finished: frees it and either closes after the flush or waits for the next
 * request (handled from a deferred read callback to avoid recursion into the handler). */
static void conn_finish(gh_conn_t *c)
{
    gh_http_server_t *srv = c->srv;

    req_free(c->req);
    c->req = NULL;
    srv->busy--;
    if (!c->keep_alive || srv->draining) {
        c->keep_alive = 0;
        c->state = CONN_CLOSING;
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        /* all of it went straight to the socket: no write callback will come to close */
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            conn_linger(c);
        return;
    }
    c->state = CONN_READ_HEAD;
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    conn_set_timeouts(c, GH_HTTP_IDLE_TIMEOUT_S);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* Grows the body buffer for chunked input, refusing past max_body. */
static int body_append(void *arg, const char *p, size_t n)
{
    gh_conn_t *c = arg;
    gh_http_req_t *req = c->req;

    if (req->body_len + n > c->srv->max_body)
        return GH_ERR;
    if (req->body_len + n + 1 > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap * 2 : 16384;
        char *nb;
        while (cap < req->body_len + n + 1)
            cap *= 2;
        nb = realloc(req->body, cap);
        if (nb == NULL)
            return GH_ERR;
        req->body = nb;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, p, n);
    req->body_len += n;
    req->body[req->body_len] = '\0';
    return GH_OK;
}

/* Appends decoded chunked bytes to a streamed body. */
static int stream_append(void *arg, const char *p, size_t n)
{
    gh_conn_t *c = arg;
    gh_http_req_t *req = c->req;

    if (req->body_len + n > c->srv->max_stream_body)
        return GH_ERR;
    req->body_len += n;
    return evbuffer_add(req->body_in, p, n) == 0 ? GH_OK : GH_ERR;
}

/* Moves what arrived of a streamed body into req->body_in and tells the handler. Returns -1 when
 * the body is malformed or too large (the connection is then closed after the handler is
 * aborted). */
static int conn_stream_body(gh_conn_t *c, struct evbuffer *in)
{
    gh_http_req_t *req = c->req;
    size_t before = evbuffer_get_length(req->body_in);

    if (req->body_done)
        return 0;
    if (req->head.chunked) {
        size_t avail = evbuffer_get_length(in), used = 0;
        int rc = 0;
        if (avail > 0)
            rc = gh_chunked_decode(&c->chunk, (const char *)evbuffer_pullup(in, -1), avail, &used,
                                   stream_append, c);
        evbuffer_drain(in, used);
        if (rc < 0)
            return -1;
        if (rc == 1)
            req->body_done = 1;
    } else {
        size_t want = (size_t)(req->head.content_length > 0 ? req->head.content_length : 0);
        size_t n = evbuffer_get_length(in);
        if (n > want - req->body_len)
            n = want - req->body_len;
        if (n > 0) {
            evbuffer_remove_buffer(in, req->body_in, n);
            req->body_len += n;
        }
        if (req->body_len >= want)
            req->body_done = 1;
    }
    if (req->body_done)
        conn_set_timeouts(c, 0); /* the body is in: the handler may take its time */
    else if (evbuffer_get_length(req->body_in) >= GH_HTTP_BODY_HIGH)
        bufferevent_disable(c->bev, EV_READ); /* the consumer is slower: stop reading */
    if ((evbuffer_get_length(req->body_in) != before || req->body_done) && req->on_body != NULL)
        req->on_body(req->handler_arg);
    return 0;
}

/* See http.h. */
void gh_http_body_consumed(gh_http_req_t *req)
{
    gh_conn_t *c = req->conn;
    if (!req->body_done && evbuffer_get_length(req->body_in) < GH_HTTP_BODY_HIGH / 2)
        bufferevent_enable(c->bev, EV_READ);
}

/* See http.h. */
void gh_http_server_set_streaming(gh_http_server_t *srv,
                                  int (*wants)(const gh_http_head_t *head, void *arg),
                                  size_t max_body)
{
    srv->wants_stream = wants;
    srv->max_stream_body = max_body;
}

/* Hands a complete request to the handler. Nothing of c may be touched after the call: the
 * handler may finish the request (and a close may follow) before it returns. */
static void conn_dispatch(gh_conn_t *c)
{
    gh_http_server_t *srv = c->srv;
    gh_http_req_t *req = c->req;

    if (req->body == NULL) {
        req->body = calloc(1, 1);
        if (req->body == NULL) {
            conn_fail(c, 500, "api_error", "out of memory");
            return;
        }
    }
    c->state = CONN_HANDLING;
    srv->busy++;
    /* keep reading so a client that goes away is noticed, but hold little of what it sends */
    bufferevent_setwatermark(c->bev, EV_READ, 0, GH_HTTP_IN_HIGH);
    conn_set_timeouts(c, req->body_streaming ? GH_HTTP_HEAD_TIMEOUT_S : 0);
    srv->handler(req, srv->arg);
    /* req may be finished and freed by now; c lives until an event callback closes it. A
     * streamed body may already be waiting in the input buffer. */
    if (c->req != NULL && c->req->body_streaming &&
        evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* Parses the head at the front of the input once it is complete. Returns 1 when the caller
 * should continue with the body, 0 to wait for more input, -1 when the connection was failed. */
static int conn_read_head(gh_conn_t *c, struct evbuffer *in)
{
    struct evbuffer_ptr ptr;
    size_t head_len;
    gh_http_req_t *req;
    int rc;

    /* skip blank lines left over from a previous request */
    for (;;) {
        unsigned char *b = evbuffer_pullup(in, 1);
        if (b == NULL || (*b != '\r' && *b != '\n'))
            break;
        evbuffer_drain(in, 1);
    }
    ptr = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (ptr.pos < 0) {
        struct evbuffer_ptr p2 = evbuffer_search(in, "\n\n", 2, NULL);
        if (p2.pos < 0) {
            if (evbuffer_get_length(in) > GH_HTTP_MAX_HEAD) {
                conn_fail(c, 431, "invalid_request_error", "request head too large");
                return -1;
            }
            return 0;
        }
        head_len = (size_t)p2.pos + 2;
    } else {
        head_len = (size_t)ptr.pos + 4;
    }
    if (head_len > GH_HTTP_MAX_HEAD) {
        conn_fail(c, 431, "invalid_request_error", "request head too large");
        return -1;
    }
    req = malloc(sizeof(*req));
    if (req != NULL)
        memset(req, 0, offsetof(gh_http_req_t, head) + offsetof(gh_http_head_t, headers));
    if (req == NULL || (req->head_buf = malloc(head_len + 1)) == NULL) {
        free(req);
        conn_fail(c, 500, "api_error", "out of memory");
        return -1;
    }
    evbuffer_remove(in, req->head_buf, head_len);
    req->head_buf[head_len] = '\0';
    req->conn = c;
    req->server = c->srv;
    req->start_us = gh_now_us();
    memcpy(req->peer, c->peer, sizeof(req->peer));
    c->req = req;
    rc = gh_http_parse_head(req->head_buf, head_len, &req->head);
    if (rc != 0) {
        c->keep_alive = 0;
        conn_fail(c, rc, "invalid_request_error",
                  rc == 431   ? "too many request headers"
                  : rc == 501 ? "unsupported transfer encoding"
                  : rc == 505 ? "unsupported HTTP version"
                              : "malformed HTTP request");
        return -1;
    }
    c->keep_alive = req->head.keep_alive && !c->srv->draining;
    req->is_head_method = strcmp(req->head.method, "HEAD") == 0;
    if (c->srv->wants_stream != NULL && (req->head.content_length > 0 || req->head.chunked) &&
        c->srv->wants_stream(&req->head, c->srv->arg)) {
        if (req->head.content_length > 0 &&
            (uint64_t)req->head.content_length > c->srv->max_stream_body) {
            char msg[128];
            snprintf(msg, sizeof(msg), "request body exceeds the limit of %zu bytes",
                     c->srv->max_stream_body);
            conn_fail(c, 413, "request_too_large", msg);
            return -1;
        }
        if ((req->body_in = evbuffer_new()) == NULL) {
            conn_fail(c, 500, "api_error", "out of memory");
            return -1;
        }
        req->body_streaming = 1;
        memset(&c->chunk, 0, sizeof(c->chunk));
        if (req->head.expect_continue)
            evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");
        conn_dispatch(c);
        return -1; /* the handler owns the request now; body bytes flow in conn_read_cb */
    }
    if (req->head.content_length > 0 && (uint64_t)req->head.content_length > c->srv->max_body) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body exceeds the limit of %zu bytes", c->srv->max_body);
        conn_fail(c, 413, "request_too_large", msg);
        return -1;
    }
    if (req->head.expect_continue && (req->head.content_length > 0 || req->head.chunked))
        evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");
    if (req->head.chunked) {
        memset(&c->chunk, 0, sizeof(c->chunk));
        c->state = CONN_READ_CHUNKED;
    } else if (req->head.content_length > 0) {
        req->body_cap = (size_t)req->head.content_length + 1;
        req->body = malloc(req->body_cap);
        if (req->body == NULL) {
            conn_fail(c, 500, "api_error", "out of memory");
            return -1;
        }
        req->body[0] = '\0';
        c->state = CONN_READ_BODY;
    } else {
        c->state = CONN_READ_BODY;
    }
    conn_set_timeouts(c, GH_HTTP_HEAD_TIMEOUT_S);
    return 1;
}

/* Moves what has arrived of the body into the request; dispatches it once complete. */
static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    gh_conn_t *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    switch (c->state) {
    case CONN_READ_HEAD:
        if (evbuffer_get_length(in) == 0)
            return;
        if (conn_read_head(c, in) != 1)
            return;
        /* the body may already be buffered */
        __attribute__((fallthrough));
    case CONN_READ_BODY:
    case CONN_READ_CHUNKED:
        if (c->state == CONN_READ_BODY) {
            gh_http_req_t *req = c->req;
            size_t want = req->head.content_length > 0 ? (size_t)req->head.content_length : 0;
            size_t n = evbuffer_get_length(in);
            if (n > want - req->body_len)
                n = want - req->body_len;
            if (n > 0) {
                evbuffer_remove(in, req->body + req->body_len, n);
                req->body_len += n;
                req->body[req->body_len] = '\0';
            }
            if (req->body_len < want)
                return;
        } else {
            size_t avail = evbuffer_get_length(in), used = 0;
            int rc;
            if (avail == 0)
                return;
            rc = gh_chunked_decode(&c->chunk, (const char *)evbuffer_pullup(in, -1), avail, &used,
                                   body_append, c);
            evbuffer_drain(in, used);
            if (rc < 0) {
                if (c->req->body_len >= c->srv->max_body)
                    conn_fail(c, 413, "request_too_large", "request body too large");
                else
                    conn_fail(c, 400, "invalid_request_error", "malformed chunked body");
                return;
            }
            if (rc == 0)
                return;
        }
        conn_dispatch(c);
        return;
    case CONN_HANDLING:
        if (c->req != NULL && c->req->body_streaming && !c->req->body_done) {
            size_t len = c->req->body_len;
            if (conn_stream_body(c, in) != 0) {
                gh_log_info("client %s: streamed body %s", c->peer,
                            len >= c->srv->max_stream_body ? "too large" : "malformed");
                conn_free(c); /* aborts the handler */
            }
        }
        return; /* pipelined input waits for the current response */
    case CONN_CLOSING:
        return;
    case CONN_LINGER:
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
}

/* Output fell under the low watermark: wake a paused producer, or close after the last byte. */
static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    gh_conn_t *c = arg;

    if (c->state == CONN_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            conn_linger(c);
        return;
    }
    if (c->state == CONN_HANDLING && c->req != NULL && c->req->on_drain != NULL)
        c->req->on_drain(c->req->handler_arg);
}

/* EOF, error or timeout: the connection is over; a handler still working is told to stop. */
static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    gh_conn_t *c = arg;
    GH_UNUSED(bev);

    if ((what & BEV_EVENT_TIMEOUT) && c->state == CONN_READ_BODY && c->req != NULL)
        gh_log_info("client %s too slow sending its request body; closing", c->peer);
    if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) && c->state == CONN_HANDLING)
        gh_log_debug("client %s went away during %s %s", c->peer, c->req->head.method,
                     c->req->head.path);
    conn_free(c);
}

/* Creates the server state; connections are added with gh_http_server_adopt. */
gh_http_server_t *gh_http_server_new(struct event_base *base, size_t max_body,
                                     gh_http_handler_t handler, void *arg)
{
    gh_http_server_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        gh_log_error("calloc(http server) failed");
        return NULL;
    }
    srv->base = base;
    srv->max_body = max_body;
    srv->handler = handler;
    srv->arg = arg;
    TAILQ_INIT(&srv->conns);
    return srv;
}

/* Wraps an accepted socket in a bufferevent owned by a new connection. */
int gh_http_server_adopt(gh_http_server_t *srv, evutil_socket_t fd, const struct sockaddr *sa,
                         int salen)
{
    gh_conn_t *c;
    int one = 1;

    GH_UNUSED(salen);
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        gh_log_error("calloc(conn) failed");
        evutil_closesocket(fd);
        return GH_ERR;
    }
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        gh_log_error("bufferevent_socket_new failed");
        evutil_closesocket(fd);
        free(c);
        return GH_ERR;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (sa != NULL && sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(c->peer, sizeof(c->peer), "%s:%u", ip, ntohs(s4->sin_port));
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(c->peer, sizeof(c->peer), "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        snprintf(c->peer, sizeof(c->peer), "unknown");
    }
    c->srv = srv;
    c->state = CONN_READ_HEAD;
    TAILQ_INSERT_TAIL(&srv->conns, c, link);
    srv->nconns++;
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, GH_HTTP_OUT_LOW, 0);
    conn_set_timeouts(c, GH_HTTP_HEAD_TIMEOUT_S);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return GH_OK;
}

/* Graceful stop: every connection closes after its current (or next) response. An idle one is
 * not closed at once: a client may have just connected or be sending its next request, and
 * closing under it would fail that request (EPIPE/reset). It gets a short read timeout instead:
 * a request arriving in time is served (with Connection: close), silence closes it. */
void gh_http_server_drain(gh_http_server_t *srv)
{
    gh_conn_t *c;

    srv->draining = 1;
    TAILQ_FOREACH(c, &srv->conns, link)
    {
        c->keep_alive = 0;
        if (c->state == CONN_READ_HEAD)
            conn_set_timeouts(c, GH_HTTP_DRAIN_GRACE_S);
    }
}

/* Open connections (busy or idle). */
size_t gh_http_server_conns(const gh_http_server_t *srv)
{
    return srv->nconns;
}

/* Requests whose handler has not finished. */
size_t gh_http_server_busy(const gh_http_server_t *srv)
{
    return srv->busy;
}

/* Force stop: closes everything, aborting handlers, then frees the server. */
void gh_http_server_free(gh_http_server_t *srv)
{
    if (srv == NULL)
        return;
    while (!TAILQ_EMPTY(&srv->conns))
        conn_free(TAILQ_FIRST(&srv->conns));
    free(srv);
}

/* Queues a whole response and finishes the request. */
void gh_http_respond(gh_http_req_t *req, int status, const char *headers, size_t headers_len,
                     const char *body, size_t body_len)
{
    gh_conn_t *c = req->conn;
    char line[96], tail[96];
    struct iovec iov[4];
    int n;

    if (c->srv->draining)
        c->keep_alive = 0;
    req->responded = 1;
    n = snprintf(tail, sizeof(tail), "%sContent-Length: %zu\r\n\r\n", connection_header(c, req),
                 body_len);
    iov[0].iov_base = line;
    iov[0].iov_len = status_line(status, line, sizeof(line));
    iov[1].iov_base = (void *)headers;
    iov[1].iov_len = headers != NULL ? headers_len : 0;
    iov[2].iov_base = tail;
    iov[2].iov_len = n > 0 && (size_t)n < sizeof(tail) ? (size_t)n : 0;
    iov[3].iov_base = (void *)body;
    iov[3].iov_len = body_len > 0 && !req->is_head_method ? body_len : 0;
    conn_send(c, iov, 4);
    conn_finish(c);
}

/* Starts a streamed response; HTTP/1.0 clients get a close-delimited body instead of chunks. */
void gh_http_stream_begin(gh_http_req_t *req, int status, const char *headers, size_t headers_len)
{
    gh_conn_t *c = req->conn;
    char line[96], tail[96];
    struct iovec iov[3];
    int n;

    if (c->srv->draining || req->head.version_minor == 0)
        c->keep_alive = 0;
    req->responded = 1;
    req->streaming = 1;
    n = snprintf(tail, sizeof(tail), "%s%s\r\n", connection_header(c, req),
                 req->head.version_minor >= 1 ? "Transfer-Encoding: chunked\r\n" : "");
    iov[0].iov_base = line;
    iov[0].iov_len = status_line(status, line, sizeof(line));
    iov[1].iov_base = (void *)headers;
    iov[1].iov_len = headers != NULL ? headers_len : 0;
    iov[2].iov_base = tail;
    iov[2].iov_len = n > 0 && (size_t)n < sizeof(tail) ? (size_t)n : 0;
    conn_send(c, iov, 3);
}

/* Sends one piece of a streamed body as one chunk. */
void gh_http_stream_write(gh_http_req_t *req, const void *data, size_t len)
{
    struct iovec iov[3];
    char hex[20];

    if (len == 0 || req->is_head_method)
        return;
    if (req->head.version_minor >= 1) {
        /* chunk size in hex, built by hand: this runs once per relayed SSE event */
        size_t i = sizeof(hex), n = len;
        hex[--i] = '\n';
        hex[--i] = '\r';
        do {
            hex[--i] = "0123456789abcdef"[n & 15];
            n >>= 4;
        } while (n != 0);
        iov[0].iov_base = hex + i;
        iov[0].iov_len = sizeof(hex) - i;
        iov[1].iov_base = (void *)data;
        iov[1].iov_len = len;
        iov[2].iov_base = (void *)"\r\n";
        iov[2].iov_len = 2;
        conn_send(req->conn, iov, 3);
    } else {
        iov[0].iov_base = (void *)data;
        iov[0].iov_len = len;
        conn_send(req->conn, iov, 1);
    }
}

/* Writes the last chunk and finishes the request. */
void gh_http_stream_end(gh_http_req_t *req)
{
    gh_conn_t *c = req->conn;

    if (req->head.version_minor >= 1 && !req->is_head_method) {
        struct iovec iov = {(void *)"0\r\n\r\n", 5};
        conn_send(c, &iov, 1);
    }
    conn_finish(c);
}

/* Output bytes not yet handed to the kernel. */
size_t gh_http_pending(const gh_http_req_t *req)
{
    return evbuffer_get_length(bufferevent_get_output(req->conn->bev));
}
