//! keel's layers on a small app over a real socket: panics, timeouts, rejections of extractors
//! that know nothing of keel, query errors, domain errors, and the request id in the logs.
#![allow(clippy::unwrap_used)]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;
use keel::layers::ServiceLayers;
use keel::{ApiError, DomainError, Json, Query};
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
#[error("Already shipped")]
struct AlreadyShipped;

impl DomainError for AlreadyShipped {
    fn status(&self) -> StatusCode {
        StatusCode::CONFLICT
    }
    fn code(&self) -> &'static str {
        "already_shipped"
    }
}

#[derive(serde::Deserialize)]
struct Page {
    limit: u32,
    #[allow(dead_code)]
    before_id: Option<i64>,
}

async fn panics() -> &'static str {
    panic!("the secret at /etc/shadow")
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "too late"
}

async fn plain_error() -> (StatusCode, &'static str) {
    (StatusCode::BAD_REQUEST, "the handler's own words")
}

#[derive(serde::Deserialize)]
struct Named {
    name: String,
}

async fn axum_json(axum::Json(v): axum::Json<Named>) -> Json<Value> {
    Json(json!({"name": v.name}))
}

async fn page(Query(p): Query<Page>) -> Json<Value> {
    Json(json!({"limit": p.limit}))
}

async fn domain() -> Result<(), ApiError> {
    Err(AlreadyShipped.into())
}

async fn internal() -> Result<(), ApiError> {
    Err(ApiError::internal(std::io::Error::other(
        "disk on fire at /var/db",
    )))
}

async fn spawn() -> SocketAddr {
    let routes = Router::new()
        .route("/panic", get(panics))
        .route("/slow", get(slow))
        .route("/plain", get(plain_error))
        .route("/axum-json", post(axum_json))
        .route("/page", get(page))
        .route("/domain", get(domain))
        .route("/internal", get(internal));
    let app = ServiceLayers::new()
        .timeout(Duration::from_millis(300))
        .apply(routes);
    common::serve(app).await
}

async fn call(
    addr: SocketAddr,
    req: reqwest::RequestBuilder,
) -> (StatusCode, http::HeaderMap, Value) {
    let _ = addr;
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap();
    (status, headers, body)
}

fn envelope(error: &str, code: &str, details: Value, request_id: &str) -> Value {
    json!({"success": false, "error": error, "code": code, "details": details, "request_id": request_id})
}

#[tokio::test]
async fn a_panic_is_a_500_envelope_and_the_service_keeps_serving() {
    let addr = spawn().await;
    let client = reqwest::Client::new();
    let (status, headers, body) = call(
        addr,
        client
            .get(format!("http://{addr}/panic"))
            .header("x-request-id", "panic-test-1"),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-request-id"], "panic-test-1");
    assert_eq!(
        body,
        envelope(
            "Internal server error",
            "internal_error",
            json!(null),
            "panic-test-1"
        )
    );

    for _ in 0..3 {
        let (status, _, _) = call(addr, client.get(format!("http://{addr}/panic"))).await;
        assert_eq!(status, 500);
    }
    let (status, _, body) = call(addr, client.get(format!("http://{addr}/page?limit=5"))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"limit": 5})));

    // The cause is in the log, once, with the request id; never in the response.
    let logs = common::logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("panic-test-1") && l.contains("ERROR"))
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(lines[0].contains("/etc/shadow"), "{}", lines[0]);
}

#[tokio::test]
async fn a_request_past_the_timeout_is_504() {
    let addr = spawn().await;
    let started = std::time::Instant::now();
    let (status, headers, body) = call(
        addr,
        reqwest::Client::new()
            .get(format!("http://{addr}/slow"))
            .header("x-request-id", "slow-1"),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(status, 504);
    assert_eq!(headers["x-request-id"], "slow-1");
    assert_eq!(
        body,
        envelope("Request timed out", "timeout", json!(null), "slow-1")
    );
}

#[tokio::test]
async fn responses_made_without_keel_still_leave_as_the_envelope() {
    let addr = spawn().await;
    let client = reqwest::Client::new();
    let (status, _, body) = call(
        addr,
        client
            .get(format!("http://{addr}/plain"))
            .header("x-request-id", "p1"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        envelope(
            "Bad request",
            "bad_request",
            json!({"reason": "the handler's own words"}),
            "p1"
        )
    );

    // axum's own Json extractor answers in plain text; the edge turns it into the envelope.
    let (status, _, body) = call(
        addr,
        client
            .post(format!("http://{addr}/axum-json"))
            .header("x-request-id", "p2")
            .body("{}"),
    )
    .await;
    assert_eq!(status, 415);
    assert_eq!(
        body,
        envelope(
            "Unsupported media type",
            "unsupported_media_type",
            json!({"reason": "Expected request with `…`"}),
            "p2"
        )
    );

    // Its 422 keeps axum's reason as the detail's message, without echoing the input.
    let (status, _, body) = call(
        addr,
        client
            .post(format!("http://{addr}/axum-json"))
            .header("x-request-id", "p3")
            .header("content-type", "application/json")
            .body(r#"{"name": 5}"#),
    )
    .await;
    assert_eq!(status, 422);
    let msg = body["details"][0]["msg"].as_str().unwrap();
    assert_eq!(body["details"][0]["loc"], json!([]));
    assert_eq!(body["details"][0]["type"], "invalid_value");
    assert!(
        msg.starts_with("Failed to deserialize the JSON body into the target type: name: invalid type: integer `…`, expected a string"),
        "{msg}"
    );
    assert!(common::logs().contains("error response made outside keel"));
}

#[tokio::test]
async fn query_problems_are_422_at_query_name() {
    let addr = spawn().await;
    let client = reqwest::Client::new();
    let (status, _, body) = call(
        addr,
        client
            .get(format!("http://{addr}/page"))
            .header("x-request-id", "q1"),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        envelope(
            "Validation error",
            "validation_error",
            json!([{"loc": ["query", "limit"], "msg": "Field required", "type": "missing"}]),
            "q1"
        )
    );
    let (status, _, body) = call(
        addr,
        client
            .get(format!("http://{addr}/page?limit=5&before_id=abc"))
            .header("x-request-id", "q2"),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["details"][0]["loc"], json!(["query", "before_id"]));
    assert!(!body.to_string().contains("abc"));
}

#[tokio::test]
async fn domain_and_internal_errors_render_their_code_and_hide_their_cause() {
    let addr = spawn().await;
    let client = reqwest::Client::new();
    let (status, _, body) = call(
        addr,
        client
            .get(format!("http://{addr}/domain"))
            .header("x-request-id", "d1"),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(
        body,
        envelope("Already shipped", "already_shipped", json!(null), "d1")
    );

    let (status, _, body) = call(
        addr,
        client
            .get(format!("http://{addr}/internal"))
            .header("x-request-id", "d2"),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(
        body,
        envelope("Internal server error", "internal_error", json!(null), "d2")
    );
    let logs = common::logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("d2") && l.contains("disk on fire")),
        "{logs}"
    );
}

#[tokio::test]
async fn every_response_forbids_type_sniffing() {
    let addr = spawn().await;
    let client = reqwest::Client::new();
    for path in ["/page?limit=5", "/domain", "/panic", "/no/such/route"] {
        let res = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
    }
}
