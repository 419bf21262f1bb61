//! sqlx errors → [`ApiError`].
//!
//! `impl From<sqlx::Error> for ApiError` lets handlers use `?` on any query:
//!
//! | sqlx error | becomes |
//! |---|---|
//! | `RowNotFound` | 404 `not_found` (use [`ResultExt::not_found`] to name the record) |
//! | unique, foreign-key or check violation | 409 `conflict`, `{"field": …}` when the column is known |
//! | pool timeout or closed, I/O, TLS, database busy or locked | 503 `service_unavailable` with `Retry-After` |
//! | anything else | 500 `internal_error`, the driver message only in the log |
#![cfg(feature = "sqlx")]

use super::ApiError;
use http::StatusCode;
use sqlx::error::DatabaseError;

/// Seconds a client is asked to wait when the database is unavailable.
const RETRY_AFTER_SECS: u32 = 1;

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "Resource not found")
            }
            sqlx::Error::Database(db)
                if db.is_unique_violation()
                    || db.is_foreign_key_violation()
                    || db.is_check_violation() =>
            {
                let field = constraint_field(db.as_ref());
                ApiError::conflict(field.as_deref()).with_source(err)
            }
            sqlx::Error::Database(db) if is_busy(db.as_ref()) => {
                ApiError::service_unavailable(RETRY_AFTER_SECS).with_source(err)
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => {
                ApiError::service_unavailable(RETRY_AFTER_SECS).with_source(err)
            }
            _ => ApiError::internal(err),
        }
    }
}

/// Whether `db` is a violation of the constraint `name` (see [`ResultExt::on_constraint`]).
fn violates(db: &dyn DatabaseError, name: &str) -> bool {
    if db.constraint() == Some(name) {
        return true;
    }
    crate::error::sqlite_unique_columns(db.message()).is_some_and(|columns| {
        columns == name || crate::error::single_column(columns) == Some(name)
    })
}

/// The column a constraint error is about, when the database says so.
///
/// SQLite names it in its message (`UNIQUE constraint failed: users.email`); PostgreSQL names
/// the constraint and its table, and a constraint named as PostgreSQL names them by default
/// (`users_email_key`) gives the column. Composite constraints name no single field.
fn constraint_field(db: &dyn DatabaseError) -> Option<String> {
    #[cfg(feature = "postgres")]
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        let column = crate::postgres::constraint_column(pg.table()?, pg.constraint()?)?;
        return Some(column.to_owned());
    }
    let columns = crate::error::sqlite_unique_columns(db.message())?;
    crate::error::single_column(columns).map(str::to_owned)
}

/// SQLite's `SQLITE_BUSY` (5) and `SQLITE_LOCKED` (6), with their extended codes: the database
/// is held by another writer past the busy timeout. PostgreSQL's class 08 (connection
/// exception), 53300 (too many connections) and 57P03 (cannot connect now) mean the same to a
/// client: come back shortly.
///
/// The two are told apart by the code alone, so that no driver is needed to classify its
/// errors: a SQLSTATE has five characters, a SQLite code (extended ones included) at most four
/// digits.
fn is_busy(db: &dyn DatabaseError) -> bool {
    db.code().is_some_and(|code| {
        if code.len() == 5 {
            return code.starts_with("08")
                || matches!(&*code, "53300" | "55P03" | "57P01" | "57P02" | "57P03");
        }
        code.parse::<i32>()
            .is_ok_and(|code| matches!(code & 0xff, 5 | 6))
    })
}

/// Mapping of query results to the errors a handler means.
///
/// ```no_run
/// # async fn demo(pool: sqlx::SqlitePool, id: i64) -> Result<(), keel::ApiError> {
/// use keel::error::ResultExt;
///
/// let name: String = sqlx::query_scalar("SELECT name FROM products WHERE id = ?")
///     .bind(id)
///     .fetch_one(&pool)
///     .await
///     .not_found("product", id)?;
///
/// sqlx::query("INSERT INTO users (username) VALUES (?)")
///     .bind("ada")
///     .execute(&pool)
///     .await
///     .on_constraint("users_username_key", |_| keel::ApiError::conflict(Some("username")))?;
/// # Ok(()) }
/// ```
pub trait ResultExt<T> {
    /// `RowNotFound` becomes 404 `not_found` naming `resource` and `id`.
    fn not_found(self, resource: &'static str, id: impl serde::Serialize) -> Result<T, ApiError>;

    /// A violation of the constraint called `name` becomes the error `f` makes.
    ///
    /// PostgreSQL names the violated constraint (`users_username_key`). SQLite names the
    /// columns instead (`UNIQUE constraint failed: users.username`): there `name` matches the
    /// column (`username`) or the table and column (`users.username`) of a single-column unique
    /// constraint, and `"users.a, users.b"` a composite one as SQLite lists it.
    fn on_constraint(
        self,
        name: &str,
        f: impl FnOnce(Box<dyn sqlx::error::DatabaseError>) -> ApiError,
    ) -> Result<T, ApiError>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn not_found(self, resource: &'static str, id: impl serde::Serialize) -> Result<T, ApiError> {
        self.map_err(|err| match err {
            sqlx::Error::RowNotFound => ApiError::not_found(resource, id),
            other => other.into(),
        })
    }

    fn on_constraint(
        self,
        name: &str,
        f: impl FnOnce(Box<dyn sqlx::error::DatabaseError>) -> ApiError,
    ) -> Result<T, ApiError> {
        self.map_err(|err| match err {
            sqlx::Error::Database(db) if violates(db.as_ref(), name) => f(db),
            other => other.into(),
        })
    }
}
