//! PostgreSQL for services that run as several instances on one database: versioned
//! migrations that every instance may run at start-up at the same time. What keel's features
//! keep there is with each feature: the stored answers of `Idempotency-Key`s
//! (`keel::idempotency::postgres`) and the job queue (`keel::jobs::postgres`).
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

use sqlx::{Connection, Executor, PgPool};

use crate::migration::Migration;

pub use crate::migration::MigrateError;

/// SQL that shows a `timestamptz` column as keel shows time: RFC 3339 in UTC with
/// milliseconds, as SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ')` does. A string literal, for
/// `concat!`:
///
/// ```
/// const SELECT: &str = concat!("SELECT ", keel::postgres::rfc3339!("created_at"), " FROM t");
/// assert_eq!(
///     SELECT,
///     "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM t"
/// );
/// ```
#[doc(inline)]
pub use crate::__keel_pg_rfc3339 as rfc3339;

#[doc(hidden)]
#[macro_export]
macro_rules! __keel_pg_rfc3339 {
    ($column:literal) => {
        concat!(
            "to_char(",
            $column,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        )
    };
}

/// Applies, in order, the migrations the database (its current schema) lacks, each in its own
/// transaction with the record of its version in `keel_schema_migrations`.
///
/// Every step holds a transaction-level advisory lock keyed on the schema's name, so instances
/// that start together take turns: one applies a migration, the others find it recorded and go
/// on. Append migrations; never edit one that has shipped.
pub async fn migrate(pool: &PgPool, migrations: &[Migration]) -> Result<(), MigrateError> {
    crate::migration::check_order(migrations)?;
    let mut conn = pool.acquire().await.map_err(MigrateError::version)?;
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    let mut tx = conn.begin().await.map_err(MigrateError::version)?;
    lock(&mut tx).await.map_err(MigrateError::version)?;
    tx.execute(
        "CREATE TABLE IF NOT EXISTS keel_schema_migrations ( \
             version    INTEGER PRIMARY KEY, \
             name       TEXT NOT NULL, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .map_err(MigrateError::version)?;
    tx.commit().await.map_err(MigrateError::version)?;
    for migration in migrations {
        let failed = |source: sqlx::Error| MigrateError::failed(migration, source);
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
