//! The PostgreSQL engine of the [`Store`](super::Store), for any number of instances sharing
//! one database: a pool of connections; every write is one transaction (the record, its jobs,
//! its webhook deliveries and its `Idempotency-Key` answer commit together); the stock rule is
//! one conditional `UPDATE`, which PostgreSQL evaluates under the row's lock, so concurrent
//! orders on any instances never oversell. A transaction that lost a deadlock or a
//! serialization conflict runs again (up to three times); a database that cannot be reached is
//! a 503 with `Retry-After`.

mod analytics;
mod orders;
mod products;
mod retention;
mod users;
mod webhooks;

use std::time::Duration;

use keel::idempotency::postgres::PgIdempotency;
use keel::jobs::postgres::PgQueue;
use keel::migration::Migration;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use super::{OpenError, Remember, Saved, StoreError};

/// In order. Append; never edit one that has shipped.
const MIGRATIONS: &[Migration] = &[
    keel::jobs::postgres::MIGRATIONS[0],
    Migration::new(
        2,
        "users products orders analytics webhooks",
        include_str!("../../../migrations/postgres/0002_shop.sql"),
    ),
    keel::idempotency::postgres::MIGRATIONS[0].at(3),
    keel::jobs::postgres::MIGRATIONS[1].at(4),
];

pub(super) use keel::postgres::rfc3339;

/// Runs a transaction again when it lost a deadlock or a serialization conflict, up to three
/// times in all.
macro_rules! retried {
    ($attempt:expr) => {{
        let mut tries = 0;
        loop {
            tries += 1;
            match $attempt {
                Err(err) if tries < 3 && err.is_retryable() => continue,
                result => break result,
            }
        }
    }};
}
pub(super) use retried;

/// One database shared by every instance, and the job queue inside it.
#[derive(Debug, Clone)]
pub(crate) struct PgStore {
    pool: PgPool,
    jobs: PgQueue,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and applies the migrations the database lacks (every
    /// instance may do so at the same time: one applies each); `None` when `url` is not a
    /// PostgreSQL URL.
    pub(crate) async fn open(
        url: &str,
        job_max_attempts: u32,
        max_connections: u32,
    ) -> Option<Result<Self, OpenError>> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return None;
        }
        Some(Self::connect(url, job_max_attempts, max_connections).await)
    }

    async fn connect(
        url: &str,
        job_max_attempts: u32,
        max_connections: u32,
    ) -> Result<Self, OpenError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(OpenError::Postgres)?
            // A write waits this long for a row or table lock another session holds before its
            // 503 with `Retry-After`, as SQLite's busy timeout does.
            .options([("lock_timeout", "5s")]);
        // One connection first, so that a server that cannot be reached says why (a pool
        // would only say that it timed out).
        PgConnection::connect_with(&options)
            .await
            .map_err(OpenError::Postgres)?
            .close()
            .await
            .map_err(OpenError::Postgres)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            // A request waits this long for a connection before its 503.
            .acquire_timeout(Duration::from_secs(5))
            // No round trip to test a connection before each use: sqlx already tests it when
            // it goes back to the pool, and one that died while idle there (the server
            // restarted) fails its one request with a 503 and `Retry-After`, and is dropped.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(OpenError::Postgres)?;
        keel::postgres::migrate(&pool, MIGRATIONS).await?;
        let jobs = PgQueue::new(pool.clone(), job_max_attempts);
        Ok(PgStore { pool, jobs })
    }

    pub(crate) fn jobs(&self) -> &PgQueue {
        &self.jobs
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        // A read, and a write that leaves nothing behind.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1").execute(&mut *tx).await?;
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn answers(&self, ttl: Duration) -> PgIdempotency {
        PgIdempotency::new(self.pool.clone(), ttl)
    }
}

/// Commits `tx` when `result` is a success; otherwise rolls it back at once (a transaction
/// merely dropped is rolled back at the connection's next use, holding its locks until then).
async fn finish<T, E: From<sqlx::Error>>(
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    result: Result<T, E>,
) -> Result<T, E> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(err) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::debug!(error = %rollback, "rollback failed; the connection is dropped");
            }
            Err(err)
        }
    }
}

/// Stores the answer for record `id` under the request's key, when it has one, on the
/// record's transaction; the handler's answer either way.
async fn remember<T: serde::Serialize>(
    conn: &mut PgConnection,
    key: &Remember,
    id: i64,
    record: &T,
) -> Result<Saved, StoreError> {
    let answer = key.answer(id, record)?;
    Ok(keel::idempotency::postgres::save_answer(conn, &key.key, answer).await?)
}
