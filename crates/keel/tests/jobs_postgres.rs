//! The PostgreSQL job queue as several instances share it: concurrent migrations, every job
//! run once across instances, an enqueue on one instance waking the workers of another, and
//! the jobs of a dead instance taken over when their lease runs out; outcomes and the next
//! claim in one statement.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel::jobs::postgres::{PgQueue, MIGRATIONS};
use keel::jobs::{Backend, Job, JobError, JobMeta, Registry, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Count {
    n: u32,
}
impl Job for Count {
    const KIND: &'static str = "count";
}

/// Counts the runs of each job.
fn counter(runs: Arc<Mutex<HashMap<u32, u32>>>) -> Registry {
    Registry::new().register(move |job: Count, _: JobMeta| {
        *runs.lock().unwrap().entry(job.n).or_default() += 1;
        async { Ok::<(), JobError>(()) }
    })
}

/// One "instance": its own queue handle (its own wake-ups), listener and workers.
fn instance(
    schema: &common::pg::Schema,
    registry: Registry,
    config: WorkerConfig,
) -> (PgQueue, CancellationToken, TaskTracker) {
    let queue = PgQueue::new(schema.pool.clone(), 5);
    let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
    let listener = queue.clone();
    let listening = stop.clone();
    tracker.spawn(async move { listener.listen(listening).await });
    Worker::spawn(queue.clone(), registry, config, stop.clone(), &tracker);
    (queue, stop, tracker)
}

/// Enqueues the jobs in one statement; checks that their ids come back in order.
async fn enqueue(queue: &PgQueue, pool: &sqlx::PgPool, jobs: impl IntoIterator<Item = u32>) {
    let jobs: Vec<Count> = jobs.into_iter().map(|n| Count { n }).collect();
    let mut tx = pool.begin().await.unwrap();
    let ids = queue.enqueue_all(&mut tx, &jobs).await.unwrap();
    tx.commit().await.unwrap();
    queue.wake();
    assert_eq!(ids.len(), jobs.len());
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let payloads: Vec<String> =
        sqlx::query_scalar("SELECT payload FROM keel_jobs WHERE id = ANY($1) ORDER BY id")
            .bind(&ids)
            .fetch_all(pool)
            .await
            .unwrap();
    let expected: Vec<String> = jobs.iter().map(|j| format!("{{\"n\":{}}}", j.n)).collect();
    assert_eq!(payloads, expected);
}

#[tokio::test]
async fn instances_starting_together_apply_each_migration_once() {
    let Some(schema) = common::pg::Schema::create().await else {
        return;
    };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let pool = schema.pool.clone();
            tokio::spawn(async move { keel::postgres::migrate(&pool, MIGRATIONS).await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().unwrap();
    }
    let applied: Vec<(i32, String)> =
        sqlx::query_as("SELECT version, name FROM keel_schema_migrations ORDER BY version")
            .fetch_all(&schema.pool)
            .await
            .unwrap();
    assert_eq!(
        applied,
        vec![
            (1, "keel jobs".to_owned()),
            (2, "keel job counts of succeeded jobs".to_owned())
        ]
    );
    // And again, as at the next start.
    keel::postgres::migrate(&schema.pool, MIGRATIONS)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_burst_shared_by_two_instances_runs_each_job_exactly_once() {
    let Some(schema) = common::pg::Schema::create().await else {
        return;
    };
    keel::postgres::migrate(&schema.pool, MIGRATIONS)
        .await
        .unwrap();
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let config = WorkerConfig {
        workers: 2,
        concurrency: 16,
        poll_interval: Duration::from_millis(50),
        ..WorkerConfig::default()
    };
    let (a, stop_a, _tracker_a) = instance(&schema, counter(runs.clone()), config.clone());
    let (_b, stop_b, _tracker_b) = instance(&schema, counter(runs.clone()), config);
    for chunk in (0..1_000u32).collect::<Vec<_>>().chunks(100) {
        enqueue(&a, &schema.pool, chunk.iter().copied()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM keel_jobs WHERE state = 'succeeded'")
                .fetch_one(&schema.pool)
                .await
                .unwrap();
        if done == 1_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of 1000 jobs done in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_a.cancel();
    stop_b.cancel();
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 1_000);
    assert!(runs.values().all(|&n| n == 1), "a job ran twice");
    assert_eq!(
        a.counts().await.unwrap(),
        vec![("default".to_owned(), "succeeded".to_owned(), 1_000)]
    );
}

#[tokio::test]
async fn an_enqueue_on_one_instance_wakes_the_idle_workers_of_another() {
    let Some(schema) = common::pg::Schema::create().await else {
        return;
    };
    keel::postgres::migrate(&schema.pool, MIGRATIONS)
        .await
        .unwrap();
    let runs = Arc::new(Mutex::new(HashMap::new()));
    // Polling alone would take a minute.
    let config = WorkerConfig {
        workers: 1,
        poll_interval: Duration::from_secs(60),
        ..WorkerConfig::default()
    };
    let (_b, stop, _tracker) = instance(&schema, counter(runs.clone()), config);
    // Let the listener subscribe and the worker go idle (500 ms was once too short for a
    // machine busy compiling).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a = PgQueue::new(schema.pool.clone(), 5);
    for n in 0..3 {
        let started = Instant::now();
        enqueue(&a, &schema.pool, [n]).await;
        while !runs.lock().unwrap().contains_key(&n) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "job {n} not run 5 s after its enqueue on another instance"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    stop.cancel();
}

#[tokio::test]
async fn the_jobs_of_a_dead_instance_run_on_another_when_their_lease_runs_out() {
    let Some(schema) = common::pg::Schema::create().await else {
        return;
    };
    keel::postgres::migrate(&schema.pool, MIGRATIONS)
        .await
        .unwrap();
    let dead = PgQueue::new(schema.pool.clone(), 5);
    enqueue(&dead, &schema.pool, 0..10).await;
    // The instance claims them with a 1 s lease, then dies without a word.
    let lease = Duration::from_secs(1);
    assert_eq!(dead.claim(10, lease, &[]).await.unwrap().len(), 10);
    let died = Instant::now();

    let runs = Arc::new(Mutex::new(HashMap::new()));
    let config = WorkerConfig {
        workers: 1,
        poll_interval: Duration::from_millis(100),
        ..WorkerConfig::default()
    };
    let (_survivor, stop, _tracker) = instance(&schema, counter(runs.clone()), config);
    while runs.lock().unwrap().len() < 10 {
        assert!(
            died.elapsed() < Duration::from_secs(5),
            "{} of 10 jobs taken over",
            runs.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        died.elapsed() >= lease,
        "taken over before the lease ran out"
    );
    stop.cancel();
    let attempts: Vec<(i32, String)> =
        sqlx::query_as("SELECT DISTINCT attempts, last_error FROM keel_jobs")
            .fetch_all(&schema.pool)
            .await
            .unwrap();
    assert_eq!(
        attempts,
        vec![(
            2,
            "lease expired: the worker stopped, or lost its lease, before recording an outcome"
                .to_owned()
        )]
    );
}

#[tokio::test]
async fn outcomes_and_the_next_claim_go_in_one_statement_that_keeps_the_lease_fence() {
    let Some(schema) = common::pg::Schema::create().await else {
        return;
    };
    keel::postgres::migrate(&schema.pool, MIGRATIONS)
        .await
        .unwrap();
    let queue = PgQueue::new(schema.pool.clone(), 5);
    enqueue(&queue, &schema.pool, [1, 2, 3]).await;
    let lease = Duration::from_secs(10);
    let first = queue.claim(2, lease, &[]).await.unwrap();
    assert_eq!(first.len(), 2);
    let (done, stale) = (first[0].lease(), first[1].lease());
    // The second outcome carries a lease that is not the job's: it must change nothing.
    let outcomes = [
        (done, keel::jobs::Outcome::Succeeded),
        (
            keel::jobs::Lease {
                id: stale.id,
                until: stale.until - 1,
            },
            keel::jobs::Outcome::Succeeded,
        ),
    ];
    let next = queue
        .finish_and_claim(&outcomes, 5, lease, &[done.id, stale.id])
        .await
        .unwrap();
    let third: Vec<i64> = next.iter().map(|job| job.id()).collect();
    assert_eq!(third.len(), 1, "only the third job was due: {third:?}");
    assert!(!third.contains(&done.id) && !third.contains(&stale.id));
    let states: Vec<(i64, String)> = sqlx::query_as("SELECT id, state FROM keel_jobs ORDER BY id")
        .fetch_all(&schema.pool)
        .await
        .unwrap();
    assert_eq!(
        states,
        vec![
            (done.id, "succeeded".to_owned()),
            (stale.id, "running".to_owned()),
            (third[0], "running".to_owned()),
        ]
    );
    let mut counts = queue.counts().await.unwrap();
    counts.sort();
    assert_eq!(
        counts,
        vec![
            ("default".to_owned(), "running".to_owned(), 2),
            ("default".to_owned(), "succeeded".to_owned(), 1),
        ]
    );
}

#[tokio::test]
async fn a_record_and_its_job_go_in_one_statement_and_the_job_runs() {
    let Some(schema) = common::pg::Schema::create().await else {
        return;
    };
    keel::postgres::migrate(&schema.pool, MIGRATIONS)
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE signups (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n INT NOT NULL UNIQUE)")
        .execute(&schema.pool)
        .await
        .unwrap();
    let mut listener = sqlx::postgres::PgListener::connect_with(&schema.pool)
        .await
        .unwrap();
    listener.listen("keel_jobs").await.unwrap();
    let queue = PgQueue::new(schema.pool.clone(), 5);
    let (queue, pool) = (&queue, &schema.pool);
    let add = |n: i32| async move {
        let jobs = queue.jobs_from::<Count>("s", "jsonb_build_object('n', s.n)::text", 2);
        let sql = format!(
            "WITH s AS (INSERT INTO signups (n) VALUES ($1) RETURNING n), {jobs} SELECT n FROM s"
        );
        let query = sqlx::query(&sql).bind(n);
        queue
            .bind_jobs_from::<Count>(query)
            .fetch_optional(pool)
            .await
    };
    assert!(add(7).await.unwrap().is_some());
    // The first enqueue of an instance carries a NOTIFY, delivered at the statement's commit.
    let heard = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification within 5 s")
        .unwrap();
    assert_eq!(heard.channel(), "keel_jobs");
    // A failed statement adds neither the record nor its job.
    let duplicate = add(7).await.unwrap_err();
    assert_eq!(
        duplicate
            .as_database_error()
            .and_then(|e| e.code())
            .as_deref(),
        Some("23505")
    );
    let jobs: Vec<(String, String, String)> =
        sqlx::query_as("SELECT queue, kind, payload FROM keel_jobs ORDER BY id")
            .fetch_all(&schema.pool)
            .await
            .unwrap();
    assert_eq!(
        jobs,
        vec![(
            "default".to_owned(),
            "count".to_owned(),
            r#"{"n": 7}"#.to_owned()
        )]
    );
    // The payload made in SQL is what the job deserializes from: a worker runs it.
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let (_queue, stop, tracker) = instance(&schema, counter(runs.clone()), WorkerConfig::default());
    let deadline = Instant::now() + Duration::from_secs(10);
    while runs.lock().unwrap().get(&7).copied() != Some(1) {
        assert!(Instant::now() < deadline, "the job never ran: {runs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    let state: String = sqlx::query_scalar("SELECT state FROM keel_jobs")
        .fetch_one(&schema.pool)
        .await
        .unwrap();
    assert_eq!(state, "succeeded");
}

/// `(queue, state, n)` sorted, as `counts` gives them.
async fn sorted_counts(queue: &PgQueue) -> Vec<(String, String, i64)> {
    let mut counts = queue.counts().await.unwrap();
    counts.sort();
    counts
}

fn count(state: &str, n: i64) -> (String, String, i64) {
    ("default".to_owned(), state.to_owned(), n)
}

#[tokio::test]
async fn counts_follow_every_change_of_state_and_the_upgrade_from_version_1() {
    let Some(schema) = common::pg::Schema::create().await else {
        return;
    };
    // A database made by version 1, whose triggers counted pending and running jobs too.
    keel::postgres::migrate(&schema.pool, &MIGRATIONS[..1])
        .await
        .unwrap();
    let queue = PgQueue::new(schema.pool.clone(), 5);
    let lease = Duration::from_secs(10);
    enqueue(&queue, &schema.pool, [1, 2, 3, 4]).await;
    let first = queue.claim(1, lease, &[]).await.unwrap();
    queue
        .finish(&[(first[0].lease(), keel::jobs::Outcome::Succeeded)])
        .await
        .unwrap();
    let deltas: i64 =
        sqlx::query_scalar("SELECT sum(n)::bigint FROM keel_job_counts WHERE state <> 'succeeded'")
            .fetch_one(&schema.pool)
            .await
            .unwrap();
    assert_eq!(deltas, 3);

    // Version 2 counts pending and running jobs from the table instead of the deltas.
    keel::postgres::migrate(&schema.pool, MIGRATIONS)
        .await
        .unwrap();
    assert_eq!(
        sorted_counts(&queue).await,
        vec![count("pending", 3), count("succeeded", 1)]
    );
    // A delta folded by an instance still on version 1 after the upgrade changes nothing.
    sqlx::query("INSERT INTO keel_job_counts (queue, state, n) VALUES ('default', 'pending', 7)")
        .execute(&schema.pool)
        .await
        .unwrap();
    assert_eq!(
        sorted_counts(&queue).await,
        vec![count("pending", 3), count("succeeded", 1)]
    );
    enqueue(&queue, &schema.pool, [5]).await;
    let claimed = queue.claim(3, lease, &[]).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert_eq!(
        sorted_counts(&queue).await,
        vec![
            count("pending", 1),
            count("running", 3),
            count("succeeded", 1)
        ]
    );
    let dead = claimed[0].id();
    queue
        .finish(&[
            (
                claimed[0].lease(),
                keel::jobs::Outcome::Dead {
                    error: "gave up".to_owned(),
                },
            ),
            (
                claimed[1].lease(),
                keel::jobs::Outcome::Retry {
                    run_at_ms: 0,
                    error: "later".to_owned(),
                },
            ),
            (claimed[2].lease(), keel::jobs::Outcome::Succeeded),
        ])
        .await
        .unwrap();
    assert_eq!(
        sorted_counts(&queue).await,
        vec![count("dead", 1), count("pending", 2), count("succeeded", 2)]
    );
    assert!(matches!(
        queue.retry(dead).await.unwrap(),
        keel::jobs::RetryOutcome::Retried(_)
    ));
    sqlx::query("DELETE FROM keel_jobs WHERE state = 'succeeded'")
        .execute(&schema.pool)
        .await
        .unwrap();
    assert_eq!(sorted_counts(&queue).await, vec![count("pending", 3)]);
    // Dead jobs are counted from the table, however they got there.
    sqlx::query(
        "INSERT INTO keel_jobs (queue, kind, payload, state, max_attempts, run_at) \
         VALUES ('default', 'count', '{}', 'dead', 5, 0)",
    )
    .execute(&schema.pool)
    .await
    .unwrap();
    assert_eq!(
        sorted_counts(&queue).await,
        vec![count("dead", 1), count("pending", 3)]
    );
}

#[tokio::test]
async fn migrations_out_of_order_are_refused_before_the_database_is_touched() {
    // Nothing listens there: the list is refused before any connection is tried.
    let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
    let list = [MIGRATIONS[0], MIGRATIONS[1].at(1)];
    let err = keel::postgres::migrate(&pool, &list).await.unwrap_err();
    assert!(
        matches!(
            err,
            keel::postgres::MigrateError::Unordered {
                version: 1,
                name: "keel job counts of succeeded jobs"
            }
        ),
        "{err}"
    );
}
