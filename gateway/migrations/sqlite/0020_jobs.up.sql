-- The scheduler (gateway/src/jobs.rs). A lease per periodic job: the instance
-- that holds it (and renews it while alive) is the only one running that job;
-- once `expires_at` (microseconds) passes, another instance takes it over.
-- `next_at` is when the holder means to run it next.
-- (Numbered 0020 to stay clear of migrations other work may add meanwhile.)
CREATE TABLE job_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    next_at     BIGINT
);

-- Recent runs of each job, by whichever instance ran it: start and end
-- (microseconds), `ok` or `failed` with its error. The scheduler keeps the
-- newest runs of each job only.
CREATE TABLE job_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    holder      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    error       TEXT
);
CREATE INDEX job_runs_by_name ON job_runs (name, id);
