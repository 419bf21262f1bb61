//! PostgreSQL for services that run as several instances on one database: versioned
//! migrations that every instance may run at start-up at the same time, the stored answers of
//! `Idempotency-Key`s ([`idempotency`]), and the job queue (`keel::jobs::postgres`).
//!
//! Errors are sqlx's: `From<sqlx::Error> for ApiError` maps them to the envelope, naming the
//! field of a violated constraint from the constraint's name (`users_email_key` on table
//! `users` → `email`), and a lost or refused connection to 503 with `Retry-After`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use keel::migration::Migration;
//!
//! const MIGRATIONS: &[Migration] = &[Migration::new(
//!     1,
//!     "todos",
//!     "CREATE TABLE todos (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title TEXT NOT NULL)",
//! )];
//!
//! let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/test").await?;
//! keel::postgres::migrate(&pool, MIGRATIONS).await?;
//! # Ok(()) }
//! ```

pub mod idempotency;

use sqlx::{Connection, Executor, PgPool};

use crate::migration::Migration;

/// A migration that failed, or a database newer than this program.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        version: u32,
        name: &'static str,
        source: sqlx::Error,
    },
    #[error(
        "the database is at schema version {found}, newer than this program knows ({known}): \
         run a newer version"
    )]
    TooNew { found: u32, known: u32 },
    #[error("cannot read the schema version: {0}")]
    Version(#[from] sqlx::Error),
    #[error(
        "migration {version} ({name}) does not come after the one before it: versions must \
         increase strictly"
    )]
    Unordered { version: u32, name: &'static str },
}

/// Applies, in order, the migrations the database (its current schema) lacks, each in its own
/// transaction with the record of its version in `keel_schema_migrations`.
///
/// Every step holds a transaction-level advisory lock keyed on the schema's name, so instances
/// that start together take turns: one applies a migration, the others find it recorded and go
/// on. Append migrations; never edit one that has shipped.
pub async fn migrate(pool: &PgPool, migrations: &[Migration]) -> Result<(), MigrateError> {
    if let Some(pair) = migrations
        .windows(2)
        .find(|pair| pair[0].version >= pair[1].version)
    {
        return Err(MigrateError::Unordered {
            version: pair[1].version,
            name: pair[1].name,
        });
    }
    let mut conn = pool.acquire().await?;
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    let mut tx = conn.begin().await?;
    lock(&mut tx).await?;
    tx.execute(
        "CREATE TABLE IF NOT EXISTS keel_schema_migrations ( \
             version    INTEGER PRIMARY KEY, \
             name       TEXT NOT NULL, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    tx.commit().await?;
    for migration in migrations {
        let failed = |source| MigrateError::Failed {
            version: migration.version,
            name: migration.name,
            source,
        };
        let mut tx = conn.begin().await.map_err(failed)?;
        lock(&mut tx).await.map_err(failed)?;
        let found: Option<i32> =
            sqlx::query_scalar("SELECT max(version) FROM keel_schema_migrations")
                .fetch_one(&mut *tx)
                .await
                .map_err(failed)?;
        let found = found.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
        if found > known {
            tx.rollback().await.map_err(failed)?;
            return Err(MigrateError::TooNew { found, known });
        }
        let applied: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM keel_schema_migrations WHERE version = $1)",
        )
        .bind(version_i32(migration.version))
        .fetch_one(&mut *tx)
        .await
        .map_err(failed)?;
        if applied {
            // Ended explicitly: a dropped transaction's rollback waits for the connection's
            // next use, and its lock with it.
            tx.rollback().await.map_err(failed)?;
            continue;
        }
        // Without arguments: the simple protocol, which runs several statements.
        tx.execute(migration.sql).await.map_err(failed)?;
        sqlx::query("INSERT INTO keel_schema_migrations (version, name) VALUES ($1, $2)")
            .bind(version_i32(migration.version))
            .bind(migration.name)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "migrated"
        );
    }
    Ok(())
}

async fn lock(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('keel_schema_migrations.' || current_schema()))",
    )
    .execute(conn)
    .await?;
    Ok(())
}

fn version_i32(version: u32) -> i32 {
    i32::try_from(version).unwrap_or(i32::MAX)
}

/// Whether a client should come back shortly rather than see a failure: the database could
/// not be reached, the connection broke, the pool is exhausted or closed, or PostgreSQL says
/// so itself (connection exceptions, too many connections, a lock not granted within
/// `lock_timeout`, shutting down, starting up).
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || code == "53300"
                || code == "55P03"
                || code == "57P01"
                || code == "57P02"
                || code == "57P03"
        }),
        _ => false,
    }
}

/// Whether the transaction failed only because it raced another one and may simply be run
/// again: a serialization failure or a deadlock.
pub fn is_retryable(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

/// The column a violated constraint is about, read from the constraint's name as PostgreSQL
/// names them by default and as migrations should name them: `{table}_{column}_key` (unique),
/// `{table}_{column}_fkey` (foreign key), `{table}_{column}_check` (check). `None` for a name
/// that does not follow the pattern.
pub fn constraint_column<'a>(table: &str, constraint: &'a str) -> Option<&'a str> {
    let rest = constraint.strip_prefix(table)?.strip_prefix('_')?;
    let column = ["_key", "_fkey", "_check"]
        .iter()
        .find_map(|suffix| rest.strip_suffix(suffix))?;
    (!column.is_empty()).then_some(column)
}

#[cfg(test)]
mod tests {
    use super::constraint_column;

    #[test]
    fn columns_come_from_default_constraint_names() {
        assert_eq!(constraint_column("users", "users_email_key"), Some("email"));
        assert_eq!(
            constraint_column("orders", "orders_product_id_fkey"),
            Some("product_id")
        );
        assert_eq!(
            constraint_column("webhook_endpoints", "webhook_endpoints_url_key"),
            Some("url")
        );
        assert_eq!(
            constraint_column("products", "products_stock_check"),
            Some("stock")
        );
        assert_eq!(constraint_column("users", "users_pkey"), None);
        assert_eq!(constraint_column("users", "orders_user_id_fkey"), None);
        assert_eq!(constraint_column("users", "users__key"), None);
    }
}
