//! `GET /`: the live page, a chat on `/ws` and the feed of `/ws/events`. Plain HTML and
//! JavaScript compiled into the binary; nothing is loaded from elsewhere.

use std::sync::LazyLock;

use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use http::header::CONTENT_SECURITY_POLICY;
use http::HeaderValue;

use crate::state::AppState;

const HOME: &str = include_str!("../../assets/index.html");

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(home))
}

/// The live page: chat and events feed.
#[utoipa::path(get, path = "/", tag = "websockets",
    responses((status = 200, description = "HTML, with its script inline", content_type = "text/html", body = String)))]
pub(crate) async fn home() -> impl IntoResponse {
    static POLICY: LazyLock<HeaderValue> = LazyLock::new(|| super::csp::for_inline_page(HOME));
    ([(CONTENT_SECURITY_POLICY, POLICY.clone())], Html(HOME))
}
