//! The SQLite engine of the [`Store`](super::Store): keel's [`Database`], where every write is
//! a closure handed to the one writer thread, which commits many callers' closures in one
//! transaction (each in its own savepoint) and answers after the commit, and every read runs
//! inline on the calling thread's read-only connection. This is also what makes the order's
//! stock check and decrement atomic: see [`orders`].

mod analytics;
mod migrations;
pub(super) mod orders;
mod products;
mod retention;
mod users;
mod webhooks;

use std::path::PathBuf;
use std::time::Duration;

use keel::idempotency::sqlite::SqliteIdempotency;
use keel::jobs::sqlite::SqliteQueue;
use keel::sqlite::{Database, Options};
use rusqlite::Connection;

use super::{OpenError, Remember, Saved, StoreError};

/// One service's SQLite file, and the job queue inside it.
#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    db: Database,
    jobs: SqliteQueue,
}

impl SqliteStore {
    /// Opens (creating it if needed) and migrates the database file of `url`, a
    /// `sqlite://PATH`; `None` when `url` is not one. Fails at once if another process has it
    /// open.
    pub(crate) async fn open(url: &str, job_max_attempts: u32) -> Option<Result<Self, OpenError>> {
        let path = keel::db::sqlite_path(url)?;
        Some(Self::open_path(path, job_max_attempts).await)
    }

    async fn open_path(path: PathBuf, job_max_attempts: u32) -> Result<Self, OpenError> {
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
        Ok(SqliteStore { db, jobs })
    }

    pub(crate) fn jobs(&self) -> &SqliteQueue {
        &self.jobs
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .readers()
            .read(|conn| conn.prepare_cached("SELECT 1")?.query_row([], |_| Ok(())))?;
        self.db.writer().ping().await?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.db.close().await;
    }

    pub(crate) fn answers(&self, ttl: Duration) -> SqliteIdempotency {
        SqliteIdempotency::new(self.db.clone(), ttl)
    }

    fn writer(&self) -> &keel::sqlite::Writer {
        self.db.writer()
    }

    fn readers(&self) -> &keel::sqlite::Readers {
        self.db.readers()
    }
}

pub(super) const NOW_TEXT: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// Stores the answer for record `id` under the request's key, when it has one, inside the
/// record's write; the handler's answer either way.
fn remember<T: serde::Serialize>(
    conn: &Connection,
    key: &Remember,
    id: i64,
    record: &T,
) -> Result<Saved, StoreError> {
    let answer = key.answer(id, record)?;
    Ok(keel::idempotency::sqlite::save_answer(
        conn, &key.key, answer,
    )?)
}
