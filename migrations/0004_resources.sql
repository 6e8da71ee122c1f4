-- 0004_resources: who owns which Message Batch and File (another key gets 404 for them), and
-- per-provider beta header policy.

-- One row per batch created through gatehouse. provider is where it lives upstream.
-- results_accounted_at is set once the batch's token usage was written to usage_log (when its
-- results were first read in full), so it is never counted twice.
CREATE TABLE batches (
    id                   TEXT PRIMARY KEY,
    key_id               TEXT NOT NULL,
    provider             TEXT NOT NULL,
    requests             INTEGER NOT NULL DEFAULT 0,
    created_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    results_accounted_at TEXT
);
CREATE INDEX batches_key ON batches(key_id);

-- One row per file uploaded through gatehouse.
CREATE TABLE files (
    id         TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL,
    provider   TEXT NOT NULL,
    filename   TEXT,
    size_bytes INTEGER,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX files_key ON files(key_id);

-- Comma-separated anthropic-beta values always added to (beta_add) or removed from (beta_strip)
-- requests to this provider, for upstreams that need or refuse them.
ALTER TABLE providers ADD COLUMN beta_add TEXT;
ALTER TABLE providers ADD COLUMN beta_strip TEXT;
