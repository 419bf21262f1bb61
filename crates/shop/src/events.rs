//! The domain events and where they go: one name per event for webhooks and `/ws/events`, and
//! the WebSocket topics. Below the routes, the store and the jobs, which all name events.

/// The topic (and path) of the chat room.
pub const CHAT_TOPIC: &str = "/ws";
/// The topic (and path) of the domain events.
pub const EVENTS_TOPIC: &str = "/ws/events";

/// Every domain event, by the name webhooks and `/ws/events` carry.
pub const NAMES: &[&str] = &[USER_CREATED, ORDER_CREATED, ORDER_PAID, ORDER_CANCELLED];

pub const USER_CREATED: &str = "user.created";
pub const ORDER_CREATED: &str = "order.created";
pub const ORDER_PAID: &str = "order.paid";
pub const ORDER_CANCELLED: &str = "order.cancelled";

/// The `/ws/events` frame of an event: `{"type", "data"}`.
pub fn frame(name: &str, data: &serde_json::Value) -> String {
    serde_json::json!({"type": name, "data": data}).to_string()
}
