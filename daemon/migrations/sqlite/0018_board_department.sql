-- The open issues by their deadlines, covering what a queue or a board filters, sorts and
-- counts on (status, deadlines, tier, branch, lead department), so that a board counts its
-- thousands by unit and by department without reading each issue's row.
DROP INDEX issues_deadlines;
CREATE INDEX issues_deadlines ON issues (status, acknowledge_by, resolve_by, tier, branch, department, id);
