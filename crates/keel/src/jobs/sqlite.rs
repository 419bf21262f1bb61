//! The job queue in SQLite: one table, `keel_jobs`, in the service's own database.
//!
//! The schema comes as versioned migrations ([`MIGRATIONS`]), applied by
//! [`Database::open`](crate::sqlite::Database::open) at every start. Times the worker compares (`run_at`,
//! `locked_until`) are integers of milliseconds since the Unix epoch; `created_at` and
//! `finished_at` are RFC 3339 text for people.
//!
//! SQLite has one writer at a time, so one instance per database is the supported setup; claims
//! are single `UPDATE … RETURNING` statements and completions one statement per batch, which is
//! what lets a single writer move thousands of jobs a second.
//!
//! Its API is [`PgQueue`](crate::jobs::postgres)'s where the engines allow: the same reads
//! with the same answers, each failing with its driver's own error (`sqlite::Error` here,
//! `sqlx::Error` there, both turned into the envelope by `?`).

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row};
use tokio::sync::Notify;

pub use super::view::{JobFilter, JobView, MinuteCount, RetryOutcome};
use super::worker::{Backend, BackendError, Claimed, Lease, Outcome};
use super::{ms, now_ms, truncate, Job};
use crate::sqlite::{Database, Error};
use crate::RequestId;

/// The `keel_jobs` table and its indexes.
pub const SCHEMA: &str = r#"
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
"#;

/// `keel_job_counts`: the number of jobs per queue and state, kept by triggers in the same
/// transaction as every change to `keel_jobs`, so that reading the counts (for `/metrics` at
/// every scrape) costs a few rows whatever the size of the queue. The `(queue, state)` index,
/// which only counting used, goes: one index less to update at every change of state. Apply
/// after [`SCHEMA`].
pub const SCHEMA_COUNTS: &str = r#"
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
"#;

/// The index of [`SqliteQueue::finished_per_minute`] (jobs finished per minute, for a
/// console). Apply after [`SCHEMA`].
pub const SCHEMA_FINISHED_INDEX: &str = r#"
CREATE INDEX keel_jobs_finished ON keel_jobs (finished_at) WHERE finished_at IS NOT NULL;
"#;

/// The queue's schema as versions 1 to 3: [`SCHEMA`], [`SCHEMA_COUNTS`],
/// [`SCHEMA_FINISHED_INDEX`]. [`Database::open`](crate::sqlite::Database::open) applies what a
/// database lacks, so it is safe at every start. An application with its own tables starts its
/// list with these and numbers its own from 4:
///
/// ```
/// use keel::jobs::sqlite::MIGRATIONS as QUEUE;
/// use keel::sqlite::Migration;
///
/// const MIGRATIONS: &[Migration] = &[
///     QUEUE[0],
///     QUEUE[1],
///     QUEUE[2],
///     Migration::new(4, "todos", "CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT)"),
/// ];
/// ```
pub const MIGRATIONS: &[crate::sqlite::Migration] = &[
    crate::sqlite::Migration::new(1, "keel jobs", SCHEMA),
    crate::sqlite::Migration::new(2, "keel job counts", SCHEMA_COUNTS),
    crate::sqlite::Migration::new(3, "keel jobs finished index", SCHEMA_FINISHED_INDEX),
];

/// The `last_error` of a job claimed again because its lease ran out.
const LEASE_EXPIRED: &str =
    "lease expired: the worker stopped, or lost its lease, before recording an outcome";

/// The `last_error` of a job found running when the queue opens.
const INTERRUPTED: &str = "interrupted: the process stopped while the job ran";

const NOW_TEXT: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// A handle on the queue: enqueue into a write, and the backend of the workers. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    db: Database,
    max_attempts: u32,
    wake: Arc<Notify>,
}

impl SqliteQueue {
    /// The queue in `db` (which must have [`SCHEMA`]); jobs enqueued through it get
    /// `max_attempts` attempts.
    pub fn new(db: Database, max_attempts: u32) -> Self {
        SqliteQueue {
            db,
            max_attempts: max_attempts.max(1),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Adds `job` to the queue on `conn`, the writer's connection inside the closure of the
    /// business change ([`crate::sqlite::Writer::write`]): the job exists if and only if that
    /// change commits. The id of the current request, if any, is stored with it. Call
    /// [`SqliteQueue::wake`] once the write has returned to have a worker start at once rather
    /// than at its next poll.
    ///
    /// Synchronous where PostgreSQL's is async: SQLite's writes run in a closure on the
    /// writer's thread, where nothing awaits.
    pub fn enqueue<J: Job>(&self, conn: &Connection, job: &J) -> Result<i64, Error> {
        self.enqueue_at(conn, job, Duration::ZERO)
    }

    /// Like [`SqliteQueue::enqueue`], due `delay` from now.
    pub fn enqueue_at<J: Job>(
        &self,
        conn: &Connection,
        job: &J,
        delay: Duration,
    ) -> Result<i64, Error> {
        let payload = serde_json::to_string(job)?;
        let request_id = RequestId::current();
        let id = conn
            .prepare_cached(
                "INSERT INTO keel_jobs (queue, kind, payload, max_attempts, run_at, request_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
            )?
            .query_row(
                rusqlite::params![
                    J::QUEUE,
                    J::KIND,
                    payload,
                    self.max_attempts,
                    now_ms().saturating_add(ms(delay)),
                    request_id.as_ref().map(RequestId::as_str),
                ],
                |row| row.get(0),
            )?;
        Ok(id)
    }

    /// Puts back every job left `running` by a process that stopped without handing it back
    /// (killed, or the machine lost power), due now, its attempt counted: the next attempt is
    /// a retry. Jobs that had used their last attempt are `dead`.
    ///
    /// Only for a database no other process can be working on, which is what
    /// [`Database::open`]'s lock makes sure of: call it once, before starting the workers.
    pub async fn recover_interrupted(&self) -> Result<usize, Error> {
        let now = now_ms();
        self.db
            .writer()
            .write(move |conn| {
                let dead = conn
                    .prepare_cached(&format!(
                        "UPDATE keel_jobs SET state = 'dead', locked_until = NULL, \
                         finished_at = {NOW_TEXT}, last_error = ?1 \
                         WHERE state = 'running' AND attempts >= max_attempts"
                    ))?
                    .execute([INTERRUPTED])?;
                let pending = conn
                    .prepare_cached(
                        "UPDATE keel_jobs SET state = 'pending', locked_until = NULL, \
                         run_at = ?2, last_error = ?1 WHERE state = 'running'",
                    )?
                    .execute(rusqlite::params![INTERRUPTED, now])?;
                Ok::<_, Error>(dead + pending)
            })
            .await
    }

    /// Tells one idle worker that jobs are due.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Number of jobs by queue and state (read inline from [`SCHEMA_COUNTS`]'s table, never
    /// through the writer, in a few rows whatever the size of the queue).
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>, Error> {
        self.db.readers().read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT queue, state, n FROM keel_job_counts WHERE n > 0 ORDER BY queue, state",
            )?;
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            rows.collect()
        })
    }
}

/// `[[id, lease], …]` for `json_each`.
fn leases_json(pairs: &[(i64, i64)]) -> Result<String, Error> {
    Ok(serde_json::to_string(pairs)?)
}

fn view_from_row(row: &Row<'_>) -> rusqlite::Result<JobView> {
    Ok(JobView {
        id: row.get(0)?,
        queue: row.get(1)?,
        kind: row.get(2)?,
        state: row.get(3)?,
        attempts: row.get(4)?,
        max_attempts: row.get(5)?,
        last_error: row.get(6)?,
        run_at: row.get(7)?,
        created_at: row.get(8)?,
        request_id: row.get(9)?,
    })
}

const VIEW_COLUMNS: &str = "id, queue, kind, state, attempts, max_attempts, last_error, \
    strftime('%Y-%m-%dT%H:%M:%fZ', run_at / 1000.0, 'unixepoch') AS run_at, created_at, request_id";

impl SqliteQueue {
    /// Jobs newest first, filtered; keyset pagination by `before_id`.
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<JobView>, Error> {
        self.db.readers().read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {VIEW_COLUMNS} FROM keel_jobs \
                 WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR queue = ?2) \
                   AND (?3 IS NULL OR id < ?3) \
                 ORDER BY id DESC LIMIT ?4"
            ))?;
            let rows = stmt.query_map(
                rusqlite::params![
                    filter.state.as_deref(),
                    filter.queue.as_deref(),
                    filter.before_id,
                    filter.limit
                ],
                view_from_row,
            )?;
            rows.collect()
        })
    }

    /// Puts a dead job back to pending, due now, its attempts reset.
    pub async fn retry(&self, id: i64) -> Result<RetryOutcome, Error> {
        let outcome = self
            .db
            .writer()
            .write(move |conn| {
                let retried = conn
                    .prepare_cached(&format!(
                        "UPDATE keel_jobs SET state = 'pending', attempts = 0, run_at = ?2, \
                         locked_until = NULL, finished_at = NULL WHERE id = ?1 AND state = 'dead' \
                         RETURNING {VIEW_COLUMNS}"
                    ))?
                    .query_row(rusqlite::params![id, now_ms()], view_from_row)
                    .optional()?;
                if let Some(job) = retried {
                    return Ok(RetryOutcome::Retried(job));
                }
                let current = conn
                    .prepare_cached(&format!(
                        "SELECT {VIEW_COLUMNS} FROM keel_jobs WHERE id = ?1"
                    ))?
                    .query_row([id], view_from_row)
                    .optional()?;
                Ok::<_, Error>(current.map_or(RetryOutcome::NotFound, RetryOutcome::NotDead))
            })
            .await?;
        if matches!(outcome, RetryOutcome::Retried(_)) {
            self.wake();
        }
        Ok(outcome)
    }

    /// Jobs finished per minute over the last `minutes` minutes, oldest first (minutes with
    /// nothing finished are left out).
    pub async fn finished_per_minute(&self, minutes: u32) -> Result<Vec<MinuteCount>, Error> {
        self.db.readers().read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT substr(finished_at, 1, 16) || 'Z' AS minute, \
                   SUM(state = 'succeeded') AS succeeded, SUM(state = 'dead') AS dead \
                 FROM keel_jobs \
                 WHERE finished_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ?1 || ' minutes') \
                 GROUP BY minute ORDER BY minute",
            )?;
            let rows = stmt.query_map([minutes], |row| {
                Ok(MinuteCount {
                    minute: row.get(0)?,
                    succeeded: row.get(1)?,
                    dead: row.get(2)?,
                })
            })?;
            rows.collect()
        })
    }
}

/// Takes up to `limit` due jobs on the writer's connection, leased until `now + lease`; jobs
/// in `running_here` (running in this process) are never taken, whatever their lease says.
fn claim(
    conn: &Connection,
    limit: usize,
    lease: Duration,
    running_here: &str,
) -> Result<Vec<Claimed>, Error> {
    // The lease is computed here, when the claim is written, not before waiting for the writer.
    let now = now_ms();
    // Jobs whose lease ran out as often as they may run were lost by a worker each time
    // (a crash, or a job outliving its lease): stop there rather than loop forever.
    conn.prepare_cached(&format!(
        "UPDATE keel_jobs SET state = 'dead', locked_until = NULL, finished_at = {NOW_TEXT}, \
         last_error = 'lease expired on the last attempt: the worker stopped or outlived its lease' \
         WHERE state = 'running' AND locked_until <= ?1 AND attempts >= max_attempts \
           AND id NOT IN (SELECT value FROM json_each(?2))"
    ))?
    .execute(rusqlite::params![now, running_here])?;
    let mut stmt = conn.prepare_cached(
        "UPDATE keel_jobs SET attempts = attempts + 1, locked_until = ?2, \
           last_error = CASE WHEN state = 'running' THEN ?4 ELSE last_error END, \
           state = 'running' \
         WHERE id IN ( \
           SELECT id FROM ( \
             SELECT id FROM keel_jobs \
             WHERE state = 'running' AND locked_until <= ?1 \
               AND id NOT IN (SELECT value FROM json_each(?5)) \
             ORDER BY locked_until LIMIT ?3) \
           UNION ALL \
           SELECT id FROM ( \
             SELECT id FROM keel_jobs WHERE state = 'pending' AND run_at <= ?1 \
             ORDER BY run_at LIMIT ?3) \
           LIMIT ?3) \
         RETURNING id, locked_until, queue, kind, payload, attempts, max_attempts, request_id",
    )?;
    let rows = stmt.query_map(
        rusqlite::params![
            now,
            now.saturating_add(ms(lease)),
            i64::try_from(limit).unwrap_or(i64::MAX),
            LEASE_EXPIRED,
            running_here,
        ],
        |row| {
            Ok(Claimed {
                id: row.get(0)?,
                lease_until: row.get(1)?,
                queue: row.get(2)?,
                kind: row.get(3)?,
                payload: row.get(4)?,
                attempts: row.get(5)?,
                max_attempts: row.get(6)?,
                request_id: row.get(7)?,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// Every statement below matches the lease as well as the id: a worker whose lease ran out
// (and whose job another worker has claimed since) must not overwrite that worker's work.
fn finish(conn: &Connection, outcomes: &[(Lease, Outcome)]) -> Result<(), Error> {
    let succeeded: Vec<(i64, i64)> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Succeeded))
        .map(|(lease, _)| (lease.id, lease.until))
        .collect();
    if !succeeded.is_empty() {
        conn.prepare_cached(&format!(
            "UPDATE keel_jobs SET state = 'succeeded', locked_until = NULL, \
             finished_at = {NOW_TEXT} WHERE state = 'running' AND (id, locked_until) IN \
             (SELECT value ->> 0, value ->> 1 FROM json_each(?1))"
        ))?
        .execute([leases_json(&succeeded)?])?;
    }
    for (lease, outcome) in outcomes {
        match outcome {
            Outcome::Succeeded => {}
            Outcome::Retry { run_at_ms, error } => {
                conn.prepare_cached(
                    "UPDATE keel_jobs SET state = 'pending', locked_until = NULL, \
                     run_at = ?3, last_error = ?4 \
                     WHERE id = ?1 AND state = 'running' AND locked_until = ?2",
                )?
                .execute(rusqlite::params![
                    lease.id,
                    lease.until,
                    run_at_ms,
                    truncate(error)
                ])?;
            }
            Outcome::Dead { error } => {
                conn.prepare_cached(&format!(
                    "UPDATE keel_jobs SET state = 'dead', locked_until = NULL, \
                     finished_at = {NOW_TEXT}, last_error = ?3 \
                     WHERE id = ?1 AND state = 'running' AND locked_until = ?2"
                ))?
                .execute(rusqlite::params![
                    lease.id,
                    lease.until,
                    truncate(error)
                ])?;
            }
        }
    }
    Ok(())
}

fn renew(conn: &Connection, leases: &[Lease], lease: Duration) -> Result<Vec<Lease>, Error> {
    let pairs: Vec<(i64, i64)> = leases.iter().map(|l| (l.id, l.until)).collect();
    let until = now_ms().saturating_add(ms(lease));
    let mut stmt = conn.prepare_cached(
        "UPDATE keel_jobs SET locked_until = ?2 \
         WHERE state = 'running' AND (id, locked_until) IN \
         (SELECT value ->> 0, value ->> 1 FROM json_each(?1)) \
         RETURNING id, locked_until",
    )?;
    let rows = stmt.query_map(rusqlite::params![leases_json(&pairs)?, until], |row| {
        Ok(Lease {
            id: row.get(0)?,
            until: row.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn release(conn: &Connection, leases: &[Lease]) -> Result<(), Error> {
    let pairs: Vec<(i64, i64)> = leases.iter().map(|l| (l.id, l.until)).collect();
    conn.prepare_cached(
        "UPDATE keel_jobs SET state = 'pending', attempts = MAX(attempts - 1, 0), \
         locked_until = NULL, run_at = ?2 \
         WHERE state = 'running' AND (id, locked_until) IN \
         (SELECT value ->> 0, value ->> 1 FROM json_each(?1))",
    )?
    .execute(rusqlite::params![leases_json(&pairs)?, now_ms()])?;
    Ok(())
}

impl Backend for SqliteQueue {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
        running_here: &[i64],
    ) -> Result<Vec<Claimed>, BackendError> {
        let running_here = serde_json::to_string(running_here)?;
        let claimed = self
            .db
            .writer()
            .write(move |conn| claim(conn, limit, lease, &running_here))
            .await?;
        Ok(claimed)
    }

    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<Lease>, BackendError> {
        let leases = leases.to_vec();
        let renewed = self
            .db
            .writer()
            .write(move |conn| renew(conn, &leases, lease))
            .await?;
        Ok(renewed)
    }

    async fn finish(&self, outcomes: &[(Lease, Outcome)]) -> Result<(), BackendError> {
        let outcomes = outcomes.to_vec();
        self.db
            .writer()
            .write(move |conn| finish(conn, &outcomes))
            .await?;
        Ok(())
    }

    async fn release(&self, leases: &[Lease]) -> Result<(), BackendError> {
        let leases = leases.to_vec();
        self.db
            .writer()
            .write(move |conn| release(conn, &leases))
            .await?;
        Ok(())
    }

    fn woken(&self) -> impl std::future::Future<Output = ()> + Send {
        let wake = self.wake.clone();
        async move { wake.notified().await }
    }
}
