//! Request ids: what a valid `X-Request-ID` is, how a fresh one is made, and how code running
//! for a request finds it.
//!
//! The edge layer of [`crate::layers`] gives every request its [`RequestId`]: the client's when
//! it matches `^[A-Za-z0-9._:-]{1,128}$`, a fresh UUID otherwise. It puts the id in the
//! `request` tracing span, in a task-local scope around the rest of the service (which is how an
//! [`ApiError`](crate::ApiError) made anywhere inside knows what to put in `request_id`), and in
//! the `X-Request-ID` response header.
//!
//! Handlers read the id with the [`RequestId`] extractor; any code running for the request,
//! with [`RequestId::current`]; work handed to another task keeps it with [`RequestId::scope`].

use std::any::Any;
use std::cell::OnceCell;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::header::HeaderName;
use http::request::Parts;
use tokio::task::futures::TaskLocalFuture;

/// The request id header.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: Scope;
}

/// What code running for a request finds in its task: the request's id and, while the edge
/// layer serves it, one slot for what another part of keel keeps per request (the
/// after-response tasks), made on first use: most requests need none.
pub(crate) struct Scope {
    id: RequestId,
    slot: Option<OnceCell<Box<dyn Any + Send>>>,
}

impl Scope {
    /// The scope of a request being served by the edge layer.
    pub(crate) fn request(id: RequestId) -> Self {
        Scope {
            id,
            slot: Some(OnceCell::new()),
        }
    }

    /// Runs `fut` in this scope.
    pub(crate) fn run<F: Future>(self, fut: F) -> TaskLocalFuture<Scope, F> {
        CURRENT.scope(self, fut)
    }

    /// The request's slot, filled with `init` on first use; `None` outside a request served by
    /// the edge layer, or when the slot holds another type.
    pub(crate) fn slot_or_init<T: Any + Send + Clone>(init: impl FnOnce() -> T) -> Option<T> {
        CURRENT
            .try_with(|scope| {
                let slot = scope.slot.as_ref()?;
                slot.get_or_init(|| Box::new(init()))
                    .downcast_ref::<T>()
                    .cloned()
            })
            .ok()
            .flatten()
    }

    /// What the request's slot holds, if it was filled with a `T`.
    pub(crate) fn slot<T: Any + Clone>() -> Option<T> {
        CURRENT
            .try_with(|scope| {
                let value = scope.slot.as_ref()?.get()?;
                value.downcast_ref::<T>().cloned()
            })
            .ok()
            .flatten()
    }
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
#[derive(Clone)]
pub struct RequestId(Repr);

/// A fresh id is kept inline, so that making one costs no allocation; a client's, shared.
#[derive(Clone)]
enum Repr {
    Uuid([u8; uuid::fmt::Hyphenated::LENGTH]),
    Given(Arc<str>),
}

impl RequestId {
    /// The client's id when it matches `^[A-Za-z0-9._:-]{1,128}$`, else a fresh UUID.
    pub fn from_header(value: Option<&str>) -> Self {
        match value {
            Some(id) if is_valid(id) => RequestId(Repr::Given(id.into())),
            _ => Self::generate(),
        }
    }

    /// A fresh UUID v4.
    pub fn generate() -> Self {
        let mut buf = [0; uuid::fmt::Hyphenated::LENGTH];
        fast_uuid_v4().hyphenated().encode_lower(&mut buf);
        RequestId(Repr::Uuid(buf))
    }

    /// The id of the request being served by the current task, if any.
    pub fn current() -> Option<RequestId> {
        CURRENT.try_with(|scope| scope.id.clone()).ok()
    }

    /// Runs `fut` with `self` as the [`RequestId::current`] id: for work a request hands to
    /// another task.
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(
            Scope {
                id: self,
                slot: None,
            },
            fut,
        )
    }

    /// Runs `f` with `self` as the [`RequestId::current`] id, on whatever thread calls it:
    /// for synchronous work done for a request elsewhere (a database writer thread).
    pub fn sync_scope<T>(self, f: impl FnOnce() -> T) -> T {
        let scope = Scope {
            id: self,
            slot: None,
        };
        CURRENT.sync_scope(scope, f)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Always ASCII: written by the UUID encoder.
            Repr::Uuid(buf) => std::str::from_utf8(buf).unwrap_or_default(),
            Repr::Given(id) => id,
        }
    }
}

/// A UUID v4 from a per-thread SplitMix64 stream seeded once from the OS.
///
/// `Uuid::new_v4` asks the OS for randomness on every call, a system call per request. Request
/// ids need uniqueness, not secrecy: 122 random bits from a well-mixed generator seeded with
/// OS entropy per thread give that at a fraction of the cost.
fn fast_uuid_v4() -> uuid::Uuid {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(uuid::Uuid::new_v4().as_u64_pair().0);
    }
    let next = || {
        STATE.with(|state| {
            let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(s);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    };
    let bytes = ((u128::from(next()) << 64) | u128::from(next())).to_le_bytes();
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

fn is_valid(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RequestId {}

impl std::hash::Hash for RequestId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Extracts the id the edge layer gave the request (a fresh one if the layer is missing).
impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId::current().unwrap_or_else(RequestId::generate))
    }
}
