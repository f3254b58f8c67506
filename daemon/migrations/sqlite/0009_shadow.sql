-- Shadow rules: a candidate deciding every live event beside the live rules, with no effect.
-- A run is one candidate from when it started to when it stopped; `compared` counts the events
-- it decided, `dropped` those it had no room to (the live path never waits for it). Each event
-- the two decided differently is a row of `shadow_diffs`, with what differed and a summary of
-- both decisions.
CREATE TABLE shadow_runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    version       TEXT NOT NULL,
    dir           TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    started_by    TEXT NOT NULL,
    stopped_at    INTEGER,
    compared      INTEGER NOT NULL DEFAULT 0,
    dropped       INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE shadow_diffs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        INTEGER NOT NULL REFERENCES shadow_runs (id),
    issue_id      TEXT NOT NULL,
    event         TEXT NOT NULL,
    at            INTEGER NOT NULL,
    -- JSON array of kinds: route, deadlines, tier, state, triage, messages, meetings, refused.
    kinds         TEXT NOT NULL,
    live          TEXT NOT NULL,
    shadow        TEXT NOT NULL
);
CREATE INDEX shadow_diffs_run ON shadow_diffs (run_id, id);
