-- Failed console sign-ins, one row each, counted per person over the throttle's window: every
-- replica counts the same failures, and a restart forgets none. Rows older than the window are
-- deleted as new failures come.
CREATE TABLE sign_in_failures (
    person  TEXT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX sign_in_failures_person ON sign_in_failures (person, at);
CREATE INDEX sign_in_failures_at ON sign_in_failures (at);
