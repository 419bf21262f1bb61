//! [`crate::sqlite`] errors → [`ApiError`].
//!
//! | error | becomes |
//! |---|---|
//! | `QueryReturnedNoRows` | 404 `not_found` |
//! | unique or foreign-key violation | 409 `conflict`, `{"field": …}` when SQLite names one column |
//! | busy, locked, read-only, disk full or failing, a failed commit, a closed database | 503 `service_unavailable` with `Retry-After` |
//! | anything else | 500 `internal_error`, the cause only in the log |
#![cfg(feature = "sqlite")]

use http::StatusCode;

use super::ApiError;
use crate::sqlite::Error;

/// Seconds a client is asked to wait when the database is unavailable.
const RETRY_AFTER_SECS: u32 = 1;

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        if let Some(rusqlite::Error::QueryReturnedNoRows) = err.sqlite() {
            return ApiError::new(StatusCode::NOT_FOUND, "not_found", "Resource not found");
        }
        if err.is_constraint_violation() {
            let field = err.unique_column().map(str::to_owned);
            return ApiError::conflict(field.as_deref()).with_source(err);
        }
        if err.is_unavailable() {
            return ApiError::service_unavailable(RETRY_AFTER_SECS).with_source(err);
        }
        ApiError::internal(err)
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(err: rusqlite::Error) -> Self {
        Error::from(err).into()
    }
}
