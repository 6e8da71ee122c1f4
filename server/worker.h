/* worker.h: one worker process: its event loop, listeners, database handle and loaded
 * configuration, and the dispatch of requests to the client and admin APIs. */
#ifndef GH_WORKER_H
#define GH_WORKER_H

#include <event2/event.h>
#include <sqlite3.h>

#include "cli.h"
#include "crypto.h"
#include "http.h"
#include "store.h"

/* What the master hands a worker at fork. The fds are the master's listening sockets. */
typedef struct {
    const gh_config_t *cfg;
    int client_fd;
    int admin_fd;
    int slot;       /* index in the master's process table */
    int generation; /* bumped by every SIGHUP */
    const gh_keys_t *keys;
} gh_worker_args_t;

/* The state of this worker process; created after fork, owned by gh_worker_run. */
typedef struct {
    struct event_base *base;
    const gh_config_t *cfg;
    gh_keys_t keys;
    sqlite3 *db;
    gh_provider_t *providers;
    size_t nproviders;
    gh_http_server_t *client;
    gh_http_server_t *admin;
    int slot;
    int generation;
    int draining;
} gh_worker_t;

/* The process's worker state (NULL in the master). */
extern gh_worker_t *gh_worker;

/* Runs a worker until it is told to stop; returns the process exit status. */
int gh_worker_run(const gh_worker_args_t *args);

/* The provider a request without routing goes to: "anthropic" if it exists, else the first.
 * NULL when none is configured. */
const gh_provider_t *gh_worker_default_provider(void);

#endif
