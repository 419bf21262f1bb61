-- keel's job counts, kept by triggers (keel::jobs::sqlite::SCHEMA_COUNTS, frozen here).
DROP INDEX keel_jobs_queue_state;
CREATE TABLE keel_job_counts (
    queue TEXT    NOT NULL,
    state TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, state)
) WITHOUT ROWID;
INSERT INTO keel_job_counts (queue, state, n)
    SELECT queue, state, COUNT(*) FROM keel_jobs WHERE true GROUP BY queue, state;
CREATE TRIGGER keel_jobs_counted_insert AFTER INSERT ON keel_jobs BEGIN
    INSERT INTO keel_job_counts (queue, state, n) VALUES (NEW.queue, NEW.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER keel_jobs_counted_update AFTER UPDATE OF queue, state ON keel_jobs
    WHEN OLD.queue IS NOT NEW.queue OR OLD.state IS NOT NEW.state BEGIN
    UPDATE keel_job_counts SET n = n - 1 WHERE queue = OLD.queue AND state = OLD.state;
    INSERT INTO keel_job_counts (queue, state, n) VALUES (NEW.queue, NEW.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER keel_jobs_counted_delete AFTER DELETE ON keel_jobs BEGIN
    UPDATE keel_job_counts SET n = n - 1 WHERE queue = OLD.queue AND state = OLD.state;
END;
