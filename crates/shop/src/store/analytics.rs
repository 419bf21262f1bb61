//! The `analytics_events` table: what happened, with the request that made it happen.

use super::Store;
use crate::analytics::Event;

impl Store {
    /// Records events, all in one transaction.
    pub async fn record_events(&self, events: &[Event]) -> Result<(), sqlx::Error> {
        let mut tx = self.write.begin().await?;
        for event in events {
            sqlx::query(
                "INSERT INTO analytics_events (name, properties, request_id) VALUES (?1, ?2, ?3)",
            )
            .bind(event.name)
            .bind(event.properties.to_string())
            .bind(event.request_id.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}
