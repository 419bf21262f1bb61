//! A WebSocket hub that one slow client cannot stall.
//!
//! FastAPI's `ConnectionManager` awaits `send_text` on each socket in turn: one slow client
//! delays everyone, a send to a half-closed socket raises mid-loop, the set changes while it is
//! iterated, and a broadcast reaches one process only. Here:
//!
//! - every connection has an outbound queue bounded in bytes, drained by its own writer task;
//!   [`Hub::publish`] serialises nothing per client: it clones one reference-counted text into
//!   each queue and never awaits a client;
//! - a sender is slowed before readers fall behind: after each frame a client sends, its
//!   connection reads nothing more (TCP pushes back on the client) while a member of its topic
//!   that keeps writing has more than half its queue in use, so a burst of chat reaches clients
//!   on slow links instead of overflowing their queues. A client library that cannot read
//!   while one of its sends is blocked (Python's sync `websockets`) would wait on itself once
//!   its sends block: give the listening socket a receive buffer of a few MiB (`SO_RCVBUF`,
//!   e.g. `tokio::net::TcpSocket::set_recv_buffer_size` before `listen`), and its sends go on
//!   into that buffer while its reader catches up;
//! - only a client that stops reading is cut off: one whose queue is full, or that has written
//!   nothing for the write timeout, is closed (1013) and nobody else notices; a member that has
//!   written nothing for a second no longer slows senders. The message it could not take and
//!   those still queued for it count in `websocket_messages_dropped_total`;
//! - a connection leaves its topic on any end: close, reset, error, idle timeout;
//! - pings go out at a third of the idle timeout; a peer silent past it is dropped;
//! - a frame over the size limit closes that connection with 1009;
//! - [`Hub::shutdown`] closes every socket with 1001 and waits for them;
//! - [`AllowedOrigins`] refuses browsers' handshakes from other sites' pages;
//! - a [`Broker`] carries broadcasts to the hubs of other instances; without one, delivery is
//!   in-process.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use keel::ws::{Hub, WsConfig, WsUpgrade};
//!
//! let hub = Hub::new(WsConfig::default());
//! let chat = hub.clone();
//! let app: Router = Router::new().route(
//!     "/ws",
//!     get(move |WsUpgrade(ws): WsUpgrade| async move {
//!         let echo = chat.clone();
//!         chat.serve(ws, "/ws", move |text| echo.publish("/ws", format!("Client says: {text}")))
//!     }),
//! );
//! ```

mod broker;
mod connection;
mod hub;
mod origin;
mod queue;
#[cfg(feature = "redis")]
pub mod redis;

use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::FromRequestParts;
use http::request::Parts;

pub use broker::Broker;
pub use hub::{Hub, WeakHub};
pub use origin::AllowedOrigins;

use crate::ApiError;

/// Close code: the server is going away (shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: a frame was larger than the limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: try again later (the client fell too far behind).
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// Limits of every connection of a hub.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest frame or message a client may send; larger closes the connection with 1009.
    pub max_message_bytes: usize,
    /// Bytes of outbound messages queued per connection; a client whose queue is full is
    /// closed. Senders are slowed while a reading member's queue is over half of it. One
    /// message is always accepted into an empty queue, whatever its size.
    pub queue_bytes: usize,
    /// A peer silent this long (pongs included) is dropped; pings go out at a third of it.
    pub idle_timeout: Duration,
    /// Longest a client may take to accept one frame before it counts as gone; also how long a
    /// member with a queue over half full may go without writing anything before senders stop
    /// waiting for it (its queue then fills, and it is closed with 1013).
    pub write_timeout: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_bytes: 64 * 1024,
            queue_bytes: 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// axum's `WebSocketUpgrade`, refusing a request that is not a WebSocket handshake with the
/// envelope (code `websocket_upgrade_required`) instead of plain text.
#[derive(Debug)]
pub struct WsUpgrade(pub WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match WebSocketUpgrade::from_request_parts(parts, state).await {
            Ok(upgrade) => Ok(WsUpgrade(upgrade)),
            Err(rejection) => Err(ApiError::new(
                rejection.status(),
                "websocket_upgrade_required",
                "WebSocket upgrade required",
            )
            .with_header(
                http::header::UPGRADE,
                http::HeaderValue::from_static("websocket"),
            )
            .with_source(rejection)),
        }
    }
}
