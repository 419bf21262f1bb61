//! The seam for broadcasting across instances.

use axum::extract::ws::Utf8Bytes;

/// Carries a broadcast to the hub of every instance of the service.
///
/// An implementation (Redis pub/sub, say) sends `(topic, text)` to its transport from
/// [`Broker::publish`] without waiting, and hands every message it receives, this instance's
/// own included, to [`super::Hub::deliver`]. Without a broker the hub delivers in-process.
pub trait Broker: Send + Sync + 'static {
    /// Sends `text` to `topic` on every instance. Must not block: queue it if the transport is
    /// slow, and drop (with a log line) rather than grow without bound.
    fn publish(&self, topic: &str, text: Utf8Bytes);
}
