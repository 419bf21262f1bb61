//! Benchmark of the SQLite job queue on keel's group-committing writer: no-op jobs enqueued
//! and completed per second, end to end with the workers running, and what enqueueing adds to
//! a write.
//!
//! `cargo run --release -p bench --bin jobs_bench [jobs]` (default 20000)

use std::time::{Duration, Instant};

use bench::{Noop, BATCH};
use keel::jobs::sqlite::{SqliteQueue, MIGRATIONS};
use keel::jobs::{JobError, JobMeta, Registry, Worker, WorkerConfig};
use keel::sqlite::{Database, Error, Migration, Options};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn open(path: &std::path::Path) -> Database {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut schema = MIGRATIONS.to_vec();
    schema.push(Migration {
        version: 4,
        name: "things",
        sql: "CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    });
    Database::open(path, Options::default(), &schema).expect("open the database")
}

/// Enqueues `jobs` no-op jobs, `per_write` in each write, from `callers` concurrent callers;
/// returns jobs/s.
async fn enqueue(
    db: &Database,
    queue: &SqliteQueue,
    jobs: u64,
    per_write: u64,
    callers: u64,
) -> f64 {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for caller in 0..callers {
        let (db, queue) = (db.clone(), queue.clone());
        tasks.spawn(async move {
            let mut n = caller * per_write;
            while n < jobs {
                let (writing, first) = (queue.clone(), n);
                let last = (first + per_write).min(jobs);
                db.writer()
                    .write(move |conn| {
                        for n in first..last {
                            writing.enqueue(conn, &Noop { n })?;
                        }
                        Ok::<(), Error>(())
                    })
                    .await
                    .expect("enqueue");
                queue.wake();
                n += per_write * callers;
            }
        });
    }
    tasks.join_all().await;
    jobs as f64 / started.elapsed().as_secs_f64()
}

fn workers(queue: &SqliteQueue, workers: usize) -> (CancellationToken, TaskTracker) {
    let registry = Registry::new().register(|_: Noop, _: JobMeta| async { Ok::<(), JobError>(()) });
    let config = WorkerConfig {
        workers,
        concurrency: BATCH,
        poll_interval: Duration::from_millis(5),
        ..WorkerConfig::default()
    };
    let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
    Worker::spawn(queue.clone(), registry, config, stop.clone(), &tracker);
    (stop, tracker)
}

async fn succeeded(db: &Database) -> u64 {
    db.readers()
        .read(|conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM keel_jobs WHERE state = 'succeeded'",
                [],
                |row| row.get::<_, i64>(0),
            )
        })
        .expect("count") as u64
}

async fn until_done(db: &Database, jobs: u64) {
    while succeeded(db).await < jobs {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn stop(db: &Database, (stop, tracker): (CancellationToken, TaskTracker)) {
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    db.writer()
        .write(|conn| {
            conn.execute("DELETE FROM keel_jobs", [])
                .map_err(Error::from)
        })
        .await
        .expect("clear");
}

/// Runs `n` workers until every queued job has succeeded; returns jobs/s.
async fn drain(db: &Database, queue: &SqliteQueue, jobs: u64, n: usize) -> f64 {
    let started = Instant::now();
    let running = workers(queue, n);
    until_done(db, jobs).await;
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    stop(db, running).await;
    rate
}

/// Enqueue, claim and complete together: workers run while `callers` callers enqueue
/// `per_write` jobs per write; returns jobs/s from the first enqueue to the last success.
async fn end_to_end(
    db: &Database,
    queue: &SqliteQueue,
    jobs: u64,
    per_write: u64,
    callers: u64,
) -> f64 {
    let running = workers(queue, 2);
    let started = Instant::now();
    enqueue(db, queue, jobs, per_write, callers).await;
    until_done(db, jobs).await;
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    stop(db, running).await;
    rate
}

/// Mean and p99 of a write from one caller, without and with one enqueue in it.
async fn enqueue_latency(db: &Database, queue: &SqliteQueue) -> [(Duration, Duration); 2] {
    let mut results = [(Duration::ZERO, Duration::ZERO); 2];
    for (i, with_job) in [false, true].into_iter().enumerate() {
        let mut samples = Vec::with_capacity(2000);
        for n in 0..2000u64 {
            let queue = queue.clone();
            let started = Instant::now();
            db.writer()
                .write(move |conn| {
                    conn.prepare_cached("INSERT INTO things (name) VALUES (?1)")?
                        .execute(["a thing"])?;
                    if with_job {
                        queue.enqueue(conn, &Noop { n })?;
                    }
                    Ok::<(), Error>(())
                })
                .await
                .expect("write");
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
    let db = open(&path);
    let queue = SqliteQueue::new(db.clone(), 8);

    println!("SQLite job queue, {jobs} no-op jobs, claims of {BATCH}");
    println!("| workers | enqueued jobs/s ({BATCH} a write) | completed jobs/s |");
    println!("|---|---|---|");
    for n in [1, 4] {
        let enqueued = enqueue(&db, &queue, jobs, BATCH as u64, 1).await;
        let completed = drain(&db, &queue, jobs, n).await;
        println!("| {n} | {enqueued:.0} | {completed:.0} |");
    }
    println!();
    println!("| end to end, 2 workers running | jobs/s |");
    println!("|---|---|");
    let batched = end_to_end(&db, &queue, jobs, BATCH as u64, 1).await;
    println!("| {BATCH} jobs a write, 1 caller | {batched:.0} |");
    let single = end_to_end(&db, &queue, jobs, 1, 64).await;
    println!("| 1 job a write, 64 concurrent callers | {single:.0} |");

    let [(plain_mean, plain_p99), (job_mean, job_p99)] = enqueue_latency(&db, &queue).await;
    println!();
    println!("| write from one caller (2000 runs) | mean | p99 |");
    println!("|---|---|---|");
    println!("| INSERT one row | {plain_mean:?} | {plain_p99:?} |");
    println!("| INSERT one row + enqueue one job | {job_mean:?} | {job_p99:?} |");
    db.close().await;
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
