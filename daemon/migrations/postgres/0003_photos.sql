-- Photos, where every replica reads them: content-addressed (the hash is the SHA-256 of the
-- bytes, hex, as the API names a photo), so a photo sent twice is stored once.
CREATE TABLE photos (
    hash            TEXT PRIMARY KEY,
    -- `image/jpeg`, `image/png`, ...: what the photo was checked to be when it arrived.
    content_type    TEXT NOT NULL,
    bytes           BYTEA NOT NULL,
    size            BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
