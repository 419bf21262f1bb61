//! `GET /healthz` (the process runs), `GET /readyz` (the database answers) and
//! `GET /metrics` (Prometheus).

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use keel::{ApiError, Json};
use serde_json::{json, Value};

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Prometheus text exposition.
async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&state.store).await,
    )
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 503 `service_unavailable` when the database does not answer, whatever the driver said.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok(Json(json!({"status": "ok"}))),
        Err(err) => Err(ApiError::service_unavailable(1).with_source(err)),
    }
}
