-- Delivery of the outbox (daemon/src/notify/): each row is claimed by a worker with a lease,
-- sent, and marked `sent`; a transient failure puts it back `queued` for later (`not_before`), a
-- permanent one (or too many attempts) makes it `dead` with the error kept.
--
-- The table is rebuilt (SQLite cannot relax a NOT NULL in place) so that a row need not belong
-- to an issue: reports of scheduled jobs are queued here too, with no issue and no event.
-- Webhook rows (channel `webhook`) carry the event's JSON in `vars` and have no person.

CREATE TABLE outbox_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- issue, event, recipient, channel and template: a message is never queued twice.
    dedupe_key    TEXT NOT NULL UNIQUE,
    issue_id      TEXT REFERENCES issues (id),
    event_seq     INTEGER REFERENCES events (seq),
    kind          TEXT NOT NULL,
    person        TEXT NOT NULL,
    channel       TEXT NOT NULL,
    address       TEXT NOT NULL,
    template      TEXT NOT NULL,
    locale        TEXT NOT NULL,
    vars          TEXT NOT NULL,
    -- queued, sending (claimed, `lease_until` set), sent or dead.
    status        TEXT NOT NULL DEFAULT 'queued',
    created_at    INTEGER NOT NULL,
    -- 1: of an urgent issue, never held by quiet hours or a digest.
    urgent        INTEGER NOT NULL DEFAULT 0,
    -- Not sent before this instant (quiet hours, a digest window, a retry's backoff).
    not_before    INTEGER NOT NULL DEFAULT 0,
    -- While `sending`: the claim expires then (the worker died mid-send) and the row is due again.
    lease_until   INTEGER,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    sent_at       INTEGER,
    -- SMS: the segments the text was sent as.
    segments      INTEGER
);

INSERT INTO outbox_new (id, dedupe_key, issue_id, event_seq, kind, person, channel, address,
                        template, locale, vars, status, created_at, not_before)
    SELECT id, dedupe_key, issue_id, event_seq, kind, person, channel, address, template, locale,
           vars, status, created_at, created_at
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;

-- What a worker claims: a channel's due rows in order (expired leases are few, found by prefix).
CREATE INDEX outbox_due ON outbox (channel, status, not_before);
-- Listing by status (the dead letters) and the digest's "last email to this person".
CREATE INDEX outbox_status ON outbox (status, id);
CREATE INDEX outbox_person_sent ON outbox (person, channel, sent_at);
