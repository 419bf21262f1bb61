//! Deleting what is finished and old on SQLite, a small batch at a time.

use super::SqliteStore;
use crate::store::retention::{Ages, Pruned};
use crate::store::StoreError;

impl SqliteStore {
    /// Deletes at most `batch` rows of each kind older than its age: finished (succeeded or
    /// dead) jobs with their webhook deliveries, processed or failed inbound webhooks, analytics
    /// events, idempotency keys. One write, so that the writer is never held for long; call again while it
    /// deletes anything.
    ///
    /// An inbound webhook's id is forgotten with its row; a replay that old is refused by the
    /// signature's five-minute timestamp tolerance anyway.
    pub(crate) async fn prune(&self, ages: Ages, batch: usize) -> Result<Pruned, StoreError> {
        let cutoff = format!("-{} seconds", ages.finished.as_secs());
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        self.writer()
            .write(move |conn| {
                let cutoff_sql = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)";
                // Deliveries first: once its job is gone a delivery could not say its state.
                let deliveries = conn
                    .prepare_cached(&format!(
                        "DELETE FROM webhook_deliveries WHERE id IN ( \
                           SELECT d.id FROM keel_jobs j JOIN webhook_deliveries d ON d.job_id = j.id \
                           WHERE j.finished_at IS NOT NULL AND j.finished_at < {cutoff_sql} \
                           LIMIT ?2)"
                    ))?
                    .execute(rusqlite::params![cutoff, batch])?;
                let jobs = conn
                    .prepare_cached(&format!(
                        "DELETE FROM keel_jobs WHERE id IN ( \
                           SELECT id FROM keel_jobs \
                           WHERE finished_at IS NOT NULL AND finished_at < {cutoff_sql} \
                             AND state IN ('succeeded', 'dead') \
                             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.job_id = keel_jobs.id) \
                           LIMIT ?2)"
                    ))?
                    .execute(rusqlite::params![cutoff, batch])?;
                let inbound = conn
                    .prepare_cached(&format!(
                        "DELETE FROM inbound_webhooks WHERE id IN ( \
                           SELECT id FROM inbound_webhooks \
                           WHERE processed_at IS NOT NULL AND processed_at < {cutoff_sql} \
                             AND status IN ('processed', 'failed') LIMIT ?2)"
                    ))?
                    .execute(rusqlite::params![cutoff, batch])?;
                let analytics = conn
                    .prepare_cached(&format!(
                        "DELETE FROM analytics_events WHERE id IN ( \
                           SELECT id FROM analytics_events WHERE created_at < {cutoff_sql} \
                           LIMIT ?2)"
                    ))?
                    .execute(rusqlite::params![cutoff, batch])?;
                let idempotency_keys = keel::idempotency::sqlite::prune(
                    conn,
                    ages.idempotency_keys,
                    usize::try_from(batch).unwrap_or(usize::MAX),
                )?;
                Ok(Pruned::of(jobs, deliveries, inbound, analytics, idempotency_keys))
            })
            .await
    }
}
