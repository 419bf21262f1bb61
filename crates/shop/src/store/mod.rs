//! The service's storage, behind one [`Store`] that handlers and jobs call: they never see a
//! connection, a query or which engine runs it.
//!
//! `Store`'s public methods are the seam: named after what the service needs (`create_user`,
//! `place_order`, `receive_payment` …), with the same answers whatever the engine. Each
//! method hands the call to the engine the store was opened on:
//! - `sqlite`: one file, one instance; keel's single writer thread committing many
//!   requests at once, reads inline on each thread's read-only connection.
//! - `postgres`: one database shared by any number of instances; a pool, one transaction per
//!   write.
//!
//! The records the API shows, and what it takes to create them, live in the module of their
//! table group (`users`, `orders` …), beside the methods that read and write them.

/// The one way a call reaches the engine: `forward!(&self.engine, Engine, db => db.ping().await)`
/// runs the same expression on whichever engine `value` holds (both engines' types have the
/// method). Calls that differ by engine are written as a `match`.
macro_rules! forward {
    ($value:expr, $enum:ident, $bind:ident => $call:expr) => {
        match $value {
            $enum::Sqlite($bind) => $call,
            $enum::Postgres($bind) => $call,
        }
    };
}

pub mod analytics;
pub mod orders;
pub mod payloads;
mod postgres;
pub mod products;
pub mod retention;
mod sqlite;
pub mod users;
pub mod webhooks;

use std::time::Duration;

use keel::idempotency::postgres::PgIdempotency;
use keel::idempotency::sqlite::SqliteIdempotency;
use keel::idempotency::{Claim, IdempotencyStore, StoredAnswer};
use keel::jobs::postgres::PgQueue;
use keel::jobs::sqlite::SqliteQueue;
use keel::jobs::{JobFilter, JobView, MinuteCount, Registry, RetryOutcome, Worker, WorkerConfig};
use keel::{CancellationToken, TaskTracker};

use postgres::PgStore;
use sqlite::SqliteStore;

/// Why the store could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "unsupported DATABASE_URL {0:?}: expected sqlite://PATH (a file) or postgres://USER@HOST/DATABASE"
    )]
    UnsupportedUrl(String),
    #[error(transparent)]
    Open(#[from] keel::sqlite::OpenError),
    #[error("cannot recover interrupted jobs: {0}")]
    Recover(#[from] keel::sqlite::Error),
    #[error("cannot connect to PostgreSQL: {0}")]
    Postgres(sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] keel::postgres::MigrateError),
}

/// A read or write that failed. Handlers turn it into the envelope with `?` (the mapping is
/// the routes' business: storage knows no HTTP).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sqlite(#[from] keel::sqlite::Error),
    #[error(transparent)]
    Postgres(#[from] sqlx::Error),
    /// A record or payload that could not be written as JSON, on either engine.
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
    /// Another request with the same `Idempotency-Key` committed first (on another instance):
    /// nothing was written.
    #[error("the idempotency key was taken by a concurrent request")]
    IdempotencyKeyTaken,
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Sqlite(err.into())
    }
}

impl StoreError {
    /// Whether the transaction only lost a race (a deadlock, a serialization conflict) and
    /// may simply run again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Postgres(err) if keel::postgres::is_retryable(err))
    }
}

/// Most connections one instance opens to PostgreSQL, unless configured.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// The service's database, and the job queue inside it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    engine: Engine,
}

#[derive(Debug, Clone)]
enum Engine {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens (creating it if needed) and migrates the database at `url`; jobs enqueued through
    /// it get `job_max_attempts` attempts. A SQLite file fails at once if another process has
    /// it open.
    pub async fn open(url: &str, job_max_attempts: u32) -> Result<Self, OpenError> {
        Self::open_with(url, job_max_attempts, DEFAULT_MAX_CONNECTIONS).await
    }

    /// Like [`Store::open`]; on PostgreSQL, with at most `max_connections` connections.
    pub async fn open_with(
        url: &str,
        job_max_attempts: u32,
        max_connections: u32,
    ) -> Result<Self, OpenError> {
        if let Some(sqlite) = SqliteStore::open(url, job_max_attempts).await {
            return Ok(Store {
                engine: Engine::Sqlite(sqlite?),
            });
        }
        if let Some(pg) = PgStore::open(url, job_max_attempts, max_connections).await {
            return Ok(Store {
                engine: Engine::Postgres(pg?),
            });
        }
        Err(OpenError::UnsupportedUrl(url.to_owned()))
    }

    /// Whether several instances may share this store (PostgreSQL), rather than one (SQLite).
    pub fn is_shared(&self) -> bool {
        matches!(self.engine, Engine::Postgres(_))
    }

    /// The durable job queue, in the same database.
    pub fn jobs(&self) -> Jobs {
        match &self.engine {
            Engine::Sqlite(db) => Jobs::Sqlite(db.jobs().clone()),
            Engine::Postgres(db) => Jobs::Postgres(db.jobs().clone()),
        }
    }

    /// Succeeds when a read and a write both do.
    pub async fn ping(&self) -> Result<(), StoreError> {
        forward!(&self.engine, Engine, db => db.ping().await)
    }

    /// Commits what was handed over, then closes the database (and releases its lock).
    pub async fn close(&self) {
        forward!(&self.engine, Engine, db => db.close().await)
    }

    /// The answers stored under `Idempotency-Key`s, each replayed for `ttl`.
    pub fn answers(&self, ttl: Duration) -> Answers {
        match &self.engine {
            Engine::Sqlite(db) => Answers::Sqlite(db.answers(ttl)),
            Engine::Postgres(db) => Answers::Postgres(db.answers(ttl)),
        }
    }
}

/// The answer a created record's request gets again under its key.
pub(crate) struct Answer<'a> {
    pub claim: &'a Claim,
    /// Always 201: the record was created.
    pub status: u16,
    pub location: String,
    pub body: Vec<u8>,
}

impl Remember {
    /// The answer to store for record `id` (its `Location` and its JSON), when the request
    /// came with a key.
    pub(crate) fn answer<'a, T: serde::Serialize>(
        remember: Option<&'a Remember>,
        id: i64,
        record: &T,
    ) -> Result<Option<Answer<'a>>, StoreError> {
        let Some(remember) = remember else {
            return Ok(None);
        };
        Ok(Some(Answer {
            claim: &remember.claim,
            status: 201,
            location: format!("{}{id}", remember.location),
            body: serde_json::to_vec(record)?,
        }))
    }

    /// What an engine's save said: false is a key another request committed first.
    pub(crate) fn saved(inserted: bool) -> Result<(), StoreError> {
        if inserted {
            Ok(())
        } else {
            Err(StoreError::IdempotencyKeyTaken)
        }
    }
}

/// A creating request's `Idempotency-Key`: the store keeps its answer (201, `Location:
/// {location}{id}`, the record as JSON) under the key in the transaction that creates the
/// record, so that a crash never keeps the one without the other.
#[derive(Debug, Clone)]
pub struct Remember {
    pub claim: Claim,
    /// The record's path without its id, such as `/users/`.
    pub location: &'static str,
}

/// The stored answers, for keel's idempotency layer.
#[derive(Debug, Clone)]
pub enum Answers {
    Sqlite(SqliteIdempotency),
    Postgres(PgIdempotency),
}

impl IdempotencyStore for Answers {
    fn ttl(&self) -> Duration {
        forward!(self, Answers, answers => answers.ttl())
    }

    async fn lookup(&self, key: &str) -> Result<Option<StoredAnswer>, keel::ApiError> {
        forward!(self, Answers, answers => answers.lookup(key).await)
    }

    async fn save(&self, claim: &Claim, answer: &StoredAnswer) -> Result<bool, keel::ApiError> {
        forward!(self, Answers, answers => answers.save(claim, answer).await)
    }
}

/// The job queue of the store's database: its workers and what operators see of it.
#[derive(Debug, Clone)]
pub enum Jobs {
    Sqlite(SqliteQueue),
    Postgres(PgQueue),
}

impl Jobs {
    /// Starts the workers, owned by `tracker` and stopped by `shutdown`.
    pub fn spawn_workers(
        self,
        registry: Registry,
        config: WorkerConfig,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        match self {
            Jobs::Sqlite(queue) => Worker::spawn(queue, registry, config, shutdown, tracker),
            Jobs::Postgres(queue) => {
                // Enqueues on any instance wake the workers here at once.
                let listener = queue.clone();
                let listening = shutdown.clone();
                tracker.spawn(async move { listener.listen(listening).await });
                Worker::spawn(queue, registry, config, shutdown, tracker);
            }
        }
    }

    /// Number of jobs by queue and state (states with none left out).
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        forward!(self, Jobs, queue => Ok(queue.counts().await?))
    }

    /// Jobs newest first, filtered; keyset pagination by `before_id`.
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<JobView>, StoreError> {
        forward!(self, Jobs, queue => Ok(queue.list(filter).await?))
    }

    /// Puts a dead job back to pending, due now, its attempts reset.
    pub async fn retry(&self, id: i64) -> Result<RetryOutcome, StoreError> {
        forward!(self, Jobs, queue => Ok(queue.retry(id).await?))
    }

    /// Jobs finished per minute over the last `minutes` minutes, oldest first.
    pub async fn finished_per_minute(&self, minutes: u32) -> Result<Vec<MinuteCount>, StoreError> {
        forward!(self, Jobs, queue => Ok(queue.finished_per_minute(minutes).await?))
    }
}
