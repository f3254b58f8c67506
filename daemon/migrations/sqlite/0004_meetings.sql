-- Joint meetings. A decision that convenes a meeting of a kind at a time puts its issue on the
-- agenda of the one scheduled meeting of that kind at that time (created by the first issue), and
-- adds its participants and departments. Recording the outcome holds the meeting, then applies
-- the outcome to each agenda issue as an event of that issue; `outcome_seq` marks the issues done,
-- so a recording cut short is finished by recording the same outcome again.

CREATE TABLE meetings (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The meeting's id in the rules (`joint`).
    kind          TEXT NOT NULL,
    at            INTEGER NOT NULL,
    participants  TEXT NOT NULL,
    departments   TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'scheduled',
    -- JSON: {outcome, departments, resolve, note}, once held.
    outcome       TEXT,
    recorded_by   TEXT,
    recorded_at   INTEGER,
    created_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX meetings_scheduled ON meetings (kind, at) WHERE status = 'scheduled';
CREATE INDEX meetings_at ON meetings (at, id);

CREATE TABLE meeting_agenda (
    meeting_id    INTEGER NOT NULL REFERENCES meetings (id),
    issue_id      TEXT NOT NULL REFERENCES issues (id),
    -- The event that put the issue on the agenda.
    added_seq     INTEGER NOT NULL REFERENCES events (seq),
    -- The `meeting_outcome` event applied to the issue, once recorded.
    outcome_seq   INTEGER REFERENCES events (seq),
    -- Why the outcome was not applied (the issue was closed by then), if so.
    skipped       TEXT,
    PRIMARY KEY (meeting_id, issue_id)
);
CREATE INDEX meeting_agenda_issue ON meeting_agenda (issue_id);
