//! A WebSocket hub that one slow client cannot stall.
//!
//! - every connection has an outbound queue bounded in bytes, drained by its own writer task;
//!   [`Hub::publish`] serialises nothing per client: it clones one reference-counted text into
//!   each queue and never awaits a client;
//! - a sender is paced by its own budget only ([`WsConfig::send_rate_bytes`], with a burst):
//!   past it, its connection reads nothing more for a while, and TCP pushes back on the client.
//!   Nobody waits on another member, so members that keep up never see a pause;
//! - a member that cannot keep up with its topic overflows its queue and is closed (1013),
//!   counted in `websocket_slow_clients_closed_total`; the message it could not take and those
//!   still queued for it count in `websocket_messages_dropped_total`. So is one that accepts
//!   nothing for the write timeout;
//! - a connection leaves its topic on any end: close, reset, error, idle timeout;
//! - pings go out at a third of the idle timeout; a peer silent past it is dropped;
//! - a frame over the size limit closes that connection with 1009;
//! - [`Hub::shutdown`] closes every socket with 1001 and waits for them;
//! - [`AllowedOrigins`] refuses browsers' handshakes from other sites' pages;
//! - a [`Broker`] carries broadcasts to the hubs of other instances; without one, delivery is
//!   in-process.
//!
//! A client library that cannot read while one of its sends is blocked (Python's sync
//! `websockets` client holds its connection's lock through `sendall`) stops reading its own
//! echoes once its sender is paced, and is closed when its queue fills: use a client that reads
//! while it sends (browsers, Python's asyncio client, tokio-tungstenite).
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
mod budget;
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
    /// closed with 1013. One message is always accepted into an empty queue, whatever its size.
    pub queue_bytes: usize,
    /// Bytes a second one connection may send (each message counts at least 64); past its
    /// budget its frames are read later, which slows the client through TCP. 0: no limit.
    pub send_rate_bytes: u64,
    /// Bytes a connection may send at once before [`WsConfig::send_rate_bytes`] paces it.
    pub send_burst_bytes: u64,
    /// A peer silent this long (pongs included) is dropped; pings go out at a third of it.
    pub idle_timeout: Duration,
    /// Longest a client may take to accept one burst of frames (up to 64) before it counts as
    /// gone.
    pub write_timeout: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_bytes: 64 * 1024,
            queue_bytes: 1024 * 1024,
            send_rate_bytes: 1024 * 1024,
            send_burst_bytes: 1024 * 1024,
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
