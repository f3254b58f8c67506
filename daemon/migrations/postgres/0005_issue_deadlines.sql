-- The open issues by their deadlines, covering what a queue or a board filters and sorts on
-- (status, deadlines, tier, branch), so that a queue of thousands sorts ids and deadlines
-- without reading each issue's body.
CREATE INDEX issues_deadlines ON issues (status, acknowledge_by, resolve_by, tier, branch, id);
