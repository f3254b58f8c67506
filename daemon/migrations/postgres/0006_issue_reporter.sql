-- Who reported each issue, for a reporter's own reports (newest first); read from the issue as
-- submitted for the issues already stored.
ALTER TABLE issues ADD COLUMN reporter TEXT;
UPDATE issues SET reporter = body::jsonb ->> 'reporter';
CREATE INDEX issues_reporter ON issues (reporter, reported_at, id);
