//! Benchmark of the PostgreSQL job queue: no-op jobs enqueued, claimed and completed per
//! second, end to end, by one and by two instances (each with its own pool, listener and
//! workers) sharing one database. `bench/pg_jobs.sh` runs it beside its baseline: pgbench
//! running the same three statements, 100 jobs at a time, on a plain table.
//!
//! `DATABASE_URL=postgres://… cargo run --release -p bench --bin
//! jobs_bench_postgres [jobs]` (default 20000; the database defaults to
//! postgres://postgres@127.0.0.1:5432/test). Works in the schema `keel_jobs_bench`, made anew.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{Noop, BATCH};
use keel::jobs::postgres::{PgQueue, MIGRATIONS};
use keel::jobs::{JobError, JobMeta, Registry, Worker, WorkerConfig};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const SCHEMA: &str = "keel_jobs_bench";

async fn pool(url: &str) -> PgPool {
    let options = PgConnectOptions::from_str(url)
        .expect("a PostgreSQL URL")
        .options([("search_path", SCHEMA)]);
    PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .expect("connect")
}

/// One instance: a pool, a queue, its listener and two workers claiming up to 100 at a time.
struct Instance {
    pool: PgPool,
    queue: PgQueue,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Instance {
    async fn start(url: &str, done: Arc<AtomicU64>) -> Instance {
        let pool = pool(url).await;
        let queue = PgQueue::new(pool.clone(), 8);
        let registry = Registry::new().register(move |_: Noop, _: JobMeta| {
            done.fetch_add(1, Ordering::Relaxed);
            async { Ok::<(), JobError>(()) }
        });
        let config = WorkerConfig {
            workers: 2,
            concurrency: BATCH,
            poll_interval: Duration::from_millis(50),
            ..WorkerConfig::default()
        };
        let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
        let listener = queue.clone();
        let listening = stop.clone();
        tracker.spawn(async move { listener.listen(listening).await });
        Worker::spawn(queue.clone(), registry, config, stop.clone(), &tracker);
        Instance {
            pool,
            queue,
            stop,
            tracker,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.pool.close().await;
    }
}

/// Enqueues `jobs` jobs, 100 to a transaction (one statement), from two callers on each
/// instance.
async fn enqueue(instances: &[Instance], jobs: u64) {
    let callers = instances.len() as u64 * 2;
    let mut tasks = JoinSet::new();
    for caller in 0..callers {
        let instance = &instances[(caller as usize) % instances.len()];
        let (pool, queue) = (instance.pool.clone(), instance.queue.clone());
        tasks.spawn(async move {
            let mut first = caller * BATCH as u64;
            while first < jobs {
                let last = (first + BATCH as u64).min(jobs);
                let batch: Vec<Noop> = (first..last).map(|n| Noop { n }).collect();
                let mut tx = pool.begin().await.expect("begin");
                queue.enqueue_all(&mut tx, &batch).await.expect("enqueue");
                tx.commit().await.expect("commit");
                queue.wake();
                first += BATCH as u64 * callers;
            }
        });
    }
    tasks.join_all().await;
}

async fn succeeded(pool: &PgPool) -> u64 {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM keel_jobs WHERE state = 'succeeded'")
        .fetch_one(pool)
        .await
        .expect("count");
    n as u64
}

/// Waits until the handlers have run `jobs` jobs, then until the database has recorded them.
async fn until_done(admin: &PgPool, done: &AtomicU64, jobs: u64) {
    while done.load(Ordering::Relaxed) < jobs {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    while succeeded(admin).await < jobs {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Jobs/s from the first enqueue to the last success, with `n` instances.
async fn end_to_end(url: &str, admin: &PgPool, jobs: u64, n: usize) -> f64 {
    sqlx::query("TRUNCATE keel_jobs, keel_job_counts")
        .execute(admin)
        .await
        .expect("truncate");
    let done = Arc::new(AtomicU64::new(0));
    let mut instances = Vec::new();
    for _ in 0..n {
        instances.push(Instance::start(url, done.clone()).await);
    }
    // Let the listeners subscribe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    enqueue(&instances, jobs).await;
    until_done(admin, &done, jobs).await;
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    for instance in instances {
        instance.stop().await;
    }
    rate
}

#[tokio::main]
async fn main() {
    let jobs: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("the number of jobs"))
        .unwrap_or(20_000);
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let setup = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .execute(&setup)
        .await
        .expect("drop");
    sqlx::query(&format!("CREATE SCHEMA {SCHEMA}"))
        .execute(&setup)
        .await
        .expect("create");
    setup.close().await;
    let admin = pool(&url).await;
    keel::postgres::migrate(&admin, MIGRATIONS)
        .await
        .expect("migrate");

    println!(
        "PostgreSQL job queue, {jobs} no-op jobs, enqueued 100 to a transaction, claims of {BATCH}"
    );
    println!(
        "| instances (2 workers, 2 enqueuing callers each) | enqueue + claim + complete, jobs/s |"
    );
    println!("|---|---|");
    for n in [1, 2] {
        let rate = end_to_end(&url, &admin, jobs, n).await;
        println!("| {n} | {rate:.0} |");
    }
}
