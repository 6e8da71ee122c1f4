/* exchange.h: one client request on its way upstream: the attempt loop over a route's targets
 * and keys (fallback, retries, cooldowns), the relay of the answer, limits admission and the
 * usage record. proxy.c (native and OpenAI requests) and resources.c (batches, files) drive it. */
#ifndef GH_EXCHANGE_H
#define GH_EXCHANGE_H

#include <event2/buffer.h>
#include <event2/event.h>

#include "auth.h"
#include "beta.h"
#include "http.h"
#include "quota.h"
#include "reply.h"
#include "route.h"
#include "sse.h"
#include "upstream.h"
#include "usage.h"
#include "worker.h"

#define GH_PROXY_MAX_KEYS 64 /* provider keys considered per target */

typedef struct gh_exchange gh_exchange_t;

/* What a driver changes about an exchange; every hook may be NULL. */
typedef struct {
    /* A complete (non-streamed) answer, success or upstream error, before it is relayed: may
     * rewrite status, headers ("Name: v\r\n" lines) and body. Runs after usage was read. */
    void (*buffered)(gh_exchange_t *ex, int *status, struct evbuffer *headers,
                     struct evbuffer *body);
    /* SSE answers: when set, events are handed here instead of relaying upstream's bytes; the
     * hook writes whatever it wants with gh_exchange_write. */
    void (*sse_event)(gh_exchange_t *ex, const char *event, size_t event_len, const char *data,
                      size_t data_len);
    /* The end of a stream (broken: upstream failed after the first byte): the hook writes the
     * closing bytes; without it an Anthropic "event: error" is written for broken streams. */
    void (*stream_end)(gh_exchange_t *ex, int broken);
    /* Bytes of a streamed non-SSE answer (stream_resp), as they are relayed. */
    void (*data)(gh_exchange_t *ex, const char *p, size_t n);
    /* Runs once when the exchange ends, whatever the outcome, before usage is published. */
    void (*finished)(gh_exchange_t *ex);
} gh_exchange_hooks_t;

/* One client request relayed upstream; owned by the request from start until done or abort. */
struct gh_exchange {
    gh_upstream_xfer_t xfer; /* first: CURLOPT_PRIVATE points here */
    gh_exchange_hooks_t hooks;
    void *hook_arg;         /* owned by the driver; freed by it in hooks.finished */
    gh_shape_t shape;       /* error shape of answers gatehouse makes */
    const char *method;     /* upstream method: NULL = POST with the body */
    int stream_body;        /* the request body streams in (req->body_in) */
    int stream_resp;        /* relay a 2xx non-SSE answer as it arrives */
    const char *extra_beta; /* anthropic-beta value replacing the client's, or NULL */
    char beta_needed[1024]; /* the client's betas plus those the body needs (see beta.c) */
    int beta_changed;       /* beta_needed differs from the client's header */
    unsigned beta_flags;    /* GH_BETA_* flags of the endpoint */
    char beta_out[1024];    /* beta_needed after the current provider's add/strip policy */
    gh_http_req_t *req;
    gh_provset_t *provs; /* the provider generation this request holds a reference on */
    gh_resolved_t route; /* the targets to try, in order */
    size_t target;       /* index of the current target */
    const gh_provider_t *prov;
    const gh_provider_key_t *key;
    unsigned char excluded[GH_PROXY_MAX_KEYS]; /* keys of this target refused (401/403) */
    unsigned char tried[GH_PROXY_MAX_KEYS];    /* keys of this target tried in this pass */
    int retries;                               /* back-off retries spent on this target */
    const char *upstream_path;
    char *fwd_body; /* the body for the current target when it had to be rewritten */
    size_t fwd_len;
    struct curl_slist *hdrs;
    char *url;
    struct evbuffer *resp_headers; /* relayed "Name: value\r\n" lines */
    struct evbuffer *resp_body;    /* a non-streamed (or failing) answer */
    struct event *idle_timer;      /* first-byte and between-bytes timeout */
    struct event *retry_timer;     /* back-off before the next attempt */
    gh_sse_parser_t sse;           /* reads usage and errors out of a relayed stream */
    gh_usage_rec_t rec;            /* the usage_log row this request becomes */
    int status;
    int headers_done;
    int failing;  /* the answer is one we may fall back from: hold it */
    int sse_resp; /* the answer is text/event-stream: relay as it arrives */
    int paused;
    int timed_out;
    int in_multi;
    int64_t retry_after_ms; /* from the last failing answer */
    /* limits: what was counted at admission, settled with the actual usage in publish_usage */
    gh_limit_cfg_t key_cfg;
    gh_limit_result_t key_res;
    int key_admitted;
    int key_limited; /* the key has rate limits: its own anthropic-ratelimit-* headers */
    int in_parallel; /* holds one of the key's max_parallel slots */
    gh_limit_result_t prov_res;
    const gh_provider_t *prov_admitted; /* the provider whose window counted the attempt */
    int64_t est_in, est_out;
    double budget; /* < 0: none */
    char budget_period[4];
    int last_transport; /* the last failure was a curl error (CURLcode), 0 if HTTP */
    uint64_t first_byte_us;
    uint64_t progress_us; /* the last time upstream showed progress (idle timeout) */
    int body_paused;      /* curl waits for more streamed request body */
};

/* Creates an exchange for req whose usage row names endpoint (a static string). */
gh_exchange_t *gh_exchange_new(gh_http_req_t *req, const char *endpoint);

/* Ends the exchange (the request belongs to its connection); its buffers and timers are kept
 * for the next request. */
void gh_exchange_free(gh_exchange_t *ex);

/* Frees the exchanges kept for reuse (worker exit). */
void gh_exchange_pool_free(void);

/* Answers a refusal gatehouse makes (extra "Name: v\r\n" headers may be NULL), records it and
 * frees the exchange. fmt takes one string argument. */
void gh_exchange_refuse(gh_exchange_t *ex, int status, const char *type, const char *error_type,
                        const char *extra, const char *fmt, const char *arg);

/* The key's budget, rate limits and concurrency cap; answers the refusal itself (GH_ERR). */
int gh_exchange_admit_key(gh_exchange_t *ex, const gh_vkey_t *vk, int64_t max_tokens);

/* Starts the attempts over ex->route's targets; the exchange then runs to its end. */
void gh_exchange_start(gh_exchange_t *ex);

/* Writes bytes of a streamed answer to the client (for hooks). */
void gh_exchange_write(gh_exchange_t *ex, const void *p, size_t n);

/* Computes beta_needed from the client's anthropic-beta header and the body (spans from a
 * gh_jscan_object over gh_beta_keys, or NULL when the body is not JSON). */
void gh_exchange_betas(gh_exchange_t *ex, const gh_jspan_t *spans);

/* A conservative estimate of a body's input tokens (context-window checks). */
int64_t gh_exchange_estimate_tokens(size_t body_len);

#endif
