//! The `X-Request-ID` layer, and the edge of the service where every error becomes the envelope.
//!
//! For each request, [`middleware`]:
//! 1. keeps a valid incoming `X-Request-ID` (`^[A-Za-z0-9._:-]{1,128}$`) or makes a fresh UUID;
//! 2. opens the `request` tracing span with `request_id`, `method` and `route` fields, so every
//!    log line written while serving the request carries the id;
//! 3. runs the rest of the service inside a task-local scope holding the id, which is how an
//!    [`ApiError`] made anywhere inside knows what to put in `request_id`;
//! 4. turns any 4xx/5xx response that is not already the envelope (one made by code that knows
//!    nothing of keel) into the envelope for its status, keeping its headers;
//! 5. echoes the id in the `X-Request-ID` response header.
//!
//! Handlers and background work read the id with the [`RequestId`] extractor or
//! [`RequestId::current`].

use std::fmt;
use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use tracing::Instrument;

use crate::error::Enveloped;
use crate::ApiError;

/// The request id header.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of one request: either the client's, when valid, or a fresh UUID.
///
/// ```
/// use keel::RequestId;
///
/// assert_eq!(RequestId::from_header(Some("trace-42.a:b")).as_str(), "trace-42.a:b");
/// assert_ne!(RequestId::from_header(Some("bad id!")).as_str(), "bad id!");
/// assert_eq!(RequestId::from_header(None).as_str().len(), 36);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// The client's id when it matches `^[A-Za-z0-9._:-]{1,128}$`, else a fresh UUID.
    pub fn from_header(value: Option<&str>) -> Self {
        match value {
            Some(id) if is_valid(id) => RequestId(id.into()),
            _ => Self::generate(),
        }
    }

    /// A fresh UUID v4.
    pub fn generate() -> Self {
        let mut buf = uuid::Uuid::encode_buffer();
        RequestId(
            uuid::Uuid::new_v4()
                .hyphenated()
                .encode_lower(&mut buf)
                .into(),
        )
    }

    /// The id of the request being served by the current task, if any.
    pub fn current() -> Option<RequestId> {
        CURRENT.try_with(RequestId::clone).ok()
    }

    /// Runs `fut` with `self` as the [`RequestId::current`] id: for work a request hands to
    /// another task.
    pub async fn scope<F: std::future::Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_valid(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Extracts the id [`middleware`] gave the request (a fresh one if the layer is missing).
impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::generate))
    }
}

/// The outermost keel layer; install it with [`crate::layers::ServiceLayers`], or alone with
/// `axum::middleware::from_fn(keel::request_id::middleware)`.
pub async fn middleware(mut req: Request, next: Next) -> Response {
    let id = RequestId::from_header(
        req.headers()
            .get(&X_REQUEST_ID)
            .and_then(|v| v.to_str().ok()),
    );
    req.extensions_mut().insert(id.clone());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        route = route.as_deref().unwrap_or("<unmatched>"),
    );

    let header = HeaderValue::from_str(id.as_str()).ok();
    let mut response = CURRENT
        .scope(id, async move {
            let response = next.run(req).await;
            ensure_envelope(response)
        })
        .instrument(span)
        .await;
    if let Some(header) = header {
        response.headers_mut().insert(X_REQUEST_ID.clone(), header);
    }
    response
}

/// Replaces the body of an error response made outside keel with the envelope for its status.
fn ensure_envelope(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<Enveloped>().is_some()
    {
        return response;
    }
    let (parts, _body) = response.into_parts();
    let mut enveloped = ApiError::from_status(status).into_response();
    for (name, value) in &parts.headers {
        if name != http::header::CONTENT_TYPE && name != http::header::CONTENT_LENGTH {
            enveloped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    enveloped
}
