//! Webhooks both ways, against a real receiver and an independent Standard Webhooks
//! implementation (Python's `standardwebhooks`).
#![allow(clippy::unwrap_used)]
mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::receiver::{sign_independently, verify_independently, Receiver, Reply};
use common::{assert_envelope, assert_validation_error, eventually, spawn_app_with, TestApp};
use serde_json::{json, Value};

const TOKEN: &str = "operator-token-1";
const PAYMENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn app() -> TestApp {
    spawn_app_with(|c| {
        c.admin_token = Some(TOKEN.into());
        c.webhook_allow_private = true;
        c.payments_secret = Some(PAYMENTS_SECRET.into());
        c.job_max_attempts = 3;
        c.webhook_timeout_secs = 1;
    })
    .await
}

async fn subscribe(app: &TestApp, url: &str, events: &[&str]) -> Value {
    let res = app
        .client
        .post(app.url("/webhook-endpoints"))
        .bearer_auth(TOKEN)
        .json(&json!({"url": url, "events": events}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

async fn deliveries(app: &TestApp, endpoint: i64) -> Vec<Value> {
    let res = app
        .client
        .get(app.url(&format!("/webhook-endpoints/{endpoint}/deliveries")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn delivery_in(app: &TestApp, endpoint: i64, status: &'static str) -> Value {
    eventually(20, status, || async {
        deliveries(app, endpoint)
            .await
            .into_iter()
            .find(|d| d["status"] == status)
    })
    .await
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn send_payment(
    app: &TestApp,
    id: &str,
    timestamp: i64,
    body: &str,
    signature: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/webhooks/payments"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn signed_payment(app: &TestApp, id: &str, kind: &str, order_id: i64) -> reqwest::Response {
    let body = json!({"type": kind, "data": {"order_id": order_id}}).to_string();
    let ts = now();
    let signature = sign_independently(PAYMENTS_SECRET, id, ts, &body);
    send_payment(app, id, ts, &body, &signature).await
}

async fn order(app: &TestApp, quantity: i64) -> Value {
    app.create_user("ada@example.com", "ada").await;
    app.create_product("Lamp", 1000, 10).await;
    let res = app
        .post_json(
            "/orders",
            &json!({"user_id": 1, "product_id": 1, "quantity": quantity}),
        )
        .await;
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

#[tokio::test]
async fn operator_routes_need_the_admin_token() {
    let disabled = spawn_app_with(|_| {}).await;
    for res in [
        disabled.post_json("/webhook-endpoints", &json!({})).await,
        disabled.get("/webhook-endpoints/1/deliveries").await,
    ] {
        assert_envelope(
            res,
            403,
            "admin_disabled",
            "Admin API disabled",
            json!(null),
        )
        .await;
    }

    let app = app().await;
    let body = json!({"url": "https://hooks.example.com/in", "events": ["user.created"]});
    let missing = app.post_json("/webhook-endpoints", &body).await;
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_envelope(missing, 401, "unauthorized", "Unauthorized", json!(null)).await;
    for wrong in [
        "Bearer nope",
        "Bearer operator-token-",
        "Basic b3BlcmF0b3I=",
        "operator-token-1",
    ] {
        let res = app
            .client
            .post(app.url("/webhook-endpoints"))
            .header("authorization", wrong)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
        assert_envelope(res, 401, "unauthorized", "Unauthorized", json!(null)).await;
    }
    let created = subscribe(&app, "https://hooks.example.com/in", &["user.created"]).await;
    assert_eq!(created["url"], "https://hooks.example.com/in");
    assert_eq!(created["events"], json!(["user.created"]));
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert!(keel::webhooks::Secret::parse(created["secret"].as_str().unwrap()).is_ok());
    let res = app
        .client
        .get(app.url("/webhook-endpoints/99/deliveries"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_envelope(
        res,
        404,
        "not_found",
        "Resource not found",
        json!({"resource": "webhook_endpoint", "id": 99}),
    )
    .await;
}

#[tokio::test]
async fn endpoint_urls_and_events_are_validated() {
    let app = spawn_app_with(|c| c.admin_token = Some(TOKEN.into())).await;
    let cases = [
        (
            json!({"url": "ftp://x.example.com", "events": ["user.created"]}),
            "url",
            "invalid_url",
            "URL should be an absolute http:// or https:// URL",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "events": ["user.created"]}),
            "url",
            "invalid_url",
            "URL points to a loopback, private or link-local address",
        ),
        (
            json!({"url": "http://[::ffff:192.168.0.1]/", "events": ["user.created"]}),
            "url",
            "invalid_url",
            "URL points to a loopback, private or link-local address",
        ),
        (
            json!({"url": "https://x.example.com/in#fragment", "events": ["user.created"]}),
            "url",
            "invalid_url",
            "URL should be an absolute http:// or https:// URL",
        ),
        (
            json!({"url": "http://example.com\\@127.0.0.1/", "events": ["user.created"]}),
            "url",
            "invalid_url",
            "URL should be an absolute http:// or https:// URL",
        ),
        (
            json!({"url": "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "events": ["user.created"]}),
            "url",
            "invalid_url",
            "URL points to a loopback, private or link-local address",
        ),
        (
            json!({"url": "https://x.example.com", "events": []}),
            "events",
            "too_short",
            "List should have at least 1 item",
        ),
        (
            json!({"url": "https://x.example.com", "events": ["user.deleted"]}),
            "events",
            "invalid_value",
            "Input should be one of user.created, order.created, order.paid, order.cancelled",
        ),
    ];
    for (body, field, kind, msg) in cases {
        let res = app
            .client
            .post(app.url("/webhook-endpoints"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_validation_error(
            res,
            json!([{"loc": ["body", field], "msg": msg, "type": kind}]),
        )
        .await;
    }

    // Stored as the parser reads it: what operators see is what is called.
    let res = app
        .client
        .post(app.url("/webhook-endpoints"))
        .bearer_auth(TOKEN)
        .json(&json!({"url": "HTTPS://Hooks.Example.COM:443/a/../in", "events": ["user.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let endpoint: Value = res.json().await.unwrap();
    assert_eq!(endpoint["url"], "https://hooks.example.com/in");
}

#[tokio::test]
async fn events_are_delivered_signed_and_verify_with_an_independent_library() {
    if !common::tools::standardwebhooks() {
        return;
    }
    let app = app().await;
    let receiver = Receiver::start(vec![]).await;
    let endpoint = subscribe(&app, &receiver.url(), &["user.created", "order.created"]).await;
    let other = Receiver::start(vec![]).await;
    subscribe(&app, &other.url(), &["order.paid"]).await;

    let order = order(&app, 2).await;
    let received = eventually(10, "two deliveries", || async {
        let got = receiver.received();
        (got.len() == 2).then_some(got)
    })
    .await;
    verify_independently(endpoint["secret"].as_str().unwrap(), &received);

    let mut bodies: Vec<Value> = received
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    bodies.sort_by_key(|b| b["type"].as_str().unwrap().to_owned());
    assert_eq!(bodies[0]["type"], "order.created");
    assert_eq!(bodies[0]["data"], order);
    assert_eq!(bodies[1]["type"], "user.created");
    assert_eq!(bodies[1]["data"]["email"], "ada@example.com");
    for body in &bodies {
        assert_eq!(body.as_object().unwrap().len(), 3);
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    assert!(
        other.received().is_empty(),
        "not subscribed to these events"
    );

    let id = endpoint["id"].as_i64().unwrap();
    let listed = eventually(10, "both listed as succeeded", || async {
        let list = deliveries(&app, id).await;
        list.iter()
            .all(|d| d["status"] == "succeeded")
            .then_some(list)
    })
    .await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["event"], "order.created", "newest first");
    for d in &listed {
        assert_eq!(
            (d["attempts"].as_i64(), d["last_status_code"].as_i64()),
            (Some(1), Some(200))
        );
        assert_eq!(
            (d["last_error"].clone(), d["next_attempt_at"].clone()),
            (json!(null), json!(null))
        );
    }
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_the_same_webhook_id() {
    if !common::tools::standardwebhooks() {
        return;
    }
    let app = app().await;
    let receiver = Receiver::start(vec![Reply::Status(500), Reply::Status(502)]).await;
    let endpoint = subscribe(&app, &receiver.url(), &["user.created"]).await;
    app.create_user("ada@example.com", "ada").await;

    let done = delivery_in(&app, endpoint["id"].as_i64().unwrap(), "succeeded").await;
    assert_eq!(
        (done["attempts"].as_i64(), done["last_status_code"].as_i64()),
        (Some(3), Some(200))
    );
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    assert!(received
        .iter()
        .all(|r| r.id == received[0].id && r.body == received[0].body));
    verify_independently(endpoint["secret"].as_str().unwrap(), &received);
}

#[tokio::test]
async fn a_receiver_that_always_fails_ends_dead_and_a_4xx_ends_it_at_once() {
    let app = app().await;
    let failing = Receiver::start(vec![Reply::Status(503); 10]).await;
    let refusing = Receiver::start(vec![Reply::Status(410)]).await;
    let a = subscribe(&app, &failing.url(), &["user.created"]).await;
    let b = subscribe(&app, &refusing.url(), &["user.created"]).await;
    app.create_user("ada@example.com", "ada").await;

    let dead = delivery_in(&app, a["id"].as_i64().unwrap(), "dead").await;
    assert_eq!(
        (dead["attempts"].as_i64(), dead["last_status_code"].as_i64()),
        (Some(3), Some(503))
    );
    assert_eq!(dead["last_error"], "receiver answered 503");
    assert_eq!(failing.received().len(), 3);

    let dead = delivery_in(&app, b["id"].as_i64().unwrap(), "dead").await;
    assert_eq!(
        (dead["attempts"].as_i64(), dead["last_status_code"].as_i64()),
        (Some(1), Some(410))
    );
    assert_eq!(refusing.received().len(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_hanging_receiver_times_out() {
    let app = app().await;
    let busy = Receiver::start(vec![Reply::RetryAfter(429, 2)]).await;
    let hanging = Receiver::start(vec![Reply::Hang(Duration::from_secs(5)); 3]).await;
    let a = subscribe(&app, &busy.url(), &["user.created"]).await;
    let b = subscribe(&app, &hanging.url(), &["user.created"]).await;
    app.create_user("ada@example.com", "ada").await;

    delivery_in(&app, a["id"].as_i64().unwrap(), "succeeded").await;
    let got = busy.received();
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");

    // Each attempt gives up after the 1 s webhook timeout.
    let dead = delivery_in(&app, b["id"].as_i64().unwrap(), "dead").await;
    assert_eq!(
        (dead["attempts"].as_i64(), dead["last_error"].as_str()),
        (Some(3), Some("timed out"))
    );
    assert_eq!(dead["last_status_code"], json!(null));
    let got = hanging.received();
    assert_eq!(got.len(), 3);
    assert!(got[1].at - got[0].at >= Duration::from_millis(950));
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_at_delivery() {
    let app = spawn_app_with(|c| c.admin_token = Some(TOKEN.into())).await;
    let receiver = Receiver::start(vec![]).await;
    let url = format!("http://localhost:{}/hook", receiver.addr.port());
    let endpoint = subscribe(&app, &url, &["user.created"]).await;
    app.create_user("ada@example.com", "ada").await;
    let dead = delivery_in(&app, endpoint["id"].as_i64().unwrap(), "dead").await;
    assert_eq!(dead["attempts"], 1);
    assert_eq!(
        dead["last_error"],
        "the URL's host is, or resolves to, a non-public address"
    );
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn a_signed_payment_marks_the_order_paid_and_announces_it() {
    if !common::tools::standardwebhooks() {
        return;
    }
    let app = app().await;
    let receiver = Receiver::start(vec![]).await;
    subscribe(&app, &receiver.url(), &["order.paid"]).await;
    let order = order(&app, 2).await;

    let res = signed_payment(&app, "msg_pay_1", "payment.succeeded", 1).await;
    assert_eq!(res.status(), 202);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"accepted": true, "duplicate": false})
    );

    eventually(10, "the order paid", || async {
        let o: Value = app.get("/orders/1").await.json().await.unwrap();
        (o["status"] == "paid").then_some(())
    })
    .await;
    let hook = eventually(10, "order.paid delivered", || async {
        receiver.received().pop()
    })
    .await;
    let body: Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(body["type"], "order.paid");
    assert_eq!(body["data"]["id"], order["id"]);
    assert_eq!(body["data"]["status"], "paid");
}

async fn stock(app: &TestApp) -> i64 {
    let product: Value = app.get("/products/1").await.json().await.unwrap();
    product["stock"].as_i64().unwrap()
}

#[tokio::test]
async fn twenty_concurrent_copies_of_a_failed_payment_cancel_once_and_restock_once() {
    if !common::tools::standardwebhooks() {
        return;
    }
    let app = app().await;
    order(&app, 4).await;
    assert_eq!(stock(&app).await, 6);

    let body = json!({"type": "payment.failed", "data": {"order_id": 1}}).to_string();
    let ts = now();
    let signature = sign_independently(PAYMENTS_SECRET, "msg_fail_1", ts, &body);
    let mut copies = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (client, url, body, signature) = (
            app.client.clone(),
            app.url("/webhooks/payments"),
            body.clone(),
            signature.clone(),
        );
        copies.spawn(async move {
            client
                .post(url)
                .header("webhook-id", "msg_fail_1")
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signature)
                .body(body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        });
    }
    let mut new = 0;
    while let Some(answer) = copies.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(answer["accepted"], true);
        new += i32::from(answer["duplicate"] == false);
    }
    assert_eq!(new, 1);
    eventually(10, "the order cancelled", || async {
        let o: Value = app.get("/orders/1").await.json().await.unwrap();
        (o["status"] == "cancelled").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stock(&app).await, 10);
    let mut db = app.db().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbound_webhooks")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn bad_missing_or_stale_signatures_are_401_and_change_nothing() {
    if !common::tools::standardwebhooks() {
        return;
    }
    let app = app().await;
    order(&app, 1).await;
    let body = json!({"type": "payment.succeeded", "data": {"order_id": 1}}).to_string();
    let ts = now();
    let good = sign_independently(PAYMENTS_SECRET, "msg_x", ts, &body);
    let tampered = body.replace("succeeded", "failed");
    let stale_ts = ts - 400;
    let stale = sign_independently(PAYMENTS_SECRET, "msg_x", stale_ts, &body);
    let other_secret = sign_independently(
        "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
        "msg_x",
        ts,
        &body,
    );
    for res in [
        send_payment(&app, "msg_x", ts, &tampered, &good).await,
        send_payment(&app, "msg_y", ts, &body, &good).await,
        send_payment(&app, "msg_x", stale_ts, &body, &stale).await,
        send_payment(&app, "msg_x", ts, &body, &other_secret).await,
        send_payment(&app, "msg_x", ts, &body, "").await,
        app.client
            .post(app.url("/webhooks/payments"))
            .body(body.clone())
            .send()
            .await
            .unwrap(),
    ] {
        assert_envelope(
            res,
            401,
            "invalid_signature",
            "Invalid signature",
            json!(null),
        )
        .await;
    }
    let o: Value = app.get("/orders/1").await.json().await.unwrap();
    assert_eq!(o["status"], "pending");
}

#[tokio::test]
async fn a_payment_for_an_unknown_order_is_recorded_failed_not_retried() {
    if !common::tools::standardwebhooks() {
        return;
    }
    let app = app().await;
    let res = signed_payment(&app, "msg_ghost", "payment.succeeded", 404).await;
    assert_eq!(res.status(), 202);
    let (status, error): (String, Option<String>) =
        eventually(10, "the payment processed", || async {
            let mut db = app.db().await;
            let row: (String, Option<String>) =
                sqlx::query_as("SELECT status, error FROM inbound_webhooks")
                    .fetch_one(&mut db)
                    .await
                    .unwrap();
            (row.0 != "received").then_some(row)
        })
        .await;
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("failed", Some("unknown order 404"))
    );
    // The job that applied it succeeded once: an unknown order is not worth a retry. (Its
    // completion is recorded just after the inbound row, hence the wait.)
    let job: (String, i64) = eventually(10, "the job to finish", || async {
        let mut db = app.db().await;
        let job: (String, i64) =
            sqlx::query_as("SELECT state, attempts FROM keel_jobs WHERE kind = 'process_payment'")
                .fetch_one(&mut db)
                .await
                .unwrap();
        (job.0 != "running").then_some(job)
    })
    .await;
    assert_eq!(job, ("succeeded".to_owned(), 1));
}

#[tokio::test]
async fn a_valid_signature_over_a_bad_event_is_422_and_without_a_secret_the_route_is_503() {
    if !common::tools::standardwebhooks() {
        return;
    }
    let app = app().await;
    let body = json!({"type": "payment.refunded", "data": {"order_id": 0}}).to_string();
    let ts = now();
    let signature = sign_independently(PAYMENTS_SECRET, "msg_bad", ts, &body);
    let res = send_payment(&app, "msg_bad", ts, &body, &signature).await;
    assert_validation_error(res, json!([
            {"loc": ["body", "type"], "msg": "Input should be payment.succeeded or payment.failed", "type": "invalid_value"},
            {"loc": ["body", "data", "order_id"], "msg": "Input should be greater than 0", "type": "out_of_range"},
        ]),
    )
    .await;

    let without = spawn_app_with(|_| {}).await;
    let res = send_payment(&without, "msg_bad", ts, &body, &signature).await;
    assert_eq!(res.headers()["retry-after"], "60");
    assert_envelope(
        res,
        503,
        "service_unavailable",
        "Service unavailable",
        json!(null),
    )
    .await;
}

#[tokio::test]
async fn an_unpaid_order_is_cancelled_once_when_its_window_ends_and_a_late_payment_cannot_revive_it(
) {
    use futures_util::StreamExt;
    let app = spawn_app_with(|c| {
        c.admin_token = Some(TOKEN.into());
        c.webhook_allow_private = true;
        c.payments_secret = Some(PAYMENTS_SECRET.into());
        c.order_payment_window_secs = 1;
    })
    .await;
    let receiver = Receiver::start(vec![]).await;
    subscribe(&app, &receiver.url(), &["order.cancelled"]).await;
    let (mut feed, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/events", app.addr))
        .await
        .unwrap();

    let placed = order(&app, 4).await;
    assert_eq!(stock(&app).await, 6);
    let path = format!("/orders/{}", placed["id"]);
    let cancelled = eventually(10, "the order to expire", || async {
        let order: Value = app.get(&path).await.json().await.unwrap();
        (order["status"] == "cancelled").then_some(order)
    })
    .await;
    assert_eq!(stock(&app).await, 10);

    // Announced once on the feed and once as a webhook.
    let mut announced = Vec::new();
    let quiet = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(quiet);
    loop {
        tokio::select! {
            frame = feed.next() => {
                let text = frame.unwrap().unwrap().into_text().unwrap();
                announced.push(serde_json::from_str::<Value>(&text).unwrap()["type"].clone());
            }
            () = &mut quiet => break,
        }
    }
    assert_eq!(
        announced,
        vec![
            json!("user.created"),
            json!("order.created"),
            json!("order.cancelled")
        ]
    );
    let delivered: Vec<Value> = receiver
        .received()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
        .collect();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["type"], "order.cancelled");
    assert_eq!(delivered[0]["data"], cancelled);

    // A payment that comes too late is recorded as failed; the order stays cancelled.
    let body = json!({"type": "payment.succeeded", "data": {"order_id": placed["id"]}}).to_string();
    let ts = now();
    let secret = keel::webhooks::Secret::parse(PAYMENTS_SECRET).unwrap();
    let signature = keel::webhooks::sign(&secret, "msg_late_1", ts, body.as_bytes());
    let res = send_payment(&app, "msg_late_1", ts, &body, &signature).await;
    assert_eq!(res.status(), 202);
    let (status, error): (String, Option<String>) = eventually(10, "the late payment", || async {
        let mut db = app.db().await;
        let row: (String, Option<String>) = sqlx::query_as(
            "SELECT status, error FROM inbound_webhooks WHERE message_id = 'msg_late_1'",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        (row.0 != "received").then_some(row)
    })
    .await;
    assert_eq!(status, "failed");
    assert_eq!(
        error.as_deref(),
        Some(format!("order {} is cancelled", placed["id"]).as_str())
    );
    let order: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(order, cancelled);
    assert_eq!(stock(&app).await, 10);
}

async fn operator(app: &TestApp, method: reqwest::Method, path: &str) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_deleted_endpoint_gets_nothing_more_and_its_pending_deliveries_end_dead() {
    let app = app().await;
    let receiver = Receiver::start(vec![Reply::Status(503); 100]).await;
    let endpoint = subscribe(&app, &receiver.url(), &["user.created"]).await;
    let path = format!("/webhook-endpoints/{}", endpoint["id"]);
    app.create_user("ada@example.com", "ada").await;
    // The first attempt fails; the delivery waits for its retry.
    eventually(10, "a first attempt", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;

    let res = operator(&app, reqwest::Method::DELETE, &path).await;
    assert_eq!(res.status(), 204);
    assert_eq!(res.text().await.unwrap(), "");
    let jobs: Value = operator(&app, reqwest::Method::GET, "/admin/jobs?queue=webhooks")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(
        (&jobs[0]["state"], &jobs[0]["last_error"]),
        (&json!("dead"), &json!("endpoint deleted"))
    );

    // Gone: no new deliveries, and the endpoint answers as unknown.
    let attempts = receiver.received().len();
    app.create_user("grace@example.com", "grace").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), attempts);
    for (method, path) in [
        (reqwest::Method::DELETE, path.clone()),
        (reqwest::Method::POST, format!("{path}/rotate-secret")),
        (reqwest::Method::GET, format!("{path}/deliveries")),
    ] {
        let res = operator(&app, method, &path).await;
        assert_envelope(
            res,
            404,
            "not_found",
            "Resource not found",
            json!({"resource": "webhook_endpoint", "id": endpoint["id"]}),
        )
        .await;
    }
}

#[tokio::test]
async fn after_a_rotation_deliveries_are_signed_with_the_old_and_the_new_secret() {
    let app = app().await;
    let receiver = Receiver::start(vec![]).await;
    let endpoint = subscribe(&app, &receiver.url(), &["user.created"]).await;
    let old = endpoint["secret"].as_str().unwrap().to_owned();
    let res = operator(
        &app,
        reqwest::Method::POST,
        &format!("/webhook-endpoints/{}/rotate-secret", endpoint["id"]),
    )
    .await;
    assert_eq!(res.status(), 200);
    let rotated: Value = res.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_eq!(rotated, json!({"id": endpoint["id"], "secret": new}));
    assert!(new.starts_with("whsec_") && new != old, "{new}");

    app.create_user("ada@example.com", "ada").await;
    let received = eventually(10, "the delivery", || async { receiver.received().pop() }).await;
    assert_eq!(
        received.signature.split(' ').count(),
        2,
        "{}",
        received.signature
    );
    let mut headers = http::HeaderMap::new();
    headers.insert("webhook-id", received.id.parse().unwrap());
    headers.insert("webhook-timestamp", received.timestamp.parse().unwrap());
    headers.insert("webhook-signature", received.signature.parse().unwrap());
    for secret in [&old, &new] {
        let secret = keel::webhooks::Secret::parse(secret).unwrap();
        keel::webhooks::verify(&secret, &headers, received.body.as_bytes(), now()).unwrap();
    }
    let stranger = keel::webhooks::Secret::generate();
    assert!(keel::webhooks::verify(&stranger, &headers, received.body.as_bytes(), now()).is_err());
    // And an independent implementation accepts either secret.
    if common::tools::standardwebhooks() {
        verify_independently(&old, std::slice::from_ref(&received));
        verify_independently(&new, std::slice::from_ref(&received));
    }
}
