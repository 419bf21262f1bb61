//! `GET /healthz` (the process runs), `GET /readyz` (the database answers) and
//! `GET /metrics` (Prometheus).

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use keel::{ApiError, Json};
use serde_json::{json, Value};

use super::envelope::ErrorEnvelope;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&state.store).await,
    )
}

/// 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 503 `service_unavailable` when the database does not answer, whatever the driver said.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The database answers", body = Object, example = json!({"status": "ok"})),
        (status = 503, description = "The database does not answer; `Retry-After`", body = ErrorEnvelope),
    ))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok(Json(json!({"status": "ok"}))),
        Err(err) => Err(ApiError::service_unavailable(1).with_source(err)),
    }
}
