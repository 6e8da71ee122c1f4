/* worker.c: a worker process: builds its own event loop, curl multi handle and database
 * connection after fork, accepts on the inherited sockets, and routes each request. */
#include "config.h"

#include <event2/listener.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "admin.h"
#include "auth.h"
#include "exchange.h"
#include "gh.h"
#include "log.h"
#include "shm.h"
#include "models.h"
#include "oai.h"
#include "oai_resources.h"
#include "proxy.h"
#include "resources.h"
#include "route.h"
#include "reply.h"
#include "upstream.h"
#include "worker.h"

#define GH_DRAIN_POLL_MS 20

gh_worker_t *gh_worker = NULL;

static struct {
    struct evconnlistener *client_l;
    struct evconnlistener *admin_l;
    struct event *sig_term;
    struct event *sig_int;
    struct event *sig_quit;
    struct event *drain_poll;
    uint64_t drain_deadline_us;
} w;

/* The provider used when no route applies: "anthropic" when configured, else the first. */
const gh_provider_t *gh_worker_default_provider(const gh_provset_t *ps)
{
    size_t i;

    if (ps == NULL || ps->n == 0)
        return NULL;
    for (i = 0; i < ps->n; i++)
        if (strcmp(ps->p[i].name, "anthropic") == 0)
            return &ps->p[i];
    return &ps->p[0];
}

/* Drops one reference; the generation is freed when nobody uses it any more. */
void gh_worker_provs_release(gh_provset_t *ps)
{
    if (ps == NULL || --ps->refs > 0)
        return;
    gh_store_providers_free(ps->p, ps->n);
    free(ps);
}

/* See worker.h. */
gh_provset_t *gh_worker_provs_acquire(void)
{
    gh_worker->provs->refs++;
    return gh_worker->provs;
}

/* Loads a new provider generation and makes it current. */
static int load_providers(gh_worker_t *wk)
{
    gh_provset_t *ps = calloc(1, sizeof(*ps));

    if (ps == NULL) {
        gh_log_error("calloc(provider set) failed");
        return GH_ERR;
    }
    if (gh_store_providers_load(wk->db, &wk->keys, &ps->p, &ps->n) != GH_OK) {
        free(ps);
        return GH_ERR;
    }
    ps->refs = 1;
    if (wk->provs != NULL)
        gh_worker_provs_release(wk->provs);
    wk->provs = ps;
    return GH_OK;
}

/* Everything cached from the database, reloaded as one. A failed reload keeps the old copy
 * and tries again at the next request. */
static int load_caches(gh_worker_t *wk)
{
    uint64_t epoch = gh_shm_epoch();
    int a = gh_auth_load(wk->db);
    int b = load_providers(wk);
    int c = gh_route_load(wk->db);

    if (a != GH_OK || b != GH_OK || c != GH_OK)
        return GH_ERR;
    wk->epoch = epoch;
    return GH_OK;
}

/* See worker.h. */
void gh_worker_refresh(void)
{
    if (gh_shm_epoch() != gh_worker->epoch) {
        gh_log_debug("configuration changed; reloading");
        load_caches(gh_worker);
    }
}

/* Compares the request path with one of the API paths. */
static int path_is(const gh_http_req_t *req, const char *p)
{
    return strcmp(req->head.path, p) == 0;
}

/* Answers 405 naming the allowed method, in Anthropic's error shape. */
static void method_not_allowed(gh_http_req_t *req, const char *allow)
{
    char h[64];
    snprintf(h, sizeof(h), "Allow: %s\r\n", allow);
    gh_reply_error(req, GH_SHAPE_ANTHROPIC, 405, "invalid_request_error", h,
                   "method %s not allowed on %s (allowed: %s)", req->head.method, req->head.path,
                   allow);
}

/* Client API routing (DESIGN.md section 5). */
static void client_handler(gh_http_req_t *req, void *arg)
{
    const char *m = req->head.method;
    const char *path = req->head.path;
    GH_UNUSED(arg);

    if (path_is(req, "/") || path_is(req, "/api/hello") || path_is(req, "/healthz")) {
        if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
            method_not_allowed(req, "GET, HEAD");
            return;
        }
        gh_reply_json(req, 200, "{\"status\":\"ok\"}", 15);
        return;
    }
    if (strncmp(path, "/anthropic/", 11) == 0)
        path += 10; /* "/anthropic/v1/..." is the same API as "/v1/..." */
    if (strcmp(path, "/v1/messages") == 0 || strcmp(path, "/v1/messages/count_tokens") == 0) {
        if (strcmp(m, "POST") != 0) {
            method_not_allowed(req, "POST");
            return;
        }
        gh_proxy_messages(req, path);
        return;
    }
    if (strcmp(path, "/v1/complete") == 0) {
        if (strcmp(m, "POST") != 0) {
            method_not_allowed(req, "POST");
            return;
        }
        gh_proxy_messages(req, "/v1/complete");
        return;
    }
    {
        static const struct {
            const char *path;
            int kind;
            const char *endpoint;
        } oai[] = {{"/v1/chat/completions", GH_OAI_CHAT, "/v1/chat/completions"},
                   {"/v1/responses", GH_OAI_RESPONSES, "/v1/responses"},
                   {"/v1/completions", GH_OAI_COMPLETIONS, "/v1/completions"}};
        static const struct {
            const char *prefix;
            const char *operation;
        } unsupported[] = {{"/v1/embeddings", "embeddings"},
                           {"/v1/audio/speech", "speech (text to speech)"},
                           {"/v1/audio/transcriptions", "transcriptions (speech to text)"},
                           {"/v1/audio/translations", "audio translations"},
                           {"/v1/images/", "image generation"},
                           {"/v1/moderations", "moderations"}};
        size_t i;
        for (i = 0; i < GH_ARRAY_LEN(oai); i++)
            if (strcmp(path, oai[i].path) == 0) {
                if (strcmp(m, "POST") != 0) {
                    method_not_allowed(req, "POST");
                    return;
                }
                gh_proxy_openai(req, oai[i].kind, oai[i].endpoint);
                return;
            }
        for (i = 0; i < GH_ARRAY_LEN(unsupported); i++)
            if (strncmp(path, unsupported[i].prefix, strlen(unsupported[i].prefix)) == 0) {
                gh_proxy_unsupported(req, unsupported[i].operation);
                return;
            }
    }
    if (gh_oai_resources_handle(req, path))
        return;
    if (gh_resources_handle(req, path))
        return;
    if (strcmp(path, "/v1/models") == 0) {
        if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
            method_not_allowed(req, "GET");
            return;
        }
        gh_models_handle(req);
        return;
    }
    gh_reply_error(req, GH_SHAPE_ANTHROPIC, 404, "not_found_error", NULL, "no route for %s %s", m,
                   req->head.path);
}

/* Admin API (DESIGN.md section 6): admin/admin.c answers everything on that port. */
static void admin_handler(gh_http_req_t *req, void *arg)
{
    GH_UNUSED(arg);
    gh_admin_handle(req);
}

/* evconnlistener callback: the HTTP server named by arg takes the new socket. */
static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    GH_UNUSED(l);
    gh_http_server_adopt(arg, fd, sa, salen);
}

/* Logged when accept fails (EMFILE and friends); the listener keeps going. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    GH_UNUSED(l);
    GH_UNUSED(arg);
    gh_log_warn("accept failed: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* While draining: leaves the loop once nothing is in flight, or at the deadline. */
static void on_drain_poll(evutil_socket_t fd, short what, void *arg)
{
    gh_worker_t *wk = arg;
    GH_UNUSED(fd);
    GH_UNUSED(what);

    if ((gh_http_server_conns(wk->client) == 0 && gh_http_server_conns(wk->admin) == 0) ||
        gh_now_us() >= w.drain_deadline_us) {
        if (gh_http_server_busy(wk->client) > 0)
            gh_log_warn("drain timeout: %zu requests still in flight are cut",
                        gh_http_server_busy(wk->client));
        event_base_loopbreak(wk->base);
    }
}

/* Graceful stop: no new connections, finish what is in flight, then leave the loop. */
static void begin_drain(gh_worker_t *wk)
{
    struct timeval tv = {0, GH_DRAIN_POLL_MS * 1000};

    if (wk->draining)
        return;
    wk->draining = 1;
    gh_log_info("draining: %zu requests in flight", gh_http_server_busy(wk->client));
    if (w.client_l != NULL) {
        evconnlistener_free(w.client_l);
        w.client_l = NULL;
    }
    if (w.admin_l != NULL) {
        evconnlistener_free(w.admin_l);
        w.admin_l = NULL;
    }
    gh_http_server_drain(wk->client);
    gh_http_server_drain(wk->admin);
    w.drain_deadline_us = gh_now_us() + (uint64_t)wk->cfg->drain_timeout * 1000000u;
    w.drain_poll = event_new(wk->base, -1, EV_PERSIST, on_drain_poll, wk);
    if (w.drain_poll == NULL || event_add(w.drain_poll, &tv) != 0) {
        gh_log_error("event_new(drain poll) failed; stopping now");
        event_base_loopbreak(wk->base);
    }
}

/* SIGTERM/SIGINT drain; SIGQUIT stops at once. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    gh_worker_t *wk = arg;
    GH_UNUSED(what);

    if (sig == SIGQUIT) {
        event_base_loopbreak(wk->base);
        return;
    }
    begin_drain(wk);
}

/* Everything a worker needs, created after fork; see worker.h. */
int gh_worker_run(const gh_worker_args_t *args)
{
    static gh_worker_t wk;
    char path[1200];
    int rc = 1;

    memset(&wk, 0, sizeof(wk));
    memset(&w, 0, sizeof(w));
    gh_worker = &wk;
    gh_log_set_role("worker");
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    prctl(PR_SET_NAME, "gh-worker"); /* so ps/top/pgrep tell the roles apart */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    wk.cfg = args->cfg;
    wk.keys = *args->keys;
    wk.slot = args->slot;
    wk.generation = args->generation;

    {
        /* the changelist coalesces the add/del churn of upstream sockets into one epoll_ctl */
        struct event_config *ec = event_config_new();
        if (ec != NULL)
            event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        wk.base = ec != NULL ? event_base_new_with_config(ec) : NULL;
        if (ec != NULL)
            event_config_free(ec);
    }
    if (wk.base == NULL) {
        gh_log_error("event_base_new_with_config failed");
        goto done;
    }
    snprintf(path, sizeof(path), "%s/gatehouse.db", wk.cfg->data_dir);
    if (gh_store_open(path, &wk.db) != GH_OK)
        goto done;
    if (load_caches(&wk) != GH_OK)
        goto done;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        gh_log_error("curl_global_init failed");
        goto done;
    }
    if (gh_upstream_init(wk.base) != GH_OK)
        goto done;
    wk.client = gh_http_server_new(wk.base, wk.cfg->max_body, client_handler, &wk);
    wk.admin = gh_http_server_new(wk.base, wk.cfg->max_body, admin_handler, &wk);
    if (wk.client == NULL || wk.admin == NULL)
        goto done;
    gh_http_server_set_streaming(wk.client, gh_resources_wants_stream, wk.cfg->max_upload);
    w.client_l = evconnlistener_new(wk.base, on_accept, wk.client, LEV_OPT_CLOSE_ON_FREE, -1,
                                    args->client_fd);
    w.admin_l =
        evconnlistener_new(wk.base, on_accept, wk.admin, LEV_OPT_CLOSE_ON_FREE, -1, args->admin_fd);
    if (w.client_l == NULL || w.admin_l == NULL) {
        gh_log_error("evconnlistener_new failed");
        goto done;
    }
    evconnlistener_set_error_cb(w.client_l, on_accept_error);
    evconnlistener_set_error_cb(w.admin_l, on_accept_error);
    w.sig_term = evsignal_new(wk.base, SIGTERM, on_signal, &wk);
    w.sig_int = evsignal_new(wk.base, SIGINT, on_signal, &wk);
    w.sig_quit = evsignal_new(wk.base, SIGQUIT, on_signal, &wk);
    if (w.sig_term == NULL || w.sig_int == NULL || w.sig_quit == NULL ||
        event_add(w.sig_term, NULL) != 0 || event_add(w.sig_int, NULL) != 0 ||
        event_add(w.sig_quit, NULL) != 0) {
        gh_log_error("evsignal_new/event_add failed");
        goto done;
    }
    /* the master may have died between fork and prctl */
    if (getppid() == 1)
        goto done;
    gh_log_debug("worker %d (generation %d) serving, %zu providers, %zu keys", wk.slot,
                 wk.generation, wk.provs->n, gh_auth_nkeys());
    event_base_dispatch(wk.base);
    rc = 0;
done:
    if (w.client_l != NULL)
        evconnlistener_free(w.client_l);
    if (w.admin_l != NULL)
        evconnlistener_free(w.admin_l);
    gh_http_server_free(wk.client);
    gh_http_server_free(wk.admin);
    gh_models_cleanup();
    gh_exchange_pool_free();
    gh_upstream_cleanup();
    if (w.sig_term != NULL)
        event_free(w.sig_term);
    if (w.sig_int != NULL)
        event_free(w.sig_int);
    if (w.sig_quit != NULL)
        event_free(w.sig_quit);
    if (w.drain_poll != NULL)
        event_free(w.drain_poll);
    if (wk.provs != NULL)
        gh_worker_provs_release(wk.provs);
    wk.provs = NULL;
    gh_auth_free();
    gh_route_free();
    gh_store_close(wk.db);
    if (wk.base != NULL)
        event_base_free(wk.base);
    curl_global_cleanup();
    sodium_memzero(&wk.keys, sizeof(wk.keys));
    gh_worker = NULL;
    return rc;
}
