-- 0005_prices_2026: list prices of the models released through 2026 (USD per million tokens;
-- cache write = 5-minute cache write), from Anthropic's pricing page as of 2026-11. Existing
-- rows an operator changed are left alone (INSERT OR IGNORE); PUT /admin/prices updates them.
-- Haiku 5.5 is priced at its band for prompts up to 100k tokens.
INSERT OR IGNORE INTO model_prices (model, input_per_mtok, output_per_mtok, cache_write_per_mtok,
                                    cache_read_per_mtok, max_input_tokens) VALUES
    ('claude-fable-5-1*',   10.00, 50.00, 12.50, 0.25, 200000),
    ('claude-fable-5*',     10.00, 50.00, 12.50, 1.00, 200000),
    ('claude-mythos-5-1*',  10.00, 50.00, 12.50, 0.25, 200000),
    ('claude-mythos-5*',    10.00, 50.00, 12.50, 1.00, 200000),
    ('claude-opus-5-5*',     4.00, 20.00,  5.00, 0.20, 200000),
    ('claude-opus-5*',       5.00, 25.00,  6.25, 0.50, 200000),
    ('claude-opus-4-8*',     5.00, 25.00,  6.25, 0.50, 200000),
    ('claude-opus-4-7*',     5.00, 25.00,  6.25, 0.50, 200000),
    ('claude-sonnet-5-5*',   2.00, 10.00,  2.50, 0.10, 200000),
    ('claude-sonnet-5*',     2.00, 10.00,  2.50, 0.20, 200000),
    ('claude-haiku-5-5*',    0.10,  0.50,  0.125, 0.01, 200000);
