//! The job queue in SQLite: one table, `keel_jobs`, in the service's own database.
//!
//! Add [`SCHEMA`] to the application's migrations. Times the worker compares (`run_at`,
//! `locked_until`) are integers of milliseconds since the Unix epoch; `created_at` and
//! `finished_at` are RFC 3339 text for people.
//!
//! SQLite has one writer at a time, so one instance per database is the supported setup; claims
//! are single `UPDATE … RETURNING` statements and completions one statement per batch, which is
//! what lets a single writer move thousands of jobs a second.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::Notify;

use super::worker::{Backend, Claimed, Lease, Outcome};
use super::{ms, now_ms, Job};
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

const NOW_TEXT: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// Longest `last_error` kept, in bytes: enough for a cause, not for a response body.
const MAX_ERROR_LEN: usize = 1000;

/// A handle on the queue: enqueue into a transaction, and the backend of the workers.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    pool: SqlitePool,
    max_attempts: u32,
    wake: Arc<Notify>,
}

impl SqliteQueue {
    /// The queue in `pool`'s database (which must have [`SCHEMA`]); jobs enqueued through it
    /// get `max_attempts` attempts.
    pub fn new(pool: SqlitePool, max_attempts: u32) -> Self {
        SqliteQueue {
            pool,
            max_attempts: max_attempts.max(1),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Adds `job` to the queue on `conn`, which is normally the transaction of the business
    /// change: the job exists if and only if that transaction commits. The id of the current
    /// request, if any, is stored with it. Call [`SqliteQueue::wake`] after the commit to have
    /// a worker start at once rather than at its next poll.
    pub async fn enqueue<J: Job>(
        &self,
        conn: &mut SqliteConnection,
        job: &J,
    ) -> Result<i64, sqlx::Error> {
        self.enqueue_at(conn, job, Duration::ZERO).await
    }

    /// Like [`SqliteQueue::enqueue`], due `delay` from now.
    pub async fn enqueue_at<J: Job>(
        &self,
        conn: &mut SqliteConnection,
        job: &J,
        delay: Duration,
    ) -> Result<i64, sqlx::Error> {
        let payload = serde_json::to_string(job).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let request_id = RequestId::current();
        sqlx::query_scalar(
            "INSERT INTO keel_jobs (queue, kind, payload, max_attempts, run_at, request_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        )
        .bind(J::QUEUE)
        .bind(J::KIND)
        .bind(payload)
        .bind(self.max_attempts)
        .bind(now_ms().saturating_add(ms(delay)))
        .bind(request_id.as_ref().map(RequestId::as_str))
        .fetch_one(&mut *conn)
        .await
    }

    /// Tells one idle worker that jobs are due.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Number of jobs by queue and state.
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
        sqlx::query_as("SELECT queue, state, COUNT(*) FROM keel_jobs GROUP BY queue, state")
            .fetch_all(&self.pool)
            .await
    }
}

/// `[[id, lease], …]` for `json_each`.
fn leases_json(pairs: &[(i64, i64)]) -> Result<String, sqlx::Error> {
    serde_json::to_string(pairs).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// A job as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct JobView {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub last_error: Option<String>,
    /// When the job is (or was) due, RFC 3339.
    pub run_at: String,
    pub created_at: String,
    /// The request that enqueued it.
    pub request_id: Option<String>,
}

/// Which jobs [`SqliteQueue::list`] returns.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<String>,
    pub queue: Option<String>,
    /// Only jobs with a smaller id: the last id of the previous page.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// What [`SqliteQueue::retry`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The dead job is pending again, attempts reset.
    Retried(JobView),
    /// The job is not dead: nothing changed.
    NotDead(JobView),
    /// No such job.
    NotFound,
}

/// Jobs finished in one minute.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct MinuteCount {
    /// The minute, `YYYY-MM-DDTHH:MMZ`.
    pub minute: String,
    pub succeeded: i64,
    pub dead: i64,
}

const VIEW_COLUMNS: &str = "id, queue, kind, state, attempts, max_attempts, last_error, \
    strftime('%Y-%m-%dT%H:%M:%fZ', run_at / 1000.0, 'unixepoch') AS run_at, created_at, request_id";

impl SqliteQueue {
    /// Jobs newest first, filtered; keyset pagination by `before_id`.
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<JobView>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {VIEW_COLUMNS} FROM keel_jobs \
             WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR queue = ?2) \
               AND (?3 IS NULL OR id < ?3) \
             ORDER BY id DESC LIMIT ?4"
        ))
        .bind(filter.state.as_deref())
        .bind(filter.queue.as_deref())
        .bind(filter.before_id)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Puts a dead job back to pending, due now, its attempts reset.
    pub async fn retry(&self, id: i64) -> Result<RetryOutcome, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let retried: Option<JobView> = sqlx::query_as(&format!(
            "UPDATE keel_jobs SET state = 'pending', attempts = 0, run_at = ?2, \
             locked_until = NULL, finished_at = NULL WHERE id = ?1 AND state = 'dead' \
             RETURNING {VIEW_COLUMNS}"
        ))
        .bind(id)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match retried {
            Some(job) => RetryOutcome::Retried(job),
            None => {
                let current: Option<JobView> = sqlx::query_as(&format!(
                    "SELECT {VIEW_COLUMNS} FROM keel_jobs WHERE id = ?1"
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                current.map_or(RetryOutcome::NotFound, RetryOutcome::NotDead)
            }
        };
        tx.commit().await?;
        if matches!(outcome, RetryOutcome::Retried(_)) {
            self.wake();
        }
        Ok(outcome)
    }

    /// Jobs finished per minute over the last `minutes` minutes, oldest first (minutes with
    /// nothing finished are left out).
    pub async fn finished_per_minute(&self, minutes: u32) -> Result<Vec<MinuteCount>, sqlx::Error> {
        sqlx::query_as(
            "SELECT substr(finished_at, 1, 16) || 'Z' AS minute, \
               SUM(state = 'succeeded') AS succeeded, SUM(state = 'dead') AS dead \
             FROM keel_jobs \
             WHERE finished_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ?1 || ' minutes') \
             GROUP BY minute ORDER BY minute",
        )
        .bind(minutes)
        .fetch_all(&self.pool)
        .await
    }
}

fn truncate(message: &str) -> &str {
    if message.len() <= MAX_ERROR_LEN {
        return message;
    }
    let mut end = MAX_ERROR_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl Backend for SqliteQueue {
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Claimed>, sqlx::Error> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        // Jobs whose lease ran out as often as they may run were lost by a worker each time
        // (a crash, or a job outliving its lease): stop there rather than loop forever.
        sqlx::query(&format!(
            "UPDATE keel_jobs SET state = 'dead', locked_until = NULL, finished_at = {NOW_TEXT}, \
             last_error = 'lease expired on the last attempt: the worker stopped or outlived its lease' \
             WHERE state = 'running' AND locked_until <= ?1 AND attempts >= max_attempts"
        ))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let claimed = sqlx::query_as::<_, Claimed>(
            "UPDATE keel_jobs SET state = 'running', attempts = attempts + 1, locked_until = ?2 \
             WHERE id IN ( \
               SELECT id FROM ( \
                 SELECT id, run_at AS due FROM keel_jobs WHERE state = 'pending' AND run_at <= ?1 \
                 UNION ALL \
                 SELECT id, locked_until AS due FROM keel_jobs \
                   WHERE state = 'running' AND locked_until <= ?1 \
               ) ORDER BY due LIMIT ?3) \
             RETURNING id, locked_until AS lease_until, queue, kind, payload, attempts, \
             max_attempts, request_id",
        )
        .bind(now)
        .bind(now.saturating_add(ms(lease)))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    // Every statement below matches the lease as well as the id: a worker whose lease ran out
    // (and whose job another worker has claimed since) must not overwrite that worker's work.
    async fn finish(&self, outcomes: &[(Lease, Outcome)]) -> Result<(), sqlx::Error> {
        let succeeded: Vec<(i64, i64)> = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Succeeded))
            .map(|(lease, _)| (lease.id, lease.until))
            .collect();
        let mut tx = self.pool.begin().await?;
        if !succeeded.is_empty() {
            sqlx::query(&format!(
                "UPDATE keel_jobs SET state = 'succeeded', locked_until = NULL, \
                 finished_at = {NOW_TEXT} WHERE state = 'running' AND (id, locked_until) IN \
                 (SELECT value ->> 0, value ->> 1 FROM json_each(?1))"
            ))
            .bind(leases_json(&succeeded)?)
            .execute(&mut *tx)
            .await?;
        }
        for (lease, outcome) in outcomes {
            match outcome {
                Outcome::Succeeded => {}
                Outcome::Retry { run_at_ms, error } => {
                    sqlx::query(
                        "UPDATE keel_jobs SET state = 'pending', locked_until = NULL, \
                         run_at = ?3, last_error = ?4 \
                         WHERE id = ?1 AND state = 'running' AND locked_until = ?2",
                    )
                    .bind(lease.id)
                    .bind(lease.until)
                    .bind(run_at_ms)
                    .bind(truncate(error))
                    .execute(&mut *tx)
                    .await?;
                }
                Outcome::Dead { error } => {
                    sqlx::query(&format!(
                        "UPDATE keel_jobs SET state = 'dead', locked_until = NULL, \
                         finished_at = {NOW_TEXT}, last_error = ?3 \
                         WHERE id = ?1 AND state = 'running' AND locked_until = ?2"
                    ))
                    .bind(lease.id)
                    .bind(lease.until)
                    .bind(truncate(error))
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await
    }

    async fn release(&self, leases: &[Lease]) -> Result<(), sqlx::Error> {
        let pairs: Vec<(i64, i64)> = leases.iter().map(|l| (l.id, l.until)).collect();
        sqlx::query(
            "UPDATE keel_jobs SET state = 'pending', attempts = MAX(attempts - 1, 0), \
             locked_until = NULL, run_at = ?2 \
             WHERE state = 'running' AND (id, locked_until) IN \
             (SELECT value ->> 0, value ->> 1 FROM json_each(?1))",
        )
        .bind(leases_json(&pairs)?)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map(drop)
    }

    fn woken(&self) -> impl std::future::Future<Output = ()> + Send {
        let wake = self.wake.clone();
        async move { wake.notified().await }
    }
}
