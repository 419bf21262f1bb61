//! Webhook subscribers, their deliveries, and inbound payment webhooks, on PostgreSQL.
//!
//! A domain event is fanned out inside the transaction of the change that caused it: one
//! delivery row and one durable job per subscribed endpoint, so that the event is delivered if
//! and only if the change committed.

use keel::jobs::postgres::PgQueue;
use sqlx::PgConnection;

use super::{finish, remember, retried, rfc3339, PgStore};
use crate::events::Event;
use crate::store::payloads::{DeliverWebhook, ProcessPayment};
use crate::store::webhooks::{webhook_payload, Delivery, Endpoint, EndpointSummary, Outgoing};
use crate::store::{Remember, Saved, StoreError};

/// The `last_error` of deliveries stopped by their endpoint's deletion.
const ENDPOINT_DELETED: &str = "endpoint deleted";

const DELIVERY_COLUMNS: &str = concat!(
    "d.id, d.event, \
     CASE j.state WHEN 'succeeded' THEN 'succeeded' WHEN 'dead' THEN 'dead' \
       ELSE 'pending' END AS status, \
     COALESCE(j.attempts, 0)::bigint AS attempts, d.last_status_code::bigint AS last_status_code, \
     d.last_error, \
     CASE WHEN j.state = 'pending' THEN ",
    rfc3339!("to_timestamp(j.run_at / 1000.0)"),
    " END AS next_attempt_at"
);

impl PgStore {
    pub(crate) async fn create_endpoint(
        &self,
        url: &str,
        events: &[String],
        secret: &str,
        key: Remember,
    ) -> Result<(Endpoint, Saved), StoreError> {
        let events_json = serde_json::to_string(events)?;
        retried!(
            self.create_endpoint_once(url, events, &events_json, secret, &key)
                .await
        )
    }

    async fn create_endpoint_once(
        &self,
        url: &str,
        events: &[String],
        events_json: &str,
        secret: &str,
        key: &Remember,
    ) -> Result<(Endpoint, Saved), StoreError> {
        let mut tx = self.pool.begin().await?;
        let result: Result<(Endpoint, Saved), StoreError> = async {
            let (id, created_at): (i64, String) = sqlx::query_as(concat!(
                "INSERT INTO webhook_endpoints (url, events, secret) VALUES ($1, $2::jsonb, $3) \
                 RETURNING id, ",
                rfc3339!("created_at")
            ))
            .bind(url)
            .bind(events_json)
            .bind(secret)
            .fetch_one(&mut *tx)
            .await?;
            let endpoint = Endpoint {
                id,
                url: url.to_owned(),
                events: events.to_vec(),
                secret: secret.to_owned(),
                created_at,
            };
            let saved = remember(&mut tx, key, endpoint.id, &endpoint).await?;
            Ok((endpoint, saved))
        }
        .await;
        let value = finish(tx, result).await?;
        Ok(value)
    }

    pub(crate) async fn endpoint_summaries(
        &self,
        latest: usize,
    ) -> Result<Vec<EndpointSummary>, StoreError> {
        let endpoints: Vec<(i64, String, String, String)> = sqlx::query_as(concat!(
            "SELECT id, url, events::text, ",
            rfc3339!("created_at"),
            " FROM webhook_endpoints WHERE deleted_at IS NULL ORDER BY id DESC LIMIT 100"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut summaries = Vec::with_capacity(endpoints.len());
        for (id, url, events, created_at) in endpoints {
            summaries.push(EndpointSummary {
                id,
                url,
                events: serde_json::from_str(&events).unwrap_or_default(),
                created_at,
                latest_deliveries: self.latest_deliveries(id, latest).await?,
            });
        }
        Ok(summaries)
    }

    pub(crate) async fn deliveries(
        &self,
        endpoint_id: i64,
    ) -> Result<Option<Vec<Delivery>>, StoreError> {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL)",
        )
        .bind(endpoint_id)
        .fetch_one(&self.pool)
        .await?;
        if !exists {
            return Ok(None);
        }
        Ok(Some(self.latest_deliveries(endpoint_id, 500).await?))
    }

    /// The `limit` newest deliveries of an endpoint.
    async fn latest_deliveries(
        &self,
        endpoint_id: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} \
             FROM webhook_deliveries d LEFT JOIN keel_jobs j ON j.id = d.job_id \
             WHERE d.endpoint_id = $1 ORDER BY d.id DESC LIMIT $2"
        ))
        .bind(endpoint_id)
        .bind(i64::try_from(limit).unwrap_or(500))
        .fetch_all(&self.pool)
        .await?)
    }

    pub(crate) async fn outgoing(&self, id: i64) -> Result<Option<Outgoing>, StoreError> {
        // A deleted endpoint has nothing more to send.
        let row: Option<(String, String, Option<String>, String, String)> = sqlx::query_as(
            "SELECT e.url, e.secret, \
               CASE WHEN e.previous_secret_until > now() THEN e.previous_secret END, \
               d.message_id, d.payload \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.id = $1 AND e.deleted_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(url, secret, previous_secret, message_id, payload)| Outgoing {
                url,
                secret,
                previous_secret,
                message_id,
                payload,
            },
        ))
    }

    pub(crate) async fn record_attempt(
        &self,
        id: i64,
        status_code: Option<u16>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET last_status_code = $2, last_error = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(status_code.map(i32::from))
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn receive_payment(
        &self,
        message_id: &str,
        kind: &str,
        order_id: i64,
    ) -> Result<bool, StoreError> {
        retried!(self.receive_payment_once(message_id, kind, order_id).await)
    }

    async fn receive_payment_once(
        &self,
        message_id: &str,
        kind: &str,
        order_id: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result: Result<bool, StoreError> = async {
            let inbound: Option<i64> = sqlx::query_scalar(
                "INSERT INTO inbound_webhooks (message_id, type, order_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (message_id) DO NOTHING RETURNING id",
            )
            .bind(message_id)
            .bind(kind)
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(inbound_id) = inbound else {
                return Ok(false);
            };
            self.jobs
                .enqueue(&mut tx, &ProcessPayment { inbound_id })
                .await?;
            Ok(true)
        }
        .await;
        let value = finish(tx, result).await?;
        self.jobs.wake();
        Ok(value)
    }

    pub(crate) async fn delete_endpoint(&self, id: i64) -> Result<bool, StoreError> {
        retried!(self.delete_endpoint_once(id).await)
    }

    async fn delete_endpoint_once(&self, id: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let result: Result<bool, StoreError> = async {
            let deleted = sqlx::query(
                "UPDATE webhook_endpoints SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if deleted.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query(
                "WITH stopped AS ( \
                   UPDATE keel_jobs SET state = 'dead', locked_until = NULL, finished_at = now(), \
                     last_error = $2 \
                   WHERE state IN ('pending', 'running') AND id IN \
                     (SELECT job_id FROM webhook_deliveries WHERE endpoint_id = $1) \
                   RETURNING id) \
                 UPDATE webhook_deliveries SET last_error = $2 \
                 WHERE endpoint_id = $1 AND job_id IN (SELECT id FROM stopped)",
            )
            .bind(id)
            .bind(ENDPOINT_DELETED)
            .execute(&mut *tx)
            .await?;
            Ok(true)
        }
        .await;
        let value = finish(tx, result).await?;
        Ok(value)
    }

    pub(crate) async fn rotate_secret(
        &self,
        id: i64,
        secret: &str,
        overlap: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let rotated = sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, \
               previous_secret_until = now() + make_interval(secs => $3), secret = $2 \
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(secret)
        .bind(overlap.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(rotated.rows_affected() == 1)
    }
}

/// Queues `event` for every endpoint subscribed to it, on the transaction of the change: one
/// delivery row and one job per endpoint, carrying the whole record.
pub(super) async fn fan_out(
    conn: &mut PgConnection,
    jobs: &PgQueue,
    event: &Event,
) -> Result<(), StoreError> {
    let subscribers: Subscribers = sqlx::query_as(&format!(
        "SELECT {SUBSCRIBERS} AS endpoints, {SUBSCRIBED_AT} AS subscribed_at"
    ))
    .bind(event.kind().name())
    .fetch_one(&mut *conn)
    .await?;
    fan_out_to(conn, jobs, event, subscribers).await
}

/// The endpoints subscribed to the event named `$1` (an array of ids), for a statement that
/// reads them along with its own work: one round trip less per write.
pub(super) const SUBSCRIBERS: &str = "ARRAY(SELECT id FROM webhook_endpoints \
     WHERE deleted_at IS NULL AND events ? $1 ORDER BY id)";

/// The time stamped into a fan-out's payloads.
pub(super) const SUBSCRIBED_AT: &str = rfc3339!("now()");

/// What [`SUBSCRIBERS`] and [`SUBSCRIBED_AT`] read.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct Subscribers {
    pub endpoints: Vec<i64>,
    pub subscribed_at: String,
}

/// Queues `event` for `subscribers`, on the transaction of the change.
pub(super) async fn fan_out_to(
    conn: &mut PgConnection,
    jobs: &PgQueue,
    event: &Event,
    subscribers: Subscribers,
) -> Result<(), StoreError> {
    if subscribers.endpoints.is_empty() {
        return Ok(());
    }
    let name = event.kind().name();
    let payload = webhook_payload(event, &subscribers.subscribed_at);
    for endpoint_id in subscribers.endpoints {
        let message_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let delivery_id: i64 = sqlx::query_scalar(
            "INSERT INTO webhook_deliveries (endpoint_id, event, message_id, payload) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(endpoint_id)
        .bind(name)
        .bind(&message_id)
        .bind(&payload)
        .fetch_one(&mut *conn)
        .await?;
        let job_id = jobs
            .enqueue(&mut *conn, &DeliverWebhook { delivery_id })
            .await?;
        sqlx::query("UPDATE webhook_deliveries SET job_id = $2 WHERE id = $1")
            .bind(delivery_id)
            .bind(job_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
