//! Webhook subscribers, their deliveries, and inbound payment webhooks.
//!
//! A domain event is fanned out inside the transaction of the change that caused it: one
//! delivery row and one durable job per subscribed endpoint, so that the event is delivered if
//! and only if the change committed.

use serde::Serialize;
use serde_json::Value;
use sqlx::SqliteConnection;

use super::Store;
use crate::jobs::{DeliverWebhook, ProcessPayment};

/// A subscriber as the API shows it (with its secret, shown once at creation).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Endpoint {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created_at: String,
}

/// A delivery as the API lists it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub event: String,
    pub status: String,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
}

/// A subscriber with its latest deliveries, for the operators' console (no secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointSummary {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: String,
    pub latest_deliveries: Vec<Delivery>,
}

/// What one attempt of a delivery needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Outgoing {
    pub url: String,
    pub secret: String,
    pub message_id: String,
    pub payload: String,
}

/// What became of an inbound payment webhook's processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// The order changed; the new order is to be announced as `event`.
    Changed { event: &'static str, order: Value },
    /// Nothing to do: already processed, or the order already in that state.
    Unchanged,
    /// Recorded as failed (unknown order, impossible transition); not to be retried.
    Failed(String),
}

const NOW_TEXT: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

impl Store {
    /// Adds a subscriber.
    pub async fn create_endpoint(
        &self,
        url: &str,
        events: &[String],
        secret: &str,
    ) -> Result<Endpoint, sqlx::Error> {
        let events_json =
            serde_json::to_string(events).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let (id, created_at): (i64, String) = sqlx::query_as(
            "INSERT INTO webhook_endpoints (url, events, secret) VALUES (?1, ?2, ?3) \
             RETURNING id, created_at",
        )
        .bind(url)
        .bind(events_json)
        .bind(secret)
        .fetch_one(&self.write)
        .await?;
        Ok(Endpoint {
            id,
            url: url.to_owned(),
            events: events.to_vec(),
            secret: secret.to_owned(),
            created_at,
        })
    }

    /// Every subscriber with its `latest` deliveries, newest subscribers first.
    pub async fn endpoint_summaries(
        &self,
        latest: usize,
    ) -> Result<Vec<EndpointSummary>, sqlx::Error> {
        let endpoints: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT id, url, events, created_at FROM webhook_endpoints ORDER BY id DESC LIMIT 100",
        )
        .fetch_all(&self.read)
        .await?;
        let mut summaries = Vec::with_capacity(endpoints.len());
        for (id, url, events, created_at) in endpoints {
            let deliveries = self.latest_deliveries(id, latest).await?;
            summaries.push(EndpointSummary {
                id,
                url,
                events: serde_json::from_str(&events).unwrap_or_default(),
                created_at,
                latest_deliveries: deliveries,
            });
        }
        Ok(summaries)
    }

    /// The deliveries of an endpoint, newest first; `None` when the endpoint does not exist.
    pub async fn deliveries(&self, endpoint_id: i64) -> Result<Option<Vec<Delivery>>, sqlx::Error> {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM webhook_endpoints WHERE id = ?1")
                .bind(endpoint_id)
                .fetch_optional(&self.read)
                .await?;
        if exists.is_none() {
            return Ok(None);
        }
        self.latest_deliveries(endpoint_id, 500).await.map(Some)
    }

    /// The `limit` newest deliveries of an endpoint.
    async fn latest_deliveries(
        &self,
        endpoint_id: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>, sqlx::Error> {
        sqlx::query_as(
            "SELECT d.id, d.event, \
               CASE j.state WHEN 'succeeded' THEN 'succeeded' WHEN 'dead' THEN 'dead' \
                 ELSE 'pending' END AS status, \
               COALESCE(j.attempts, 0) AS attempts, d.last_status_code, d.last_error, \
               CASE WHEN j.state = 'pending' \
                 THEN strftime('%Y-%m-%dT%H:%M:%fZ', j.run_at / 1000.0, 'unixepoch') \
               END AS next_attempt_at \
             FROM webhook_deliveries d LEFT JOIN keel_jobs j ON j.id = d.job_id \
             WHERE d.endpoint_id = ?1 ORDER BY d.id DESC LIMIT ?2",
        )
        .bind(endpoint_id)
        .bind(i64::try_from(limit).unwrap_or(500))
        .fetch_all(&self.read)
        .await
    }

    /// Queues `event` with `data` for every endpoint subscribed to it, on `conn` (the
    /// transaction of the change).
    pub(crate) async fn fan_out(
        &self,
        conn: &mut SqliteConnection,
        event: &str,
        data: &Value,
    ) -> Result<(), sqlx::Error> {
        let endpoints: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM webhook_endpoints \
             WHERE EXISTS (SELECT 1 FROM json_each(events) WHERE value = ?1) ORDER BY id",
        )
        .bind(event)
        .fetch_all(&mut *conn)
        .await?;
        for endpoint_id in endpoints {
            let message_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
            let delivery_id: i64 = sqlx::query_scalar(&format!(
                "INSERT INTO webhook_deliveries (endpoint_id, event, message_id, payload) \
                 VALUES (?1, ?2, ?3, json_object('type', ?2, 'timestamp', {NOW_TEXT}, \
                   'data', json(?4))) RETURNING id"
            ))
            .bind(endpoint_id)
            .bind(event)
            .bind(&message_id)
            .bind(data.to_string())
            .fetch_one(&mut *conn)
            .await?;
            let job_id = self
                .jobs
                .enqueue(&mut *conn, &DeliverWebhook { delivery_id })
                .await?;
            sqlx::query("UPDATE webhook_deliveries SET job_id = ?2 WHERE id = ?1")
                .bind(delivery_id)
                .bind(job_id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// What an attempt of delivery `id` sends, and where.
    pub async fn outgoing(&self, id: i64) -> Result<Option<Outgoing>, sqlx::Error> {
        sqlx::query_as(
            "SELECT e.url, e.secret, d.message_id, d.payload \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await
    }

    /// Records the answer of the last attempt of delivery `id`.
    pub async fn record_attempt(
        &self,
        id: i64,
        status_code: Option<u16>,
        error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE webhook_deliveries SET last_status_code = ?2, last_error = ?3 WHERE id = ?1",
        )
        .bind(id)
        .bind(status_code.map(i64::from))
        .bind(error)
        .execute(&self.write)
        .await
        .map(drop)
    }

    /// Stores an inbound payment webhook and queues its processing, once per `message_id`:
    /// a repeat changes nothing. Returns whether it was new.
    pub async fn receive_payment(
        &self,
        message_id: &str,
        kind: &str,
        order_id: i64,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.write.begin().await?;
        let inbound: Option<i64> = sqlx::query_scalar(
            "INSERT INTO inbound_webhooks (message_id, type, order_id) VALUES (?1, ?2, ?3) \
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
        tx.commit().await?;
        self.jobs.wake();
        Ok(true)
    }

    /// Applies inbound payment webhook `inbound_id` to its order, in one transaction with the
    /// order's outbound webhooks: `payment.succeeded` marks a pending order paid;
    /// `payment.failed` cancels it and puts its stock back.
    pub async fn process_payment(&self, inbound_id: i64) -> Result<PaymentOutcome, sqlx::Error> {
        let mut tx = self.write.begin().await?;
        let inbound: Option<(String, i64, String)> =
            sqlx::query_as("SELECT type, order_id, status FROM inbound_webhooks WHERE id = ?1")
                .bind(inbound_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((kind, order_id, status)) = inbound else {
            return Ok(PaymentOutcome::Failed("inbound webhook not found".into()));
        };
        if status != "received" {
            return Ok(PaymentOutcome::Unchanged);
        }
        let order: Option<(String, i64, i64)> =
            sqlx::query_as("SELECT status, product_id, quantity FROM orders WHERE id = ?1")
                .bind(order_id)
                .fetch_optional(&mut *tx)
                .await?;
        let outcome = match (kind.as_str(), order) {
            (_, None) => PaymentOutcome::Failed(format!("unknown order {order_id}")),
            ("payment.succeeded", Some((status, _, _))) => match status.as_str() {
                "pending" => {
                    self.set_status(&mut tx, order_id, "paid", "order.paid")
                        .await?
                }
                "paid" => PaymentOutcome::Unchanged,
                other => PaymentOutcome::Failed(format!("order {order_id} is {other}")),
            },
            ("payment.failed", Some((status, product_id, quantity))) => match status.as_str() {
                "pending" => {
                    sqlx::query("UPDATE products SET stock = stock + ?2 WHERE id = ?1")
                        .bind(product_id)
                        .bind(quantity)
                        .execute(&mut *tx)
                        .await?;
                    self.set_status(&mut tx, order_id, "cancelled", "order.cancelled")
                        .await?
                }
                "cancelled" => PaymentOutcome::Unchanged,
                other => PaymentOutcome::Failed(format!("order {order_id} is {other}")),
            },
            (other, Some(_)) => PaymentOutcome::Failed(format!("unknown event type {other}")),
        };
        let (status, error) = match &outcome {
            PaymentOutcome::Failed(error) => ("failed", Some(error.as_str())),
            _ => ("processed", None),
        };
        sqlx::query(&format!(
            "UPDATE inbound_webhooks SET status = ?2, error = ?3, processed_at = {NOW_TEXT} \
             WHERE id = ?1"
        ))
        .bind(inbound_id)
        .bind(status)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.jobs.wake();
        Ok(outcome)
    }

    async fn set_status(
        &self,
        conn: &mut SqliteConnection,
        order_id: i64,
        status: &str,
        event: &'static str,
    ) -> Result<PaymentOutcome, sqlx::Error> {
        let order: super::orders::Order = sqlx::query_as(
            "UPDATE orders SET status = ?2 WHERE id = ?1 \
             RETURNING id, user_id, product_id, quantity, total_cents, status, created_at",
        )
        .bind(order_id)
        .bind(status)
        .fetch_one(&mut *conn)
        .await?;
        let order = serde_json::to_value(order).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        self.fan_out(conn, event, &order).await?;
        Ok(PaymentOutcome::Changed { event, order })
    }
}
