-- Every rule set that went live: its files, content-addressed (a file unchanged between versions
-- is stored once), and each time a version went live, when, by whom and from which directory.
-- A version is the SHA-256 the loader computes over the files it read; loading the stored files
-- again gives the same rule set with the same version.
CREATE TABLE rule_files (
    -- SHA-256 of the content, hex.
    hash          TEXT PRIMARY KEY,
    content       TEXT NOT NULL
);

CREATE TABLE rule_versions (
    -- One row each time a version went live (a version may go live again after another).
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    version       TEXT NOT NULL,
    loaded_at     INTEGER NOT NULL,
    -- `start-up`, `signal` (SIGHUP), `watch` (the files changed) or the actor of an API call.
    loaded_by     TEXT NOT NULL,
    dir           TEXT NOT NULL,
    -- JSON: {"path in the rule directory": "hash of its content", ...}.
    files         TEXT NOT NULL
);
CREATE INDEX rule_versions_version ON rule_versions (version, id);
