-- What a token is for (a label `token list` shows), when it stops working (NULL: never), and
-- when it was last used. `last_used_at` is written at most once a minute per token, so that
-- checking a token adds no write to every request.
ALTER TABLE api_tokens ADD COLUMN label TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;
