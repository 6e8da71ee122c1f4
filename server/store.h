/* store.h: the SQLite database: opening in WAL mode, embedded migrations, and the provider rows
 * every worker loads after fork. */
#ifndef GH_STORE_H
#define GH_STORE_H

#include <sqlite3.h>
#include <stdint.h>

#include "crypto.h"

/* One embedded migration (generated from migrations/NNNN_name.sql by
 * scripts/embed-migrations.sh). */
typedef struct {
    int version;
    const char *name;
    const char *sql;
} gh_migration_t;

extern const gh_migration_t gh_migrations[];
extern const int gh_migrations_count;

typedef struct {
    int64_t id;
    char *secret; /* decrypted provider key; only the upstream request ever sees it */
    char last4[5];
    int weight;
} gh_provider_key_t;

typedef struct {
    int64_t id;
    char *name;
    char *base_url; /* without a trailing slash */
    int timeout_ms;
    int64_t rpm_limit; /* -1 = unlimited, for the three limits */
    int64_t itpm_limit;
    int64_t otpm_limit;
    int max_retries; /* back-off retries on 5xx/529/timeouts before the next target */
    int backoff_initial_ms;
    int backoff_max_ms;
    char **beta_add; /* anthropic-beta values always sent to this provider */
    size_t nbeta_add;
    char **beta_strip; /* anthropic-beta values never sent to it */
    size_t nbeta_strip;
    gh_provider_key_t *keys;
    size_t nkeys;
} gh_provider_t;

/* Opens (creating when needed) the database at path with journal_mode=WAL, synchronous=NORMAL,
 * foreign_keys=ON and a busy timeout; path may be ":memory:". Returns GH_OK and *out, or GH_ERR
 * after logging sqlite's message. */
int gh_store_open(const char *path, sqlite3 **out);

/* Closes db (NULL is fine). */
void gh_store_close(sqlite3 *db);

/* Applies, in order and each in its own transaction, every embedded migration whose version is
 * above PRAGMA user_version, then sets user_version. A database newer than this binary is
 * refused. upto limits the level reached (0 = all), which tests use to check upgrades. */
int gh_store_migrate(sqlite3 *db, int upto);

/* Returns PRAGMA user_version, or -1 on error. */
int gh_store_version(sqlite3 *db);

/* Binds the master key to the database: on first use stores keys->check in table meta; later
 * compares it in constant time. A mismatch while encrypted rows exist → GH_ERR with a message
 * naming GATEHOUSE_MASTER_KEY / master.key (never the key). */
int gh_store_check_keys(sqlite3 *db, const gh_keys_t *keys);

/* On a database with no providers and ANTHROPIC_API_KEY set in the environment, creates
 * provider "anthropic" with base URL ANTHROPIC_BASE_URL (else GH_DEFAULT_BASE_URL) holding that
 * key encrypted. Otherwise does nothing. */
int gh_store_bootstrap(sqlite3 *db, const gh_keys_t *keys);

/* What virtual key key_id has spent (USD, usage_log.cost_usd) in requests started at or after
 * since_ms, into *out (0 when it has no rows). One indexed range query (key_id, started_at). */
int gh_store_key_spend(sqlite3 *db, const char *key_id, int64_t since_ms, double *out);

/* Creates a provider with one or more keys (weights >= 1). Returns its id in *id_out. */
int gh_store_provider_create(sqlite3 *db, const gh_keys_t *keys, const char *name,
                             const char *base_url, int timeout_ms, const char *const *secrets,
                             const int *weights, size_t nkeys, int64_t *id_out);

/* Loads every provider with its keys decrypted. *out is a malloc'd array of *n providers,
 * ordered by id; free with gh_store_providers_free. A key that does not decrypt → GH_ERR. */
int gh_store_providers_load(sqlite3 *db, const gh_keys_t *keys, gh_provider_t **out, size_t *n);

/* Frees what gh_store_providers_load returned, wiping the secrets first. */
void gh_store_providers_free(gh_provider_t *providers, size_t n);

#endif
