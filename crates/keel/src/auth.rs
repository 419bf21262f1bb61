//! Operator routes behind a bearer token, as one layer on a router.
//!
//! - no token configured (or an empty one): every route answers 403 `admin_disabled`;
//! - a missing or wrong `Authorization: Bearer …`: 401 `unauthorized` with
//!   `WWW-Authenticate: Bearer`;
//! - the right token: the route runs.
//!
//! Tokens are compared as SHA-256 digests in constant time, so neither the content nor the
//! length of the configured token leaks through timing. A request let through carries the
//! token's [`Caller`] identity, which scopes its idempotency keys
//! ([`crate::idempotency`]).
//!
//! ```
//! use axum::{routing::get, Router};
//!
//! let admin: Router = keel::auth::require_bearer(
//!     Router::new().route("/admin/stats", get(|| async { "ok" })),
//!     Some("s3cret".to_owned()),
//! );
//! ```

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::StatusCode;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ApiError;

/// Who is calling, as far as keel knows: a request extension set by the layer that
/// authenticated it. A request without one is anonymous.
///
/// Idempotency keys are scoped by it, so that one caller can neither take nor probe another's
/// keys. An application with its own authentication inserts its own (a user id, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

impl Caller {
    /// The identity of the holder of a bearer token whose SHA-256 digest is `digest`: a digest
    /// of that digest, so that nothing stored with it reveals the token.
    fn of_token(digest: &[u8; 32]) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"keel caller\n");
        hash.update(digest);
        let hex: String = hash.finalize()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Caller(format!("bearer:{hex}"))
    }
}

/// Puts every route of `router` behind `token` (see the module docs); `None` disables them.
pub fn require_bearer<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    token: Option<String>,
) -> Router<S> {
    // An empty token would be a door without a lock: it counts as no token.
    let expected: Arc<Option<[u8; 32]>> = Arc::new(
        token
            .filter(|t| !t.trim().is_empty())
            .map(|t| Sha256::digest(t.as_bytes()).into()),
    );
    // `route_layer`: only matched routes are guarded, so unknown paths stay 404.
    router.route_layer(middleware::from_fn_with_state(expected, check))
}

async fn check(
    State(expected): State<Arc<Option<[u8; 32]>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(expected) = expected.as_ref() else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "Admin API disabled",
        )
        .into_response();
    };
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| Sha256::digest(t.trim().as_bytes()));
    match given {
        Some(given) if bool::from(given.as_slice().ct_eq(expected)) => {
            req.extensions_mut().insert(Caller::of_token(expected));
            next.run(req).await
        }
        _ => ApiError::unauthorized().into_response(),
    }
}
