-- Issues, their append-only timeline, pending timers, the message outbox and idempotency keys.
-- Instants are Unix milliseconds (UTC); documents (the issue as submitted, its rule state, event
-- payloads, decisions) are JSON text.

CREATE TABLE issues (
    id            TEXT PRIMARY KEY,
    -- Bumped by every event: an update names the version it read, so two concurrent actions on
    -- one issue cannot both apply to the same state.
    version       INTEGER NOT NULL,
    body          TEXT NOT NULL,
    state         TEXT NOT NULL,
    status        TEXT NOT NULL,
    category      TEXT NOT NULL,
    unit          TEXT NOT NULL,
    department    TEXT,
    tier          TEXT,
    reported_at   INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX issues_status ON issues (status);
CREATE INDEX issues_department ON issues (department);

CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    issue_id      TEXT NOT NULL REFERENCES issues (id),
    at            INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    rules_version TEXT NOT NULL,
    decision      TEXT NOT NULL
);
CREATE INDEX events_issue ON events (issue_id, seq);

CREATE TABLE timers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    issue_id      TEXT NOT NULL REFERENCES issues (id),
    due           INTEGER NOT NULL,
    event         TEXT NOT NULL
);
CREATE INDEX timers_due ON timers (due, id);
CREATE INDEX timers_issue ON timers (issue_id);

CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- issue, event, recipient, channel and template: a message is never queued twice.
    dedupe_key    TEXT NOT NULL UNIQUE,
    issue_id      TEXT NOT NULL REFERENCES issues (id),
    event_seq     INTEGER NOT NULL REFERENCES events (seq),
    kind          TEXT NOT NULL,
    person        TEXT NOT NULL,
    channel       TEXT NOT NULL,
    address       TEXT NOT NULL,
    template      TEXT NOT NULL,
    locale        TEXT NOT NULL,
    vars          TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'queued',
    created_at    INTEGER NOT NULL
);
CREATE INDEX outbox_status ON outbox (status, id);

CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY,
    request_hash  TEXT NOT NULL,
    issue_id      TEXT NOT NULL REFERENCES issues (id),
    created_at    INTEGER NOT NULL
);
