//! `X-Request-ID`: kept when valid, replaced otherwise, echoed on every response and in every
//! error body.
#![allow(clippy::unwrap_used)]
mod common;

use common::spawn_app;
use reqwest::header::HeaderValue;
use serde_json::Value;

fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        })
}

#[tokio::test]
async fn a_valid_incoming_id_is_kept_on_success_and_on_error() {
    let app = spawn_app().await;
    let max = "a".repeat(128);
    for id in ["abc", "Trace-1.2_3:x", max.as_str()] {
        let ok = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.headers()["x-request-id"], id);

        let err = app
            .client
            .get(app.url("/users/42"))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(err.headers()["x-request-id"], id);
        let body: Value = err.json().await.unwrap();
        assert_eq!(body["request_id"], id);
    }
}

#[tokio::test]
async fn an_invalid_incoming_id_is_replaced_by_a_uuid() {
    let app = spawn_app().await;
    let too_long = "a".repeat(129);
    let bad: Vec<HeaderValue> = vec![
        HeaderValue::from_static(""),
        HeaderValue::from_str(&too_long).unwrap(),
        HeaderValue::from_static("has space"),
        HeaderValue::from_static("slash/y"),
        HeaderValue::from_static("quote\"d"),
        HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
    ];
    for id in bad {
        let res = app
            .client
            .get(app.url("/users/42"))
            .header("x-request-id", id.clone())
            .send()
            .await
            .unwrap();
        let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(is_uuid(&echoed), "{id:?} became {echoed}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["request_id"], echoed.as_str());
    }
}

#[tokio::test]
async fn every_response_gets_a_fresh_id_when_none_is_sent() {
    let app = spawn_app().await;
    let mut seen = std::collections::HashSet::new();
    for path in ["/healthz", "/users/1", "/nope", "/users/x"] {
        let res = app.get(path).await;
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(is_uuid(&id), "{id}");
        assert!(seen.insert(id));
    }
    let res = app.send(reqwest::Method::DELETE, "/users", None, "").await;
    assert!(is_uuid(res.headers()["x-request-id"].to_str().unwrap()));
}
