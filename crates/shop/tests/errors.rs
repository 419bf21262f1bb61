//! The error envelope table of the contract, row by row, as the service answers it. Panics and
//! timeouts, which need routes the service does not have, are proven in keel's own tests.
#![allow(clippy::unwrap_used)]
mod common;

use common::{assert_envelope, spawn_app, spawn_app_with};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_body_that_is_not_json_is_400_saying_where_parsing_stopped() {
    let app = spawn_app().await;
    let res = app
        .send(
            Method::POST,
            "/users",
            Some("application/json"),
            r#"{"email": "#,
        )
        .await;
    assert_envelope(
        res,
        400,
        "malformed_json",
        "Malformed JSON body",
        json!({"line": 1, "column": 10, "reason": "unexpected end of input"}),
    )
    .await;
    let res = app
        .send(
            Method::POST,
            "/users",
            Some("application/json"),
            "{\n\"a\" 1}",
        )
        .await;
    assert_envelope(
        res,
        400,
        "malformed_json",
        "Malformed JSON body",
        json!({"line": 2, "column": 5, "reason": "invalid JSON syntax"}),
    )
    .await;
}

#[tokio::test]
async fn a_json_endpoint_without_json_content_type_is_415() {
    let app = spawn_app().await;
    let body = r#"{"email": "a@b.io", "username": "abc"}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let res = app.send(Method::POST, "/users", content_type, body).await;
        assert_envelope(
            res,
            415,
            "unsupported_media_type",
            "Unsupported media type",
            json!(null),
        )
        .await;
    }
    let res = app
        .send(
            Method::POST,
            "/users",
            Some("Application/JSON; charset=utf-8"),
            body,
        )
        .await;
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_the_service_goes_on() {
    let app = spawn_app_with(|c| c.max_body_bytes = 1024).await;
    let big = format!(
        r#"{{"email": "a@b.io", "username": "{}"}}"#,
        "x".repeat(2000)
    );
    let res = app
        .send(
            Method::POST,
            "/users",
            Some("application/json"),
            big.clone(),
        )
        .await;
    assert_envelope(
        res,
        413,
        "payload_too_large",
        "Payload too large",
        json!(null),
    )
    .await;

    // Without a Content-Length (chunked) the limit holds all the same.
    let (head, body) = (&big[..600], &big[600..]);
    let request = format!(
        "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{head}\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        head.len(),
        body.len()
    );
    let response = app.raw(request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413 "), "{response}");
    assert!(
        response.contains(r#""code":"payload_too_large""#),
        "{response}"
    );

    app.create_user("a@b.io", "abc").await;
}

#[tokio::test]
async fn an_unknown_path_is_404_route_not_found() {
    let app = spawn_app().await;
    for path in ["/nope", "/users/1/extra", "/USERS/1", "/index.html"] {
        let res = app.get(path).await;
        assert_envelope(res, 404, "route_not_found", "Route not found", json!(null)).await;
    }
}

#[tokio::test]
async fn a_known_path_with_another_method_is_405_with_allow() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (Method::POST, "/users/1", "GET,HEAD"),
        (Method::DELETE, "/users", "POST"),
        (Method::PUT, "/orders", "POST"),
        (Method::PATCH, "/products/1", "GET,HEAD"),
    ] {
        let res = app.send(method, path, None, "").await;
        assert_eq!(res.headers()["allow"], allow);
        assert_envelope(
            res,
            405,
            "method_not_allowed",
            "Method not allowed",
            json!(null),
        )
        .await;
    }
}

#[tokio::test]
async fn a_locked_database_is_503_with_retry_after() {
    let app = spawn_app().await;
    app.create_user("a@b.io", "abc").await;

    // Another process holds the write lock past the service's busy (lock) timeout.
    let mut other = app.db().await;
    for statement in common::sql(
        "BEGIN EXCLUSIVE",
        "BEGIN; LOCK TABLE users IN EXCLUSIVE MODE",
    )
    .split("; ")
    {
        sqlx::query(statement).execute(&mut other).await.unwrap();
    }

    let res = app
        .post_json("/users", &json!({"email": "b@b.io", "username": "bcd"}))
        .await;
    assert_eq!(res.headers()["retry-after"], "1");
    assert_envelope(
        res,
        503,
        "service_unavailable",
        "Service unavailable",
        json!(null),
    )
    .await;

    // Reads go on meanwhile, and writes resume once the lock is gone.
    assert_eq!(app.get("/users/1").await.status(), 200);
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    app.create_user("b@b.io", "bcd").await;
}

#[tokio::test]
async fn health_and_readiness_answer_ok() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(
            res.json::<serde_json::Value>().await.unwrap(),
            json!({"status": "ok"})
        );
    }
}

#[tokio::test]
async fn a_request_held_past_the_timeout_is_504_and_the_service_goes_on() {
    let app = spawn_app_with(|c| c.request_timeout_secs = 1).await;
    let mut other = app.db().await;
    for statement in common::sql(
        "BEGIN EXCLUSIVE",
        "BEGIN; LOCK TABLE users IN EXCLUSIVE MODE",
    )
    .split("; ")
    {
        sqlx::query(statement).execute(&mut other).await.unwrap();
    }

    // The write waits for the lock (up to 5 s) and the 1 s timeout answers first.
    let res = app
        .post_json("/users", &json!({"email": "b@b.io", "username": "bcd"}))
        .await;
    assert_envelope(res, 504, "timeout", "Request timed out", json!(null)).await;

    // A timeout stops the waiting, not the statement already handed to the database: like any
    // request that timed out, it may still take effect. The service serves on.
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    app.create_user("c@b.io", "cde").await;
}

#[tokio::test]
async fn an_unexpected_database_error_is_500_without_the_driver_message() {
    let app = spawn_app().await;
    let mut other = app.db().await;
    sqlx::query("DROP TABLE orders")
        .execute(&mut other)
        .await
        .unwrap();

    let res = app.get("/orders/1").await;
    let body = assert_envelope(
        res,
        500,
        "internal_error",
        "Internal server error",
        json!(null),
    )
    .await;
    assert!(!body.to_string().contains("orders"), "{body}");
    assert_eq!(app.get("/healthz").await.status(), 200);
}
