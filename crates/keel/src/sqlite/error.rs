//! What can go wrong with a read or a write, and what each becomes for a client.

use std::sync::Arc;

/// A failed read or write.
///
/// `From<Error> for ApiError` maps it to the envelope: a missing row is 404, a unique or
/// foreign-key violation 409 (naming the column when SQLite names a single one), a busy,
/// locked, read-only, full or failing disk 503 with `Retry-After`, a closed database 503, and
/// anything else 500 with the cause in the log only.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A statement failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The transaction that held this write did not commit: nothing of it was kept.
    #[error("the transaction could not commit: {0}")]
    Commit(Arc<rusqlite::Error>),
    /// The database is closed (the service is stopping).
    #[error("the database is closed")]
    Closed,
    /// The write was abandoned before it was answered: the closure panicked.
    #[error("the write was abandoned: it panicked")]
    Abandoned,
}

impl Error {
    /// The SQLite error underneath, if any.
    pub fn sqlite(&self) -> Option<&rusqlite::Error> {
        match self {
            Error::Sqlite(err) => Some(err),
            Error::Commit(err) => Some(err),
            Error::Closed | Error::Abandoned => None,
        }
    }

    /// Whether a statement of this write broke a constraint (unique, foreign key, check).
    /// A failed commit is not: the whole batch failed, whoever caused it.
    pub fn is_constraint_violation(&self) -> bool {
        let Error::Sqlite(err) = self else {
            return false;
        };
        err.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
    }

    /// The single column a unique violation is about, as SQLite names it
    /// (`UNIQUE constraint failed: users.email` → `email`); `None` for a composite key or any
    /// other error.
    pub fn unique_column(&self) -> Option<&str> {
        let Error::Sqlite(rusqlite::Error::SqliteFailure(_, Some(message))) = self else {
            return None;
        };
        crate::error::single_column(crate::error::sqlite_unique_columns(message)?)
    }

    /// Whether a client should come back shortly: the database is busy, locked, read-only,
    /// full, failing or closed, or a commit failed.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            Error::Commit(_) | Error::Closed => true,
            Error::Abandoned => false,
            Error::Sqlite(err) => err.sqlite_error_code().is_some_and(|code| {
                matches!(
                    code,
                    C::DatabaseBusy
                        | C::DatabaseLocked
                        | C::ReadOnly
                        | C::DiskFull
                        | C::SystemIoFailure
                        | C::CannotOpen
                        | C::OutOfMemory
                )
            }),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(err)))
    }
}
