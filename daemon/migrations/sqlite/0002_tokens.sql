-- API tokens: only the SHA-256 of a token is stored; the token itself is shown once, at creation.
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    hash        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    scope       TEXT,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
