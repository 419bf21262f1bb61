//! The job queue on SQLite (a real database file) and on PostgreSQL (a schema of its own on the
//! real server): what workers do with failures, panics, unknown kinds, bad payloads,
//! `Retry-After`, and leases that ran out. Every test runs on both, from one body.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel::jobs::sqlite::{SqliteQueue, MIGRATIONS};
use keel::jobs::{
    Backend, BackendError, Claimed, Job, JobError, JobMeta, Lease, Outcome, Registry, Worker,
    WorkerConfig,
};
use keel::sqlite::{Database, Options};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Flaky;
impl Job for Flaky {
    const KIND: &'static str = "flaky";
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Steady;
impl Job for Steady {
    const KIND: &'static str = "steady";
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Orphan;
impl Job for Orphan {
    const KIND: &'static str = "orphan";
}

#[derive(Debug, Clone, Copy)]
enum Engine {
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
}

/// Each test once per engine: `{engine}::{test}`.
macro_rules! on_every_engine {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Engine::Sqlite).await
            })*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Engine::Postgres).await
            })*
        }
    };
}

on_every_engine!(
    a_panicking_job_fails_alone_and_succeeds_on_retry,
    unknown_kinds_bad_payloads_and_permanent_errors_are_dead_at_once,
    retry_after_sets_the_next_attempt_time,
    a_worker_whose_lease_ran_out_cannot_overwrite_the_next_claim,
    a_job_lost_on_its_last_attempt_is_dead_not_retried_forever,
    a_slow_job_does_not_keep_the_finished_ones_of_its_worker_running,
    a_job_longer_than_its_lease_keeps_it_and_runs_once,
    an_attempt_whose_lease_was_taken_is_stopped,
    jobs_running_in_this_process_are_not_claimed_again_whatever_the_clock_says,
    counts_follow_every_change_of_state,
);

/// A queue on one engine, with what the tests need to look inside it.
#[derive(Clone)]
enum Queue {
    Sqlite(Database, SqliteQueue),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool, keel::jobs::postgres::PgQueue),
}

struct Db {
    queue: Queue,
    _dir: Option<PathGuard>,
    #[cfg(feature = "postgres")]
    _schema: Option<common::pg::Schema>,
}

struct PathGuard(std::path::PathBuf);
impl Drop for PathGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new empty queue on `engine`; `None` when that engine is not here (the test is skipped,
/// saying so).
async fn db(engine: Engine, max_attempts: u32) -> Option<Db> {
    match engine {
        Engine::Sqlite => {
            let dir = std::env::temp_dir().join(format!("keel-jobs-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            let db = Database::open(dir.join("jobs.db"), Options::default(), MIGRATIONS).unwrap();
            let queue = SqliteQueue::new(db.clone(), max_attempts);
            Some(Db {
                queue: Queue::Sqlite(db, queue),
                _dir: Some(PathGuard(dir)),
                #[cfg(feature = "postgres")]
                _schema: None,
            })
        }
        #[cfg(feature = "postgres")]
        Engine::Postgres => {
            let schema = common::pg::Schema::create().await?;
            keel::postgres::migrate(&schema.pool, keel::jobs::postgres::MIGRATIONS)
                .await
                .unwrap();
            let queue = keel::jobs::postgres::PgQueue::new(schema.pool.clone(), max_attempts);
            Some(Db {
                queue: Queue::Postgres(schema.pool.clone(), queue),
                _dir: None,
                _schema: Some(schema),
            })
        }
    }
}

impl Backend for Queue {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
        running_here: &[i64],
    ) -> Result<Vec<Claimed>, BackendError> {
        match self {
            Queue::Sqlite(_, q) => q.claim(limit, lease, running_here).await,
            #[cfg(feature = "postgres")]
            Queue::Postgres(_, q) => q.claim(limit, lease, running_here).await,
        }
    }

    async fn renew(&self, leases: &[Lease], lease: Duration) -> Result<Vec<Lease>, BackendError> {
        match self {
            Queue::Sqlite(_, q) => q.renew(leases, lease).await,
            #[cfg(feature = "postgres")]
            Queue::Postgres(_, q) => q.renew(leases, lease).await,
        }
    }

    async fn finish(&self, outcomes: &[(Lease, Outcome)]) -> Result<(), BackendError> {
        match self {
            Queue::Sqlite(_, q) => q.finish(outcomes).await,
            #[cfg(feature = "postgres")]
            Queue::Postgres(_, q) => q.finish(outcomes).await,
        }
    }

    async fn release(&self, leases: &[Lease]) -> Result<(), BackendError> {
        match self {
            Queue::Sqlite(_, q) => q.release(leases).await,
            #[cfg(feature = "postgres")]
            Queue::Postgres(_, q) => q.release(leases).await,
        }
    }

    async fn woken(&self) {
        match self {
            Queue::Sqlite(_, q) => q.woken().await,
            #[cfg(feature = "postgres")]
            Queue::Postgres(_, q) => q.woken().await,
        }
    }
}

impl Queue {
    async fn counts(&self) -> Vec<(String, String, i64)> {
        match self {
            Queue::Sqlite(_, q) => q.counts().await.unwrap(),
            #[cfg(feature = "postgres")]
            Queue::Postgres(_, q) => q.counts().await.unwrap(),
        }
    }
}

async fn enqueue<J: Job + Clone + Sync>(db: &Db, job: &J) -> i64 {
    match &db.queue {
        Queue::Sqlite(database, queue) => {
            let (queue, job) = (queue.clone(), job.clone());
            database
                .writer()
                .write(move |conn| queue.enqueue(conn, &job))
                .await
                .unwrap()
        }
        #[cfg(feature = "postgres")]
        Queue::Postgres(pool, queue) => {
            let mut tx = pool.begin().await.unwrap();
            let id = queue.enqueue(&mut tx, job).await.unwrap();
            tx.commit().await.unwrap();
            queue.wake();
            id
        }
    }
}

/// Runs `sql` with `id` as `$1`.
async fn execute(db: &Db, sql: &'static str, id: i64) {
    match &db.queue {
        Queue::Sqlite(database, _) => {
            database
                .writer()
                .write(move |conn| conn.execute(sql, [id]).map_err(keel::sqlite::Error::from))
                .await
                .unwrap();
        }
        #[cfg(feature = "postgres")]
        Queue::Postgres(pool, _) => {
            sqlx::query(sql).bind(id).execute(pool).await.unwrap();
        }
    }
}

/// The one integer `sql` selects with `id` as `$1`.
async fn select_i64(db: &Db, sql: &'static str, id: i64) -> i64 {
    match &db.queue {
        Queue::Sqlite(database, _) => database
            .readers()
            .read(|conn| conn.query_row(sql, [id], |row| row.get(0)))
            .unwrap(),
        #[cfg(feature = "postgres")]
        Queue::Postgres(pool, _) => sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap(),
    }
}

type Row = (String, i64, Option<String>);

async fn job(db: &Db, id: i64) -> Row {
    const SQL: &str = "SELECT state, attempts, last_error FROM keel_jobs WHERE id = $1";
    match &db.queue {
        Queue::Sqlite(database, _) => database
            .readers()
            .read(|conn| {
                conn.query_row(SQL, [id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            })
            .unwrap(),
        #[cfg(feature = "postgres")]
        Queue::Postgres(pool, _) => {
            let (state, attempts, error): (String, i32, Option<String>) =
                sqlx::query_as(SQL).bind(id).fetch_one(pool).await.unwrap();
            (state, i64::from(attempts), error)
        }
    }
}

async fn until_state(db: &Db, id: i64, state: &str) -> Row {
    until(db, id, |row| row.0 == state).await
}

async fn until(db: &Db, id: i64, done: impl Fn(&Row) -> bool) -> Row {
    for _ in 0..500 {
        let row = job(db, id).await;
        if done(&row) {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} never got there: {:?}", job(db, id).await);
}

fn config() -> WorkerConfig {
    WorkerConfig {
        workers: 1,
        poll_interval: Duration::from_millis(20),
        backoff_base: Duration::from_millis(20),
        ..WorkerConfig::default()
    }
}

fn start(db: &Db, registry: Registry) -> (CancellationToken, TaskTracker) {
    start_with(db, registry, config())
}

fn start_with(
    db: &Db,
    registry: Registry,
    config: WorkerConfig,
) -> (CancellationToken, TaskTracker) {
    let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
    Worker::spawn(db.queue.clone(), registry, config, stop.clone(), &tracker);
    (stop, tracker)
}

async fn a_panicking_job_fails_alone_and_succeeds_on_retry(engine: Engine) {
    let Some(db) = db(engine, 5).await else {
        return;
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let registry = Registry::new()
        .register(move |_: Flaky, _: JobMeta| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("first attempt explodes");
                }
                Ok::<(), JobError>(())
            }
        })
        .register(|_: Steady, _: JobMeta| async { Ok::<(), JobError>(()) });
    let flaky = enqueue(&db, &Flaky).await;
    let steady = enqueue(&db, &Steady).await;
    let _worker = start(&db, registry);

    let (_, attempts, error) = until_state(&db, flaky, "succeeded").await;
    assert_eq!(attempts, 2);
    assert!(error
        .unwrap()
        .contains("job panicked: first attempt explodes"));
    assert_eq!(until_state(&db, steady, "succeeded").await.1, 1);
}

async fn unknown_kinds_bad_payloads_and_permanent_errors_are_dead_at_once(engine: Engine) {
    let Some(db) = db(engine, 5).await else {
        return;
    };
    let registry = Registry::new()
        .register(|_: Flaky, _: JobMeta| async {
            Err::<(), _>(JobError::permanent("no such user"))
        })
        .register(|_: Steady, _: JobMeta| async { Ok::<(), JobError>(()) });
    let orphan = enqueue(&db, &Orphan).await;
    let permanent = enqueue(&db, &Flaky).await;
    let bad = enqueue(&db, &Steady).await;
    execute(
        &db,
        "UPDATE keel_jobs SET payload = '[1, 2' WHERE id = $1",
        bad,
    )
    .await;
    let _worker = start(&db, registry);

    let (_, attempts, error) = until_state(&db, orphan, "dead").await;
    assert_eq!(
        (attempts, error.as_deref()),
        (1, Some("no handler for job kind \"orphan\""))
    );
    let (_, attempts, error) = until_state(&db, permanent, "dead").await;
    assert_eq!((attempts, error.as_deref()), (1, Some("no such user")));
    let (_, attempts, error) = until_state(&db, bad, "dead").await;
    assert_eq!(attempts, 1);
    assert!(error
        .unwrap()
        .starts_with("payload does not parse as steady"));
}

async fn retry_after_sets_the_next_attempt_time(engine: Engine) {
    let Some(db) = db(engine, 5).await else {
        return;
    };
    let registry = Registry::new().register(|_: Flaky, _: JobMeta| async {
        Err::<(), _>(JobError::retry_after(
            "429 from the receiver",
            Duration::from_secs(30),
        ))
    });
    let id = enqueue(&db, &Flaky).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let _worker = start(&db, registry);
    // Pending again, once the first failure is recorded.
    let (_, _, error) = until(&db, id, |row| row.0 == "pending" && row.1 == 1).await;
    assert_eq!(error.as_deref(), Some("429 from the receiver"));
    let run_at = select_i64(&db, "SELECT run_at FROM keel_jobs WHERE id = $1", id).await;
    let delay = run_at - before.as_millis() as i64;
    assert!((29_000..=31_000).contains(&delay), "{delay} ms");
}

async fn a_worker_whose_lease_ran_out_cannot_overwrite_the_next_claim(engine: Engine) {
    let Some(db) = db(engine, 5).await else {
        return;
    };
    let id = enqueue(&db, &Steady).await;
    let first = db.queue.claim(10, Duration::ZERO, &[]).await.unwrap();
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = db
        .queue
        .claim(10, Duration::from_secs(60), &[])
        .await
        .unwrap();
    assert_eq!(second.iter().map(|c| c.id()).collect::<Vec<_>>(), vec![id]);

    // The first worker comes back late: its outcome and its release are ignored.
    let late = first[0].lease();
    db.queue
        .finish(&[(
            late,
            Outcome::Dead {
                error: "late".into(),
            },
        )])
        .await
        .unwrap();
    db.queue.release(&[late]).await.unwrap();
    let expired = Some(
        "lease expired: the worker stopped, or lost its lease, before recording an outcome"
            .to_owned(),
    );
    assert_eq!(
        job(&db, id).await,
        ("running".to_owned(), 2, expired.clone())
    );

    db.queue
        .finish(&[(second[0].lease(), Outcome::Succeeded)])
        .await
        .unwrap();
    assert_eq!(job(&db, id).await, ("succeeded".to_owned(), 2, expired));
}

/// Claims the one due job with a lease that has already run out.
async fn claim_and_lose_the_lease(db: &Db) {
    let claimed = db.queue.claim(10, Duration::ZERO, &[]).await.unwrap();
    assert_eq!(claimed.len(), 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
}

async fn a_job_lost_on_its_last_attempt_is_dead_not_retried_forever(engine: Engine) {
    let Some(db) = db(engine, 1).await else {
        return;
    };
    let id = enqueue(&db, &Steady).await;
    claim_and_lose_the_lease(&db).await;
    assert!(db
        .queue
        .claim(10, Duration::from_secs(60), &[])
        .await
        .unwrap()
        .is_empty());
    let (state, attempts, error) = job(&db, id).await;
    assert_eq!((state.as_str(), attempts), ("dead", 1));
    assert!(error.unwrap().starts_with("lease expired"));
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Sleep {
    ms: u64,
}
impl Job for Sleep {
    const KIND: &'static str = "sleep";
}

fn sleeper(calls: Arc<AtomicUsize>, done: Arc<AtomicUsize>) -> Registry {
    Registry::new().register(move |job: Sleep, _: JobMeta| {
        calls.fetch_add(1, Ordering::SeqCst);
        let done = done.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(job.ms)).await;
            done.fetch_add(1, Ordering::SeqCst);
            Ok::<(), JobError>(())
        }
    })
}

async fn a_slow_job_does_not_keep_the_finished_ones_of_its_worker_running(engine: Engine) {
    let Some(db) = db(engine, 5).await else {
        return;
    };
    let (calls, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let slow = enqueue(&db, &Sleep { ms: 3_000 }).await;
    let mut quick = Vec::new();
    for _ in 0..10 {
        quick.push(enqueue(&db, &Sleep { ms: 10 }).await);
    }
    let _worker = start(&db, sleeper(calls, done));
    for id in quick {
        until_state(&db, id, "succeeded").await;
    }
    assert_eq!(job(&db, slow).await.0, "running");
}

async fn a_job_longer_than_its_lease_keeps_it_and_runs_once(engine: Engine) {
    let Some(db) = db(engine, 5).await else {
        return;
    };
    let (calls, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let id = enqueue(&db, &Sleep { ms: 1_500 }).await;
    let config = WorkerConfig {
        workers: 2,
        lease: Duration::from_millis(300),
        ..config()
    };
    let _worker = start_with(&db, sleeper(calls.clone(), done.clone()), config);
    let (_, attempts, error) = until_state(&db, id, "succeeded").await;
    assert_eq!((attempts, error), (1, None));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

async fn an_attempt_whose_lease_was_taken_is_stopped(engine: Engine) {
    let Some(db) = db(engine, 5).await else {
        return;
    };
    let (calls, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let id = enqueue(&db, &Sleep { ms: 1_500 }).await;
    let config = WorkerConfig {
        lease: Duration::from_millis(300),
        ..config()
    };
    let _worker = start_with(&db, sleeper(calls.clone(), done.clone()), config);
    until_state(&db, id, "running").await;
    // Another claim took it: the lease the worker holds is no longer the row's.
    execute(
        &db,
        "UPDATE keel_jobs SET locked_until = locked_until + 3600000 WHERE id = $1",
        id,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "the attempt went on without its lease"
    );
}

async fn jobs_running_in_this_process_are_not_claimed_again_whatever_the_clock_says(
    engine: Engine,
) {
    let Some(db) = db(engine, 5).await else {
        return;
    };
    let id = enqueue(&db, &Steady).await;
    claim_and_lose_the_lease(&db).await;
    // Its lease has run out, but this process still runs it.
    assert!(db
        .queue
        .claim(10, Duration::ZERO, &[id])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        db.queue.claim(10, Duration::ZERO, &[]).await.unwrap().len(),
        1
    );
}

/// SQLite only: one process per database file, so what is `running` when it opens was left by
/// a process that died. (PostgreSQL has no such moment: other instances take over expired
/// leases.)
#[tokio::test]
async fn jobs_left_running_by_a_dead_process_run_again_at_once_as_retries() {
    let engine = Engine::Sqlite;
    let Some(db) = db(engine, 2).await else {
        return;
    };
    let retried = enqueue(&db, &Steady).await;
    let last = enqueue(&db, &Flaky).await;
    execute(
        &db,
        "UPDATE keel_jobs SET attempts = max_attempts WHERE id = $1",
        last,
    )
    .await;
    let claimed = db
        .queue
        .claim(10, Duration::from_secs(60), &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);

    let Queue::Sqlite(_, sqlite) = &db.queue else {
        unreachable!()
    };
    assert_eq!(sqlite.recover_interrupted().await.unwrap(), 2);
    let interrupted = Some("interrupted: the process stopped while the job ran".to_owned());
    assert_eq!(
        job(&db, retried).await,
        ("pending".to_owned(), 1, interrupted.clone())
    );
    assert_eq!(job(&db, last).await, ("dead".to_owned(), 3, interrupted));
    let again = db
        .queue
        .claim(10, Duration::from_secs(60), &[])
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|c| (c.id, c.attempts)).collect::<Vec<_>>(),
        vec![(retried, 2)]
    );
}

async fn counts_follow_every_change_of_state(engine: Engine) {
    let Some(db) = db(engine, 5).await else {
        return;
    };
    for _ in 0..3 {
        enqueue(&db, &Steady).await;
    }
    let counts = |pending: i64, running: i64, succeeded: i64| {
        let mut expected = Vec::new();
        for (state, n) in [
            ("pending", pending),
            ("running", running),
            ("succeeded", succeeded),
        ] {
            if n > 0 {
                expected.push(("default".to_owned(), state.to_owned(), n));
            }
        }
        expected
    };
    assert_eq!(db.queue.counts().await, counts(3, 0, 0));
    let claimed = db
        .queue
        .claim(2, Duration::from_secs(60), &[])
        .await
        .unwrap();
    assert_eq!(db.queue.counts().await, counts(1, 2, 0));
    db.queue
        .finish(&[(claimed[0].lease(), Outcome::Succeeded)])
        .await
        .unwrap();
    assert_eq!(db.queue.counts().await, counts(1, 1, 1));
    execute(&db, "DELETE FROM keel_jobs WHERE id = $1", claimed[0].id).await;
    assert_eq!(db.queue.counts().await, counts(1, 1, 0));
}
