//! The `analytics_events` table: what happened, with the request that made it happen.

use serde_json::Value;

use super::{Engine, Store, StoreError};

/// One event: what happened, with what, because of which request.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: &'static str,
    pub properties: Value,
    pub request_id: Option<String>,
}

impl Store {
    /// Records events, all in one write.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn record_events(&self, events: &[Event]) -> Result<(), StoreError> {
        forward!(&self.engine, Engine, db => db.record_events(events).await)
    }
}
