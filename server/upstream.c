/* upstream.c: glues libcurl's multi-socket API to libevent (one CURLM per worker) and keeps a
 * pool of easy handles so connection setup and allocations are not paid per request. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "gh.h"
#include "log.h"
#include "upstream.h"

#define GH_EASY_POOL_MAX 512

/* libevent state of one socket curl asked us to watch; owned by curl_multi_assign's slot. */
typedef struct {
    struct event *ev;
    curl_socket_t fd;
} sock_watch_t;

static struct {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    CURL *pool[GH_EASY_POOL_MAX];
    int npool;
    int running;
    int inflight;
} up;

/* Drains curl's message queue: finished transfers are removed and their owners told. */
static void check_done(void)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(up.multi, &left)) != NULL) {
        gh_upstream_xfer_t *x = NULL;
        CURL *easy;
        CURLcode rc;

        if (msg->msg != CURLMSG_DONE)
            continue;
        easy = msg->easy_handle;
        rc = msg->data.result;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(up.multi, easy);
        up.inflight--;
        if (x != NULL && x->done != NULL)
            x->done(x, rc);
    }
}

/* A watched socket is ready: let curl act on it. */
static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    int flags = 0;
    GH_UNUSED(arg);

    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(up.multi, fd, flags, &up.running);
    check_done();
}

/* curl's timeout expired. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    GH_UNUSED(fd);
    GH_UNUSED(what);
    GH_UNUSED(arg);
    curl_multi_socket_action(up.multi, CURL_SOCKET_TIMEOUT, 0, &up.running);
    check_done();
}

/* CURLMOPT_TIMERFUNCTION: curl wants to be called back after timeout_ms (-1: never). */
static int timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
    struct timeval tv;
    GH_UNUSED(multi);
    GH_UNUSED(arg);

    if (timeout_ms < 0) {
        evtimer_del(up.timer);
        return 0;
    }
    if (timeout_ms == 0) {
        /* "act now" (after every new transfer): run in this loop iteration instead of paying
         * an epoll_wait round trip for a zero timeout */
        evtimer_del(up.timer);
        event_active(up.timer, EV_TIMEOUT, 0);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(up.timer, &tv);
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching one socket. */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *arg, void *sockp)
{
    sock_watch_t *w = sockp;
    short kind;
    GH_UNUSED(easy);
    GH_UNUSED(arg);

    if (what == CURL_POLL_REMOVE) {
        if (w != NULL) {
            event_free(w->ev);
            free(w);
            curl_multi_assign(up.multi, fd, NULL);
        }
        return 0;
    }
    kind = (short)(EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                   ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    if (w == NULL) {
        w = calloc(1, sizeof(*w));
        if (w == NULL) {
            gh_log_error("calloc(socket watch) failed");
            return -1;
        }
        w->fd = fd;
        w->ev = event_new(up.base, fd, kind, on_socket, NULL);
        curl_multi_assign(up.multi, fd, w);
    } else {
        /* reuse the event: no allocation, and the epoll changelist folds del+add into one mod */
        event_del(w->ev);
        event_assign(w->ev, up.base, fd, kind, on_socket, NULL);
    }
    if (w->ev == NULL || event_add(w->ev, NULL) != 0) {
        gh_log_error("event_new/event_add for curl socket %d failed", (int)fd);
        return -1;
    }
    return 0;
}

/* Creates the multi handle; keep-alive connections live in its cache across requests. */
int gh_upstream_init(struct event_base *base)
{
    memset(&up, 0, sizeof(up));
    up.base = base;
    up.multi = curl_multi_init();
    if (up.multi == NULL) {
        gh_log_error("curl_multi_init failed");
        return GH_ERR;
    }
    up.timer = evtimer_new(base, on_timer, NULL);
    if (up.timer == NULL) {
        gh_log_error("evtimer_new failed");
        curl_multi_cleanup(up.multi);
        up.multi = NULL;
        return GH_ERR;
    }
    curl_multi_setopt(up.multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(up.multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(up.multi, CURLMOPT_MAXCONNECTS, 4096L);
    curl_multi_setopt(up.multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    return GH_OK;
}

/* Frees everything; transfers still running are dropped without callbacks. */
void gh_upstream_cleanup(void)
{
    int i;

    if (up.multi != NULL) {
        curl_multi_cleanup(up.multi);
        up.multi = NULL;
    }
    for (i = 0; i < up.npool; i++)
        curl_easy_cleanup(up.pool[i]);
    up.npool = 0;
    if (up.timer != NULL) {
        event_free(up.timer);
        up.timer = NULL;
    }
}

/* Pops a pooled handle; curl_easy_reset in put already cleared its options. */
CURL *gh_upstream_easy_get(void)
{
    CURL *e;

    if (up.npool > 0)
        return up.pool[--up.npool];
    e = curl_easy_init();
    if (e == NULL)
        gh_log_error("curl_easy_init failed");
    return e;
}

/* Resets and keeps a handle for the next request (or frees it when the pool is full). */
void gh_upstream_easy_put(CURL *easy)
{
    if (easy == NULL)
        return;
    if (up.npool < GH_EASY_POOL_MAX && up.multi != NULL) {
        curl_easy_reset(easy);
        up.pool[up.npool++] = easy;
        return;
    }
    curl_easy_cleanup(easy);
}

/* Adds the transfer; curl's timer callback schedules the first action. */
int gh_upstream_start(gh_upstream_xfer_t *x)
{
    CURLMcode mc = curl_multi_add_handle(up.multi, x->easy);
    if (mc != CURLM_OK) {
        gh_log_error("curl_multi_add_handle failed: %s", curl_multi_strerror(mc));
        return GH_ERR;
    }
    up.inflight++;
    return GH_OK;
}

/* Removes a transfer that has not finished; its done callback will not run. */
void gh_upstream_stop(gh_upstream_xfer_t *x)
{
    if (x->easy == NULL)
        return;
    if (curl_multi_remove_handle(up.multi, x->easy) == CURLM_OK)
        up.inflight--;
}

/* Unpauses; curl delivers the held data from its own callbacks later. */
void gh_upstream_resume(gh_upstream_xfer_t *x)
{
    curl_easy_pause(x->easy, CURLPAUSE_CONT);
}

/* Number of transfers added and not yet finished or stopped. */
int gh_upstream_running(void)
{
    return up.inflight;
}

/* See upstream.h. */
void gh_upstream_defaults(CURL *e, long connect_timeout_ms)
{
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_USERAGENT, NULL);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* a proxy, if any, is configured per provider base URL, never from the environment (which
     * curl would otherwise consult with getenv on every request) */
    curl_easy_setopt(e, CURLOPT_PROXY, "");
}
