/* sse.h: an incremental server-sent-events splitter, fed with whatever byte chunks the network
 * delivers, that hands each complete event (name and data) to a callback. */
#ifndef GH_SSE_H
#define GH_SSE_H

#include <stddef.h>
#include <stdint.h>

/* Called once per complete event (ended by a blank line). event is the value of the last
 * "event:" field ("message" when absent), data the "data:" lines joined with '\n' (the trailing
 * newline removed), both NUL-terminated and valid only during the call. Comments (":...") and
 * other fields are ignored. Return GH_OK to go on, GH_ERR to stop the parser (gh_sse_feed then
 * returns GH_ERR). */
typedef int (*gh_sse_event_cb)(void *arg, const char *event, size_t event_len, const char *data,
                               size_t data_len);

typedef struct {
    gh_sse_event_cb cb;
    void *arg;
    char *line; /* partial line carried over between chunks */
    size_t line_len;
    size_t line_cap;
    char *event; /* current event name */
    size_t event_len;
    size_t event_cap;
    char *data; /* current data, lines joined */
    size_t data_len;
    size_t data_cap;
    int have_data;    /* a data field was seen in the current event */
    int skip_lf;      /* the previous chunk ended with CR: drop a leading LF */
    size_t max_event; /* bytes one event may hold before the parser gives up (0 = 16 MiB) */
    uint64_t events;  /* events delivered so far */
} gh_sse_parser_t;

/* Prepares p; nothing is allocated until data arrives. */
void gh_sse_init(gh_sse_parser_t *p, gh_sse_event_cb cb, void *arg);

/* Feeds len bytes (any split, CRLF, CR or LF line ends). Returns GH_OK, or GH_ERR when the
 * callback asked to stop, memory ran out, or one event grew past max_event. */
int gh_sse_feed(gh_sse_parser_t *p, const char *buf, size_t len);

/* Frees the parser's buffers; p may be initialised again. An unfinished event is dropped. */
void gh_sse_free(gh_sse_parser_t *p);

#endif
