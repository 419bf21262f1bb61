-- keel's job queue (keel::jobs::sqlite::SCHEMA as of this migration).
CREATE TABLE keel_jobs (
    id           INTEGER PRIMARY KEY,
    queue        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'running', 'succeeded', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    last_error   TEXT,
    run_at       INTEGER NOT NULL,
    locked_until INTEGER,
    request_id   TEXT,
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at  TEXT
);
CREATE INDEX keel_jobs_due ON keel_jobs (run_at) WHERE state = 'pending';
CREATE INDEX keel_jobs_leased ON keel_jobs (locked_until) WHERE state = 'running';
CREATE INDEX keel_jobs_queue_state ON keel_jobs (queue, state);
