/* admin.c: the admin API's router and bearer-token check, the admin token set-up before fork, and
 * the small SQLite helpers the admin handlers share. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "admin.h"
#include "gh.h"
#include "json.h"
#include "log.h"
#include "reply.h"
#include "shm.h"
#include "worker.h"

#define GH_ADM_META_TOKEN "admin_token_hash"
#define GH_ADM_TOKEN_FILE "admin.token"
#define GH_ADM_TOKEN_MAX 512
#define GH_ADM_TOKEN_MIN_ADVISED 16

/* ---- SQLite helpers ---- */

/* Prepares one statement; the log names the SQL, never a bound value. */
int gh_adm_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
        gh_log_error("sqlite3_prepare_v2(%s): %s", sql, sqlite3_errmsg(db));
        *st = NULL;
        return GH_ERR;
    }
    return GH_OK;
}

/* See admin.h. Every row is built, even for a lookup by a unique key (which finds at most one),
 * so a bad row fails the same way whichever form asked for it. */
int gh_adm_collect(sqlite3 *db, sqlite3_stmt *st, gh_adm_row_fn row, void *arg, int single,
                   json_object **out, const char *what)
{
    json_object *data, *o;
    int src, rc = GH_ERR;

    *out = NULL;
    data = json_object_new_array();
    if (data == NULL)
        goto done;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        o = row != NULL ? row(db, st, arg) : gh_adm_row(st);
        if (o == NULL || json_object_array_add(data, o) != 0) {
            json_object_put(o);
            goto done;
        }
    }
    if (src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(SELECT FROM %s): %s", what, sqlite3_errmsg(db));
        goto done;
    }
    if (!single) {
        *out = json_object_new_object();
        if (*out == NULL)
            goto done;
        json_object_object_add(*out, "data", data);
        data = NULL;
    } else if (json_object_array_length(data) > 0) {
        *out = json_object_get(json_object_array_get_idx(data, 0));
    }
    rc = GH_OK;
done:
    json_object_put(data);
    return rc;
}

/* See admin.h. A list loads as an object whenever it succeeds, so only a lookup can 404. */
void gh_adm_answer(gh_adm_ctx_t *c, gh_adm_load_fn load, const char *key, int status,
                   const char *what)
{
    json_object *o = NULL;

    if (load(c->db, key, &o) != GH_OK)
        gh_adm_internal(c->req);
    else if (o == NULL)
        gh_adm_not_found(c->req, what, key);
    else
        gh_adm_reply(c->req, status, o);
}

/* Runs a fixed statement without parameters (transaction control only). */
static int gh_adm_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        gh_log_error("sqlite3_exec(%s): %s", sql, err != NULL ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        return GH_ERR;
    }
    return GH_OK;
}

/* IMMEDIATE takes the write lock up front, so a check made inside the transaction (does the
 * name exist? is the key revoked?) still holds when the write happens. */
int gh_adm_begin(sqlite3 *db)
{
    return gh_adm_exec(db, "BEGIN IMMEDIATE");
}

/* Commits the caller's transaction. */
int gh_adm_commit(sqlite3 *db)
{
    return gh_adm_exec(db, "COMMIT");
}

/* Rolls back after a failure that has been logged (or answered) already. */
void gh_adm_rollback(sqlite3 *db)
{
    if (!sqlite3_get_autocommit(db))
        gh_adm_exec(db, "ROLLBACK");
}

/* An integer assignment; the column name is the caller's constant, borrowed. */
gh_adm_set_t gh_adm_set_int(const char *column, int64_t v)
{
    gh_adm_set_t s = {column, SQLITE_INTEGER, v, 0, NULL};
    return s;
}

/* A REAL assignment. */
gh_adm_set_t gh_adm_set_double(const char *column, double v)
{
    gh_adm_set_t s = {column, SQLITE_FLOAT, 0, v, NULL};
    return s;
}

/* A TEXT assignment; v is borrowed until the statement is bound (copied then), NULL sets NULL. */
gh_adm_set_t gh_adm_set_text(const char *column, const char *v)
{
    gh_adm_set_t s = {column, v != NULL ? SQLITE_TEXT : SQLITE_NULL, 0, 0, v};
    return s;
}

/* A NULL assignment (clears a limit). */
gh_adm_set_t gh_adm_set_null(const char *column)
{
    gh_adm_set_t s = {column, SQLITE_NULL, 0, 0, NULL};
    return s;
}

/* Binds v; text is copied by sqlite (TRANSIENT) since callers' strings are short-lived. */
int gh_adm_bind(sqlite3_stmt *st, int idx, const gh_adm_set_t *v)
{
    int r;

    switch (v->type) {
    case SQLITE_INTEGER:
        r = sqlite3_bind_int64(st, idx, v->i);
        break;
    case SQLITE_FLOAT:
        r = sqlite3_bind_double(st, idx, v->d);
        break;
    case SQLITE_TEXT:
        r = sqlite3_bind_text(st, idx, v->s, -1, SQLITE_TRANSIENT);
        break;
    default:
        r = sqlite3_bind_null(st, idx);
        break;
    }
    if (r != SQLITE_OK) {
        gh_log_error("sqlite3_bind(%d, %s): %s", idx, v->column, sqlite3_errstr(r));
        return GH_ERR;
    }
    return GH_OK;
}

/* Builds the SET list from the caller's constant column names; only values are bound, so the SQL
 * text never contains input. updated_at is always refreshed, even with no other column. */
int gh_adm_update(sqlite3 *db, const char *table, const gh_adm_set_t *where,
                  const gh_adm_set_t *sets, size_t nsets)
{
    sqlite3_stmt *st = NULL;
    char sql[1024];
    size_t used, i;
    int n, changed = -1;

    used = (size_t)snprintf(sql, sizeof(sql), "UPDATE %s SET ", table);
    for (i = 0; i < nsets && used < sizeof(sql); i++)
        used +=
            (size_t)snprintf(sql + used, sizeof(sql) - used, "%s = ?%zu, ", sets[i].column, i + 1);
    if (used < sizeof(sql))
        used += (size_t)snprintf(sql + used, sizeof(sql) - used, "updated_at = %s WHERE %s = ?%zu",
                                 GH_ADM_NOW, where->column, nsets + 1);
    if (used >= sizeof(sql)) {
        gh_log_error("gh_adm_update(%s): %zu columns do not fit the SQL buffer", table, nsets);
        goto done;
    }
    if (gh_adm_prepare(db, sql, &st) != GH_OK)
        goto done;
    for (i = 0; i < nsets; i++)
        if (gh_adm_bind(st, (int)i + 1, &sets[i]) != GH_OK)
            goto done;
    if (gh_adm_bind(st, (int)nsets + 1, where) != GH_OK)
        goto done;
    n = sqlite3_step(st);
    if (n != SQLITE_DONE) {
        gh_log_error("sqlite3_step(UPDATE %s): %s", table, sqlite3_errmsg(db));
        goto done;
    }
    changed = sqlite3_changes(db);
done:
    sqlite3_finalize(st);
    return changed;
}

/* The epoch lives in shared memory; without it (unit tests) there is nobody to tell. */
void gh_adm_changed(void)
{
    if (gh_shm != NULL)
        gh_shm_epoch_bump();
}

/* Answers 405 naming the methods the path accepts. */
void gh_adm_method_not_allowed(gh_adm_ctx_t *c, const char *allow)
{
    char h[96];

    snprintf(h, sizeof(h), "Allow: %s\r\n", allow);
    gh_reply_error(c->req, GH_SHAPE_ANTHROPIC, 405, "invalid_request_error", h,
                   "method %s not allowed on %s (allowed: %s)", c->req->head.method,
                   c->req->head.path, allow);
}

/* ---- the admin token ---- */

/* Stores the token's keyed hash in meta, replacing the previous one. */
static int gh_adm_token_store(sqlite3 *db, const gh_keys_t *keys, const char *token)
{
    char hash[GH_HASH_HEX_LEN + 1];
    sqlite3_stmt *st = NULL;
    int rc = GH_ERR;

    gh_secret_hash_hex(keys, token, strlen(token), hash);
    if (hash[0] == '\0')
        goto done;
    if (gh_adm_prepare(db,
                       "INSERT INTO meta (key, value) VALUES (?1, ?2) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                       &st) != GH_OK)
        goto done;
    if (sqlite3_bind_text(st, 1, GH_ADM_META_TOKEN, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC) != SQLITE_OK) {
        gh_log_error("sqlite3_bind_text(meta %s): %s", GH_ADM_META_TOKEN, sqlite3_errmsg(db));
        goto done;
    }
    if (sqlite3_step(st) != SQLITE_DONE) {
        gh_log_error("sqlite3_step(INSERT INTO meta %s): %s", GH_ADM_META_TOKEN,
                     sqlite3_errmsg(db));
        goto done;
    }
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}

/* Strips white space at both ends in place (a file edited by hand ends with a newline). */
static char *gh_adm_trim(char *s)
{
    size_t len;

    while (isspace((unsigned char)*s))
        s++;
    len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    return s;
}

/* Reads the token file into tok (tok_sz bytes). Returns GH_OK, 1 when the file does not exist, or
 * GH_ERR after logging. */
static int gh_adm_token_read(const char *path, char *tok, size_t tok_sz)
{
    struct stat sb;
    ssize_t n;
    size_t got = 0;
    int fd, rc = GH_ERR;

    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        gh_log_error("open(%s) failed: %s", path, strerror(errno));
        return GH_ERR;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        gh_log_error("%s is not a regular file", path);
        goto done;
    }
    if ((sb.st_mode & 077) != 0)
        gh_log_warn("%s is readable by other users; chmod 600 it", path);
    while (got < tok_sz - 1 && (n = read(fd, tok + got, tok_sz - 1 - got)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            gh_log_error("read(%s) failed: %s", path, strerror(errno));
            goto done;
        }
        got += (size_t)n;
    }
    tok[got] = '\0';
    if (got == tok_sz - 1) {
        gh_log_error("%s is longer than %d bytes", path, GH_ADM_TOKEN_MAX);
        goto done;
    }
    rc = GH_OK;
done:
    close(fd);
    return rc;
}

/* Creates the token file exclusively, so two starts never overwrite each other's token. Returns
 * GH_OK, 1 when the file appeared meanwhile, or GH_ERR after logging. */
static int gh_adm_token_write(const char *path, const char *tok)
{
    size_t len = strlen(tok), off = 0;
    ssize_t n;
    int fd, rc = GH_ERR;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return 1;
        gh_log_error("open(%s, O_CREAT|O_EXCL) failed: %s", path, strerror(errno));
        return GH_ERR;
    }
    while (off <= len) {
        /* the token, then its newline */
        n = off < len ? write(fd, tok + off, len - off) : write(fd, "\n", 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            gh_log_error("write(%s) failed: %s", path, strerror(errno));
            goto done;
        }
        off += (size_t)n;
    }
    if (fchmod(fd, 0600) != 0 || fsync(fd) != 0) {
        gh_log_error("fchmod/fsync(%s) failed: %s", path, strerror(errno));
        goto done;
    }
    rc = GH_OK;
done:
    if (close(fd) != 0 && rc == GH_OK) {
        gh_log_error("close(%s) failed: %s", path, strerror(errno));
        rc = GH_ERR;
    }
    if (rc != GH_OK)
        unlink(path);
    return rc;
}

/* See admin.h. The token itself only ever lives in buf, wiped before returning. */
int gh_admin_token_init(sqlite3 *db, const gh_keys_t *keys, const char *data_dir)
{
    const char *env = getenv("GATEHOUSE_ADMIN_TOKEN");
    char path[1200], buf[GH_ADM_TOKEN_MAX + 1], *tok = buf;
    const char *source = "GATEHOUSE_ADMIN_TOKEN";
    int r, generated = 0, rc = GH_ERR;

    buf[0] = '\0';
    if (db == NULL || keys == NULL || data_dir == NULL) {
        gh_log_error("gh_admin_token_init: invalid arguments");
        goto done;
    }
    snprintf(path, sizeof(path), "%s/%s", data_dir, GH_ADM_TOKEN_FILE);
    if (env != NULL && env[0] != '\0') {
        if (strlen(env) > GH_ADM_TOKEN_MAX) {
            gh_log_error("GATEHOUSE_ADMIN_TOKEN is longer than %d bytes", GH_ADM_TOKEN_MAX);
            goto done;
        }
        snprintf(buf, sizeof(buf), "%s", env);
        tok = gh_adm_trim(buf);
    } else {
        source = path;
        r = gh_adm_token_read(path, buf, sizeof(buf));
        if (r == 1) {
            if (gh_admin_token_generate(buf, sizeof(buf)) != GH_OK)
                goto done;
            r = gh_adm_token_write(path, buf);
            generated = r == GH_OK;
            /* another process created the file between our read and our create: use it */
            if (r == 1)
                r = gh_adm_token_read(path, buf, sizeof(buf));
        }
        if (r != GH_OK)
            goto done;
        tok = gh_adm_trim(buf);
    }
    if (tok[0] == '\0') {
        gh_log_error("the admin token from %s is empty", source);
        goto done;
    }
    if (strncmp(tok, GH_VKEY_PREFIX, strlen(GH_VKEY_PREFIX)) == 0) {
        gh_log_error("the admin token from %s starts with %s, which marks a virtual key; choose "
                     "another",
                     source, GH_VKEY_PREFIX);
        goto done;
    }
    if (strlen(tok) < GH_ADM_TOKEN_MIN_ADVISED)
        gh_log_warn("the admin token from %s is shorter than %d characters", source,
                    GH_ADM_TOKEN_MIN_ADVISED);
    if (gh_adm_token_store(db, keys, tok) != GH_OK)
        goto done;
    if (generated)
        gh_log_info("generated an admin token into %s (mode 0600); read it from there", path);
    else
        gh_log_info("admin token from %s", source);
    rc = GH_OK;
done:
    sodium_memzero(buf, sizeof(buf));
    return rc;
}

/* Answers 401 with the challenge header clients expect. */
static void gh_adm_unauthorized(gh_http_req_t *req, const char *msg)
{
    gh_reply_error(req, GH_SHAPE_ANTHROPIC, 401, "authentication_error",
                   "WWW-Authenticate: Bearer realm=\"gatehouse-admin\"\r\n", "%s", msg);
}

/* Checks "Authorization: Bearer TOKEN" against meta.admin_token_hash, read per request so a
 * restart with a new token takes effect everywhere. Answers 401/500 itself when it fails. */
static int gh_adm_authorized(gh_adm_ctx_t *c)
{
    const gh_header_t *h = gh_http_header(&c->req->head, "authorization");
    char tok[GH_ADM_TOKEN_MAX + 1], mine[GH_HASH_HEX_LEN + 1];
    const char *v, *stored;
    sqlite3_stmt *st = NULL;
    size_t len;
    int src, ok = 0;

    tok[0] = '\0';
    if (h == NULL || h->value_len < 7 || strncasecmp(h->value, "Bearer ", 7) != 0) {
        gh_adm_unauthorized(c->req, "missing admin token: send Authorization: Bearer ADMIN_TOKEN");
        goto done;
    }
    v = h->value + 7;
    len = h->value_len - 7;
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len == 0 || len > GH_ADM_TOKEN_MAX) {
        gh_adm_unauthorized(c->req, "invalid admin token");
        goto done;
    }
    memcpy(tok, v, len);
    tok[len] = '\0';
    if (strncmp(tok, GH_VKEY_PREFIX, strlen(GH_VKEY_PREFIX)) == 0) {
        gh_adm_unauthorized(c->req, "a virtual key is not an admin token");
        goto done;
    }
    if (gh_adm_prepare(c->db, "SELECT value FROM meta WHERE key = ?1", &st) != GH_OK ||
        sqlite3_bind_text(st, 1, GH_ADM_META_TOKEN, -1, SQLITE_STATIC) != SQLITE_OK) {
        gh_adm_internal(c->req);
        goto done;
    }
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) {
        if (src == SQLITE_DONE)
            gh_log_error("meta.%s is missing: gh_admin_token_init did not run", GH_ADM_META_TOKEN);
        else
            gh_log_error("sqlite3_step(SELECT meta %s): %s", GH_ADM_META_TOKEN,
                         sqlite3_errmsg(c->db));
        gh_adm_internal(c->req);
        goto done;
    }
    stored = (const char *)sqlite3_column_text(st, 0);
    gh_secret_hash_hex(c->keys, tok, len, mine);
    ok = stored != NULL && mine[0] != '\0' &&
         gh_ct_equal(mine, GH_HASH_HEX_LEN, stored, (size_t)sqlite3_column_bytes(st, 0));
    if (!ok)
        gh_adm_unauthorized(c->req, "invalid admin token");
done:
    sqlite3_finalize(st);
    sodium_memzero(tok, sizeof(tok));
    return ok;
}

/* ---- routing ---- */

/* Splits path (a private copy, owned by the caller) into decoded segments. A trailing slash is
 * ignored; an empty segment elsewhere makes the path unknown. */
static int gh_adm_split(char *path, gh_adm_ctx_t *c)
{
    char *p = path, *slash;

    c->nseg = 0;
    if (*p == '/')
        p++;
    while (*p != '\0') {
        if (c->nseg == GH_ADM_MAX_SEGS)
            return GH_ERR;
        slash = strchr(p, '/');
        if (slash != NULL)
            *slash = '\0';
        if (*p == '\0' || gh_adm_url_decode(p) != GH_OK)
            return GH_ERR;
        c->seg[c->nseg++] = p;
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    return GH_OK;
}

/* See admin.h: probes first (no token), then the token, then the resource handlers. */
void gh_admin_handle(gh_http_req_t *req)
{
    const char *path = req->head.path;
    gh_adm_ctx_t c;
    char *copy = NULL;

    memset(&c, 0, sizeof(c));
    c.req = req;
    c.method = strcmp(req->head.method, "HEAD") == 0 ? "GET" : req->head.method;
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/") == 0) {
        if (strcmp(c.method, "GET") != 0)
            gh_adm_method_not_allowed(&c, "GET, HEAD");
        else
            gh_reply_json(req, 200, "{\"status\":\"ok\"}", 15);
        goto done;
    }
    if (gh_worker == NULL || gh_worker->db == NULL) {
        gh_log_error("admin request outside a worker (no database connection)");
        gh_adm_internal(req);
        goto done;
    }
    c.db = gh_worker->db;
    c.keys = &gh_worker->keys;
    if (!gh_adm_authorized(&c))
        goto done;
    copy = strdup(path);
    if (copy == NULL) {
        gh_log_error("strdup(admin path) failed");
        gh_adm_internal(req);
        goto done;
    }
    if (gh_adm_split(copy, &c) != GH_OK) {
        gh_adm_error(req, 404, "not_found_error", "no route for %s %s", req->head.method, path);
        goto done;
    }
    if (c.nseg == 1 && strcmp(c.seg[0], "metrics") == 0)
        gh_adm_metrics(&c);
    else if (c.nseg >= 2 && strcmp(c.seg[0], "admin") == 0 && strcmp(c.seg[1], "providers") == 0)
        gh_adm_providers(&c);
    else if (c.nseg >= 2 && strcmp(c.seg[0], "admin") == 0 && strcmp(c.seg[1], "keys") == 0)
        gh_adm_keys(&c);
    else if (c.nseg >= 2 && strcmp(c.seg[0], "admin") == 0 && strcmp(c.seg[1], "usage") == 0)
        gh_adm_usage(&c);
    else if (c.nseg >= 2 && strcmp(c.seg[0], "admin") == 0 && strcmp(c.seg[1], "prices") == 0)
        gh_adm_prices(&c);
    else if (c.nseg >= 2 && strcmp(c.seg[0], "admin") == 0 && strcmp(c.seg[1], "routes") == 0)
        gh_adm_routes(&c);
    else
        gh_adm_error(req, 404, "not_found_error", "no route for %s %s", req->head.method, path);
done:
    free(copy);
}
