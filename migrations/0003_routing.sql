-- 0003_routing: routes (a model name clients send → an ordered chain of provider/model targets)
-- and the per-key model rewrites of the llm-proxy document (force_model, aliases).

-- A route is looked up by the model name a client sends. Its targets are tried in position
-- order: the next one is used when the previous answers 429/5xx/529, times out or cannot be
-- reached. enforce_context opts the route into refusing requests whose estimated input exceeds
-- the context window (max_input_tokens here, else the model's price row).
CREATE TABLE routes (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    enforce_context  INTEGER NOT NULL DEFAULT 0 CHECK (enforce_context IN (0, 1)),
    max_input_tokens INTEGER CHECK (max_input_tokens IS NULL OR max_input_tokens > 0),
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- provider is a provider name (not an id) so a route can be written before its provider exists
-- and survives a provider being re-created; a target whose provider is missing is skipped.
CREATE TABLE route_targets (
    route_id INTEGER NOT NULL REFERENCES routes(id) ON DELETE CASCADE,
    position INTEGER NOT NULL CHECK (position >= 0),
    provider TEXT NOT NULL,
    model    TEXT NOT NULL,
    PRIMARY KEY (route_id, position)
);

-- force_model: a model or route name used whatever the client asks (like the proxy's
-- --force-model). aliases: a JSON object mapping names clients send to routes or models.
ALTER TABLE virtual_keys ADD COLUMN force_model TEXT;
ALTER TABLE virtual_keys ADD COLUMN aliases TEXT
    CHECK (aliases IS NULL OR json_type(aliases) = 'object');
