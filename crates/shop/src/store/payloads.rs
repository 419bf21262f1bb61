//! The jobs the store enqueues in the transactions of its changes: their payloads and kinds.
//! Their handlers are `crate::jobs`, above the store.

use keel::jobs::Job;
use serde::{Deserialize, Serialize};

/// The welcome mail of a new user, enqueued in the transaction that creates the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WelcomeEmail {
    pub user_id: i64,
    pub email: String,
    pub username: String,
}

impl Job for WelcomeEmail {
    const KIND: &'static str = "welcome_email";
    const QUEUE: &'static str = "email";
}

/// One outbound webhook delivery, enqueued in the transaction of the event's change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliverWebhook {
    pub delivery_id: i64,
}

impl Job for DeliverWebhook {
    const KIND: &'static str = "deliver_webhook";
    const QUEUE: &'static str = "webhooks";
}

/// The processing of a received payment webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessPayment {
    pub inbound_id: i64,
}

impl Job for ProcessPayment {
    const KIND: &'static str = "process_payment";
    const QUEUE: &'static str = "payments";
}

/// The end of an order's payment window, scheduled with the order: a pending order is
/// cancelled and its stock put back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpireOrder {
    pub order_id: i64,
}

impl Job for ExpireOrder {
    const KIND: &'static str = "expire_order";
    const QUEUE: &'static str = "orders";
}
