//! The seam for broadcasting across instances.

use axum::extract::ws::Utf8Bytes;

/// Carries a broadcast to the hubs of the other instances of the service.
///
/// [`super::Hub::publish`] delivers to this instance's clients itself, then hands the message to
/// the broker: an implementation sends `(topic, text)` to its transport without waiting, and
/// hands every message it receives *from another instance* to [`super::Hub::deliver`] (its own
/// echo it ignores). So a broker that is down never silences local delivery.
pub trait Broker: Send + Sync + 'static {
    /// Sends `text` to `topic` on the other instances. Must not block: queue it if the
    /// transport is slow, and drop (counted, with a log line) rather than grow without bound.
    fn publish(&self, topic: &str, text: Utf8Bytes);
}
