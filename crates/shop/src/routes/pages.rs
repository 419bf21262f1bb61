//! `GET /`: the live page, a chat on `/ws` and the feed of `/ws/events`. Plain HTML and
//! JavaScript compiled into the binary; nothing is loaded from elsewhere.

use axum::response::Html;
use axum::routing::get;
use axum::Router;

use crate::app::AppState;

const HOME: &str = include_str!("../../assets/index.html");

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(home))
}

async fn home() -> Html<&'static str> {
    Html(HOME)
}
