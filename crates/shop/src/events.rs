//! The domain events, one type for all of them: what each is called on webhooks and
//! `/ws/events`, which WebSocket topic carries it, what anonymous listeners may see of it, and
//! the analytics event it is recorded as. Below the routes, the store and the jobs, which all
//! raise events.

use serde::Serialize;
use serde_json::{json, Value};

/// The topic (and path) of the chat room.
pub const CHAT_TOPIC: &str = "/ws";
/// The topic (and path) of the domain events.
pub const EVENTS_TOPIC: &str = "/ws/events";

/// Every kind of domain event; in the API document, the names a subscriber may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[schema(as = EventType)]
pub enum EventKind {
    #[schema(rename = "user.created")]
    UserCreated,
    #[schema(rename = "order.created")]
    OrderCreated,
    #[schema(rename = "order.paid")]
    OrderPaid,
    #[schema(rename = "order.cancelled")]
    OrderCancelled,
}

impl EventKind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [EventKind; 4] = [
        EventKind::UserCreated,
        EventKind::OrderCreated,
        EventKind::OrderPaid,
        EventKind::OrderCancelled,
    ];

    /// The name webhooks (`type`, subscriptions) and `/ws/events` frames carry.
    pub const fn name(self) -> &'static str {
        match self {
            EventKind::UserCreated => "user.created",
            EventKind::OrderCreated => "order.created",
            EventKind::OrderPaid => "order.paid",
            EventKind::OrderCancelled => "order.cancelled",
        }
    }

    /// The kind called `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// One domain event: its kind and the record it concerns, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    kind: EventKind,
    record: Value,
}

impl Event {
    /// `kind` happened to `record` (a user or an order).
    pub fn new(kind: EventKind, record: &impl Serialize) -> Result<Self, serde_json::Error> {
        Ok(Event {
            kind,
            record: serde_json::to_value(record)?,
        })
    }

    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// What signed webhooks carry as `data`: the whole record.
    pub fn webhook_data(&self) -> &Value {
        &self.record
    }

    /// The WebSocket topic that carries the event.
    pub fn topic(&self) -> &'static str {
        EVENTS_TOPIC
    }

    /// What anyone listening may see: a user's email stays out; orders carry their ids,
    /// quantity, total and status.
    pub fn public_data(&self) -> Value {
        match self.kind {
            EventKind::UserCreated => json!({
                "id": self.record["id"],
                "username": self.record["username"],
                "created_at": self.record["created_at"],
            }),
            EventKind::OrderCreated | EventKind::OrderPaid | EventKind::OrderCancelled => {
                self.record.clone()
            }
        }
    }

    /// The `/ws/events` frame: `{"type", "data"}` with the public data.
    pub fn frame(&self) -> String {
        json!({"type": self.kind.name(), "data": self.public_data()}).to_string()
    }

    /// The analytics event it is recorded as, and its properties; `None` for kinds that
    /// analytics does not count.
    pub fn analytics(&self) -> Option<(&'static str, Value)> {
        let r = &self.record;
        match self.kind {
            EventKind::UserCreated => Some(("user_created", json!({"user_id": r["id"]}))),
            EventKind::OrderCreated => Some((
                "order_created",
                json!({
                    "order_id": r["id"], "user_id": r["user_id"], "product_id": r["product_id"],
                    "quantity": r["quantity"], "total_cents": r["total_cents"],
                }),
            )),
            EventKind::OrderPaid | EventKind::OrderCancelled => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_found_by_its_name_and_no_other_name_is() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(EventKind::parse("user.deleted"), None);
        assert_eq!(EventKind::parse("USER.CREATED"), None);
    }

    #[test]
    fn the_api_document_lists_the_same_names() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(EventKind::schema()).unwrap();
        let names: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(schema["enum"], json!(names));
    }

    #[test]
    fn a_users_email_is_in_the_webhook_and_never_in_the_public_frame() {
        let user = json!({"id": 7, "email": "ada@example.com", "username": "ada",
                          "created_at": "2026-11-26T10:00:00.000Z"});
        let event = Event::new(EventKind::UserCreated, &user).unwrap();
        assert_eq!(event.webhook_data(), &user);
        let frame: Value = serde_json::from_str(&event.frame()).unwrap();
        assert_eq!(
            frame,
            json!({"type": "user.created", "data": {"id": 7, "username": "ada",
                   "created_at": "2026-11-26T10:00:00.000Z"}})
        );
        assert_eq!(
            event.analytics(),
            Some(("user_created", json!({"user_id": 7})))
        );
    }
}
