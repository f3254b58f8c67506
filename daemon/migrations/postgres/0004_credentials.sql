-- People's console passwords and their invitations. A person has a row once invited: the
-- invitation (the SHA-256 of its one-time link's token, and when it lapses) until a password is
-- set through it, then the password (an argon2id PHC string) and when it was set. A new
-- invitation replaces an unused one; setting a password spends it.
CREATE TABLE credentials (
    person            TEXT PRIMARY KEY,
    password_hash     TEXT,
    password_set_at   BIGINT,
    invite_hash       TEXT UNIQUE,
    invite_expires_at BIGINT
);
