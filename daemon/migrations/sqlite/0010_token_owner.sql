-- Who a token belongs to: the person it acts as, or the integration it serves (at most one of
-- the two; the daemon makes sure). Tokens made before owners existed have neither and keep
-- their role and scope, but may not name an issue's reporter unless they are an admin's.
ALTER TABLE api_tokens ADD COLUMN person TEXT;
ALTER TABLE api_tokens ADD COLUMN integration TEXT;
