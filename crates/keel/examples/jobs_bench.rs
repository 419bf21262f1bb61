//! Benchmark of the SQLite job queue: no-op jobs enqueued and completed per second with 1 and
//! 4 workers, and what enqueueing adds to a write transaction.
//!
//! `cargo run --release -p keel --example jobs_bench [jobs]` (default 20000)

use std::str::FromStr;
use std::time::{Duration, Instant};

use keel::jobs::sqlite::{SqliteQueue, SCHEMA};
use keel::jobs::{Job, JobError, JobMeta, Registry, Worker, WorkerConfig};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(serde::Serialize, serde::Deserialize)]
struct Noop {
    n: u64,
}

impl Job for Noop {
    const KIND: &'static str = "noop";
}

const BATCH: usize = 100;

async fn open(path: &std::path::Path) -> SqlitePool {
    let _ = std::fs::remove_file(path);
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .expect("a valid path")
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("open the database");
    sqlx::raw_sql(SCHEMA)
        .execute(&pool)
        .await
        .expect("create the schema");
    sqlx::raw_sql("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&pool)
        .await
        .expect("create the table");
    pool
}

/// Enqueues `jobs` no-op jobs in transactions of `BATCH`; returns jobs/s.
async fn enqueue(pool: &SqlitePool, queue: &SqliteQueue, jobs: u64) -> f64 {
    let started = Instant::now();
    let mut n = 0;
    while n < jobs {
        let mut tx = pool.begin().await.expect("begin");
        for _ in 0..BATCH {
            queue.enqueue(&mut tx, &Noop { n }).await.expect("enqueue");
            n += 1;
        }
        tx.commit().await.expect("commit");
    }
    jobs as f64 / started.elapsed().as_secs_f64()
}

/// Runs `workers` workers until every job has succeeded; returns jobs/s.
async fn drain(pool: &SqlitePool, queue: &SqliteQueue, jobs: u64, workers: usize) -> f64 {
    let registry = Registry::new().register(|_: Noop, _: JobMeta| async { Ok::<(), JobError>(()) });
    let config = WorkerConfig {
        workers,
        batch_size: BATCH,
        poll_interval: Duration::from_millis(5),
        ..WorkerConfig::default()
    };
    let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
    let started = Instant::now();
    Worker::spawn(queue.clone(), registry, config, stop.clone(), &tracker);
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM keel_jobs WHERE state = 'succeeded'")
                .fetch_one(pool)
                .await
                .expect("count");
        if done as u64 >= jobs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    sqlx::query("DELETE FROM keel_jobs")
        .execute(pool)
        .await
        .expect("clear");
    rate
}

/// Mean and p99 of a write transaction, without and with one enqueue in it.
async fn enqueue_latency(pool: &SqlitePool, queue: &SqliteQueue) -> [(Duration, Duration); 2] {
    let mut results = [(Duration::ZERO, Duration::ZERO); 2];
    for (i, with_job) in [false, true].into_iter().enumerate() {
        let mut samples = Vec::with_capacity(2000);
        for n in 0..2000u64 {
            let started = Instant::now();
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query("INSERT INTO things (name) VALUES (?1)")
                .bind("a thing")
                .execute(&mut *tx)
                .await
                .expect("insert");
            if with_job {
                queue.enqueue(&mut tx, &Noop { n }).await.expect("enqueue");
            }
            tx.commit().await.expect("commit");
            samples.push(started.elapsed());
        }
        samples.sort();
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        results[i] = (mean, samples[samples.len() * 99 / 100]);
    }
    results
}

#[tokio::main]
async fn main() {
    let jobs: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("the number of jobs"))
        .unwrap_or(20_000);
    let path = std::env::temp_dir().join(format!("keel-jobs-bench-{}.db", std::process::id()));
    let pool = open(&path).await;
    let queue = SqliteQueue::new(pool.clone(), 8);

    println!("SQLite job queue, {jobs} no-op jobs, batches of {BATCH}");
    println!("| workers | enqueued jobs/s | completed jobs/s |");
    println!("|---|---|---|");
    for workers in [1, 4] {
        let enqueued = enqueue(&pool, &queue, jobs).await;
        let completed = drain(&pool, &queue, jobs, workers).await;
        println!("| {workers} | {enqueued:.0} | {completed:.0} |");
    }

    let [(plain_mean, plain_p99), (job_mean, job_p99)] = enqueue_latency(&pool, &queue).await;
    println!();
    println!("| write transaction (2000 runs) | mean | p99 |");
    println!("|---|---|---|");
    println!("| INSERT one row | {plain_mean:?} | {plain_p99:?} |");
    println!("| INSERT one row + enqueue one job | {job_mean:?} | {job_p99:?} |");
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
