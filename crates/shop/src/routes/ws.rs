//! `GET /ws`, the chat room, and `GET /ws/events`, the feed of domain events.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::HeaderMap;
use keel::ws::WsUpgrade;

use super::envelope::ErrorEnvelope;
use crate::state::AppState;

pub use crate::events::{CHAT_TOPIC as CHAT, EVENTS_TOPIC as EVENTS};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(CHAT, get(chat))
        .route(EVENTS, get(events))
}

/// Every text frame a client sends goes to every chat client, the sender included, as
/// `Client says: {text}`.
#[utoipa::path(get, path = "/ws", tag = "websockets",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket handshake (`Upgrade: websocket`)", body = ErrorEnvelope),
        (status = 403, description = "A browser's handshake from an origin that is not allowed", body = ErrorEnvelope),
        (status = 426, description = "Upgrade required", body = ErrorEnvelope),
    ))]
pub(crate) async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    WsUpgrade(ws): WsUpgrade,
) -> Response {
    let hub = state.hub.clone();
    serve(&state, &headers, ws, CHAT, move |text| {
        hub.publish(CHAT, format!("Client says: {text}"));
    })
}

/// Domain events as JSON text frames `{"type", "data"}`; what clients send is ignored.
#[utoipa::path(get, path = "/ws/events", tag = "websockets",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket handshake (`Upgrade: websocket`)", body = ErrorEnvelope),
        (status = 403, description = "A browser's handshake from an origin that is not allowed", body = ErrorEnvelope),
        (status = 426, description = "Upgrade required", body = ErrorEnvelope),
    ))]
pub(crate) async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    WsUpgrade(ws): WsUpgrade,
) -> Response {
    serve(&state, &headers, ws, EVENTS, |_| {})
}

/// Joins `topic` after checking the handshake's origin.
fn serve(
    state: &AppState,
    headers: &HeaderMap,
    ws: axum::extract::ws::WebSocketUpgrade,
    topic: &str,
    on_text: impl Fn(axum::extract::ws::Utf8Bytes) + Send + Sync + 'static,
) -> Response {
    match state.allowed_origins.check(headers) {
        Ok(()) => state.hub.serve(ws, topic, on_text),
        Err(refused) => refused.into_response(),
    }
}
