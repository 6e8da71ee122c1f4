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

/* One loaded generation of the provider table. A request keeps the generation it started with
 * (refs) so a reload never frees a provider under an in-flight request. */
typedef struct {
    gh_provider_t *p;
    size_t n;
    int refs; /* requests using it, plus one while it is the current generation */
} gh_provset_t;

/* The state of this worker process; created after fork, owned by gh_worker_run. */
typedef struct {
    struct event_base *base;
    const gh_config_t *cfg;
    gh_keys_t keys;
    sqlite3 *db;
    gh_provset_t *provs; /* current generation */
    uint64_t epoch;      /* gh_shm config epoch the caches were loaded at */
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

/* Reloads keys, prices and providers when an admin write bumped the configuration epoch.
 * Called at the start of every client request; cheap when nothing changed. */
void gh_worker_refresh(void);

/* Takes a reference on the current provider generation (never NULL); release it when the
 * request ends. */
gh_provset_t *gh_worker_provs_acquire(void);
void gh_worker_provs_release(gh_provset_t *ps);

/* The provider a request without routing goes to: "anthropic" if it exists, else the first.
 * NULL when none is configured. */
const gh_provider_t *gh_worker_default_provider(const gh_provset_t *ps);

#endif
