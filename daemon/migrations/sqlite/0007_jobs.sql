-- Scheduled jobs. `jobs_known` remembers when the daemon first saw a job, so a new job does not
-- run for times before it existed; `job_runs` holds one row per scheduled time that ran,
-- written in the transaction that queues the job's messages: a restart neither repeats a run
-- nor skips one silently.
CREATE TABLE jobs_known (
    job           TEXT PRIMARY KEY,
    since         INTEGER NOT NULL
);
CREATE TABLE job_runs (
    job           TEXT NOT NULL,
    scheduled_at  INTEGER NOT NULL,
    ran_at        INTEGER NOT NULL,
    messages      INTEGER NOT NULL,
    PRIMARY KEY (job, scheduled_at)
);
