//! The service's storage, behind one [`Store`] that handlers and jobs call: they never see a
//! connection, a query or which engine runs it.
//!
//! `Store`'s public methods are the seam: named after what the service needs (`create_user`,
//! `place_order`, `receive_payment` …), with the same answers whatever the engine. The SQLite
//! engine is keel's [`Database`]: every write is a closure handed to the one writer thread,
//! which commits many callers' closures in one transaction (each in its own savepoint) and
//! answers after the commit; every read runs inline on the calling thread's read-only
//! connection. This is also what makes the order's stock check and decrement atomic: see
//! [`orders`].

pub mod analytics;
mod migrations;
pub mod orders;
pub mod products;
pub mod retention;
pub mod users;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel::idempotency::{Claim, IdempotencyStore, StoredAnswer};
use keel::jobs::sqlite::SqliteQueue;
use keel::sqlite::idempotency::SqliteIdempotency;
use keel::sqlite::{Database, Options};
use rusqlite::Connection;
use serde::Serialize;

/// Why the store could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported DATABASE_URL {0:?}: expected sqlite://PATH (a file)")]
    UnsupportedUrl(String),
    #[error(transparent)]
    Open(#[from] keel::sqlite::OpenError),
    #[error("cannot recover interrupted jobs: {0}")]
    Recover(#[from] keel::sqlite::Error),
}

/// A read or write that failed. Handlers turn it into the envelope with `?` (the mapping is
/// the routes' business: storage knows no HTTP).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sqlite(#[from] keel::sqlite::Error),
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

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> Self {
        StoreError::Sqlite(err.into())
    }
}

/// The service's database, and the job queue inside it. One pointer: cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    jobs: SqliteQueue,
}

impl Store {
    /// Opens (creating it if needed) and migrates the database at `url`; jobs enqueued through
    /// it get `job_max_attempts` attempts. Fails at once if another process has it open.
    pub async fn open(url: &str, job_max_attempts: u32) -> Result<Self, OpenError> {
        let path = sqlite_path(url).ok_or_else(|| OpenError::UnsupportedUrl(url.to_owned()))?;
        let db = Database::open_with(path, Options::default(), migrations::run)?;
        let jobs = SqliteQueue::new(db.clone(), job_max_attempts);
        // The lock says no other process works on this file: whatever is `running` was left
        // by one that died, and runs again now rather than when its lease would run out.
        let interrupted = jobs.recover_interrupted().await?;
        if interrupted > 0 {
            tracing::warn!(
                jobs = interrupted,
                "jobs interrupted by the last stop run again"
            );
        }
        Ok(Store {
            inner: Arc::new(Inner { db, jobs }),
        })
    }

    /// The durable job queue, in the same database.
    pub fn jobs(&self) -> &SqliteQueue {
        &self.inner.jobs
    }

    /// Succeeds when a read and a round trip through the writer both do.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.inner
            .db
            .readers()
            .read(|conn| conn.prepare_cached("SELECT 1")?.query_row([], |_| Ok(())))?;
        self.inner.db.writer().ping().await?;
        Ok(())
    }

    /// Commits what was handed to the writer, then closes the database and releases its lock.
    pub async fn close(&self) {
        self.inner.db.close().await;
    }

    /// The answers stored under `Idempotency-Key`s, each replayed for `ttl`.
    pub fn answers(&self, ttl: Duration) -> Answers {
        Answers(SqliteIdempotency::new(self.inner.db.clone(), ttl))
    }

    fn writer(&self) -> &keel::sqlite::Writer {
        self.inner.db.writer()
    }

    fn readers(&self) -> &keel::sqlite::Readers {
        self.inner.db.readers()
    }
}

/// The file of `sqlite://PATH` or `sqlite:PATH` (query parameters ignored); `None` for any
/// other URL or an in-memory database, which would be a different, empty database on every
/// connection.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
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

/// Stores the answer under `remember`'s key, when there is one; inside the record's write.
fn remember<T: Serialize>(
    conn: &Connection,
    remember: Option<&Remember>,
    id: i64,
    record: &T,
) -> Result<(), StoreError> {
    let Some(remember) = remember else {
        return Ok(());
    };
    let body = serde_json::to_vec(record)?;
    let location = format!("{}{id}", remember.location);
    match keel::sqlite::idempotency::save(conn, &remember.claim, 201, Some(&location), &body)? {
        true => Ok(()),
        false => Err(StoreError::IdempotencyKeyTaken),
    }
}

/// The stored answers, for keel's idempotency layer.
#[derive(Debug, Clone)]
pub struct Answers(SqliteIdempotency);

impl IdempotencyStore for Answers {
    async fn lookup(&self, key: &str) -> Result<Option<StoredAnswer>, keel::ApiError> {
        self.0.lookup(key).await
    }
}
