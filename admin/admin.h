/* admin.h: the admin HTTP API of DESIGN.md section 6: the entry point the worker calls, the admin
 * token set-up main runs before fork, and the helpers shared by the admin handlers. */
#ifndef GH_ADMIN_H
#define GH_ADMIN_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "http.h"

/* Called by the worker for every request on --admin-listen. Answers it (always). */
void gh_admin_handle(gh_http_req_t *req);

/* Called by main before fork: sets up the admin token. GATEHOUSE_ADMIN_TOKEN set (non-empty) →
 * store its keyed hash (gh_secret_hash_hex) in meta key 'admin_token_hash' (replacing).
 * Otherwise, if DATA_DIR/admin.token exists → hash its content (trimmed) into meta; else generate
 * one with gh_admin_token_generate, write it to DATA_DIR/admin.token with mode 0600
 * (O_CREAT|O_EXCL), store the hash, and log the file's path (never the token). */
int gh_admin_token_init(sqlite3 *db, const gh_keys_t *keys, const char *data_dir);

/* ---- What follows is shared by the admin handlers only. ---- */

#define GH_ADM_MAX_SEGS 8
#define GH_ADM_TIME_LEN 24 /* "YYYY-MM-DDTHH:MM:SS.mmmZ" */
#define GH_ADM_NOW "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

/* One admin request as the router hands it to a resource handler. seg are the URL-decoded path
 * segments ("admin", "providers", "{name}", ...), owned by the router for the handler's call. */
typedef struct {
    gh_http_req_t *req;
    sqlite3 *db;
    const gh_keys_t *keys;
    const char *method; /* HEAD is folded into GET */
    char *seg[GH_ADM_MAX_SEGS];
    size_t nseg;
} gh_adm_ctx_t;

/* Resource handlers: each answers the request, whatever happens. */
void gh_adm_providers(gh_adm_ctx_t *c); /* /admin/providers[/{name}[/keys[/{id}]]] */
void gh_adm_keys(gh_adm_ctx_t *c);      /* /admin/keys[/{id}[/rotate]] */
void gh_adm_usage(gh_adm_ctx_t *c);     /* /admin/usage[/logs] */
void gh_adm_prices(gh_adm_ctx_t *c);    /* /admin/prices[/{model}] */
void gh_adm_routes(gh_adm_ctx_t *c);    /* /admin/routes[/{name}] */
void gh_adm_metrics(gh_adm_ctx_t *c);   /* /metrics */

/* Answers 405 with an Allow header listing allow. */
void gh_adm_method_not_allowed(gh_adm_ctx_t *c, const char *allow);

/* Tells every worker that configuration changed (gh_shm_epoch_bump); call after each commit. */
void gh_adm_changed(void);

/* Prepares sql into *st, logging sqlite's message on failure; the caller finalizes *st. */
int gh_adm_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st);

/* json-c's object, named here without pulling json-c into every includer of this header. */
struct json_object;

/* Builds one answer object from the current row of st; arg is the caller's (a statement for a
 * nested list, say). NULL on failure, logged where it happened. */
typedef struct json_object *(*gh_adm_row_fn)(sqlite3 *db, sqlite3_stmt *st, void *arg);

/* Steps the prepared and bound st and builds an object per row with row(db, st, arg), or with
 * gh_adm_row when row is NULL. For a list (single == 0) *out is {"data":[...]}; for a lookup
 * (single != 0) *out is the first object, or NULL when there was no row. what names the table
 * in the log. Returns GH_OK or GH_ERR; the caller still finalizes st. */
int gh_adm_collect(sqlite3 *db, sqlite3_stmt *st, gh_adm_row_fn row, void *arg, int single,
                   struct json_object **out, const char *what);

/* Loads a resource the way gh_adm_collect answers it: a list for key NULL, else one object or
 * *out NULL with GH_OK when key does not exist. */
typedef int (*gh_adm_load_fn)(sqlite3 *db, const char *key, struct json_object **out);

/* Answers load(key) with status: the list (key NULL) or the one object, 404 "what 'key' not
 * found" when there is none, 500 when loading failed. */
void gh_adm_answer(gh_adm_ctx_t *c, gh_adm_load_fn load, const char *key, int status,
                   const char *what);

/* BEGIN IMMEDIATE / COMMIT, logging failures; rollback does nothing outside a transaction. */
int gh_adm_begin(sqlite3 *db);
int gh_adm_commit(sqlite3 *db);
void gh_adm_rollback(sqlite3 *db);

/* One column assignment for gh_adm_update. column is a constant of the caller, never input. */
typedef struct {
    const char *column;
    int type; /* SQLITE_NULL, SQLITE_INTEGER, SQLITE_FLOAT or SQLITE_TEXT */
    int64_t i;
    double d;
    const char *s;
} gh_adm_set_t;

/* Fills a gh_adm_set_t (helpers so callers stay one line per column). */
gh_adm_set_t gh_adm_set_int(const char *column, int64_t v);
gh_adm_set_t gh_adm_set_double(const char *column, double v);
gh_adm_set_t gh_adm_set_text(const char *column, const char *v);
gh_adm_set_t gh_adm_set_null(const char *column);

/* Runs "UPDATE table SET sets..., updated_at = now WHERE where.column = where" with every value
 * bound. Returns the number of rows changed, or -1 after logging. */
int gh_adm_update(sqlite3 *db, const char *table, const gh_adm_set_t *where,
                  const gh_adm_set_t *sets, size_t nsets);

/* Binds one gh_adm_set_t value to parameter idx of st. */
int gh_adm_bind(sqlite3_stmt *st, int idx, const gh_adm_set_t *v);

#endif
