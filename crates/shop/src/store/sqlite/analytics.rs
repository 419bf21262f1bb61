//! The `analytics_events` table on SQLite.

use super::SqliteStore;
use crate::store::analytics::Event;
use crate::store::StoreError;

impl SqliteStore {
    /// Records events, all in one write.
    pub(crate) async fn record_events(&self, events: &[Event]) -> Result<(), StoreError> {
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
