//! `Idempotency-Key` on the routes that create things: a retry gets the first answer and
//! creates nothing; another request under the same key is refused; errors are not kept.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::Duration;

use common::{assert_envelope, eventually, spawn_app, spawn_app_with, TestApp};
use futures_util::StreamExt;
use reqwest::Response;
use serde_json::{json, Value};

async fn post_with_key(app: &TestApp, path: &str, key: &str, body: &Value) -> Response {
    app.client
        .post(app.url(path))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let mut db = app.db().await;
    sqlx::query_scalar(sql).fetch_one(&mut db).await.unwrap()
}

#[tokio::test]
async fn a_retry_gets_the_first_answer_and_creates_nothing_twice() {
    let app = spawn_app().await;
    let (mut events, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/events", app.addr))
        .await
        .unwrap();
    let body = json!({"email": "ada@example.com", "username": "ada"});

    let first = post_with_key(&app, "/users", "signup-1", &body).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers()["location"].clone();
    let first_body = first.bytes().await.unwrap();

    for _ in 0..2 {
        let again = post_with_key(&app, "/users", "signup-1", &body).await;
        assert_eq!(again.status(), 201);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.headers()["location"], location);
        assert_eq!(again.headers()["content-type"], "application/json");
        assert!(again.headers().contains_key("x-request-id"));
        assert_eq!(again.bytes().await.unwrap(), first_body);
    }

    assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 1);
    eventually(10, "the welcome mail", || async {
        (count(
            &app,
            "SELECT COUNT(*) FROM keel_jobs WHERE state = 'succeeded'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    eventually(10, "the analytics event", || async {
        (count(&app, "SELECT COUNT(*) FROM analytics_events").await == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM keel_jobs").await, 1);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM analytics_events").await,
        1
    );
    // One broadcast: the second frame to arrive is the one of a later user, not a replay's.
    app.create_user("grace@example.com", "grace").await;
    let mut names = Vec::new();
    while names.len() < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            let event: Value = serde_json::from_str(&text).unwrap();
            names.push(event["data"]["username"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(names, ["ada", "grace"]);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_no_key_behaves_as_before() {
    let app = spawn_app().await;
    let body = json!({"name": "Lamp", "price_cents": 1999, "stock": 3});
    let res = post_with_key(&app, "/products", "k-1", &body).await;
    assert_eq!(res.status(), 201);

    let other = json!({"name": "Lamp", "price_cents": 2999, "stock": 3});
    let res = post_with_key(&app, "/products", "k-1", &other).await;
    assert_envelope(
        res,
        422,
        "idempotency_key_reused",
        "Idempotency key reused with a different request",
        Value::Null,
    )
    .await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM products").await, 1);

    // Without a key, the same body twice is two products.
    for _ in 0..2 {
        let res = app.post_json("/products", &body).await;
        assert_eq!(res.status(), 201);
        assert!(res.headers().get("idempotent-replayed").is_none());
    }
    assert_eq!(count(&app, "SELECT COUNT(*) FROM products").await, 3);
}

#[tokio::test]
async fn error_answers_are_not_kept_and_a_retry_is_served_afresh() {
    let app = spawn_app().await;
    app.create_user("taken@example.com", "taken").await;
    // A validation error, then a conflict, under one key: neither is stored.
    let res = post_with_key(&app, "/users", "k-2", &json!({"email": "nope"})).await;
    assert_eq!(res.status(), 422);
    let res = post_with_key(
        &app,
        "/users",
        "k-2",
        &json!({"email": "taken@example.com", "username": "other"}),
    )
    .await;
    assert_eq!(res.status(), 409);
    let res = post_with_key(
        &app,
        "/users",
        "k-2",
        &json!({"email": "new@example.com", "username": "newer"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM keel_idempotency").await,
        1
    );
}

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_place_one_order() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "ada").await;
    app.create_product("Lamp", 100, 50).await;
    let body = json!({"user_id": 1, "product_id": 1, "quantity": 2});
    let requests = (0..20).map(|_| post_with_key(&app, "/orders", "checkout-9", &body));
    let answers = futures_util::future::join_all(requests).await;
    let (mut fresh, mut replayed, mut in_progress) = (0, 0, 0);
    for res in answers {
        match (
            res.status().as_u16(),
            res.headers().contains_key("idempotent-replayed"),
        ) {
            (201, false) => fresh += 1,
            (201, true) => replayed += 1,
            (409, _) => {
                assert_eq!(res.headers()["retry-after"], "1");
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["code"], "idempotency_in_progress");
                assert_eq!(
                    body["error"],
                    "Request with this idempotency key is in progress"
                );
                in_progress += 1;
            }
            (status, _) => panic!("unexpected {status}"),
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(replayed + in_progress, 19);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM orders").await, 1);
    assert_eq!(
        count(&app, "SELECT stock FROM products WHERE id = 1").await,
        48
    );
}

#[tokio::test]
async fn a_key_must_be_1_to_255_printable_characters() {
    let app = spawn_app().await;
    let body = json!({"email": "ada@example.com", "username": "ada"});
    for (key, detail) in [
        (
            "",
            json!({"loc": ["header", "Idempotency-Key"], "msg": "String should have at least 1 character", "type": "too_short"}),
        ),
        (
            &"k".repeat(256)[..],
            json!({"loc": ["header", "Idempotency-Key"], "msg": "String should have at most 255 characters", "type": "too_long"}),
        ),
    ] {
        let res = post_with_key(&app, "/users", key, &body).await;
        common::assert_validation_error(res, json!([detail])).await;
    }
    let res = post_with_key(&app, "/users", &"k".repeat(255), &body).await;
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn a_key_belongs_to_its_caller_and_route() {
    const TOKEN: &str = "operator-token-0123456789";
    let app = spawn_app_with(|c| {
        c.admin_token = Some(TOKEN.into());
        c.webhook_allow_private = true;
    })
    .await;
    let res = app
        .client
        .post(app.url("/webhook-endpoints"))
        .header("idempotency-key", "k1")
        .bearer_auth(TOKEN)
        .json(&json!({"url": "http://127.0.0.1:9/hook", "events": ["user.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // The operator's key on another route is no one else's business: an anonymous sign-up
    // with it is served, and so is a product with it.
    let user = json!({"email": "a@b.io", "username": "abc"});
    let res = post_with_key(&app, "/users", "k1", &user).await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    let product = json!({"name": "Lamp", "price_cents": 1999, "stock": 3});
    let res = post_with_key(&app, "/products", "k1", &product).await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    // Each is still replayed on its own route.
    let res = post_with_key(&app, "/users", "k1", &user).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM products").await, 1);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM keel_idempotency").await,
        3
    );
}

#[tokio::test]
async fn an_expired_key_is_free_again_before_it_is_pruned() {
    // Retention runs hourly: the expired answer is still stored when the key comes back.
    let app = spawn_app_with(|c| c.idempotency_ttl_secs = 1).await;
    let first = json!({"email": "a@example.com", "username": "aaa"});
    let res = post_with_key(&app, "/users", "k-4", &first).await;
    assert_eq!(res.status(), 201);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM keel_idempotency").await,
        1
    );

    let second = json!({"email": "b@example.com", "username": "bbb"});
    let res = post_with_key(&app, "/users", "k-4", &second).await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["username"], "bbb");
    // The new answer is the one kept: a retry of the second request is replayed.
    let res = post_with_key(&app, "/users", "k-4", &second).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    let replayed: Value = res.json().await.unwrap();
    assert_eq!(replayed, created);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 2);
}

#[tokio::test]
async fn keys_expire_after_the_ttl_and_are_pruned() {
    let app = spawn_app_with(|c| {
        c.idempotency_ttl_secs = 1;
        c.retention_interval_secs = 1;
    })
    .await;
    let res = post_with_key(
        &app,
        "/users",
        "k-3",
        &json!({"email": "a@example.com", "username": "aaa"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    eventually(10, "the key to be pruned", || async {
        (count(&app, "SELECT COUNT(*) FROM keel_idempotency").await == 0).then_some(())
    })
    .await;
    // Expired: the key may name a new request.
    let res = post_with_key(
        &app,
        "/users",
        "k-3",
        &json!({"email": "b@example.com", "username": "bbb"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn an_endpoint_is_created_once_and_its_answer_replayed_only_to_the_operator() {
    const TOKEN: &str = "operator-token-0123456789";
    let app = spawn_app_with(|c| {
        c.admin_token = Some(TOKEN.into());
        c.webhook_allow_private = true;
    })
    .await;
    let body = json!({"url": "http://127.0.0.1:9/hook", "events": ["user.created"]});
    let post = |token: Option<&'static str>| {
        let mut req = app
            .client
            .post(app.url("/webhook-endpoints"))
            .header("idempotency-key", "hook-1")
            .json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let first = post(Some(TOKEN)).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = post(Some(TOKEN)).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], "/webhook-endpoints/1");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    assert!(first["secret"].as_str().unwrap().starts_with("whsec_"));
    // The key does not open the door: without the token it is 401, no replay.
    let anonymous = post(None).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM webhook_endpoints").await,
        1
    );
}
