//! The job queue in PostgreSQL, shared by every instance of a service: one table, `keel_jobs`,
//! in the service's own database.
//!
//! - **Enqueue** on the caller's transaction ([`PgQueue::enqueue`]): the job exists if and only
//!   if the business change commits. The enqueue carries a `NOTIFY keel_jobs` (at most one every
//!   few milliseconds per instance), which PostgreSQL delivers at the commit to every instance
//!   [`PgQueue::listen`]ing, so idle workers everywhere start at once; [`PgQueue::wake`], called
//!   after the commit, wakes one here whatever the throttle. Polling is only the fallback.
//! - **Claims** take a batch with `FOR UPDATE SKIP LOCKED` on partial indexes (due pending jobs,
//!   expired leases): workers on any number of instances never wait on each other and never take
//!   the same job. Leases are short and renewed; their times come from the database's clock
//!   (`clock_timestamp()`), so instances whose clocks disagree still agree on who holds a job, and
//!   the lease's expiry doubles as a fencing value: an outcome or a renewal counts only with the
//!   lease it was claimed with.
//! - **Outcomes** of a batch are one statement.
//! - **Counts** per queue and state (for `/metrics`): pending, running and dead jobs are counted
//!   in the table when read (their partial indexes find them), so an enqueue writes nothing but
//!   its job; succeeded
//!   jobs, which pile up until retention deletes them, are counted by statement triggers as
//!   deltas, appended without touching a shared row (no contention between writers) and folded
//!   when read. A read costs the backlog and the dead jobs plus what succeeded since the last
//!   one, not the size of the table.
//!
//! Times the worker compares (`run_at`, `locked_until`) are milliseconds since the Unix epoch
//! by the database's clock; `created_at` and `finished_at` are `timestamptz`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use super::view::{JobFilter, JobView, MinuteCount, RetryOutcome};
use super::worker::{Backend, BackendError, Claimed, Lease, Outcome};
use super::{ms, truncate, Job};
use crate::migration::Migration;
use crate::RequestId;

/// The `keel_jobs` table, its indexes and the triggers that keep the counts (version 1; see
/// [`SCHEMA_SUCCEEDED_COUNTS`]).
pub const SCHEMA: &str = r#"
CREATE TABLE keel_jobs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue        TEXT        NOT NULL,
    kind         TEXT        NOT NULL,
    payload      TEXT        NOT NULL,
    state        TEXT        NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'running', 'succeeded', 'dead')),
    attempts     INTEGER     NOT NULL DEFAULT 0,
    max_attempts INTEGER     NOT NULL CHECK (max_attempts >= 1),
    last_error   TEXT,
    run_at       BIGINT      NOT NULL,
    locked_until BIGINT,
    request_id   TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ
);
CREATE INDEX keel_jobs_due ON keel_jobs (run_at) WHERE state = 'pending';
CREATE INDEX keel_jobs_leased ON keel_jobs (locked_until) WHERE state = 'running';
CREATE INDEX keel_jobs_finished ON keel_jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE keel_job_counts (
    queue TEXT   NOT NULL,
    state TEXT   NOT NULL,
    n     BIGINT NOT NULL
);

CREATE FUNCTION keel_jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO keel_job_counts (queue, state, n)
        SELECT queue, state, count(*) FROM keel_new GROUP BY queue, state;
    RETURN NULL;
END $$;
CREATE TRIGGER keel_jobs_inserted AFTER INSERT ON keel_jobs
    REFERENCING NEW TABLE AS keel_new FOR EACH STATEMENT EXECUTE FUNCTION keel_jobs_inserted();

CREATE FUNCTION keel_jobs_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO keel_job_counts (queue, state, n)
        SELECT queue, state, sum(n) FROM (
            SELECT queue, state, 1 AS n FROM keel_new
            UNION ALL
            SELECT queue, state, -1 AS n FROM keel_old) changes
        GROUP BY queue, state HAVING sum(n) <> 0;
    RETURN NULL;
END $$;
CREATE TRIGGER keel_jobs_updated AFTER UPDATE ON keel_jobs
    REFERENCING OLD TABLE AS keel_old NEW TABLE AS keel_new
    FOR EACH STATEMENT EXECUTE FUNCTION keel_jobs_updated();

CREATE FUNCTION keel_jobs_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO keel_job_counts (queue, state, n)
        SELECT queue, state, -count(*) FROM keel_old GROUP BY queue, state;
    RETURN NULL;
END $$;
CREATE TRIGGER keel_jobs_deleted AFTER DELETE ON keel_jobs
    REFERENCING OLD TABLE AS keel_old FOR EACH STATEMENT EXECUTE FUNCTION keel_jobs_deleted();
"#;

/// Version 2 of the schema: the triggers count succeeded jobs only, and dead jobs get a partial
/// index, so that an enqueue, the hot path, fires no trigger; [`PgQueue::counts`] counts
/// pending, running and dead jobs in the table instead. Writing a row into `keel_jobs` as `succeeded` directly (never done by
/// `PgQueue`) is not supported: it is not counted, and its deletion later is.
///
/// Applying it locks `keel_jobs` while the new index is built, which reads the whole table
/// (the succeeded jobs that retention keeps included): enqueues and claims wait meanwhile. On
/// a large table, upgrade at a quiet time. Until every instance runs version 2 of this code,
/// those still on version 1 show only succeeded jobs in their counts.
pub const SCHEMA_SUCCEEDED_COUNTS: &str = r#"
DROP TRIGGER keel_jobs_inserted ON keel_jobs;
DROP FUNCTION keel_jobs_inserted();

CREATE OR REPLACE FUNCTION keel_jobs_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO keel_job_counts (queue, state, n)
        SELECT queue, 'succeeded', sum(n) FROM (
            SELECT queue, 1 AS n FROM keel_new WHERE state = 'succeeded'
            UNION ALL
            SELECT queue, -1 AS n FROM keel_old WHERE state = 'succeeded') changes
        GROUP BY queue HAVING sum(n) <> 0;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION keel_jobs_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO keel_job_counts (queue, state, n)
        SELECT queue, 'succeeded', -count(*) FROM keel_old WHERE state = 'succeeded'
        GROUP BY queue;
    RETURN NULL;
END $$;

DELETE FROM keel_job_counts WHERE state <> 'succeeded';
CREATE INDEX keel_jobs_dead ON keel_jobs (id) WHERE state = 'dead';
"#;

/// The queue's schema: [`SCHEMA`] as version 1, [`SCHEMA_SUCCEEDED_COUNTS`] as version 2.
/// [`crate::postgres::migrate`] applies what a database lacks, so it is safe at every start of
/// every instance. An application with migrations of its own puts these in its list, in this
/// order, at versions of its own (the shop service has them as 1 and 4).
pub const MIGRATIONS: &[Migration] = &[
    Migration::new(1, "keel jobs", SCHEMA),
    Migration::new(
        2,
        "keel job counts of succeeded jobs",
        SCHEMA_SUCCEEDED_COUNTS,
    ),
];

/// The channel enqueues notify.
const CHANNEL: &str = "keel_jobs";

/// At most one enqueue in this long carries a `NOTIFY`.
const NOTIFY_EVERY: Duration = Duration::from_millis(5);

/// Now, in milliseconds since the epoch, by the database's clock.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

use crate::postgres::rfc3339;

const VIEW_COLUMNS: &str = concat!(
    "id, queue, kind, state, attempts::bigint AS attempts, max_attempts::bigint AS max_attempts, \
     last_error, ",
    rfc3339!("to_timestamp(run_at / 1000.0)"),
    " AS run_at, ",
    rfc3339!("created_at"),
    " AS created_at, request_id"
);

/// The `last_error` of a job claimed again because its lease ran out.
const LEASE_EXPIRED: &str =
    "lease expired: the worker stopped, or lost its lease, before recording an outcome";

/// The `last_error` of a job whose lease ran out on its last attempt.
const LEASE_EXPIRED_LAST: &str =
    "lease expired on the last attempt: the worker stopped or outlived its lease";

/// A handle on the queue: enqueue on a transaction, the backend of the workers, the admin
/// reads. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PgQueue {
    pool: PgPool,
    max_attempts: u32,
    wake: Arc<Notify>,
    /// When this instance last sent a `NOTIFY` with an enqueue (ms since the epoch).
    last_notify: Arc<AtomicI64>,
}

impl PgQueue {
    /// The queue in `pool`'s database (which must have [`SCHEMA`]); jobs enqueued through it get
    /// `max_attempts` attempts.
    pub fn new(pool: PgPool, max_attempts: u32) -> Self {
        PgQueue {
            pool,
            max_attempts: max_attempts.max(1),
            wake: Arc::new(Notify::new()),
            last_notify: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Adds `job` to the queue on `conn`, the transaction of the business change: the job
    /// exists if and only if it commits, and the commit wakes idle workers on every instance
    /// (call [`PgQueue::wake`] after it to be sure of one here). The id of the current
    /// request, if any, is stored with it.
    pub async fn enqueue<J: Job>(
        &self,
        conn: &mut PgConnection,
        job: &J,
    ) -> Result<i64, sqlx::Error> {
        self.enqueue_at(conn, job, Duration::ZERO).await
    }

    /// Like [`PgQueue::enqueue`], due `delay` from now.
    pub async fn enqueue_at<J: Job>(
        &self,
        conn: &mut PgConnection,
        job: &J,
        delay: Duration,
    ) -> Result<i64, sqlx::Error> {
        let payload = serde_json::to_string(job).map_err(|err| sqlx::Error::Encode(err.into()))?;
        let request_id = RequestId::current();
        let insert = format!(
            "INSERT INTO keel_jobs (queue, kind, payload, max_attempts, run_at, request_id) \
             VALUES ($1, $2, $3, $4, {NOW_MS} + $5, $6) RETURNING id"
        );
        sqlx::query_scalar(&self.with_notify(&insert))
            .bind(J::QUEUE)
            .bind(J::KIND)
            .bind(payload)
            .bind(i32::try_from(self.max_attempts).unwrap_or(i32::MAX))
            .bind(ms(delay))
            .bind(request_id.as_ref().map(RequestId::as_str))
            .fetch_one(conn)
            .await
    }

    /// Adds every job of `jobs` to the queue on `conn` in one statement: the way to enqueue many
    /// at once (a fan-out, an import), at the cost of one. Returns their ids, in order.
    pub async fn enqueue_all<J: Job>(
        &self,
        conn: &mut PgConnection,
        jobs: &[J],
    ) -> Result<Vec<i64>, sqlx::Error> {
        let payloads = jobs
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| sqlx::Error::Encode(err.into()))?;
        let request_id = RequestId::current();
        let insert = format!(
            "INSERT INTO keel_jobs (queue, kind, payload, max_attempts, run_at, request_id) \
             SELECT $1, $2, payload, $4, {NOW_MS}, $5 \
             FROM unnest($3::text[]) WITH ORDINALITY AS job(payload, n) ORDER BY n \
             RETURNING id"
        );
        sqlx::query_scalar(&self.with_notify(&insert))
            .bind(J::QUEUE)
            .bind(J::KIND)
            .bind(payloads)
            .bind(i32::try_from(self.max_attempts).unwrap_or(i32::MAX))
            .bind(request_id.as_ref().map(RequestId::as_str))
            .fetch_all(conn)
            .await
    }

    /// A common table expression, `keel_jobs_added`, that adds one `J` job for each row of
    /// `source` (a table, or a common table expression earlier in the caller's statement), its
    /// payload the JSON text that the SQL expression `payload` makes of that row: for a record
    /// and its job written by one statement, in autocommit, with no transaction and no round
    /// trip of its own. Data-modifying, so it runs whether or not the statement reads it; it
    /// may carry the `NOTIFY` an enqueue carries. It uses parameters `$first` to `$first + 3`:
    /// bind them with [`PgQueue::bind_jobs_from`], after the caller's own.
    ///
    /// `payload` must make what `J` deserializes from (an object with `J`'s fields): test it by
    /// running the job. Call [`PgQueue::wake`] once the statement has run.
    ///
    /// ```
    /// # use keel::jobs::{Job, postgres::PgQueue};
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Welcome { user_id: i64 }
    /// # impl Job for Welcome { const KIND: &'static str = "welcome"; }
    /// # async fn signup(queue: &PgQueue, pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    /// let jobs = queue.jobs_from::<Welcome>("u", "jsonb_build_object('user_id', u.id)::text", 2);
    /// let sql = format!(
    ///     "WITH u AS (INSERT INTO users (email) VALUES ($1) RETURNING id), {jobs} SELECT id FROM u"
    /// );
    /// let query = sqlx::query(&sql).bind("ada@example.com");
    /// let user = queue.bind_jobs_from::<Welcome>(query).fetch_one(pool).await?;
    /// queue.wake();
    /// # Ok(()) }
    /// ```
    pub fn jobs_from<J: Job>(&self, source: &str, payload: &str, first: usize) -> String {
        let [queue, kind, attempts, request] = [first, first + 1, first + 2, first + 3];
        // A one-row subquery joined in, so that the `NOTIFY` runs once, with the insert.
        let notify = if self.notify_due() {
            format!(", (SELECT pg_notify('{CHANNEL}', '')) AS keel_notified")
        } else {
            String::new()
        };
        format!(
            "keel_jobs_added AS ( \
               INSERT INTO keel_jobs (queue, kind, payload, max_attempts, run_at, request_id) \
               SELECT ${queue}, ${kind}, {payload}, ${attempts}, {NOW_MS}, ${request} \
               FROM {source}{notify} RETURNING id) "
        )
    }

    /// Binds the parameters of [`PgQueue::jobs_from`] for `J`, in order: its queue, kind, the
    /// attempts it gets, and the id of the current request.
    pub fn bind_jobs_from<'q, J: Job>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        let request_id = RequestId::current().map(|id| id.as_str().to_owned());
        query
            .bind(J::QUEUE)
            .bind(J::KIND)
            .bind(i32::try_from(self.max_attempts).unwrap_or(i32::MAX))
            .bind(request_id)
    }

    /// Tells one idle worker of this instance that jobs are due: call it once an enqueue has
    /// committed. (The other instances hear of it from the commit's `NOTIFY`.)
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// `insert` (an `INSERT … RETURNING id`), with a `NOTIFY keel_jobs` in the same statement
    /// unless one went out less than [`NOTIFY_EVERY`] ago: delivered at the commit, to every
    /// instance listening. A `NOTIFY` takes a lock that serializes the commits of the whole
    /// database; one in every transaction cost a fifth of a write-heavy service's throughput,
    /// one every few milliseconds costs nothing visible, and workers busy claiming need none.
    fn with_notify(&self, insert: &str) -> String {
        if !self.notify_due() {
            return insert.to_owned();
        }
        format!(
            "WITH inserted AS ({insert}), \
             notified AS (SELECT pg_notify('{CHANNEL}', '')) \
             SELECT inserted.id FROM inserted, notified"
        )
    }

    /// Whether this enqueue carries a `NOTIFY`: none went out from this instance in the last
    /// [`NOTIFY_EVERY`]. Claims the turn when it answers yes.
    fn notify_due(&self) -> bool {
        let now = crate::jobs::now_ms();
        let last = self.last_notify.load(Ordering::Acquire);
        now.saturating_sub(last) >= ms(NOTIFY_EVERY)
            && self
                .last_notify
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Listens for enqueues committed by any instance and wakes a worker here for each, until
    /// `shutdown`. After a lost connection it reconnects with backoff and wakes a worker (what
    /// was notified meanwhile is lost; the worker finds it by claiming). Spawn it beside the
    /// workers.
    pub async fn listen(&self, shutdown: CancellationToken) {
        let mut pause = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let mut listener = match self.subscribe().await {
                Ok(listener) => {
                    pause = Duration::from_millis(100);
                    listener
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for job notifications; polling meanwhile");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.cancelled() => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            // Whatever was enqueued while nobody listened.
            self.wake();
            loop {
                let received = tokio::select! {
                    received = listener.try_recv() => received,
                    () = shutdown.cancelled() => return,
                };
                match received {
                    Ok(Some(_)) => self.wake(),
                    Ok(None) => {
                        tracing::warn!("job notifications connection lost; reconnecting");
                        break;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "job notifications failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }

    async fn subscribe(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }

    /// Number of jobs by queue and state, without the zeros. Pending, running and dead jobs
    /// are counted in the table (their partial indexes find them); succeeded ones from the
    /// deltas the triggers appended, folded first into one row per queue (a delta of another
    /// state, left by an instance of version 1 during an upgrade, is dropped). So the cost is
    /// the backlog and the dead jobs plus what succeeded since the last call, whatever the
    /// size of the table.
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "WITH folded AS (DELETE FROM keel_job_counts RETURNING queue, state, n) \
             INSERT INTO keel_job_counts (queue, state, n) \
             SELECT queue, state, sum(n) FROM folded WHERE state = 'succeeded' \
             GROUP BY queue, state HAVING sum(n) <> 0",
        )
        .execute(&mut *tx)
        .await?;
        let counts = sqlx::query_as(
            "SELECT queue, state, n FROM ( \
                 SELECT queue, state, sum(n)::bigint AS n FROM keel_job_counts \
                 WHERE state = 'succeeded' GROUP BY queue, state \
                 UNION ALL \
                 SELECT queue, 'pending', count(*) FROM keel_jobs WHERE state = 'pending' \
                 GROUP BY queue \
                 UNION ALL \
                 SELECT queue, 'running', count(*) FROM keel_jobs WHERE state = 'running' \
                 GROUP BY queue \
                 UNION ALL \
                 SELECT queue, 'dead', count(*) FROM keel_jobs WHERE state = 'dead' \
                 GROUP BY queue) counts \
             WHERE n > 0 ORDER BY queue, state",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(counts)
    }

    /// Jobs newest first, filtered; keyset pagination by `before_id`.
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<JobView>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {VIEW_COLUMNS} FROM keel_jobs \
             WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR queue = $2) \
               AND ($3::bigint IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(filter.state.as_deref())
        .bind(filter.queue.as_deref())
        .bind(filter.before_id)
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await
    }

    /// Puts a dead job back to pending, due now, its attempts reset.
    pub async fn retry(&self, id: i64) -> Result<RetryOutcome, sqlx::Error> {
        let retried: Option<JobView> = sqlx::query_as(&format!(
            "UPDATE keel_jobs SET state = 'pending', attempts = 0, run_at = {NOW_MS}, \
             locked_until = NULL, finished_at = NULL WHERE id = $1 AND state = 'dead' \
             RETURNING {VIEW_COLUMNS}"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(job) = retried {
            notify(&self.pool).await?;
            return Ok(RetryOutcome::Retried(job));
        }
        let current: Option<JobView> = sqlx::query_as(&format!(
            "SELECT {VIEW_COLUMNS} FROM keel_jobs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(current.map_or(RetryOutcome::NotFound, RetryOutcome::NotDead))
    }

    /// Jobs finished per minute over the last `minutes` minutes, oldest first (minutes with
    /// nothing finished are left out).
    pub async fn finished_per_minute(&self, minutes: u32) -> Result<Vec<MinuteCount>, sqlx::Error> {
        sqlx::query_as(
            "SELECT to_char(date_trunc('minute', finished_at AT TIME ZONE 'UTC'), \
                      'YYYY-MM-DD\"T\"HH24:MI\"Z\"') AS minute, \
                    count(*) FILTER (WHERE state = 'succeeded') AS succeeded, \
                    count(*) FILTER (WHERE state = 'dead') AS dead \
             FROM keel_jobs \
             WHERE finished_at >= now() - make_interval(mins => $1) \
             GROUP BY minute ORDER BY minute",
        )
        .bind(i32::try_from(minutes).unwrap_or(i32::MAX))
        .fetch_all(&self.pool)
        .await
    }
}

/// Wakes idle workers on every instance.
async fn notify(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(pool)
        .await?;
    Ok(())
}

/// The claim: one statement, three parts on disjoint rows. Jobs whose lease ran out on their
/// last attempt were lost by a worker each time (a crash, or a job outliving its lease) and are
/// dead rather than looping forever; those whose lease ran out earlier are taken again; then
/// due pending jobs. `before` is more common table expressions, ending in a comma, that run in
/// the same statement (outcomes to record). Parameters: $1 limit, $2 lease in ms, $3 the ids
/// running here, $4 and $5 the errors of a lease that ran out.
fn claim_sql(before: &str) -> String {
    format!(
        "WITH {before}clock AS (SELECT {NOW_MS} AS now), \
         lost AS ( \
           UPDATE keel_jobs SET state = 'dead', locked_until = NULL, finished_at = now(), \
             last_error = $5 \
           WHERE id IN (SELECT id FROM keel_jobs, clock \
             WHERE state = 'running' AND locked_until <= clock.now \
               AND attempts >= max_attempts AND id <> ALL($3) \
             FOR UPDATE OF keel_jobs SKIP LOCKED) \
           RETURNING id), \
         expired AS ( \
           SELECT id FROM keel_jobs, clock \
           WHERE state = 'running' AND locked_until <= clock.now \
             AND attempts < max_attempts AND id <> ALL($3) \
           ORDER BY locked_until LIMIT $1 FOR UPDATE OF keel_jobs SKIP LOCKED), \
         due AS ( \
           SELECT id FROM keel_jobs, clock \
           WHERE state = 'pending' AND run_at <= clock.now \
           ORDER BY run_at LIMIT $1 FOR UPDATE OF keel_jobs SKIP LOCKED), \
         picked AS (SELECT id FROM expired UNION ALL SELECT id FROM due LIMIT $1) \
         UPDATE keel_jobs j SET attempts = j.attempts + 1, locked_until = clock.now + $2, \
           last_error = CASE WHEN j.state = 'running' THEN $4 ELSE j.last_error END, \
           state = 'running' \
         FROM picked, clock WHERE j.id = picked.id \
         RETURNING j.id, j.locked_until, j.queue, j.kind, j.payload, j.attempts, \
           j.max_attempts, j.request_id"
    )
}

/// [`claim_sql`] with its five parameters bound.
fn claim_query<'q>(
    sql: &'q str,
    limit: usize,
    lease: Duration,
    running_here: &'q [i64],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(ms(lease))
        .bind(running_here)
        .bind(LEASE_EXPIRED)
        .bind(LEASE_EXPIRED_LAST)
}

/// The claimed jobs of a claim's rows.
fn claimed(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<Claimed>, sqlx::Error> {
    rows.iter()
        .map(|row| {
            Ok(Claimed {
                id: row.try_get(0)?,
                lease_until: row.try_get(1)?,
                queue: row.try_get(2)?,
                kind: row.try_get(3)?,
                payload: row.try_get(4)?,
                attempts: u32::try_from(row.try_get::<i32, _>(5)?).unwrap_or(0),
                max_attempts: u32::try_from(row.try_get::<i32, _>(6)?).unwrap_or(1),
                request_id: row.try_get(7)?,
            })
        })
        .collect()
}

/// Records outcomes given as five arrays (ids, leases, states, run-at times, errors), the
/// first bound as parameter `$first`. The lease must still be the one the outcome was earned
/// under: a worker whose lease ran out (and whose job another worker has claimed since)
/// overwrites nothing.
fn finish_sql(first: usize) -> String {
    let [a, b, c, d, e] = [first, first + 1, first + 2, first + 3, first + 4];
    format!(
        "UPDATE keel_jobs j SET state = o.state, locked_until = NULL, \
           run_at = COALESCE(o.run_at, j.run_at), \
           last_error = CASE WHEN o.state = 'succeeded' THEN j.last_error ELSE o.error END, \
           finished_at = CASE WHEN o.state = 'pending' THEN NULL ELSE now() END \
         FROM unnest(${a}::bigint[], ${b}::bigint[], ${c}::text[], ${d}::bigint[], ${e}::text[]) \
           AS o(id, until, state, run_at, error) \
         WHERE j.id = o.id AND j.locked_until = o.until AND j.state = 'running'"
    )
}

/// `query` (whose SQL comes from [`finish_sql`]) with `outcomes` bound as its five arrays.
fn bind_outcomes<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    outcomes: &'q [(Lease, Outcome)],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut ids = Vec::with_capacity(outcomes.len());
    let mut untils = Vec::with_capacity(outcomes.len());
    let mut states = Vec::with_capacity(outcomes.len());
    let mut run_ats = Vec::with_capacity(outcomes.len());
    let mut errors = Vec::with_capacity(outcomes.len());
    for (lease, outcome) in outcomes {
        let (state, run_at, error) = match outcome {
            Outcome::Succeeded => ("succeeded", None, None),
            Outcome::Retry { run_at_ms, error } => {
                ("pending", Some(*run_at_ms), Some(truncate(error)))
            }
            Outcome::Dead { error } => ("dead", None, Some(truncate(error))),
        };
        ids.push(lease.id);
        untils.push(lease.until);
        states.push(state);
        run_ats.push(run_at);
        errors.push(error);
    }
    query
        .bind(ids)
        .bind(untils)
        .bind(states)
        .bind(run_ats)
        .bind(errors)
}

fn lease_arrays(leases: &[Lease]) -> (Vec<i64>, Vec<i64>) {
    leases.iter().map(|lease| (lease.id, lease.until)).unzip()
}

impl Backend for PgQueue {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
        running_here: &[i64],
    ) -> Result<Vec<Claimed>, BackendError> {
        let rows = claim_query(&claim_sql(""), limit, lease, running_here)
            .fetch_all(&self.pool)
            .await?;
        Ok(claimed(&rows)?)
    }

    async fn finish_and_claim(
        &self,
        outcomes: &[(Lease, Outcome)],
        limit: usize,
        lease: Duration,
        running_here: &[i64],
    ) -> Result<Vec<Claimed>, BackendError> {
        // The outcomes' rows are running and in `running_here`, so the claim's parts, which
        // see the statement's starting snapshot, never pick them: the two touch disjoint rows.
        let finish = format!("done AS ({}), ", finish_sql(6));
        let sql = claim_sql(&finish);
        let rows = bind_outcomes(claim_query(&sql, limit, lease, running_here), outcomes)
            .fetch_all(&self.pool)
            .await?;
        Ok(claimed(&rows)?)
    }

    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<Lease>, BackendError> {
        let (ids, untils) = lease_arrays(leases);
        let renewed: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "UPDATE keel_jobs j SET locked_until = {NOW_MS} + $3 \
             FROM unnest($1::bigint[], $2::bigint[]) AS held(id, until) \
             WHERE j.id = held.id AND j.locked_until = held.until AND j.state = 'running' \
             RETURNING j.id, j.locked_until"
        ))
        .bind(ids)
        .bind(untils)
        .bind(ms(lease))
        .fetch_all(&self.pool)
        .await?;
        Ok(renewed
            .into_iter()
            .map(|(id, until)| Lease { id, until })
            .collect())
    }

    async fn finish(&self, outcomes: &[(Lease, Outcome)]) -> Result<(), BackendError> {
        let sql = finish_sql(1);
        bind_outcomes(sqlx::query(&sql), outcomes)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release(&self, leases: &[Lease]) -> Result<(), BackendError> {
        let (ids, untils) = lease_arrays(leases);
        sqlx::query(&format!(
            "UPDATE keel_jobs j SET state = 'pending', attempts = GREATEST(j.attempts - 1, 0), \
               locked_until = NULL, run_at = {NOW_MS} \
             FROM unnest($1::bigint[], $2::bigint[]) AS held(id, until) \
             WHERE j.id = held.id AND j.locked_until = held.until AND j.state = 'running'"
        ))
        .bind(ids)
        .bind(untils)
        .execute(&self.pool)
        .await?;
        // Another instance may run them now.
        notify(&self.pool).await?;
        Ok(())
    }

    fn woken(&self) -> impl std::future::Future<Output = ()> + Send {
        let wake = self.wake.clone();
        async move { wake.notified().await }
    }
}
