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

use http::StatusCode;
/// The stored answers (for keel's idempotency layer) and the job queue (its workers and what
/// operators see of it): keel's handles on either engine.
pub use keel::db::{Answers, Queue};
pub use keel::idempotency::Saved;
use keel::idempotency::{Answer, AnswerError, Idempotency, SaveError};

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
    /// The answer to store could not be made (a bug).
    #[error(transparent)]
    Answer(#[from] AnswerError),
}

impl<E> From<SaveError<E>> for StoreError
where
    StoreError: From<E>,
{
    fn from(err: SaveError<E>) -> Self {
        match err {
            SaveError::Taken => StoreError::IdempotencyKeyTaken,
            SaveError::Database(err) => err.into(),
        }
    }
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
    pub fn jobs(&self) -> Queue {
        match &self.engine {
            Engine::Sqlite(db) => Queue::Sqlite(db.jobs().clone()),
            Engine::Postgres(db) => Queue::Postgres(db.jobs().clone()),
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

/// A creating request's `Idempotency-Key`, if it came with one, and where the record will be:
/// the store keeps the answer (201, `Location: {location}{id}`, the record as JSON) under the
/// key in the transaction that creates the record, so that a crash never keeps the one without
/// the other, and gives it back as the handler's answer ([`Saved`]).
#[derive(Debug, Clone)]
pub struct Remember {
    pub key: Idempotency,
    /// The record's path without its id, such as `/users/`.
    pub location: &'static str,
}

impl Remember {
    /// The answer for record `id`.
    pub(crate) fn answer<T: serde::Serialize>(
        &self,
        id: i64,
        record: &T,
    ) -> Result<Answer, StoreError> {
        let location = format!("{}{id}", self.location);
        Ok(Answer::json(StatusCode::CREATED, record)?.at(&location)?)
    }
}
