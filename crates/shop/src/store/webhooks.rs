//! Webhook subscribers, their deliveries, and inbound payment webhooks.
//!
//! A domain event is fanned out inside the transaction of the change that caused it: one
//! delivery row and one durable job per subscribed endpoint, so that the event is delivered if
//! and only if the change committed.

use serde::Serialize;

use super::{Engine, Remember, Saved, Store, StoreError};
use crate::events::Event;

/// A subscriber as the API shows it (with its secret, shown once at creation). Its `Debug`
/// leaves the secret out: logs must never carry it.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct Endpoint {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created_at: String,
}

/// A delivery as the API lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
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

/// What one attempt of a delivery needs. Its `Debug` leaves the secret out.
#[derive(Clone)]
pub struct Outgoing {
    pub url: String,
    pub secret: String,
    /// The secret before the last rotation, while it still signs (24 hours).
    pub previous_secret: Option<String>,
    pub message_id: String,
    pub payload: String,
}

const REDACTED: &str = "[redacted]";

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &REDACTED)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("url", &self.url)
            .field("secret", &REDACTED)
            .field(
                "previous_secret",
                &self.previous_secret.as_ref().map(|_| REDACTED),
            )
            .field("message_id", &self.message_id)
            .field("payload", &self.payload)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    #[test]
    fn secrets_never_show_in_debug() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
        let endpoint = Endpoint {
            id: 1,
            url: "https://example.com/hook".into(),
            events: vec![EventKind::UserCreated.name().into()],
            secret: secret.clone(),
            created_at: "2026-11-26T00:00:00.000Z".into(),
        };
        let outgoing = Outgoing {
            url: endpoint.url.clone(),
            secret: secret.clone(),
            previous_secret: Some(secret.clone()),
            message_id: "msg_1".into(),
            payload: "{}".into(),
        };
        for debug in [format!("{endpoint:?}"), format!("{outgoing:?}")] {
            assert!(!debug.contains(&secret), "{debug}");
            assert!(debug.contains(r#"secret: "[redacted]""#), "{debug}");
        }
    }
}

/// What became of an inbound payment webhook's processing.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentOutcome {
    /// The order changed: `event` (the new order) is to be announced.
    Changed { event: Event },
    /// Nothing to do: already processed, or the order already in that state.
    Unchanged,
    /// Recorded as failed (unknown order, impossible transition); not to be retried.
    Failed(String),
}

/// The body of an outbound webhook: the event's type, the time of the change (RFC 3339, from
/// the database's clock, as the record's own timestamps) and its data, in that order.
pub(crate) fn webhook_payload(event: &Event, timestamp: &str) -> String {
    format!(
        r#"{{"type":{},"timestamp":{},"data":{}}}"#,
        serde_json::Value::from(event.kind().name()),
        serde_json::Value::from(timestamp),
        event.webhook_data(),
    )
}

/// What a payment event does to its order, decided from the event's type and the order as
/// read (status, product, quantity; `None`: no such order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transition {
    /// A pending order is paid: `order.paid`.
    Pay,
    /// A pending order is cancelled and its stock put back: `order.cancelled`.
    Cancel { product_id: i64, quantity: i64 },
    /// The order is in that state already.
    Unchanged,
    /// Impossible: recorded as failed, for this reason.
    Refuse(String),
}

pub(crate) fn payment_transition(
    kind: &str,
    order_id: i64,
    order: Option<(String, i64, i64)>,
) -> Transition {
    let Some((status, product_id, quantity)) = order else {
        return Transition::Refuse(format!("unknown order {order_id}"));
    };
    match (kind, status.as_str()) {
        ("payment.succeeded", "pending") => Transition::Pay,
        ("payment.succeeded", "paid") | ("payment.failed", "cancelled") => Transition::Unchanged,
        ("payment.failed", "pending") => Transition::Cancel {
            product_id,
            quantity,
        },
        ("payment.succeeded" | "payment.failed", other) => {
            Transition::Refuse(format!("order {order_id} is {other}"))
        }
        (other, _) => Transition::Refuse(format!("unknown event type {other}")),
    }
}

impl PaymentOutcome {
    /// How the inbound webhook is marked once processed: its status and error.
    pub(crate) fn inbound_status(&self) -> (&'static str, Option<&str>) {
        match self {
            PaymentOutcome::Failed(error) => ("failed", Some(error.as_str())),
            _ => ("processed", None),
        }
    }
}

impl Store {
    /// Deletes endpoint `id`: no new deliveries, and those still pending or running are
    /// `dead` with `last_error` "endpoint deleted". False when there is no such endpoint.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn delete_endpoint(&self, id: i64) -> Result<bool, StoreError> {
        forward!(&self.engine, Engine, db => db.delete_endpoint(id).await)
    }

    /// Gives endpoint `id` the new secret `secret`; the current one goes on signing beside it
    /// for `overlap`, then is forgotten. False when there is no such endpoint.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn rotate_secret(
        &self,
        id: i64,
        secret: &str,
        overlap: std::time::Duration,
    ) -> Result<bool, StoreError> {
        forward!(&self.engine, Engine, db => db.rotate_secret(id, secret, overlap).await)
    }

    /// Adds a subscriber; with `key`, stores the answer (the secret included) under it in the
    /// same write.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_endpoint(
        &self,
        url: &str,
        events: &[String],
        secret: &str,
        key: Remember,
    ) -> Result<(Endpoint, Saved), StoreError> {
        forward!(&self.engine, Engine, db => db.create_endpoint(url, events, secret, key).await)
    }

    /// Every subscriber (the 100 newest) with its `latest` deliveries, newest first.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn endpoint_summaries(
        &self,
        latest: usize,
    ) -> Result<Vec<EndpointSummary>, StoreError> {
        forward!(&self.engine, Engine, db => db.endpoint_summaries(latest).await)
    }

    /// The deliveries of an endpoint, newest first; `None` when the endpoint does not exist.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn deliveries(&self, endpoint_id: i64) -> Result<Option<Vec<Delivery>>, StoreError> {
        forward!(&self.engine, Engine, db => db.deliveries(endpoint_id).await)
    }

    /// What an attempt of delivery `id` sends, and where.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn outgoing(&self, id: i64) -> Result<Option<Outgoing>, StoreError> {
        forward!(&self.engine, Engine, db => db.outgoing(id).await)
    }

    /// Records the answer of the last attempt of delivery `id`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn record_attempt(
        &self,
        id: i64,
        status_code: Option<u16>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        forward!(&self.engine, Engine, db => db.record_attempt(id, status_code, error).await)
    }

    /// Stores an inbound payment webhook and queues its processing, once per `message_id`:
    /// a repeat changes nothing. Returns whether it was new.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn receive_payment(
        &self,
        message_id: &str,
        kind: &str,
        order_id: i64,
    ) -> Result<bool, StoreError> {
        forward!(&self.engine, Engine, db => db.receive_payment(message_id, kind, order_id).await)
    }

    /// Applies inbound payment webhook `inbound_id` to its order, in one write with the
    /// order's outbound webhooks: `payment.succeeded` marks a pending order paid;
    /// `payment.failed` cancels it and puts its stock back.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn process_payment(&self, inbound_id: i64) -> Result<PaymentOutcome, StoreError> {
        forward!(&self.engine, Engine, db => db.process_payment(inbound_id).await)
    }
}
