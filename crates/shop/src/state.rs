//! What every handler shares, built by `app.rs` and taken by the routes: below both, so that
//! the routes never reach into start-up code.

use std::sync::Arc;
use std::time::Duration;

use keel::webhooks::Secret;
use keel::ws::Hub;

use crate::analytics::Analytics;
use crate::store::Store;

/// What every handler shares: one pointer, so that extracting it costs one atomic increment.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    pub store: Store,
    pub analytics: Analytics,
    pub hub: Hub,
    /// The payment provider's webhook secret; `None` answers its route with 503.
    pub payments_secret: Option<Arc<Secret>>,
    /// Whether webhook endpoints may point at loopback and private addresses.
    pub webhook_allow_private: bool,
    /// Origins whose pages may open WebSockets besides the service's own.
    pub allowed_origins: keel::ws::AllowedOrigins,
    /// How long a pending order waits for its payment.
    pub order_payment_window: Duration,
}
