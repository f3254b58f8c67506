-- Who an issue is assigned to now (the lead department first), kept with every event: department
-- queues read this index instead of every issue's state. The history is in the events.
CREATE TABLE assignments (
    department    TEXT NOT NULL,
    issue_id      TEXT NOT NULL REFERENCES issues (id),
    -- 1 for the lead department, 0 for co-assigned ones.
    lead          INTEGER NOT NULL,
    PRIMARY KEY (department, issue_id)
);
CREATE INDEX assignments_issue ON assignments (issue_id);
INSERT INTO assignments (department, issue_id, lead)
    SELECT j.value, issues.id, j.key = 0 FROM issues, json_each(issues.state, '$.departments') AS j;

-- The reporter's rating of the handling, once per issue, with the departments it rates.
CREATE TABLE evaluations (
    issue_id      TEXT PRIMARY KEY REFERENCES issues (id),
    event_seq     INTEGER NOT NULL REFERENCES events (seq),
    rating        INTEGER NOT NULL,
    comment       TEXT NOT NULL,
    department    TEXT,
    actor         TEXT NOT NULL,
    at            INTEGER NOT NULL
);
CREATE INDEX evaluations_department ON evaluations (department, at);
INSERT INTO evaluations (issue_id, event_seq, rating, comment, department, actor, at)
    SELECT e.issue_id, e.seq, json_extract(e.payload, '$.rating'),
           COALESCE(json_extract(e.payload, '$.comment'), ''), i.department, e.actor, e.at
    FROM events e JOIN issues i ON i.id = e.issue_id WHERE e.kind = 'evaluated';
