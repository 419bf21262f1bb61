//! The `analytics_events` table: what happened, with the request that made it happen.

use super::{Store, StoreError};
use crate::analytics::Event;

impl Store {
    /// Records events, all in one write.
    pub async fn record_events(&self, events: &[Event]) -> Result<(), StoreError> {
        let events = events.to_vec();
        self.writer()
            .write(move |conn| {
                let mut insert = conn.prepare_cached(
                    "INSERT INTO analytics_events (name, properties, request_id) \
                     VALUES (?1, ?2, ?3)",
                )?;
                for event in &events {
                    insert.execute(rusqlite::params![
                        event.name,
                        event.properties.to_string(),
                        event.request_id.as_deref()
                    ])?;
                }
                Ok(())
            })
            .await
    }
}
