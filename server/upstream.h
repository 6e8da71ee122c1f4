/* upstream.h: libcurl's multi interface driven by the worker's libevent loop, with a pool of
 * reusable easy handles; every upstream HTTP exchange goes through here. */
#ifndef GH_UPSTREAM_H
#define GH_UPSTREAM_H

#include <curl/curl.h>
#include <event2/event.h>

/* Embed as the first member of a transfer's state and point CURLOPT_PRIVATE at it; done runs
 * once when the transfer ends (rc is CURLE_OK or curl's error), outside any curl callback, after
 * the handle was removed from the multi handle. */
typedef struct gh_upstream_xfer {
    void (*done)(struct gh_upstream_xfer *x, CURLcode rc);
    CURL *easy;
} gh_upstream_xfer_t;

/* Creates this process's multi handle on base. Call once per worker, after fork. */
int gh_upstream_init(struct event_base *base);

/* Removes every transfer (without calling done) and frees the multi handle and the pool. */
void gh_upstream_cleanup(void);

/* An easy handle, reset, from the pool (or new). NULL when out of memory. */
CURL *gh_upstream_easy_get(void);

/* Returns a handle to the pool; it must not be in the multi handle. */
void gh_upstream_easy_put(CURL *easy);

/* Sets the options every upstream transfer shares: no signals, TCP_NODELAY and keep-alive,
 * the connect timeout, no User-Agent of curl's own, http(s) only, no redirects, no proxy from
 * the environment. */
void gh_upstream_defaults(CURL *e, long connect_timeout_ms);

/* Starts x->easy (already configured, CURLOPT_PRIVATE = x). */
int gh_upstream_start(gh_upstream_xfer_t *x);

/* Stops x->easy without calling done (the caller is tearing down). */
void gh_upstream_stop(gh_upstream_xfer_t *x);

/* Resumes a transfer paused by CURL_WRITEFUNC_PAUSE. */
void gh_upstream_resume(gh_upstream_xfer_t *x);

/* Transfers in flight in this process. */
int gh_upstream_running(void);

#endif
