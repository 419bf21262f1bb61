//! HTTP routes, one module per resource. Each module exposes its own `router()`; they are merged
//! in [`router`], where keel's layers are applied once for all of them.

pub(crate) mod admin;
pub(crate) mod csp;
pub(crate) mod envelope;
pub(crate) mod ops;
pub(crate) mod orders;
pub(crate) mod pages;
pub(crate) mod products;
pub(crate) mod users;
pub(crate) mod webhooks;
pub mod ws;

use std::time::Duration;

use axum::Router;
use keel::layers::ServiceLayers;
use tokio_util::task::TaskTracker;

use crate::state::AppState;
use crate::store::Remember;

/// Every route of the service, behind keel's layers.
/// What the router takes from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The operators' bearer token; `None` (or empty) disables their routes.
    pub admin_token: Option<String>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// How long an `Idempotency-Key`'s answer is replayed.
    pub idempotency_ttl: Duration,
}

/// `Idempotency-Key` on the routes that create things, answers kept in the store.
pub(crate) type Idempotent = keel::idempotency::IdempotencyLayer<crate::store::Answers>;

/// A creating request's key, if any, and the path of its record without the id.
fn remember(key: keel::idempotency::Idempotency, location: &'static str) -> Remember {
    Remember { key, location }
}

/// Every route, `docs` (the OpenAPI document and its pages) among them, behind keel's layers.
pub fn router(
    state: AppState,
    limits: &Limits,
    tracker: TaskTracker,
    docs: Router<AppState>,
) -> Router {
    let idempotent = Idempotent::new(state.store.answers(limits.idempotency_ttl));
    let routes = Router::new()
        .merge(users::router(&idempotent))
        .merge(products::router(&idempotent))
        .merge(orders::router(&idempotent))
        .merge(ops::router())
        .merge(ws::router())
        .merge(pages::router())
        .merge(docs)
        .merge(webhooks::inbound_router())
        .merge(admin::page_router())
        .merge(keel::auth::require_bearer(
            webhooks::operator_router(&idempotent).merge(admin::operator_router()),
            limits.admin_token.clone(),
        ));
    ServiceLayers::new()
        .body_limit(limits.max_body_bytes)
        .timeout(limits.request_timeout)
        .task_tracker(tracker)
        .apply(routes)
        .with_state(state)
        .into_router()
}

/// Storage errors become the envelope by keel's mapping of the engine's errors.
impl From<crate::store::StoreError> for keel::ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::Sqlite(err) => err.into(),
            crate::store::StoreError::Postgres(err) => err.into(),
            crate::store::StoreError::Encode(err) => keel::ApiError::internal(err),
            crate::store::StoreError::IdempotencyKeyTaken => keel::idempotency::in_progress(),
            crate::store::StoreError::Answer(err) => err.into(),
        }
    }
}

/// After the response: records `event` in analytics (with the request's id) and pushes it to
/// `/ws/events`. Its webhooks were queued with the record, in the same write.
fn announce(tasks: &keel::tasks::Tasks, state: &AppState, event: crate::events::Event) {
    if let Some((name, properties)) = event.analytics() {
        let analytics = state.analytics.clone();
        tasks.add("analytics", async move {
            analytics.record(crate::analytics::Event {
                name,
                properties,
                request_id: keel::RequestId::current().map(|id| id.as_str().to_owned()),
            })
        });
    }
    let hub = state.hub.clone();
    tasks.add("ws_event", async move {
        hub.publish(event.topic(), event.frame());
    });
}
