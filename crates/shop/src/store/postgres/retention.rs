//! Deleting what is finished and old on PostgreSQL, a small batch at a time.

use super::PgStore;
use crate::store::retention::{Ages, Pruned};
use crate::store::StoreError;

impl PgStore {
    /// Each kind in its own short statement; rows another instance is deleting at the same
    /// moment are skipped, not waited for.
    pub(crate) async fn prune(&self, ages: Ages, batch: usize) -> Result<Pruned, StoreError> {
        let cutoff = ages.finished.as_secs_f64();
        let batch_i64 = i64::try_from(batch).unwrap_or(i64::MAX);
        // Deliveries first: once its job is gone a delivery could not say its state.
        let deliveries = self
            .delete(
                "DELETE FROM webhook_deliveries WHERE id IN ( \
                   SELECT d.id FROM keel_jobs j JOIN webhook_deliveries d ON d.job_id = j.id \
                   WHERE j.finished_at < now() - make_interval(secs => $1) \
                   LIMIT $2 FOR UPDATE OF d SKIP LOCKED)",
                cutoff,
                batch_i64,
            )
            .await?;
        let jobs = self
            .delete(
                "DELETE FROM keel_jobs WHERE id IN ( \
                   SELECT id FROM keel_jobs \
                   WHERE finished_at < now() - make_interval(secs => $1) \
                     AND state IN ('succeeded', 'dead') \
                     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.job_id = keel_jobs.id) \
                   LIMIT $2 FOR UPDATE SKIP LOCKED)",
                cutoff,
                batch_i64,
            )
            .await?;
        let inbound = self
            .delete(
                "DELETE FROM inbound_webhooks WHERE id IN ( \
                   SELECT id FROM inbound_webhooks \
                   WHERE processed_at < now() - make_interval(secs => $1) \
                     AND status IN ('processed', 'failed') \
                   LIMIT $2 FOR UPDATE SKIP LOCKED)",
                cutoff,
                batch_i64,
            )
            .await?;
        let analytics = self
            .delete(
                "DELETE FROM analytics_events WHERE id IN ( \
                   SELECT id FROM analytics_events \
                   WHERE created_at < now() - make_interval(secs => $1) \
                   LIMIT $2 FOR UPDATE SKIP LOCKED)",
                cutoff,
                batch_i64,
            )
            .await?;
        let idempotency_keys =
            keel::idempotency::postgres::prune(&self.pool, ages.idempotency_keys, batch).await?;
        Ok(Pruned::of(
            jobs,
            deliveries,
            inbound,
            analytics,
            idempotency_keys,
        ))
    }

    async fn delete(&self, sql: &str, cutoff: f64, batch: i64) -> Result<usize, StoreError> {
        let done = sqlx::query(sql)
            .bind(cutoff)
            .bind(batch)
            .execute(&self.pool)
            .await?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }
}
