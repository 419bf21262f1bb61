//! A WebSocket hub that one slow client cannot stall.
//!
//! FastAPI's `ConnectionManager` awaits `send_text` on each socket in turn: one slow client
//! delays everyone, a send to a half-closed socket raises mid-loop, the set changes while it is
//! iterated, and a broadcast reaches one process only. Here:
//!
//! - every connection has a bounded outbound queue drained by its own writer task, with a write
//!   timeout; [`Hub::publish`] serialises nothing per client: it clones one reference-counted
//!   text into each queue with `try_send` and never awaits a client;
//! - a client whose queue is full is closed (1013) and nobody else notices; the message it
//!   could not take and those still queued for it count in `websocket_messages_dropped_total`;
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

use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::FromRequestParts;
use http::request::Parts;

pub use broker::Broker;
pub use hub::Hub;
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
    /// Outbound frames queued per connection; a client whose queue is full is closed.
    pub queue_frames: usize,
    /// A peer silent this long (pongs included) is dropped; pings go out at a third of it.
    pub idle_timeout: Duration,
    /// Longest one frame may take to be written before the client counts as gone.
    pub write_timeout: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_bytes: 64 * 1024,
            queue_frames: 256,
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
