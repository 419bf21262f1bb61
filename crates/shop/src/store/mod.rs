//! The SQL, behind one [`Store`] that handlers call: they never see a pool or a query.
//!
//! SQLite allows one writer at a time. Rather than let concurrent writers collide on the file
//! lock and spin on `SQLITE_BUSY`, the store keeps two pools: readers (several connections,
//! WAL lets them run beside the writer) and a single writer connection, so that writes queue in
//! the pool, in order, and every write transaction holds the lock from its first statement.
//! This is also what makes the order's stock check and decrement atomic: see [`orders`].

pub mod analytics;
mod migrations;
pub mod orders;
pub mod products;
pub mod users;
pub mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use keel::jobs::sqlite::SqliteQueue;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// How long a request waits for a connection before the database counts as unavailable (503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long SQLite waits on a lock held by another process before `SQLITE_BUSY` (503).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reader connections: enough to keep both cores busy while one waits on the disk.
const READERS: u32 = 8;

/// Why the store could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported DATABASE_URL {0:?}: expected sqlite://PATH (a file)")]
    UnsupportedUrl(String),
    #[error("cannot open the database: {0}")]
    Connect(#[from] sqlx::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The service's database, and the job queue inside it.
#[derive(Debug, Clone)]
pub struct Store {
    read: SqlitePool,
    write: SqlitePool,
    jobs: SqliteQueue,
}

impl Store {
    /// Opens (creating it if needed) and migrates the database at `url`; jobs enqueued through
    /// it get `job_max_attempts` attempts.
    pub async fn open(url: &str, job_max_attempts: u32) -> Result<Self, OpenError> {
        // An in-memory database would be a different, empty database on every connection.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !url.starts_with("sqlite:") || in_memory {
            return Err(OpenError::UnsupportedUrl(url.to_owned()));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL is durable across process crashes; only a power loss can take
            // the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        migrations::run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.read_only(true))
            .await?;
        let jobs = SqliteQueue::new(write.clone(), job_max_attempts);
        Ok(Store { read, write, jobs })
    }

    /// The durable job queue, in the same database.
    pub fn jobs(&self) -> &SqliteQueue {
        &self.jobs
    }

    /// Succeeds when the database answers a query.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.read).await.map(drop)
    }

    /// Closes both pools, waiting for connections in use.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}
