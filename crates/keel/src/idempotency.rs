//! `Idempotency-Key`: a client that retries a POST whose answer it lost gets the first answer
//! again instead of a second record.
//!
//! [`IdempotencyLayer`] wraps the routes that create things. A key belongs to its caller and its
//! route: the [`Caller`] of the request (anonymous without one) and the method and path template
//! (`POST /users`), so the same key used by another caller or on another route is another key,
//! and nobody can take or probe someone else's. The layer must run after the one that sets the
//! `Caller` (inside it: `require_bearer` guards with `route_layer`, so a layer on the route's
//! method router is inside); before it, every caller counts as anonymous. For a request with an `Idempotency-Key` header
//! (1 to 255 printable ASCII characters) the layer computes a fingerprint of the method, path
//! and body, then:
//!
//! - an answer stored under the key with the same fingerprint is sent again, with
//!   `Idempotent-Replayed: true`, and the handler does not run: nothing is created, enqueued or
//!   broadcast twice;
//! - an answer stored under the key with another fingerprint is `422 idempotency_key_reused`;
//! - a request with the key still in flight in this process is `409 idempotency_in_progress`
//!   with `Retry-After: 1`;
//! - otherwise the handler runs with a [`Claim`] in the request (the [`Idempotency`]
//!   extractor), and stores its answer under it **in the same transaction as the record it
//!   creates**, so that a crash can never keep the one without the other, and two instances
//!   serving one key at once cannot both commit. An error answer rolls that transaction back
//!   and is not stored: a retry is served afresh.
//!
//! Route such a handler with [`post`] (or [`on`]) rather than axum's: its answer must then be a
//! [`Saved`], which only the engines' `save_answer` make (`keel::idempotency::sqlite`,
//! `keel::idempotency::postgres`), so a handler that forgets to store its answer does not
//! compile. Behind a plain route with the layer, a successful JSON answer (up to
//! [`MAX_STORED_ANSWER`]) that the handler did not store is stored by the layer, through
//! [`IdempotencyStore::save`], before it goes out: the handler still runs once per key, but a
//! crash between the record's commit and that save, or two instances serving one key at the
//! same moment, can make a second record. The answer goes out even if that save fails (a
//! warning says so).
//!
//! An answer is kept for the store's time to live; after it the key is free again, and a request
//! with it is served afresh (its [`Claim`] replaces the expired answer).
//!
//! Requests without the header pass straight through. Where answers are kept is the service's
//! [`IdempotencyStore`]; [`crate::idempotency::sqlite`] is one on SQLite. Two instances that
//! take the same key at the same moment both run the handler; the store's unique key lets one
//! transaction commit, and the other answers [`in_progress`] (its retry gets the replay).
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")] {
//! use axum::Router;
//! use keel::idempotency::sqlite::{save_answer, SqliteIdempotency};
//! use keel::idempotency::{post, Answer, Idempotency, IdempotencyLayer, Saved};
//! use keel::{sqlite::Database, ApiError};
//!
//! async fn create(
//!     axum::extract::State(db): axum::extract::State<Database>,
//!     key: Idempotency,
//! ) -> Result<Saved, ApiError> {
//!     let write = move |conn: &rusqlite::Connection| {
//!         let id: i64 = conn.query_row("INSERT INTO things DEFAULT VALUES RETURNING id", [], |r| r.get(0))?;
//!         let answer = Answer::created(&format!("/things/{id}"), format!("{{\"id\":{id}}}"))?;
//!         Ok::<_, ApiError>(save_answer(conn, &key, answer)?) // with the thing, or not at all
//!     };
//!     db.writer().write(write).await
//! }
//!
//! # fn app(db: Database) -> Router {
//! let answers = SqliteIdempotency::new(db.clone(), std::time::Duration::from_secs(24 * 3600));
//! Router::new()
//!     .route("/things", post(create, IdempotencyLayer::new(answers)))
//!     .with_state(db)
//! # }
//! # }
//! ```

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::request::Parts;
use http::StatusCode;
use sha2::{Digest, Sha256};
use tower::{Layer, Service, ServiceExt};

use crate::auth::Caller;
use crate::validate::{Loc, Problem};
use crate::ApiError;

/// The request header naming the key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The response header of a replayed answer.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// A request's key and the fingerprint of its method, path and body: what the handler stores
/// its answer under. Only [`IdempotencyLayer`] makes one.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The key as stored: the caller, the method and path template, and the
    /// `Idempotency-Key` header's value, one to a line.
    pub key: String,
    /// Hex SHA-256 of the method, the path (with its query) and the body.
    pub fingerprint: String,
    /// How long the answer is replayed; an answer stored under the key longer ago than this is
    /// expired, and replaced when the answer is saved.
    pub ttl: std::time::Duration,
    /// Set once the handler has stored the answer itself; shared by the clones of the claim.
    saved: Arc<AtomicBool>,
}

impl PartialEq for Claim {
    fn eq(&self, other: &Self) -> bool {
        (&self.key, &self.fingerprint, self.ttl) == (&other.key, &other.fingerprint, other.ttl)
    }
}

impl Eq for Claim {}

impl Claim {
    /// Records that the handler stored the answer under this claim in its transaction, so that
    /// the layer does not write it a second time. The engines' `save` functions call it.
    pub fn mark_saved(&self) {
        self.saved.store(true, Ordering::Release);
    }

    fn is_saved(&self) -> bool {
        self.saved.load(Ordering::Acquire)
    }
}

/// An answer kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// The fingerprint of the request that produced it.
    pub fingerprint: String,
    /// Its status (a 2xx).
    pub status: u16,
    /// Its `Location` header, if any.
    pub location: Option<String>,
    /// Its JSON body.
    pub body: Vec<u8>,
}

/// Where a service keeps its answers: read here, written by the handlers in their own
/// transactions, or by the layer for a handler that did not.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// How long an answer is replayed after it was stored.
    fn ttl(&self) -> std::time::Duration;

    /// The answer stored under `key`, unless there is none or it has expired.
    fn lookup(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<StoredAnswer>, ApiError>> + Send;

    /// Stores `answer` under `claim`'s key on its own, replacing an expired one; false when an
    /// answer that has not expired is there already.
    fn save(
        &self,
        claim: &Claim,
        answer: &StoredAnswer,
    ) -> impl Future<Output = Result<bool, ApiError>> + Send;
}

/// The extractor of the current request's key: its [`claim`](Idempotency::claim) is `Some` on
/// a route behind [`IdempotencyLayer`] when the request carries a key, `None` otherwise. Only
/// the extractor makes one, so that a handler cannot pass for a request without a key.
#[derive(Debug, Clone)]
pub struct Idempotency(Option<Claim>);

impl Idempotency {
    /// The claim of the request's key, if it came with one.
    pub fn claim(&self) -> Option<&Claim> {
        self.0.as_ref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Idempotency(parts.extensions.get::<Claim>().cloned()))
    }
}

/// A successful JSON answer stored under the request's key in the transaction that made the
/// record it answers for, or the answer to a request that came without a key: what a handler
/// routed with [`post`] or [`on`] must answer with. Only the engines' `save_answer` functions
/// (`keel::idempotency::sqlite::save_answer`, `keel::idempotency::postgres::save_answer`) and
/// [`Unkeyed::answer`] make one, so such a handler cannot answer without storing. It is sent
/// as it was stored: status, `Location` and JSON body.
#[derive(Debug, Clone)]
#[must_use = "a Saved is the handler's answer"]
pub struct Saved(Answer);

/// A successful JSON answer (a 2xx, with an optional `Location`), to be stored by the engines'
/// `save_answer`, which make a [`Saved`] of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    status: StatusCode,
    location: Option<HeaderValue>,
    body: Bytes,
}

/// Why an [`Answer`] could not be made: a bug of the handler, answered 500.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// Only a 2xx is stored: an error is served afresh to a retry.
    #[error("an idempotent answer must be a 2xx, not {0}")]
    Status(StatusCode),
    /// The `Location` cannot be a header of visible ASCII.
    #[error("the Location of an idempotent answer is not a header value of visible ASCII")]
    Location,
    /// The body is not UTF-8 text.
    #[error("the body of an idempotent answer is not UTF-8")]
    Utf8,
    /// The body is not JSON, or the value could not be written as JSON.
    #[error("the body of an idempotent answer is not JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<AnswerError> for ApiError {
    fn from(err: AnswerError) -> Self {
        ApiError::internal(err)
    }
}

impl Answer {
    /// `201 Created` at `location`, with `body`, JSON text.
    pub fn created(location: &str, body: impl Into<Vec<u8>>) -> Result<Answer, AnswerError> {
        let body = body.into();
        // UTF-8 first: serde_json does not check it inside the strings it skips.
        let text = std::str::from_utf8(&body).map_err(|_| AnswerError::Utf8)?;
        serde_json::from_str::<serde::de::IgnoredAny>(text)?;
        Answer {
            status: StatusCode::CREATED,
            location: None,
            body: Bytes::from(body),
        }
        .at(location)
    }

    /// `status`, a 2xx, with `value` written as JSON.
    pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Result<Answer, AnswerError> {
        if !status.is_success() {
            return Err(AnswerError::Status(status));
        }
        Ok(Answer {
            status,
            location: None,
            body: Bytes::from(serde_json::to_vec(value)?),
        })
    }

    /// The same answer with a `Location` header.
    pub fn at(self, location: &str) -> Result<Answer, AnswerError> {
        // Visible ASCII only: what is stored is read back as text for the replay.
        let location = HeaderValue::from_str(location)
            .ok()
            .filter(|l| l.to_str().is_ok())
            .ok_or(AnswerError::Location)?;
        Ok(Answer {
            location: Some(location),
            ..self
        })
    }

    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its `Location` header, if any.
    pub fn location(&self) -> Option<&str> {
        self.location.as_ref().and_then(|l| l.to_str().ok())
    }

    /// Its JSON body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl Saved {
    /// `answer`, once `inserted` says it was stored under its key.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    fn stored<E>(answer: Answer, inserted: Result<bool, E>) -> Result<Saved, SaveError<E>> {
        match inserted {
            Ok(true) => Ok(Saved(answer)),
            Ok(false) => Err(SaveError::Taken),
            Err(err) => Err(SaveError::Database(err)),
        }
    }

    /// What was stored (or answered, without a key).
    pub fn answer(&self) -> &Answer {
        &self.0
    }

    /// Its JSON body as text.
    pub fn json(&self) -> &str {
        // JSON, and so UTF-8, since the answer was made.
        std::str::from_utf8(&self.0.body).unwrap_or_default()
    }
}

impl IntoResponse for Saved {
    fn into_response(self) -> Response {
        let Answer {
            status,
            location,
            body,
        } = self.0;
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(location) = location {
            headers.insert(LOCATION, location);
        }
        response
    }
}

/// The proof that a request came without an `Idempotency-Key`: its answer needs no storing.
/// [`Idempotency::unkeyed`] gives it.
#[derive(Debug, Clone, Copy)]
pub struct Unkeyed(());

impl Unkeyed {
    /// `answer` as the handler's [`Saved`] answer, stored nowhere.
    pub fn answer(self, answer: Answer) -> Saved {
        Saved(answer)
    }
}

impl Idempotency {
    /// `Some` when the request came without a key: its answer is the handler's as it is (a
    /// way to skip the engines' `save_answer`, for a write that has no transaction to store
    /// in). `None` when it has one.
    pub fn unkeyed(&self) -> Option<Unkeyed> {
        self.0.is_none().then_some(Unkeyed(()))
    }
}

/// Why an answer was not stored; the transaction must roll back (return the error from it).
#[derive(Debug, thiserror::Error)]
pub enum SaveError<E> {
    /// Another request with the same key committed first (on another instance): answered
    /// `409 idempotency_in_progress`, and its retry gets the replay.
    #[error("the idempotency key was taken by a concurrent request")]
    Taken,
    /// The database failed.
    #[error(transparent)]
    Database(E),
}

impl<E> From<SaveError<E>> for ApiError
where
    ApiError: From<E>,
{
    fn from(err: SaveError<E>) -> Self {
        match err {
            SaveError::Taken => in_progress(),
            SaveError::Database(err) => err.into(),
        }
    }
}

/// `POST` to `handler` behind `layer`, where the handler must answer with a [`Saved`] (or an
/// error): answering without storing the answer is a compile error.
///
/// ```compile_fail
/// use axum::Router;
/// use keel::idempotency::{IdempotencyLayer, post};
/// use keel::idempotency::sqlite::SqliteIdempotency;
///
/// // Answers without storing: refused at compile time.
/// async fn forgetful() -> (http::StatusCode, String) {
///     (http::StatusCode::CREATED, "{}".to_owned())
/// }
///
/// fn app(layer: IdempotencyLayer<SqliteIdempotency>) -> Router {
///     Router::new().route("/things", post(forgetful, layer))
/// }
/// ```
pub fn post<H, T, A, S, St>(handler: H, layer: IdempotencyLayer<St>) -> MethodRouter<S>
where
    H: Handler<T, S> + AnswersSaved<A>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
    St: IdempotencyStore,
{
    on(MethodFilter::POST, handler, layer)
}

/// Like [`post`], for the methods of `filter`.
pub fn on<H, T, A, S, St>(
    filter: MethodFilter,
    handler: H,
    layer: IdempotencyLayer<St>,
) -> MethodRouter<S>
where
    H: Handler<T, S> + AnswersSaved<A>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
    St: IdempotencyStore,
{
    axum::routing::on(filter, handler).layer(layer)
}

/// A handler whose success is a [`Saved`]: `async fn(…) -> Saved` or
/// `async fn(…) -> Result<Saved, E>`, with up to 16 extractors.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must answer with `keel::idempotency::Saved` (or `Result<Saved, E>`)",
    label = "an idempotent route's handler answers with what it stored",
    note = "store the answer in the record's transaction with `keel::idempotency::sqlite::save_answer` or `keel::idempotency::postgres::save_answer`, and return the `Saved` it gives"
)]
pub trait AnswersSaved<Args>: sealed::Sealed<Args> {}

/// What a handler of [`post`] may return.
pub trait SavedOutput: sealed::Output {}
impl SavedOutput for Saved {}
impl<E: IntoResponse> SavedOutput for Result<Saved, E> {}

mod sealed {
    pub trait Sealed<Args> {}
    pub trait Output {}
    impl Output for super::Saved {}
    impl<E> Output for Result<super::Saved, E> {}
}

macro_rules! answers_saved {
    ($($arg:ident),*) => {
        impl<F, Fut, $($arg,)*> sealed::Sealed<($($arg,)*)> for F
        where
            F: FnOnce($($arg,)*) -> Fut,
            Fut: Future,
            Fut::Output: SavedOutput,
        {
        }
        impl<F, Fut, $($arg,)*> AnswersSaved<($($arg,)*)> for F
        where
            F: FnOnce($($arg,)*) -> Fut,
            Fut: Future,
            Fut::Output: SavedOutput,
        {
        }
    };
}

answers_saved!();
answers_saved!(A1);
answers_saved!(A1, A2);
answers_saved!(A1, A2, A3);
answers_saved!(A1, A2, A3, A4);
answers_saved!(A1, A2, A3, A4, A5);
answers_saved!(A1, A2, A3, A4, A5, A6);
answers_saved!(A1, A2, A3, A4, A5, A6, A7);
answers_saved!(A1, A2, A3, A4, A5, A6, A7, A8);
answers_saved!(A1, A2, A3, A4, A5, A6, A7, A8, A9);
answers_saved!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10);
answers_saved!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11);
answers_saved!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12);
answers_saved!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13);
answers_saved!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14);
answers_saved!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15);
answers_saved!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16);

/// `409 idempotency_in_progress` with `Retry-After: 1`.
pub fn in_progress() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_in_progress",
        "Request with this idempotency key is in progress",
    )
    .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
}

/// `422 idempotency_key_reused`.
pub fn key_reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "Idempotency key reused with a different request",
    )
}

/// Serves the routes it wraps with `Idempotency-Key` semantics, answers kept in `S`.
#[derive(Debug)]
pub struct IdempotencyLayer<S> {
    store: Arc<S>,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl<S> Clone for IdempotencyLayer<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            in_flight: self.in_flight.clone(),
        }
    }
}

impl<S: IdempotencyStore> IdempotencyLayer<S> {
    /// A layer keeping its answers in `store`. Clone it to share the keys in flight between
    /// routes.
    pub fn new(store: S) -> Self {
        Self {
            store: Arc::new(store),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
        }
    }
}

impl<S, I> Layer<I> for IdempotencyLayer<S> {
    type Service = Idempotent<S, I>;

    fn layer(&self, inner: I) -> Self::Service {
        Idempotent {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`IdempotencyLayer`].
#[derive(Debug)]
pub struct Idempotent<S, I> {
    inner: I,
    layer: IdempotencyLayer<S>,
}

impl<S, I: Clone> Clone for Idempotent<S, I> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, I> Service<Request> for Idempotent<S, I>
where
    S: IdempotencyStore,
    I: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    I::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let inner = self.inner.clone();
        let layer = self.layer.clone();
        Box::pin(async move {
            Ok(serve(layer, inner, request)
                .await
                .unwrap_or_else(IntoResponse::into_response))
        })
    }
}

async fn serve<S, I>(
    layer: IdempotencyLayer<S>,
    inner: I,
    request: Request,
) -> Result<Response, ApiError>
where
    S: IdempotencyStore,
    I: Service<Request, Response = Response, Error = Infallible> + Send,
    I::Future: Send,
{
    let Some(header) = request.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(inner.oneshot(request).await.unwrap_or_else(|e| match e {}));
    };
    let key = scoped_key(&request, &parse_key(header)?);
    let (parts, body) = request.into_parts();
    // The body within the service's limit (an over-long one is the usual 413).
    let body = Bytes::from_request(Request::from_parts(parts.clone(), body), &())
        .await
        .map_err(crate::extract::body_rejection)?;
    let fingerprint = fingerprint(&parts, &body);

    if let Some(stored) = layer.store.lookup(&key).await? {
        return replay(stored, &fingerprint);
    }
    let Some(_in_flight) = InFlight::claim(&layer.in_flight, &key) else {
        return Err(in_progress());
    };
    // It may have finished between the lookup and the claim.
    if let Some(stored) = layer.store.lookup(&key).await? {
        return replay(stored, &fingerprint);
    }
    let mut request = Request::from_parts(parts, Body::from(body));
    let claim = Claim {
        key,
        fingerprint,
        ttl: layer.store.ttl(),
        saved: Arc::default(),
    };
    request.extensions_mut().insert(claim.clone());
    let response = inner.oneshot(request).await.unwrap_or_else(|e| match e {});
    // A handler that stored its answer in its transaction needs no second write.
    if !response.status().is_success() || claim.is_saved() {
        return Ok(response);
    }
    Ok(store_answer(&layer.store, claim, response).await)
}

/// Most bytes of an answer the layer stores: a larger one goes out unstored (and a retry is
/// served afresh), with a warning, unless the handler stored it itself.
pub const MAX_STORED_ANSWER: usize = 1024 * 1024;
const MAX_STORED_ANSWER_U64: u64 = MAX_STORED_ANSWER as u64;

/// Stores a successful answer the handler did not store, then sends it. The answer goes out
/// whatever becomes of the save: the record exists by now.
async fn store_answer<S: IdempotencyStore>(
    store: &Arc<S>,
    claim: Claim,
    response: Response,
) -> Response {
    use http_body::Body as _;
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let location = match response.headers().get(LOCATION).map(HeaderValue::to_str) {
        None => Ok(None),
        Some(Ok(location)) => Ok(Some(location.to_owned())),
        Some(Err(_)) => Err(()),
    };
    // Only a JSON body of known size within the limit is kept (a replay is JSON): any other
    // goes out as it is.
    let known = response.body().size_hint().upper();
    let (true, Ok(location), Some(0..=MAX_STORED_ANSWER_U64)) = (is_json, location, known) else {
        tracing::warn!(
            limit = MAX_STORED_ANSWER,
            "idempotent answer not stored: not JSON, a Location that is not text, or a body \
             of unknown size or over the limit"
        );
        return response;
    };
    let (parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_STORED_ANSWER).await else {
        return ApiError::internal("idempotent answer body unreadable").into_response();
    };
    let answer = StoredAnswer {
        fingerprint: claim.fingerprint.clone(),
        status: parts.status.as_u16(),
        location,
        body: body.to_vec(),
    };
    // In a task of its own, so that a request dropped now (its client gone, its timeout) does
    // not drop the save of a record that exists.
    let store = store.clone();
    let saving = tokio::spawn(async move { store.save(&claim, &answer).await });
    match saving.await {
        Ok(Ok(true)) => {}
        // Another instance served the same key at the same moment and stored first.
        Ok(Ok(false)) => {
            tracing::warn!(
                "idempotent answer not stored: another request stored one under its key"
            );
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "idempotent answer not stored: the store failed");
        }
        Err(err) => tracing::warn!(error = %err, "idempotent answer not stored: the save panicked"),
    }
    Response::from_parts(parts, Body::from(body))
}

/// 1 to 255 printable ASCII characters.
fn parse_key(header: &HeaderValue) -> Result<String, ApiError> {
    let bytes = header.as_bytes();
    let printable = bytes.iter().all(|b| (0x20..0x7f).contains(b));
    let problem = if bytes.is_empty() {
        Problem::too_short(1)
    } else if bytes.len() > MAX_KEY_LEN {
        Problem::too_long(MAX_KEY_LEN)
    } else if !printable {
        Problem::new(
            "invalid_pattern",
            "Idempotency-Key should be printable ASCII characters",
        )
    } else {
        return Ok(String::from_utf8_lossy(bytes).into_owned());
    };
    Err(ApiError::validation(vec![problem.at(vec![
        Loc::from("header"),
        Loc::from("Idempotency-Key"),
    ])]))
}

/// The key as stored: caller, route and the header's key, one to a line (the header's key is
/// printable ASCII, so no line break comes from it).
fn scoped_key(request: &Request, key: &str) -> String {
    let caller = request
        .extensions()
        .get::<Caller>()
        .map_or("anonymous", |c| c.0.as_str());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path(), MatchedPath::as_str);
    format!("{caller}\n{} {route}\n{key}", request.method())
}

fn fingerprint(parts: &Parts, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(parts.method.as_str());
    hash.update(b"\n");
    hash.update(parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    hash.update(b"\n");
    hash.update(body);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn replay(stored: StoredAnswer, fingerprint: &str) -> Result<Response, ApiError> {
    if stored.fingerprint != fingerprint {
        return Err(key_reused());
    }
    let status = StatusCode::from_u16(stored.status).map_err(ApiError::internal)?;
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    if let Some(location) = stored.location {
        headers.insert(
            LOCATION,
            HeaderValue::try_from(location).map_err(ApiError::internal)?,
        );
    }
    Ok(response)
}

/// A key being served in this process, released on drop (the handler's end, or its future
/// dropped when the client leaves).
struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    fn claim(keys: &Arc<Mutex<HashSet<String>>>, key: &str) -> Option<InFlight> {
        let mut set = keys.lock().unwrap_or_else(|e| e.into_inner());
        set.insert(key.to_owned()).then(|| InFlight {
            keys: keys.clone(),
            key: key.to_owned(),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut set = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.key);
    }
}
