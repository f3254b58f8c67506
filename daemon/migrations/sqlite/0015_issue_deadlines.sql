-- The open issues by their deadlines, covering what a queue sorts on, so that a department's
-- queue of thousands sorts ids and deadlines without reading each issue's body.
CREATE INDEX issues_deadlines ON issues (status, acknowledge_by, resolve_by, id);
