-- 0006_batch_input_file: the OpenAI input file a batch was created from (OpenAI's batch object
-- names it on every retrieve and list, not only at create). NULL for batches created from a
-- requests array or through the Anthropic API.
ALTER TABLE batches ADD COLUMN input_file_id TEXT;
