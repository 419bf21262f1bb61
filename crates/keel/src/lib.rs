//! keel: the error handling layer that axum services otherwise write by hand.
//!
//! Every failure that leaves a keel service has one shape, the *envelope*, and carries the
//! request's id:
//!
//! ```json
//! {"success": false, "error": "Validation error", "code": "validation_error",
//!  "details": [{"loc": ["body", "email"], "msg": "value is not a valid email address", "type": "invalid_email"}],
//!  "request_id": "0b6e3f0e-3d1c-4c7e-9a8e-2f4b8c1d9e10"}
//! ```
//!
//! Where each kind of failure becomes the envelope:
//! - [`error`]: [`ApiError`], the one place an error becomes JSON; [`DomainError`] for business
//!   errors; `From<sqlx::Error>` for database errors.
//! - [`extract`]: [`Json`], [`Path`] and [`Query`], whose rejections are `ApiError`s.
//! - [`validate`]: every problem of a body at once, FastAPI-shaped.
//! - [`layers`]: unknown routes and methods, body limit, timeout, panics, request ids, and the
//!   safety net that envelopes any error response made elsewhere, in one builder.
//! - [`idempotency`]: `Idempotency-Key` for the routes that create things.
//! - [`tasks`]: after-response tasks, FastAPI's `BackgroundTasks` without its holes.
//! - [`jobs`]: a durable job queue in the service's own database.
//! - `sqlite`: SQLite through one group-committing writer and inline readers, and its
//!   migrations (feature `sqlite`, on by default).
//! - `postgres`: PostgreSQL migrations safe from every instance at once, and `rfc3339!`
//!   (feature `postgres`).
//! - `db`: one handle on either engine, opened from a URL, with the queue and the idempotency
//!   answers in it (features `sqlite` and/or `postgres`).
//! - [`migration`]: one versioned schema change and the one error of both engines' `migrate`.
//! - [`auth`]: operator routes behind a bearer token.
//! - [`webhooks`]: Standard Webhooks signing and verification, and an SSRF guard.
//! - [`ws`]: a WebSocket hub with bounded per-client queues.
//! - [`request_id`]: `X-Request-ID` rules and the id of the current request.
//! - [`serve`]: a server with header, idle and send timeouts and a bound on open connections
//!   fitted to the open-files limit; `shutdown_signal` for SIGINT and SIGTERM.
//!
//! Features: `sqlite` (default: rusqlite, no sqlx), `sqlx` (`From<sqlx::Error>` for whichever
//! sqlx driver the service uses), `postgres` (sqlx's PostgreSQL driver, its queue and
//! migrations), `redis` (the hub's broker across instances). keel is split by feature: a
//! feature's code for each engine sits in the feature's module (`jobs::sqlite`,
//! `jobs::postgres`, `idempotency::sqlite`, `idempotency::postgres`, `error::sqlite`), and the
//! engine modules hold only what is the engine's own (its database handle and migrations).
//!
//! A complete service:
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use keel::{layers::ServiceLayers, ApiError, Json, Path};
//!
//! async fn get_user(Path(id): Path<i64>) -> Result<Json<serde_json::Value>, ApiError> {
//!     if id != 1 {
//!         return Err(ApiError::not_found("user", id));
//!     }
//!     Ok(Json(serde_json::json!({"id": 1, "username": "ada"})))
//! }
//!
//! #[tokio::main]
//! async fn main() {
//!     let app = ServiceLayers::new().apply(Router::new().route("/users/{id}", get(get_user)));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await.unwrap();
//!     let shutdown = keel::serve::shutdown_signal();
//!     keel::serve::Server::new().serve(listener, app, shutdown).await.unwrap();
//! }
//! ```

#![warn(missing_docs)]

// The derive's expansion names `::keel`, in this crate's own tests too.
extern crate self as keel;

pub mod auth;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod db;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod jobs;
pub mod layers;
pub mod migration;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod request_id;
pub mod serve;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod tasks;
pub mod validate;
pub mod webhooks;
pub mod ws;

/// axum's `#[debug_handler]`: put it on a handler that does not compile as one, and the error
/// names the argument or return type at fault instead of the whole `Handler` bound.
pub use axum::debug_handler;
pub use error::{ApiError, DomainError};
pub use extract::{created, Json, Path, Query};
pub use request_id::RequestId;
/// The types keel's APIs take for background work and shutdown, so that a service needs no
/// direct dependency on `tokio-util` to name them.
pub use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// What most handlers and `main` functions of a keel service name: `use keel::prelude::*;`.
pub mod prelude {
    pub use crate::error::{ApiError, DomainError};
    pub use crate::extract::{created, Json, Path, Query};
    pub use crate::idempotency::{Idempotency, IdempotencyLayer};
    pub use crate::jobs::{Job, JobError, JobMeta, Registry, Worker, WorkerConfig};
    pub use crate::layers::ServiceLayers;
    pub use crate::request_id::RequestId;
    pub use crate::serve::Server;
    pub use crate::tasks::Tasks;
    pub use crate::validate::{Problem, Valid, Validate};
    pub use crate::ws::{Hub, WsConfig, WsUpgrade};
    pub use tokio_util::{sync::CancellationToken, task::TaskTracker};
}

/// What the derive's expansion needs; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use regex_lite::Regex;
    pub use serde;
    pub use serde_json;
    pub use utoipa;
}
