/* store.c: the SQLite database: opening, migrations, the master-key binding and the providers. */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>
#include <sqlite3.h>

#include "crypto.h"
#include "gh.h"
#include "log.h"
#include "store.h"
#include "usage.h"

#define GH_META_MASTER_KEY_CHECK "master_key_check"
#define GH_BUSY_TIMEOUT_MS 5000

/* Runs one or more fixed SQL statements (no parameters) with sqlite3_exec; what names them in the
 * error message. */
static int gh_exec(sqlite3 *db, const char *sql, const char *what)
{
    char *err = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        gh_log_error("sqlite3_exec(%s): %s", what, err != NULL ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        return GH_ERR;
    }
    return GH_OK;
}

/* Prepares sql into *st; logs and returns GH_ERR on failure. The caller finalizes *st. */
static int gh_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
        gh_log_error("sqlite3_prepare_v2(%s): %s", sql, sqlite3_errmsg(db));
        *st = NULL;
        return GH_ERR;
    }
    return GH_OK;
}

/* Rolls back the open transaction, if any, after a failure; the original error is already logged,
 * so this only adds to the log when the rollback itself fails. */
static void gh_rollback(sqlite3 *db)
{
    if (!sqlite3_get_autocommit(db))
        gh_exec(db, "ROLLBACK", "ROLLBACK");
}

/* Opens the database and sets the connection's PRAGMAs. On success the caller owns *out and closes
 * it with gh_store_close; on failure nothing is left open. */
int gh_store_open(const char *path, sqlite3 **out)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    const char *file, *mode;
    int rc = GH_ERR, src;

    if (out == NULL || path == NULL) {
        gh_log_error("gh_store_open: invalid arguments");
        goto done;
    }
    *out = NULL;
    /* NOMUTEX: every process and thread opens its own connection, none is shared. */
    src = sqlite3_open_v2(path, &db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        gh_log_error("sqlite3_open_v2(%s): %s", path,
                     db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(src));
        goto done;
    }
    /* Before journal_mode, because switching to WAL needs a lock another process may hold. */
    if (sqlite3_busy_timeout(db, GH_BUSY_TIMEOUT_MS) != SQLITE_OK) {
        gh_log_error("sqlite3_busy_timeout(%s): %s", path, sqlite3_errmsg(db));
        goto done;
    }
    if (gh_prepare(db, "PRAGMA journal_mode=WAL", &st) != GH_OK)
        goto done;
    if (sqlite3_step(st) != SQLITE_ROW) {
        gh_log_error("sqlite3_step(PRAGMA journal_mode=WAL) on %s: %s", path, sqlite3_errmsg(db));
        goto done;
    }
    /* SQLite answers with the mode in force and does not fail when it cannot switch (e.g. on a
     * file system without shared memory), so the answer has to be checked. In-memory and
     * temporary databases (no file name) have no WAL and answer "memory". */
    mode = (const char *)sqlite3_column_text(st, 0);
    file = sqlite3_db_filename(db, "main");
    if (file != NULL && file[0] != '\0' && (mode == NULL || strcasecmp(mode, "wal") != 0)) {
        gh_log_error("PRAGMA journal_mode=WAL on %s left journal_mode=%s; gatehouse needs WAL "
                     "(is the data directory on a network file system?)",
                     path, mode != NULL ? mode : "(null)");
        goto done;
    }
    sqlite3_finalize(st);
    st = NULL;
    /* NORMAL is durable across application crashes in WAL mode and avoids an fsync per commit. */
    if (gh_exec(db, "PRAGMA synchronous=NORMAL", "PRAGMA synchronous=NORMAL") != GH_OK)
        goto done;
    if (gh_exec(db, "PRAGMA foreign_keys=ON", "PRAGMA foreign_keys=ON") != GH_OK)
        goto done;
    *out = db;
    db = NULL;
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    if (db != NULL)
        sqlite3_close(db);
    return rc;
}

/* Closes db; sqlite3_close_v2 defers the close if a statement was left unfinalized, which is a bug
 * worth a log line but not a reason to leak the connection. */
void gh_store_close(sqlite3 *db)
{
    if (db == NULL)
        return;
    if (sqlite3_close_v2(db) != SQLITE_OK)
        gh_log_error("sqlite3_close_v2: %s", sqlite3_errmsg(db));
}

/* Reads PRAGMA user_version, the number of the last migration applied. */
int gh_store_version(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int v = -1;

    if (db == NULL) {
        gh_log_error("gh_store_version: db is NULL");
        goto done;
    }
    if (gh_prepare(db, "PRAGMA user_version", &st) != GH_OK)
        goto done;
    if (sqlite3_step(st) != SQLITE_ROW) {
        gh_log_error("sqlite3_step(PRAGMA user_version): %s", sqlite3_errmsg(db));
        goto done;
    }
    v = sqlite3_column_int(st, 0);
done:
    sqlite3_finalize(st);
    return v;
}

/* Applies one migration, with its user_version bump, in a single IMMEDIATE transaction so that a
 * crash or an error leaves the database at the previous version. The version is read again under
 * the write lock in case another process applied the migration meanwhile. */
static int gh_store_apply(sqlite3 *db, const gh_migration_t *m)
{
    char sql[64];
    int v, rc = GH_ERR;

    if (gh_exec(db, "BEGIN IMMEDIATE", "BEGIN IMMEDIATE") != GH_OK)
        goto done;
    v = gh_store_version(db);
    if (v < 0)
        goto done;
    if (v >= m->version) {
        rc = gh_exec(db, "COMMIT", "COMMIT");
        goto done;
    }
    if (gh_exec(db, m->sql, m->name) != GH_OK)
        goto done;
    /* PRAGMA takes no bound parameters; the value is an int, so formatting it is safe. */
    snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", m->version);
    if (gh_exec(db, sql, sql) != GH_OK)
        goto done;
    if (gh_exec(db, "COMMIT", "COMMIT") != GH_OK)
        goto done;
    gh_log_info("applied migration %s", m->name);
    rc = GH_OK;
done:
    if (rc != GH_OK)
        gh_rollback(db);
    return rc;
}

/* Brings db up to the newest embedded migration (or to upto when it is above 0). */
int gh_store_migrate(sqlite3 *db, int upto)
{
    int i, cur, highest = 0, target, rc = GH_ERR;

    if (db == NULL || upto < 0) {
        gh_log_error("gh_store_migrate: invalid arguments (upto=%d)", upto);
        goto done;
    }
    /* The table is generated from file names; duplicates or disorder would apply them wrongly. */
    for (i = 0; i < gh_migrations_count; i++) {
        if (gh_migrations[i].version <= highest || gh_migrations[i].sql == NULL) {
            gh_log_error("embedded migration %s is out of order or empty",
                         gh_migrations[i].name != NULL ? gh_migrations[i].name : "(null)");
            goto done;
        }
        highest = gh_migrations[i].version;
    }
    cur = gh_store_version(db);
    if (cur < 0)
        goto done;
    if (cur > highest) {
        gh_log_error("the database is at schema version %d but this gatehouse knows only up to %d; "
                     "refusing to use it (run the newer gatehouse, or restore a backup)",
                     cur, highest);
        goto done;
    }
    target = (upto == 0 || upto > highest) ? highest : upto;
    for (i = 0; i < gh_migrations_count; i++) {
        if (gh_migrations[i].version <= cur || gh_migrations[i].version > target)
            continue;
        if (gh_store_apply(db, &gh_migrations[i]) != GH_OK) {
            gh_log_error("migration %s failed; the database stays at version %d",
                         gh_migrations[i].name, gh_store_version(db));
            goto done;
        }
    }
    rc = GH_OK;
done:
    return rc;
}

/* Sets *found to whether any provider key (an encrypted row) exists. */
static int gh_store_has_sealed_rows(sqlite3 *db, int *found)
{
    sqlite3_stmt *st = NULL;
    int rc = GH_ERR;

    /* virtual keys count too: their hashes are keyed with a subkey of the master key, so a new
     * key would silently lock every client out */
    if (gh_prepare(db,
                   "SELECT EXISTS (SELECT 1 FROM provider_keys) OR EXISTS (SELECT 1 FROM "
                   "sqlite_master WHERE name = 'virtual_keys' AND type = 'table' AND EXISTS "
                   "(SELECT 1 FROM virtual_keys))",
                   &st) != GH_OK)
        goto done;
    if (sqlite3_step(st) != SQLITE_ROW) {
        gh_log_error("sqlite3_step(SELECT EXISTS provider_keys): %s", sqlite3_errmsg(db));
        goto done;
    }
    *found = sqlite3_column_int(st, 0);
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}

/* Tries to decrypt the oldest provider key with keys; GH_OK only when it opens. */
static int gh_store_try_open_one(sqlite3 *db, const gh_keys_t *keys)
{
    sqlite3_stmt *st = NULL;
    const void *blob;
    char *plain = NULL;
    size_t plen = 0;
    int src, rc = GH_ERR;

    if (gh_prepare(db, "SELECT key_sealed FROM provider_keys ORDER BY id LIMIT 1", &st) != GH_OK)
        goto done;
    src = sqlite3_step(st);
    if (src != SQLITE_ROW) {
        gh_log_error("sqlite3_step(SELECT key_sealed FROM provider_keys): %s",
                     src == SQLITE_DONE ? "no rows" : sqlite3_errmsg(db));
        goto done;
    }
    blob = sqlite3_column_blob(st, 0);
    if (blob == NULL) {
        gh_log_error("provider_keys.key_sealed is empty");
        goto done;
    }
    if (gh_secret_open(keys, blob, (size_t)sqlite3_column_bytes(st, 0), &plain, &plen) != GH_OK)
        goto done;
    rc = GH_OK;
done:
    if (plain != NULL) {
        sodium_memzero(plain, plen);
        free(plain);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Binds keys to db through meta.master_key_check, all under one write lock so two processes
 * starting together agree. A mismatch with no encrypted rows rebinds: nothing could be lost. */
int gh_store_check_keys(sqlite3 *db, const gh_keys_t *keys)
{
    char want[GH_HASH_HEX_LEN + 1];
    sqlite3_stmt *st = NULL;
    const char *have;
    int src, found = 0, matches = 0, sealed = 0, rc = GH_ERR;

    if (db == NULL || keys == NULL) {
        gh_log_error("gh_store_check_keys: invalid arguments");
        goto done;
    }
    sodium_bin2hex(want, sizeof(want), keys->check, sizeof(keys->check));
    if (gh_exec(db, "BEGIN IMMEDIATE", "BEGIN IMMEDIATE") != GH_OK)
        goto done;
    if (gh_prepare(db, "SELECT value FROM meta WHERE key = ?1", &st) != GH_OK)
        goto done;
    if (sqlite3_bind_text(st, 1, GH_META_MASTER_KEY_CHECK, -1, SQLITE_STATIC) != SQLITE_OK) {
        gh_log_error("sqlite3_bind_text(meta.key): %s", sqlite3_errmsg(db));
        goto done;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        found = 1;
        have = (const char *)sqlite3_column_text(st, 0);
        matches = have != NULL && gh_ct_equal(have, strlen(have), want, GH_HASH_HEX_LEN);
    } else if (src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(SELECT value FROM meta): %s", sqlite3_errmsg(db));
        goto done;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (matches) {
        rc = gh_exec(db, "COMMIT", "COMMIT");
        goto done;
    }
    if (gh_store_has_sealed_rows(db, &sealed) != GH_OK)
        goto done;
    if (found && sealed) {
        gh_log_error("the master key does not match the one this database's provider keys were "
                     "encrypted with: set GATEHOUSE_MASTER_KEY to the original key, or restore "
                     "the original master.key in the data directory");
        goto done;
    }
    if (found) {
        gh_log_warn("the master key changed; no encrypted rows exist, so the database is now bound "
                    "to the new key");
    } else if (sealed && gh_store_try_open_one(db, keys) != GH_OK) {
        /* A database from before the check existed, or whose meta row was lost. */
        gh_log_error("the database has no master key fingerprint and its provider keys do not "
                     "decrypt with this master key: set GATEHOUSE_MASTER_KEY to the original key, "
                     "or restore the original master.key in the data directory");
        goto done;
    }
    if (gh_prepare(db,
                   "INSERT INTO meta (key, value) VALUES (?1, ?2) "
                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                   &st) != GH_OK)
        goto done;
    if (sqlite3_bind_text(st, 1, GH_META_MASTER_KEY_CHECK, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, want, -1, SQLITE_STATIC) != SQLITE_OK) {
        gh_log_error("sqlite3_bind_text(meta): %s", sqlite3_errmsg(db));
        goto done;
    }
    if (sqlite3_step(st) != SQLITE_DONE) {
        gh_log_error("sqlite3_step(INSERT INTO meta): %s", sqlite3_errmsg(db));
        goto done;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (gh_exec(db, "COMMIT", "COMMIT") != GH_OK)
        goto done;
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    if (rc != GH_OK && db != NULL)
        gh_rollback(db);
    return rc;
}

/* Returns whether name is a non-empty run of [A-Za-z0-9_.-], safe in URLs and "provider/model". */
static int gh_provider_name_ok(const char *name)
{
    const char *p;

    if (name == NULL || name[0] == '\0')
        return 0;
    for (p = name; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || *p == '-'))
            return 0;
    }
    return 1;
}

/* Returns whether s has a control character, space or DEL: such bytes in a URL or in an API key
 * would end up in an HTTP request line or header (header injection). */
static int gh_has_ctl(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s == 0x7f)
            return 1;
    }
    return 0;
}

/* Validates base_url and returns a malloc'd copy without trailing slashes (caller frees), or NULL
 * after logging why it was refused. */
static char *gh_base_url_normalize(const char *base_url)
{
    size_t skip, len;
    char *url;

    if (base_url == NULL) {
        gh_log_error("provider base_url is missing");
        return NULL;
    }
    if (strncasecmp(base_url, "http://", 7) == 0) {
        skip = 7;
    } else if (strncasecmp(base_url, "https://", 8) == 0) {
        skip = 8;
    } else {
        gh_log_error("provider base_url must start with http:// or https://");
        return NULL;
    }
    if (gh_has_ctl(base_url)) {
        gh_log_error("provider base_url contains spaces or control characters");
        return NULL;
    }
    url = strdup(base_url);
    if (url == NULL) {
        gh_log_error("strdup(base_url) failed");
        return NULL;
    }
    len = strlen(url);
    while (len > skip && url[len - 1] == '/')
        url[--len] = '\0';
    if (len == skip || url[skip] == '/') {
        gh_log_error("provider base_url has no host");
        free(url);
        return NULL;
    }
    return url;
}

/* Inserts the provider and its keys in one transaction; the keys are sealed before the transaction
 * starts so that the write lock is not held during crypto. Nothing here keeps the plaintexts. */
int gh_store_provider_create(sqlite3 *db, const gh_keys_t *keys, const char *name,
                             const char *base_url, int timeout_ms, const char *const *secrets,
                             const int *weights, size_t nkeys, int64_t *id_out)
{
    sqlite3_stmt *st = NULL;
    unsigned char **sealed = NULL;
    size_t *sealed_len = NULL;
    char *url = NULL, last4[5];
    int64_t id;
    size_t i;
    int src, rc = GH_ERR;

    if (db == NULL || keys == NULL) {
        gh_log_error("gh_store_provider_create: invalid arguments");
        goto done;
    }
    if (!gh_provider_name_ok(name)) {
        gh_log_error("provider name must be non-empty and only letters, digits, '_', '.' or '-'");
        goto done;
    }
    url = gh_base_url_normalize(base_url);
    if (url == NULL)
        goto done;
    if (timeout_ms == 0)
        timeout_ms = GH_DEFAULT_UPSTREAM_TIMEOUT_MS;
    if (timeout_ms < 0) {
        gh_log_error("provider %s: timeout_ms must be positive", name);
        goto done;
    }
    if (nkeys == 0 || secrets == NULL) {
        gh_log_error("provider %s: at least one API key is required", name);
        goto done;
    }
    sealed = calloc(nkeys, sizeof(*sealed));
    sealed_len = calloc(nkeys, sizeof(*sealed_len));
    if (sealed == NULL || sealed_len == NULL) {
        gh_log_error("calloc(%zu) for sealed provider keys failed", nkeys);
        goto done;
    }
    for (i = 0; i < nkeys; i++) {
        if (secrets[i] == NULL || secrets[i][0] == '\0' || gh_has_ctl(secrets[i])) {
            gh_log_error("provider %s: API key %zu is empty or has spaces or control characters",
                         name, i + 1);
            goto done;
        }
        if (weights != NULL && weights[i] < 1) {
            gh_log_error("provider %s: API key %zu has weight %d; weights must be >= 1", name,
                         i + 1, weights[i]);
            goto done;
        }
        if (gh_secret_seal(keys, secrets[i], strlen(secrets[i]), &sealed[i], &sealed_len[i]) !=
            GH_OK)
            goto done;
        /* sqlite3_bind_blob takes an int length. */
        if (sealed_len[i] > INT_MAX) {
            gh_log_error("provider %s: API key %zu is too long", name, i + 1);
            goto done;
        }
    }
    if (gh_exec(db, "BEGIN IMMEDIATE", "BEGIN IMMEDIATE") != GH_OK)
        goto done;
    if (gh_prepare(db, "INSERT INTO providers (name, base_url, timeout_ms) VALUES (?1, ?2, ?3)",
                   &st) != GH_OK)
        goto done;
    if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, url, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_int(st, 3, timeout_ms) != SQLITE_OK) {
        gh_log_error("sqlite3_bind(INSERT INTO providers): %s", sqlite3_errmsg(db));
        goto done;
    }
    src = sqlite3_step(st);
    if (src != SQLITE_DONE) {
        if (sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_UNIQUE)
            gh_log_error("provider %s already exists", name);
        else
            gh_log_error("sqlite3_step(INSERT INTO providers): %s", sqlite3_errmsg(db));
        goto done;
    }
    id = sqlite3_last_insert_rowid(db);
    sqlite3_finalize(st);
    st = NULL;
    if (gh_prepare(db,
                   "INSERT INTO provider_keys (provider_id, key_sealed, key_last4, weight) "
                   "VALUES (?1, ?2, ?3, ?4)",
                   &st) != GH_OK)
        goto done;
    for (i = 0; i < nkeys; i++) {
        gh_secret_last4(secrets[i], last4);
        if (sqlite3_reset(st) != SQLITE_OK || sqlite3_clear_bindings(st) != SQLITE_OK ||
            sqlite3_bind_int64(st, 1, id) != SQLITE_OK ||
            sqlite3_bind_blob(st, 2, sealed[i], (int)sealed_len[i], SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 3, last4, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
            sqlite3_bind_int(st, 4, weights != NULL ? weights[i] : 1) != SQLITE_OK) {
            gh_log_error("sqlite3_bind(INSERT INTO provider_keys): %s", sqlite3_errmsg(db));
            goto done;
        }
        if (sqlite3_step(st) != SQLITE_DONE) {
            gh_log_error("sqlite3_step(INSERT INTO provider_keys): %s", sqlite3_errmsg(db));
            goto done;
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    if (gh_exec(db, "COMMIT", "COMMIT") != GH_OK)
        goto done;
    if (id_out != NULL)
        *id_out = id;
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    if (rc != GH_OK && db != NULL)
        gh_rollback(db);
    if (sealed != NULL) {
        for (i = 0; i < nkeys; i++)
            free(sealed[i]);
    }
    free(sealed);
    free(sealed_len);
    free(url);
    return rc;
}

/* Creates provider "anthropic" from the environment on an empty database; see store.h. */
int gh_store_bootstrap(sqlite3 *db, const gh_keys_t *keys)
{
    const char *secret = getenv("ANTHROPIC_API_KEY");
    const char *base = getenv("ANTHROPIC_BASE_URL");
    const char *const secrets[1] = {secret};
    sqlite3_stmt *st = NULL;
    int any = 0, rc = GH_ERR;

    if (db == NULL || keys == NULL) {
        gh_log_error("gh_store_bootstrap: invalid arguments");
        goto done;
    }
    if (secret == NULL || secret[0] == '\0') {
        rc = GH_OK;
        goto done;
    }
    if (gh_prepare(db, "SELECT EXISTS (SELECT 1 FROM providers)", &st) != GH_OK)
        goto done;
    if (sqlite3_step(st) != SQLITE_ROW) {
        gh_log_error("sqlite3_step(SELECT EXISTS providers): %s", sqlite3_errmsg(db));
        goto done;
    }
    any = sqlite3_column_int(st, 0);
    if (any) {
        /* Once providers exist they are managed through the admin API, not the environment. */
        rc = GH_OK;
        goto done;
    }
    if (base == NULL || base[0] == '\0')
        base = GH_DEFAULT_BASE_URL;
    if (gh_store_provider_create(db, keys, "anthropic", base, GH_DEFAULT_UPSTREAM_TIMEOUT_MS,
                                 secrets, NULL, 1, NULL) != GH_OK) {
        gh_log_error("could not create provider anthropic from ANTHROPIC_API_KEY");
        goto done;
    }
    /* The URL is not logged: some proxies carry credentials in it. */
    gh_log_info("created provider anthropic from ANTHROPIC_API_KEY");
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}

/* Fills p->keys from provider_keys with st (prepared by the caller, bound and reset here),
 * decrypting each key. On failure the keys loaded so far stay in p for the caller to free. */
static int gh_store_load_keys(sqlite3 *db, sqlite3_stmt *st, const gh_keys_t *keys,
                              gh_provider_t *p)
{
    gh_provider_key_t *k, *grown;
    const unsigned char *last4;
    const void *blob;
    size_t cap = 0;
    int src, rc = GH_ERR;

    if (sqlite3_reset(st) != SQLITE_OK || sqlite3_bind_int64(st, 1, p->id) != SQLITE_OK) {
        gh_log_error("sqlite3_bind_int64(provider_keys.provider_id): %s", sqlite3_errmsg(db));
        goto done;
    }
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (p->nkeys == cap) {
            cap = cap != 0 ? cap * 2 : 4;
            grown = realloc(p->keys, cap * sizeof(*grown));
            if (grown == NULL) {
                gh_log_error("realloc for the keys of provider %s failed", p->name);
                goto done;
            }
            p->keys = grown;
        }
        k = &p->keys[p->nkeys];
        memset(k, 0, sizeof(*k));
        p->nkeys++;
        k->id = sqlite3_column_int64(st, 0);
        blob = sqlite3_column_blob(st, 1);
        if (blob == NULL || gh_secret_open(keys, blob, (size_t)sqlite3_column_bytes(st, 1),
                                           &k->secret, NULL) != GH_OK) {
            gh_log_error("provider %s: key %lld does not decrypt (wrong master key or a tampered "
                         "row)",
                         p->name, (long long)k->id);
            goto done;
        }
        last4 = sqlite3_column_text(st, 2);
        if (last4 != NULL)
            snprintf(k->last4, sizeof(k->last4), "%s", (const char *)last4);
        k->weight = sqlite3_column_int(st, 3);
    }
    if (src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(SELECT FROM provider_keys): %s", sqlite3_errmsg(db));
        goto done;
    }
    rc = GH_OK;
done:
    return rc;
}

/* Splits a comma-separated list (NULL or "" = empty) into a malloc'd array of trimmed strings. */
static int gh_store_split_list(const char *s, char ***out, size_t *n)
{
    char **list = NULL, **grown;
    size_t count = 0;

    *out = NULL;
    *n = 0;
    while (s != NULL && *s != '\0') {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        const char *a = s;
        while (len > 0 && (*a == ' ' || *a == '\t'))
            a++, len--;
        while (len > 0 && (a[len - 1] == ' ' || a[len - 1] == '\t'))
            len--;
        if (len > 0) {
            grown = realloc(list, (count + 1) * sizeof(*grown));
            if (grown == NULL || (grown[count] = strndup(a, len)) == NULL) {
                gh_log_error("realloc/strndup for a provider's beta list failed");
                list = grown != NULL ? grown : list;
                while (count > 0)
                    free(list[--count]);
                free(list);
                return GH_ERR;
            }
            list = grown;
            count++;
        }
        s = comma ? comma + 1 : s + strlen(s);
    }
    *out = list;
    *n = count;
    return GH_OK;
}

/* Reads every provider and its decrypted keys in one read transaction, so a concurrent admin change
 * is seen whole or not at all. The caller owns *out and frees it with gh_store_providers_free. */
int gh_store_providers_load(sqlite3 *db, const gh_keys_t *keys, gh_provider_t **out, size_t *n)
{
    sqlite3_stmt *st = NULL, *kst = NULL;
    gh_provider_t *list = NULL, *grown, *p;
    const unsigned char *name, *url;
    size_t count = 0, cap = 0;
    int src, rc = GH_ERR;

    if (db == NULL || keys == NULL || out == NULL || n == NULL) {
        gh_log_error("gh_store_providers_load: invalid arguments");
        goto done;
    }
    *out = NULL;
    *n = 0;
    if (gh_exec(db, "BEGIN", "BEGIN") != GH_OK)
        goto done;
    if (gh_prepare(db,
                   "SELECT id, name, base_url, timeout_ms, rpm_limit, itpm_limit, otpm_limit, "
                   "max_retries, backoff_initial_ms, backoff_max_ms, beta_add, beta_strip "
                   "FROM providers ORDER BY id",
                   &st) != GH_OK ||
        gh_prepare(db,
                   "SELECT id, key_sealed, key_last4, weight FROM provider_keys "
                   "WHERE provider_id = ?1 ORDER BY id",
                   &kst) != GH_OK)
        goto done;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap != 0 ? cap * 2 : 4;
            grown = realloc(list, cap * sizeof(*grown));
            if (grown == NULL) {
                gh_log_error("realloc for %zu providers failed", cap);
                goto done;
            }
            list = grown;
        }
        /* Counted before it is filled so that the cleanup frees a half-loaded provider too. */
        p = &list[count++];
        memset(p, 0, sizeof(*p));
        p->id = sqlite3_column_int64(st, 0);
        name = sqlite3_column_text(st, 1);
        url = sqlite3_column_text(st, 2);
        p->name = strdup(name != NULL ? (const char *)name : "");
        p->base_url = strdup(url != NULL ? (const char *)url : "");
        if (p->name == NULL || p->base_url == NULL) {
            gh_log_error("strdup for provider %lld failed", (long long)p->id);
            goto done;
        }
        p->timeout_ms = sqlite3_column_int(st, 3);
        p->rpm_limit = sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 4);
        p->itpm_limit =
            sqlite3_column_type(st, 5) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 5);
        p->otpm_limit =
            sqlite3_column_type(st, 6) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 6);
        p->max_retries = sqlite3_column_int(st, 7);
        p->backoff_initial_ms = sqlite3_column_int(st, 8);
        p->backoff_max_ms = sqlite3_column_int(st, 9);
        if (gh_store_split_list((const char *)sqlite3_column_text(st, 10), &p->beta_add,
                                &p->nbeta_add) != GH_OK ||
            gh_store_split_list((const char *)sqlite3_column_text(st, 11), &p->beta_strip,
                                &p->nbeta_strip) != GH_OK)
            goto done;
        if (gh_store_load_keys(db, kst, keys, p) != GH_OK)
            goto done;
    }
    if (src != SQLITE_DONE) {
        gh_log_error("sqlite3_step(SELECT FROM providers): %s", sqlite3_errmsg(db));
        goto done;
    }
    sqlite3_finalize(st);
    sqlite3_finalize(kst);
    st = kst = NULL;
    if (gh_exec(db, "COMMIT", "COMMIT") != GH_OK)
        goto done;
    *out = list;
    *n = count;
    list = NULL;
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    sqlite3_finalize(kst);
    if (rc != GH_OK && db != NULL)
        gh_rollback(db);
    gh_store_providers_free(list, count);
    return rc;
}

/* Frees the providers array, wiping every decrypted key before its memory is released. */
void gh_store_providers_free(gh_provider_t *providers, size_t n)
{
    size_t i, j;
    char *s;

    if (providers == NULL)
        return;
    for (i = 0; i < n; i++) {
        for (j = 0; j < providers[i].nkeys; j++) {
            s = providers[i].keys[j].secret;
            if (s != NULL) {
                sodium_memzero(s, strlen(s));
                free(s);
            }
        }
        free(providers[i].keys);
        for (j = 0; j < providers[i].nbeta_add; j++)
            free(providers[i].beta_add[j]);
        free(providers[i].beta_add);
        for (j = 0; j < providers[i].nbeta_strip; j++)
            free(providers[i].beta_strip[j]);
        free(providers[i].beta_strip);
        free(providers[i].name);
        free(providers[i].base_url);
    }
    free(providers);
}

/* See store.h. */
int gh_store_key_spend(sqlite3 *db, const char *key_id, int64_t since_ms, double *out)
{
    static const char sql[] =
        "SELECT coalesce(sum(cost_usd), 0) FROM usage_log WHERE key_id = ?1 AND started_at >= ?2";
    sqlite3_stmt *st = NULL;
    char since[64];
    int rc = GH_ERR;

    *out = 0.0;
    gh_usage_iso(since_ms, since, sizeof(since));
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        gh_log_error("sqlite3_prepare_v2(key spend) failed: %s", sqlite3_errmsg(db));
        goto done;
    }
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, since, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        gh_log_error("sqlite3_step(key spend) failed: %s", sqlite3_errmsg(db));
        goto done;
    }
    *out = sqlite3_column_double(st, 0);
    rc = GH_OK;
done:
    sqlite3_finalize(st);
    return rc;
}
