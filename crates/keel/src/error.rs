//! [`ApiError`] and the error envelope: the one place where an error becomes JSON.
//!
//! Every failure that leaves a keel service, whatever raised it, is rendered here as
//!
//! ```json
//! {"success": false, "error": "Resource not found", "code": "not_found",
//!  "details": {"resource": "user", "id": 99999}, "request_id": "…"}
//! ```
//!
//! with `Content-Type: application/json`. Handlers, extractors, fallbacks and the layers of
//! [`crate::layers`] all produce an [`ApiError`] and let its [`IntoResponse`] implementation write
//! the body. The request id comes from the task-local set by [`crate::request_id`], so an error
//! made anywhere inside a request carries the id of that request.
//!
//! Internal causes (a database driver message, a panic payload) are attached with
//! [`ApiError::with_source`] and logged exactly once, when the response is made, inside the
//! request's span; the client only ever sees the safe `error` message and the stable `code`.

mod db;
mod sqlite;

#[cfg(feature = "sqlx")]
pub use db::ResultExt;

use std::borrow::Cow;
use std::fmt;

use axum::response::{IntoResponse, Response};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use crate::request_id::RequestId;
use crate::validate::Detail;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error on its way to the client: status, stable code, safe message and details.
///
/// Build one with the named constructors, which carry the codes and messages of the contract,
/// or with [`ApiError::new`] for a code of your own:
///
/// ```
/// use keel::ApiError;
/// use http::StatusCode;
///
/// let err = ApiError::not_found("user", 42);
/// assert_eq!(err.status(), StatusCode::NOT_FOUND);
/// assert_eq!(err.code(), "not_found");
///
/// let custom = ApiError::new(StatusCode::CONFLICT, "already_shipped", "Order already shipped")
///     .with_details(serde_json::json!({"order_id": 7}));
/// assert_eq!(custom.code(), "already_shipped");
/// ```
pub struct ApiError(Box<Inner>);

/// Boxed so that `Result<T, ApiError>` stays one pointer wide on the happy path.
struct Inner {
    status: StatusCode,
    code: Cow<'static, str>,
    message: Cow<'static, str>,
    details: Option<Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
    source: Option<BoxError>,
}

/// A business error a handler can raise with `?`: it names its own status, code and details,
/// and its `Display` text is the safe message shown to the client.
///
/// ```
/// use keel::{ApiError, DomainError};
/// use http::StatusCode;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("Insufficient stock")]
/// struct InsufficientStock { available: i64, requested: i64 }
///
/// impl DomainError for InsufficientStock {
///     fn status(&self) -> StatusCode { StatusCode::CONFLICT }
///     fn code(&self) -> &'static str { "insufficient_stock" }
///     fn details(&self) -> Option<serde_json::Value> {
///         Some(serde_json::json!({"available": self.available, "requested": self.requested}))
///     }
/// }
///
/// let err: ApiError = InsufficientStock { available: 3, requested: 5 }.into();
/// assert_eq!(err.code(), "insufficient_stock");
/// ```
pub trait DomainError: std::error::Error {
    /// The HTTP status the error becomes (usually a 4xx).
    fn status(&self) -> StatusCode;
    /// The stable, machine-readable code.
    fn code(&self) -> &'static str;
    /// Structured details for the client, `None` when there is nothing more to say.
    fn details(&self) -> Option<Value> {
        None
    }
}

impl<E: DomainError> From<E> for ApiError {
    fn from(err: E) -> Self {
        ApiError::new(err.status(), err.code(), err.to_string()).with_details_opt(err.details())
    }
}

impl ApiError {
    /// An error with any status, code and safe message.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError(Box::new(Inner {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            headers: Vec::new(),
            source: None,
        }))
    }

    /// Returns 400 `malformed_json`: the body is not valid JSON. `details` says where parsing
    /// stopped.
    pub fn malformed_json(line: usize, column: usize, reason: &'static str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "Malformed JSON body",
        )
        .with_details(serde_json::json!({"line": line, "column": column, "reason": reason}))
    }

    /// Returns 401 `unauthorized` with `WWW-Authenticate: Bearer`.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized").with_header(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        )
    }

    /// Returns 404 `not_found`, naming the missing record: `{"resource": "user", "id": 42}`.
    pub fn not_found(resource: &'static str, id: impl Serialize) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Resource not found")
            .with_details(serde_json::json!({"resource": resource, "id": id}))
    }

    /// Returns 404 `route_not_found`: no route has this path.
    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "route_not_found", "Route not found")
    }

    /// Returns 405 `method_not_allowed`. The router adds the `Allow` header.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
        )
    }

    /// Returns 409 `conflict`: a unique or foreign-key constraint, naming the field when known.
    pub fn conflict(field: Option<&str>) -> Self {
        let err = Self::new(
            StatusCode::CONFLICT,
            "conflict",
            "Resource already exists or constraint violation",
        );
        match field {
            Some(field) => err.with_details(serde_json::json!({"field": field})),
            None => err,
        }
    }

    /// Returns 413 `payload_too_large`.
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
        )
    }

    /// Returns 415 `unsupported_media_type`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
        )
    }

    /// Returns 422 `validation_error` with one detail per problem.
    pub fn validation(details: Vec<Detail>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "Validation error",
        )
        .with_details_opt(serde_json::to_value(details).ok())
    }

    /// Returns 500 `internal_error`. The cause is logged, never shown.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
        )
        .with_source(source)
    }

    /// Returns 503 `service_unavailable` with `Retry-After: {retry_after_secs}`.
    pub fn service_unavailable(retry_after_secs: u32) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Service unavailable",
        )
        .with_header(
            http::header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs),
        )
    }

    /// Returns 504 `timeout`: the request ran past the configured timeout.
    pub fn timeout() -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", "Request timed out")
    }

    /// The envelope for a bare status that reached the edge of the service without one
    /// (a rejection or response made by code that knows nothing of keel).
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::new(status, "bad_request", "Bad request"),
            StatusCode::UNAUTHORIZED => Self::unauthorized(),
            StatusCode::NOT_FOUND => Self::route_not_found(),
            StatusCode::METHOD_NOT_ALLOWED => Self::method_not_allowed(),
            StatusCode::PAYLOAD_TOO_LARGE => Self::payload_too_large(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::unsupported_media_type(),
            StatusCode::UNPROCESSABLE_ENTITY => Self::validation(Vec::new()),
            StatusCode::GATEWAY_TIMEOUT => Self::timeout(),
            StatusCode::REQUEST_TIMEOUT => Self::new(status, "timeout", "Request timed out"),
            StatusCode::SERVICE_UNAVAILABLE => Self::service_unavailable(1),
            s if s.is_server_error() => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal server error",
            ),
            s => Self::new(
                s,
                "http_error",
                s.canonical_reason().unwrap_or("Request failed"),
            ),
        }
    }

    /// Sets the details shown to the client.
    pub fn with_details(mut self, details: Value) -> Self {
        self.0.details = Some(details);
        self
    }

    fn with_details_opt(mut self, details: Option<Value>) -> Self {
        self.0.details = details;
        self
    }

    /// Adds a response header (`Retry-After`, `WWW-Authenticate`, `Allow` …).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.push((name, value));
        self
    }

    /// Attaches the internal cause: logged when the response is made, never sent.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &str {
        &self.0.code
    }

    /// The safe, human-readable message (the envelope's `error`).
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The details shown to the client, if any.
    pub fn details(&self) -> Option<&Value> {
        self.0.details.as_ref()
    }

    /// The envelope of this error for the request `request_id`.
    pub fn envelope<'a>(&'a self, request_id: Option<&'a RequestId>) -> Envelope<'a> {
        Envelope {
            success: false,
            error: &self.0.message,
            code: &self.0.code,
            details: self.0.details.as_ref(),
            request_id: request_id.map(RequestId::as_str),
        }
    }

    fn log(&self) {
        let source = self.0.source.as_deref().map(ErrorChain);
        if self.0.status.is_server_error() {
            tracing::error!(status = self.0.status.as_u16(), code = %self.0.code, cause = source.map(tracing::field::display), "request failed");
        } else {
            tracing::debug!(status = self.0.status.as_u16(), code = %self.0.code, cause = source.map(tracing::field::display), "request rejected");
        }
    }
}

/// The body of every error response, fields in the contract's order.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope<'a> {
    /// Always `false`.
    pub success: bool,
    /// Short message, safe to show.
    pub error: &'a str,
    /// Stable, machine-readable code.
    pub code: &'a str,
    /// More about the error, `null` when there is nothing more to say.
    pub details: Option<&'a Value>,
    /// The id of the request that failed.
    pub request_id: Option<&'a str>,
}

/// Marks a response whose body is already the envelope, so the edge of the service leaves it
/// alone (see [`crate::request_id`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Enveloped;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let request_id = RequestId::current();
        // Serialising a `Value` of strings and numbers cannot fail; the fallback keeps the
        // promise of a JSON body even if it somehow did.
        let body = serde_json::to_vec(&self.envelope(request_id.as_ref())).unwrap_or_else(|_| {
            br#"{"success":false,"error":"Internal server error","code":"internal_error","details":null,"request_id":null}"#.to_vec()
        });
        let mut response = (self.0.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in self.0.headers {
            headers.insert(name, value);
        }
        response.extensions_mut().insert(Enveloped);
        response
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.0.status)
            .field("code", &self.0.code)
            .field("message", &self.0.message)
            .field("details", &self.0.details)
            .field("source", &self.0.source)
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0.message, self.0.code)
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Displays an error with all its causes: `outer: inner: root`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + Send + Sync));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

/// The message of a panic payload (`panic!("…")` carries a `&str` or a `String`).
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The columns SQLite names in a unique violation's message, as it names them
/// (`UNIQUE constraint failed: users.email` → `users.email`); `None` for another message.
#[cfg(any(feature = "sqlx", feature = "sqlite"))]
pub(crate) fn sqlite_unique_columns(message: &str) -> Option<&str> {
    message.strip_prefix("UNIQUE constraint failed: ")
}

/// The one column of such a list, without its table (`users.email` → `email`); `None` for a
/// composite key.
#[cfg(any(feature = "sqlx", feature = "sqlite"))]
pub(crate) fn single_column(columns: &str) -> Option<&str> {
    if columns.contains(',') {
        return None;
    }
    columns.rsplit('.').next()
}
