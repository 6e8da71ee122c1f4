-- schema.sql: the whole current gatehouse schema (PRAGMA user_version = 1), for reading only.
-- Nothing executes this file: the server applies migrations/NNNN_name.sql in order at start-up,
-- and those files are the truth. Every migration that changes the schema updates this file so it
-- always shows the end state. Query the database with plain SQL; see DESIGN.md section 7.

-- Small facts about the database itself. 'master_key_check' holds the hex fingerprint of the
-- master key the encrypted rows were written with, so a wrong key is caught at start-up instead
-- of at the first upstream request.
CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

-- An upstream that speaks Anthropic's Messages API. name is what clients use to pin a provider
-- ("provider/model"); base_url is stored without a trailing slash. NULL limits mean unlimited.
-- Timestamps are ISO 8601 UTC with milliseconds, like every timestamp in this database.
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
);

-- A provider's API keys. key_sealed is crypto_secretbox nonce||ciphertext under a subkey of the
-- master key, never the plaintext; key_last4 is kept in clear so the admin API can show which key
-- a row is. Requests are spread over a provider's keys in proportion to weight.
CREATE TABLE provider_keys (
    id          INTEGER PRIMARY KEY,
    provider_id INTEGER NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    key_sealed  BLOB NOT NULL,
    key_last4   TEXT NOT NULL,
    weight      INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Loading a provider's keys, and the ON DELETE CASCADE, look rows up by provider.
CREATE INDEX provider_keys_provider_id ON provider_keys(provider_id);
