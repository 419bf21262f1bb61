//! The baseline of `bench/http.sh`: the same routes as shop's users, over the same store and
//! SQL, in bare axum, without any of keel's layers (no request id, no envelope, no timeout,
//! no panic catcher, no validation beyond serde and the domain types).
//!
//! `cargo run --release -p bench --bin bare_axum -- 127.0.0.1:8001 sqlite:///tmp/bare.db`

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bench::{error, server_args};
use keel::idempotency::Idempotency;
use shop::domain::{Email, Id, Username};
use shop::store::users::NewUser;
use shop::store::{Remember, Store};

#[derive(serde::Deserialize)]
struct NewUserBody {
    email: String,
    username: String,
}

async fn create(
    State(store): State<Store>,
    key: Idempotency,
    Json(body): Json<NewUserBody>,
) -> Response {
    let (Ok(email), Ok(username)) = (Email::parse(body.email), Username::parse(body.username))
    else {
        return StatusCode::UNPROCESSABLE_ENTITY.into_response();
    };
    // No idempotency layer, so no key: the store's answer (201, the user as JSON) is stored
    // nowhere.
    let key = Remember {
        key,
        location: "/users/",
    };
    match store.create_user(&NewUser { email, username }, key).await {
        Ok((_, answer)) => answer.into_response(),
        Err(_) => StatusCode::CONFLICT.into_response(),
    }
}

async fn show(State(store): State<Store>, id: Result<Path<i64>, PathRejection>) -> Response {
    let Some(id) = id.ok().and_then(|Path(id)| Id::parse(id).ok()) else {
        let details = serde_json::json!([{"loc": ["path", "id"], "msg": "Input should be a valid integer", "type": "invalid_type"}]);
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            details,
        );
    };
    match store.user(id).await {
        Ok(Some(user)) => Json(user).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            serde_json::json!({"resource": "user", "id": id}),
        ),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[tokio::main]
async fn main() {
    let (addr, url) = server_args("127.0.0.1:8001", "sqlite://bare.db");
    let store = Store::open(&url, 8)
        .await
        .expect("second argument: a sqlite:// URL");
    let app = Router::new()
        .route("/users", post(create))
        .route("/users/{id}", get(show))
        .with_state(store);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("cannot listen");
    axum::serve(listener, app).await.expect("server failed");
}
