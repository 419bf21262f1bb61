//! The `analytics_events` table on PostgreSQL.

use super::PgStore;
use crate::store::analytics::Event;
use crate::store::StoreError;

impl PgStore {
    /// All in one statement.
    pub(crate) async fn record_events(&self, events: &[Event]) -> Result<(), StoreError> {
        let names: Vec<&str> = events.iter().map(|e| e.name).collect();
        let properties: Vec<String> = events.iter().map(|e| e.properties.to_string()).collect();
        let request_ids: Vec<Option<&str>> =
            events.iter().map(|e| e.request_id.as_deref()).collect();
        sqlx::query(
            "INSERT INTO analytics_events (name, properties, request_id) \
             SELECT name, properties::jsonb, request_id \
             FROM unnest($1::text[], $2::text[], $3::text[]) AS e(name, properties, request_id)",
        )
        .bind(names)
        .bind(properties)
        .bind(request_ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
