//! The `analytics_events` table: what happened, with the request that made it happen.

use serde_json::Value;

use super::Store;

impl Store {
    /// Records one event. Called from after-response tasks: best effort, never in the way of
    /// the response.
    pub async fn record_event(
        &self,
        name: &str,
        properties: &Value,
        request_id: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO analytics_events (name, properties, request_id) VALUES (?1, ?2, ?3)",
        )
        .bind(name)
        .bind(properties.to_string())
        .bind(request_id)
        .execute(&self.write)
        .await?;
        metrics::counter!("analytics_events_total", "name" => name.to_owned()).increment(1);
        Ok(())
    }
}
