//! The `analytics_events` table: what happened, with the request that made it happen.

use super::{Engine, Store, StoreError};
use crate::analytics::Event;

impl Store {
    /// Records events, all in one write.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn record_events(&self, events: &[Event]) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sqlite(db) => db.record_events(events).await,
            Engine::Postgres(db) => db.record_events(events).await,
        }
    }
}
