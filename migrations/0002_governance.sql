-- 0002_governance: virtual keys, model prices, the per-request usage log and its daily view.

-- A virtual key handed to a person, a pipeline or Claude Code. The secret itself is never stored:
-- key_hash is the keyed crypto_generichash (hex) of the whole secret, and requests are matched by
-- it. key_prefix/key_last4 only help a human recognise a key. models is a JSON array of glob
-- patterns (NULL = every model, [] = none). NULL limits mean unlimited. A revoked key keeps its
-- row (revoked_at set) so usage_log rows still name it.
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
);

-- Prices in USD per million tokens. model is an exact model id or a glob ending in '*'
-- ("claude-sonnet-4-5*" covers the dated ids); the longest matching row wins. Cache writes and
-- cache reads have their own prices. max_input_tokens is the context window, when known.
CREATE TABLE model_prices (
    model                TEXT PRIMARY KEY,
    input_per_mtok       REAL NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok      REAL NOT NULL CHECK (output_per_mtok >= 0),
    cache_write_per_mtok REAL NOT NULL CHECK (cache_write_per_mtok >= 0),
    cache_read_per_mtok  REAL NOT NULL CHECK (cache_read_per_mtok >= 0),
    max_input_tokens     INTEGER CHECK (max_input_tokens IS NULL OR max_input_tokens > 0),
    updated_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Anthropic's list prices (USD per million tokens; cache write = 5-minute cache write).
INSERT INTO model_prices (model, input_per_mtok, output_per_mtok, cache_write_per_mtok,
                          cache_read_per_mtok, max_input_tokens) VALUES
    ('claude-opus-4-6*',   5.00, 25.00,  6.25, 0.50, 200000),
    ('claude-opus-4-5*',   5.00, 25.00,  6.25, 0.50, 200000),
    ('claude-opus-4-1*',  15.00, 75.00, 18.75, 1.50, 200000),
    ('claude-opus-4-0*',  15.00, 75.00, 18.75, 1.50, 200000),
    ('claude-opus-4-2*',  15.00, 75.00, 18.75, 1.50, 200000),
    ('claude-sonnet-4-6*', 3.00, 15.00,  3.75, 0.30, 200000),
    ('claude-sonnet-4-5*', 3.00, 15.00,  3.75, 0.30, 200000),
    ('claude-sonnet-4-0*', 3.00, 15.00,  3.75, 0.30, 200000),
    ('claude-sonnet-4-2*', 3.00, 15.00,  3.75, 0.30, 200000),
    ('claude-3-7-sonnet*', 3.00, 15.00,  3.75, 0.30, 200000),
    ('claude-3-5-sonnet*', 3.00, 15.00,  3.75, 0.30, 200000),
    ('claude-haiku-4-5*',  1.00,  5.00,  1.25, 0.10, 200000),
    ('claude-3-5-haiku*',  0.80,  4.00,  1.00, 0.08, 200000),
    ('claude-3-haiku*',    0.25,  1.25,  0.30, 0.03, 200000),
    ('claude-3-opus*',    15.00, 75.00, 18.75, 1.50, 200000);

-- One row per client request, successful or not, written by the recorder from the records
-- workers leave in shared memory. request_id is unique so a record is never written twice.
-- input_tokens excludes cache tokens, as in Anthropic's usage object: the four token columns add
-- up to what was processed. cost_usd prices each kind of token at its own rate. error_type is
-- Anthropic's error type for upstream errors, or gatehouse's own reason for a refusal.
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
CREATE INDEX usage_log_started_at ON usage_log(started_at);
CREATE INDEX usage_log_key_started ON usage_log(key_id, started_at);

-- The daily roll-up most reports start from (day is the UTC date of started_at).
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
