-- schema.sql: the whole current gatehouse schema (PRAGMA user_version = 6), for reading only.
-- Nothing executes this file: the server applies migrations/NNNN_name.sql in order at start-up,
-- and those files are the truth (with comments on every table and column). Regenerate this
-- file with scripts/schema-dump after adding a migration. Query the database with plain SQL;
-- see DESIGN.md section 7 and the README's "Reporting with SQL".

CREATE TABLE batches (
    id                   TEXT PRIMARY KEY,
    key_id               TEXT NOT NULL,
    provider             TEXT NOT NULL,
    requests             INTEGER NOT NULL DEFAULT 0,
    created_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    results_accounted_at TEXT
, input_file_id TEXT);

CREATE TABLE files (
    id         TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL,
    provider   TEXT NOT NULL,
    filename   TEXT,
    size_bytes INTEGER,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE model_prices (
    model                TEXT PRIMARY KEY,
    input_per_mtok       REAL NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok      REAL NOT NULL CHECK (output_per_mtok >= 0),
    cache_write_per_mtok REAL NOT NULL CHECK (cache_write_per_mtok >= 0),
    cache_read_per_mtok  REAL NOT NULL CHECK (cache_read_per_mtok >= 0),
    max_input_tokens     INTEGER CHECK (max_input_tokens IS NULL OR max_input_tokens > 0),
    updated_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE provider_keys (
    id          INTEGER PRIMARY KEY,
    provider_id INTEGER NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    key_sealed  BLOB NOT NULL,
    key_last4   TEXT NOT NULL,
    weight      INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE providers (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    base_url           TEXT NOT NULL,
    timeout_ms         INTEGER NOT NULL DEFAULT 600000 CHECK (timeout_ms > 0),
    rpm_limit          INTEGER CHECK (rpm_limit IS NULL OR rpm_limit >= 0),
    itpm_limit         INTEGER CHECK (itpm_limit IS NULL OR itpm_limit >= 0),
    otpm_limit         INTEGER CHECK (otpm_limit IS NULL OR otpm_limit >= 0),
    max_retries        INTEGER NOT NULL DEFAULT 0 CHECK (max_retries >= 0),
    backoff_initial_ms INTEGER NOT NULL DEFAULT 500 CHECK (backoff_initial_ms >= 0),
    backoff_max_ms     INTEGER NOT NULL DEFAULT 8000 CHECK (backoff_max_ms >= 0),
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
, beta_add TEXT, beta_strip TEXT);

CREATE TABLE route_targets (
    route_id INTEGER NOT NULL REFERENCES routes(id) ON DELETE CASCADE,
    position INTEGER NOT NULL CHECK (position >= 0),
    provider TEXT NOT NULL,
    model    TEXT NOT NULL,
    PRIMARY KEY (route_id, position)
);

CREATE TABLE routes (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    enforce_context  INTEGER NOT NULL DEFAULT 0 CHECK (enforce_context IN (0, 1)),
    max_input_tokens INTEGER CHECK (max_input_tokens IS NULL OR max_input_tokens > 0),
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE usage_log (
    id                          INTEGER PRIMARY KEY,
    request_id                  TEXT NOT NULL UNIQUE,
    started_at                  TEXT NOT NULL,
    key_id                      TEXT,
    endpoint                    TEXT NOT NULL,
    model_requested             TEXT,
    provider                    TEXT,
    model                       TEXT,
    status                      INTEGER NOT NULL,
    error_type                  TEXT,
    input_tokens                INTEGER NOT NULL DEFAULT 0,
    output_tokens               INTEGER NOT NULL DEFAULT 0,
    cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_input_tokens     INTEGER NOT NULL DEFAULT 0,
    cost_usd                    REAL NOT NULL DEFAULT 0,
    latency_ms                  INTEGER NOT NULL DEFAULT 0,
    ttft_ms                     INTEGER,
    attempts                    INTEGER NOT NULL DEFAULT 0,
    stream                      INTEGER NOT NULL DEFAULT 0,
    upstream_request_id         TEXT
);

CREATE TABLE virtual_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    key_last4     TEXT NOT NULL,
    models        TEXT CHECK (models IS NULL OR json_type(models) = 'array'),
    rpm_limit     INTEGER CHECK (rpm_limit IS NULL OR rpm_limit >= 0),
    itpm_limit    INTEGER CHECK (itpm_limit IS NULL OR itpm_limit >= 0),
    otpm_limit    INTEGER CHECK (otpm_limit IS NULL OR otpm_limit >= 0),
    max_parallel  INTEGER CHECK (max_parallel IS NULL OR max_parallel >= 0),
    budget_usd    REAL CHECK (budget_usd IS NULL OR budget_usd >= 0),
    budget_period TEXT CHECK (budget_period IS NULL OR budget_period IN ('1d', '1w', '1M')),
    expires_at    TEXT,
    metadata      TEXT CHECK (metadata IS NULL OR json_type(metadata) = 'object'),
    revoked_at    TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
, force_model TEXT, aliases TEXT
    CHECK (aliases IS NULL OR json_type(aliases) = 'object'));

CREATE INDEX batches_key ON batches(key_id);

CREATE INDEX files_key ON files(key_id);

CREATE INDEX provider_keys_provider_id ON provider_keys(provider_id);

CREATE INDEX usage_log_key_started ON usage_log(key_id, started_at);

CREATE INDEX usage_log_started_at ON usage_log(started_at);

CREATE VIEW usage_daily AS
SELECT substr(u.started_at, 1, 10)                              AS day,
       u.key_id                                                 AS key_id,
       k.name                                                   AS key_name,
       u.model                                                  AS model,
       count(*)                                                 AS requests,
       sum(CASE WHEN u.status >= 400 OR u.error_type IS NOT NULL THEN 1 ELSE 0 END) AS errors,
       sum(u.input_tokens)                                      AS input_tokens,
       sum(u.output_tokens)                                     AS output_tokens,
       sum(u.cache_creation_input_tokens)                       AS cache_creation_input_tokens,
       sum(u.cache_read_input_tokens)                           AS cache_read_input_tokens,
       round(sum(u.cost_usd), 6)                                AS cost_usd
FROM usage_log u
LEFT JOIN virtual_keys k ON k.id = u.key_id
GROUP BY day, u.key_id, u.model;
