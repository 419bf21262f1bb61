//! Everything that turns failures outside handlers into the envelope, installed in one call.
//!
//! [`ServiceLayers::apply`] gives a router, from the outside in:
//!
//! | layer | what it catches | becomes |
//! |---|---|---|
//! | [`request_id::middleware`] | any error response not yet in the envelope | the envelope for its status, with `X-Request-ID` |
//! | panic catcher | a panic in a handler, extractor or inner layer | 500 `internal_error`, panic message in the log only |
//! | timeout | a request running past the limit (default 30 s) | 504 `timeout` |
//! | body limit | a body over the limit (default 1 MiB), when an extractor reads it | 413 `payload_too_large` |
//! | fallbacks | an unknown path; a known path with another method | 404 `route_not_found`; 405 `method_not_allowed` with `Allow` |
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use keel::layers::ServiceLayers;
//!
//! let app: Router = ServiceLayers::new()
//!     .body_limit(64 * 1024)
//!     .timeout(Duration::from_secs(5))
//!     .apply(Router::new().route("/", get(|| async { "hello" })));
//! ```

use std::any::Any;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::{request_id, ApiError};

/// The request body limit when none is set: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// The request timeout when none is set: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Builder of keel's layers. Call [`ServiceLayers::apply`] once, after every route is added:
/// it sets the router's fallbacks.
#[derive(Debug, Clone)]
pub struct ServiceLayers {
    body_limit: usize,
    timeout: Duration,
}

impl Default for ServiceLayers {
    fn default() -> Self {
        ServiceLayers {
            body_limit: DEFAULT_BODY_LIMIT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl ServiceLayers {
    /// The defaults: 1 MiB bodies, 30 s timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest request body an extractor will read, in bytes.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Longest time a request may run before it is answered 504.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Installs the fallbacks and layers on `router`.
    pub fn apply<S: Clone + Send + Sync + 'static>(self, router: Router<S>) -> Router<S> {
        router
            .fallback(route_not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(self.body_limit))
            .layer(middleware::from_fn_with_state(self.timeout, timeout))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(middleware::from_fn(request_id::middleware))
    }
}

async fn route_not_found() -> ApiError {
    ApiError::route_not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout().into_response(),
    }
}

/// The panic's message, as the logged cause of the 500.
#[derive(Debug, thiserror::Error)]
#[error("handler panicked: {0}")]
struct Panicked(String);

fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    };
    ApiError::internal(Panicked(message)).into_response()
}
