//! Everything that turns failures outside handlers into the envelope, installed in one call.
//!
//! [`ServiceLayers::apply`] gives a router, from the outside in:
//!
//! | layer | what it catches | becomes |
//! |---|---|---|
//! | edge: request id | any error response not yet in the envelope | the envelope for its status; `X-Request-ID` on every response |
//! | edge: tasks | after-response work a handler queued | started once the body has been sent |
//! | edge: access log, metrics | every request | one `request completed` line; `http_requests_total`, `http_request_duration_seconds` |
//! | edge: timeout | a request running past the limit (default 30 s) | 504 `timeout` |
//! | edge: panic catcher | a panic in a handler, extractor or inner layer | 500 `internal_error`, panic message in the log only |
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
//!     .apply(Router::new().route("/", get(|| async { "hello" })))
//!     .into_router();
//! ```
//!
//! `apply` gives a [`Layered`] router, which takes no more routes: one added after the layers
//! would answer outside them (no envelope, no request id), so that mistake does not compile.
//!
//! ```compile_fail
//! use axum::{routing::get, Router};
//! let app = keel::layers::ServiceLayers::new()
//!     .apply(Router::new())
//!     .route("/late", get(|| async { "outside the layers" }));
//! ```

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::future::{CatchUnwind, FutureExt};
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use tokio::task::futures::TaskLocalFuture;
use tokio::time::Timeout;
use tokio_util::task::TaskTracker;
use tower::{Layer, Service};
use tracing::Span;

use crate::error::panic_message;
use crate::error::Enveloped;
use crate::request_id::{RequestId, Scope, X_REQUEST_ID};
use crate::tasks;
use crate::ApiError;

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
    tracker: TaskTracker,
}

impl Default for ServiceLayers {
    fn default() -> Self {
        ServiceLayers {
            body_limit: DEFAULT_BODY_LIMIT,
            timeout: DEFAULT_TIMEOUT,
            tracker: TaskTracker::new(),
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

    /// Where after-response tasks ([`crate::tasks`]) are spawned, so that shutdown can wait
    /// for them: `tracker.close(); tracker.wait().await`.
    pub fn task_tracker(mut self, tracker: TaskTracker) -> Self {
        self.tracker = tracker;
        self
    }

    /// Installs the fallbacks and layers on `router`, which must already hold every route.
    pub fn apply<S: Clone + Send + Sync + 'static>(self, router: Router<S>) -> Layered<S> {
        let router = router
            .fallback(route_not_found)
            .method_not_allowed_fallback(method_not_allowed)
            // One `layer` call: axum boxes each route once per call, and clones that box for
            // every request, so two calls would cost two boxes per request.
            .layer(
                tower::ServiceBuilder::new()
                    .layer(EdgeLayer {
                        timeout: self.timeout,
                        tracker: self.tracker,
                    })
                    .layer(DefaultBodyLimit::max(self.body_limit)),
            );
        Layered(router)
    }
}

/// A router behind keel's layers. It offers no `route` or `merge`: routes go in before
/// [`ServiceLayers::apply`], so that none answers outside the layers.
#[derive(Debug, Clone)]
#[must_use]
pub struct Layered<S = ()>(Router<S>);

impl<S: Clone + Send + Sync + 'static> Layered<S> {
    /// Provides the state the routes need.
    pub fn with_state<S2>(self, state: S) -> Layered<S2> {
        Layered(self.0.with_state(state))
    }
}

impl Layered {
    /// The router, to serve (`keel::serve::Server` takes a `Layered` as it is). Routes added to
    /// it from here on are outside keel's layers.
    pub fn into_router(self) -> Router {
        self.0
    }
}

impl From<Layered> for Router {
    fn from(layered: Layered) -> Router {
        layered.0
    }
}

async fn route_not_found() -> ApiError {
    ApiError::route_not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// The outermost layer: the request's id, span, timeout and panic catcher, and the envelope
/// safety net.
///
/// One hand-written service with a future of its own rather than several middlewares: it
/// costs no allocation of its own per request, which matters on the fastest routes.
#[derive(Debug, Clone)]
struct EdgeLayer {
    timeout: Duration,
    tracker: TaskTracker,
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            timeout: self.timeout,
            tracker: self.tracker.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct Edge<S> {
    inner: S,
    timeout: Duration,
    tracker: TaskTracker,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let id = RequestId::from_header(
            req.headers()
                .get(&X_REQUEST_ID)
                .and_then(|v| v.to_str().ok()),
        );
        let started = Instant::now();
        let method = method_label(req.method());
        // The matched template, never the raw path: unknown paths must not grow the metrics.
        let matched = req.extensions().get::<MatchedPath>().cloned();
        let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            method = %req.method(),
            route = route,
        );
        let header = HeaderValue::from_str(id.as_str()).ok();

        // Called here, on the service that was polled ready; its future owns what it needs,
        // so no clone of the service is made per request. A panic in `call` itself is caught
        // like one in its future.
        let state = match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(call) => State::Running {
                call: tokio::time::timeout(self.timeout, AssertUnwindSafe(call).catch_unwind()),
            },
            Err(payload) => State::Panicked {
                payload: Some(payload),
            },
        };
        let served = Served {
            state,
            tracker: self.tracker.clone(),
        };
        EdgeFuture {
            served: Scope::request(id).run(served),
            span,
            finish: Some(Finish {
                header,
                method,
                matched,
                started,
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request through the edge: the rest of the service inside the request's scope, then
    /// the response headers, the access log line and the metrics, inside its span.
    struct EdgeFuture<F> {
        #[pin]
        served: TaskLocalFuture<Scope, Served<F>>,
        span: Span,
        finish: Option<Finish>,
    }
}

/// What the edge adds to a response once it is made.
struct Finish {
    header: Option<HeaderValue>,
    method: &'static str,
    matched: Option<MatchedPath>,
    started: Instant,
}

impl<F, R> Future for EdgeFuture<F>
where
    F: Future<Output = Result<R, Infallible>>,
    R: IntoResponse,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut response = ready!(this.served.poll(cx));
        if let Some(finish) = this.finish.take() {
            if let Some(header) = finish.header {
                response.headers_mut().insert(X_REQUEST_ID.clone(), header);
            }
            // No browser may guess a type other than the one declared (a JSON error rendered
            // as HTML, say).
            response.headers_mut().insert(
                http::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            let route = finish
                .matched
                .as_ref()
                .map_or("unmatched", MatchedPath::as_str);
            record(
                finish.method,
                route,
                response.status(),
                finish.started.elapsed(),
            );
        }
        Poll::Ready(Ok(response))
    }
}

pin_project_lite::pin_project! {
    /// The rest of the service under the timeout and the panic catcher, its answer put in the
    /// envelope when it is an error made outside keel, and the request's after-response tasks
    /// attached. Polled inside the request's scope, so that every envelope carries its id.
    struct Served<F> {
        #[pin]
        state: State<F>,
        tracker: TaskTracker,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running {
            #[pin]
            call: Timeout<CatchUnwind<AssertUnwindSafe<F>>>,
        },
        Panicked {
            payload: Option<Box<dyn Any + Send + 'static>>,
        },
        // Only an error response made outside keel comes here: its body is read for a reason.
        Enveloping {
            envelope: Pin<Box<dyn Future<Output = Response> + Send>>,
        },
    }
}

impl<F, R> Future for Served<F>
where
    F: Future<Output = Result<R, Infallible>>,
    R: IntoResponse,
{
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        loop {
            let mut this = self.as_mut().project();
            let response = match this.state.as_mut().project() {
                StateProj::Running { call } => match ready!(call.poll(cx)) {
                    Ok(Ok(Ok(response))) => response.into_response(),
                    Ok(Ok(Err(never))) => match never {},
                    Ok(Err(payload)) => panic_response(payload),
                    Err(_elapsed) => ApiError::timeout().into_response(),
                },
                StateProj::Panicked { payload } => match payload.take() {
                    Some(payload) => panic_response(payload),
                    None => {
                        ApiError::internal("polled after its panic was answered").into_response()
                    }
                },
                StateProj::Enveloping { envelope } => {
                    let response = ready!(envelope.as_mut().poll(cx));
                    return Poll::Ready(tasks::after_response(response, this.tracker));
                }
            };
            if is_foreign_error(&response) {
                let envelope = Box::pin(envelope(response));
                this.state.set(State::Enveloping { envelope });
                continue;
            }
            return Poll::Ready(tasks::after_response(response, this.tracker));
        }
    }
}

/// The access log line and the HTTP metrics of one request:
/// `http_requests_total{method,route,status}` and `http_request_duration_seconds{method,route}`.
fn record(method: &'static str, route: &str, status: http::StatusCode, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    tracing::info!(
        status = status.as_u16(),
        latency_ms = seconds * 1000.0,
        "request completed"
    );
    let status = status.as_u16();
    METRICS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let by_route = cache.entry((method, status)).or_default();
        if let Some((requests, duration)) = by_route.get(route) {
            requests.increment(1);
            duration.record(seconds);
            return;
        }
        let handles = (
            metrics::counter!("http_requests_total", "method" => method, "route" => route.to_owned(), "status" => status.to_string()),
            metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route.to_owned()),
        );
        handles.0.increment(1);
        handles.1.record(seconds);
        by_route.insert(route.to_owned(), handles);
    });
}

type Handles = (metrics::Counter, metrics::Histogram);
type Fnv = std::hash::BuildHasherDefault<FnvHasher>;
type HandleCache = HashMap<(&'static str, u16), HashMap<String, Handles, Fnv>, Fnv>;

/// FNV-1a: these keys are a handful of short labels chosen by the service, not by clients, so
/// a hash this cheap is safe, and it runs twice per request.
#[derive(Default)]
struct FnvHasher(u64);

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

thread_local! {
    /// Metric handles by (method, status) then route, per thread: looking a handle up by
    /// borrowed labels costs no allocation, where building the labels each time would cost
    /// three. Bounded: methods and routes are finite, statuses are three digits.
    static METRICS: RefCell<HandleCache> = RefCell::new(HashMap::default());
}

/// Standard methods by name; anything else is `OTHER`, so odd methods cannot grow the metrics.
fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// An error response made outside keel: a rejection of an extractor that knows nothing of
/// keel, a layer's plain-text answer.
fn is_foreign_error(response: &Response) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error())
        && response.extensions().get::<Enveloped>().is_none()
}

/// Replaces the body of an error response made outside keel ([`is_foreign_error`]) with the
/// envelope for its status, keeping its headers (`Allow`, `Retry-After` …). The original text
/// of a 4xx is kept as its reason (quoted input redacted): in `details.reason`, or for a 422 as
/// the one detail's `msg`; it is logged at debug. A 5xx's text is only logged.
async fn envelope(response: Response) -> Response {
    let status = response.status();
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, FOREIGN_REASON_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let mut error = ApiError::from_status(status);
    if !text.is_empty() {
        tracing::debug!(status = status.as_u16(), reason = %text, "error response made outside keel");
        if status.is_client_error() {
            let reason = redact_quoted(&text);
            error = if status == http::StatusCode::UNPROCESSABLE_ENTITY {
                let problem = crate::validate::Problem::new("invalid_value", reason);
                ApiError::validation(vec![problem.at(Vec::new())])
            } else {
                error.with_details(serde_json::json!({ "reason": reason }))
            };
        }
    }
    let mut enveloped = error.into_response();
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            enveloped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    enveloped
}

/// Most bytes of a foreign error body read for its reason.
const FOREIGN_REASON_BYTES: usize = 4096;

/// `text` with what serde and axum quote from the input (`"…"` and `` `…` ``) replaced by `…`,
/// so that a reason never echoes a client's data.
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quote = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => {
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '`' {
                    out.push('…');
                    quote = Some(c);
                }
            }
        }
    }
    out
}

/// The panic's message, as the logged cause of the 500.
#[derive(Debug, thiserror::Error)]
#[error("handler panicked: {0}")]
struct Panicked(String);

fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::internal(Panicked(panic_message(payload))).into_response()
}
