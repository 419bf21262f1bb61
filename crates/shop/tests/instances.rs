//! Several `shop` processes on one PostgreSQL database and one Redis, as API.md's "Several
//! instances" describes them: orders through both never oversell, a burst of jobs runs each
//! job once, a dead instance's jobs finish on the other within 15 s, broadcasts cross, and
//! PostgreSQL or Redis cut off (through a proxy the test owns) and back.
#![allow(clippy::unwrap_used)]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::pg::Schema;
use common::process::Shop;
use common::proxy::Proxy;
use common::smtp::{Behaviour, SmtpSink};
use common::{eventually, tools};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Two instances on one new schema and one Redis channel prefix, mailing to `smtp`; `None`
/// (after saying so) without PostgreSQL or Redis.
async fn two(smtp: &SmtpSink, env: &[(&str, &str)]) -> Option<(Schema, Shop, Shop)> {
    if !tools::postgres() || !tools::redis() {
        return None;
    }
    let schema = Schema::for_shop().await;
    let prefix = format!("shop-test:{}:", uuid::Uuid::new_v4().simple());
    let mut env = env.to_vec();
    env.extend([
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("SHOP_REDIS_PREFIX", prefix.as_str()),
    ]);
    let a = Shop::start_on(&schema.url, smtp.port, &env).await;
    let b = Shop::start_on(&schema.url, smtp.port, &env).await;
    Some((schema, a, b))
}

async fn post(url: String, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn orders_through_two_instances_never_oversell() {
    let smtp = SmtpSink::start(Behaviour::default()).await;
    let Some((_schema, a, b)) = two(&smtp, &[]).await else {
        return;
    };
    let (status, user) = post(
        a.url("/users"),
        json!({"email": "ada@example.com", "username": "ada"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, product) = post(
        b.url("/products"),
        json!({"name": "lamp", "price_cents": 1500, "stock": 40}),
    )
    .await;
    assert_eq!(status, 201);
    let order = json!({"user_id": user["id"], "product_id": product["id"], "quantity": 1});
    let attempts: Vec<_> = (0..120)
        .map(|n| {
            let url = if n % 2 == 0 {
                a.url("/orders")
            } else {
                b.url("/orders")
            };
            tokio::spawn(post(url, order.clone()))
        })
        .collect();
    let mut outcomes: BTreeMap<(u16, String), usize> = BTreeMap::new();
    for attempt in attempts {
        let (status, body) = attempt.await.unwrap();
        let code = body["code"].as_str().unwrap_or("").to_owned();
        *outcomes.entry((status, code)).or_default() += 1;
    }
    assert_eq!(
        outcomes,
        BTreeMap::from([
            ((201, String::new()), 40),
            ((409, "insufficient_stock".to_owned()), 80)
        ])
    );
    for shop in [&a, &b] {
        let path = format!("/products/{}", product["id"]);
        let now: Value = reqwest::get(shop.url(&path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(now["stock"], 0);
    }
}

/// Creates `n` users, alternating between the instances, 32 at a time.
async fn sign_up(shops: [&Shop; 2], n: usize, tag: &str) {
    let mut pending = Vec::new();
    for i in 0..n {
        let url = shops[i % 2].url("/users");
        let body =
            json!({"email": format!("{tag}{i}@example.com"), "username": format!("{tag}_{i}")});
        pending.push(tokio::spawn(post(url, body)));
        if pending.len() == 32 {
            for p in pending.drain(..) {
                assert_eq!(p.await.unwrap().0, 201);
            }
        }
    }
    for p in pending {
        assert_eq!(p.await.unwrap().0, 201);
    }
}

/// The number of mails each recipient got.
fn mails_per_recipient(smtp: &SmtpSink) -> BTreeMap<String, usize> {
    let mut per = BTreeMap::new();
    for mail in smtp.accepted() {
        for to in mail.to {
            *per.entry(to).or_default() += 1;
        }
    }
    per
}

#[tokio::test]
async fn a_burst_of_a_thousand_jobs_runs_each_job_exactly_once_across_instances() {
    let smtp = SmtpSink::start(Behaviour::default()).await;
    let Some((_schema, a, b)) = two(&smtp, &[]).await else {
        return;
    };
    sign_up([&a, &b], 1_000, "burst").await;
    let per = eventually(60, "a thousand welcome mails", || async {
        let per = mails_per_recipient(&smtp);
        (per.values().sum::<usize>() >= 1_000).then_some(per)
    })
    .await;
    // A moment more, for a second copy to show up if there were one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(per.len(), 1_000);
    assert_eq!(mails_per_recipient(&smtp), per);
    assert!(per.values().all(|&n| n == 1), "a welcome mail went twice");
}

#[tokio::test]
async fn the_jobs_of_a_killed_instance_finish_on_the_other_within_15_seconds() {
    // Each mail takes 600 ms: when A dies, 300 ms after the sign-ups, it is in the middle of
    // the ones it claimed. (Kept short: the 15 s include the 10 s lease, the poll, and the
    // mails B then sends, a few at a time.)
    let smtp = SmtpSink::start(Behaviour {
        delay: Duration::from_millis(600),
        ..Behaviour::default()
    })
    .await;
    let Some((schema, mut a, b)) = two(&smtp, &[]).await else {
        return;
    };
    sign_up([&a, &a], 20, "killed").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // On a loaded machine the sign-ups themselves can outlast a mail: some may be out already,
    // never all (A sends a few at a time). `taken_over` below proves A held jobs when it died.
    assert!(
        smtp.accepted().len() < 20,
        "A sent every mail before it died"
    );
    a.child.kill().unwrap(); // SIGKILL: no hand-back, no goodbye
    a.child.wait().unwrap();
    let killed = Instant::now();
    let pool = sqlx::PgPool::connect(&schema.url).await.unwrap();
    // Every job recorded done: those A held were run again by B once their lease ran out.
    let (succeeded, taken_over): (i64, i64) = eventually(15, "every welcome job done", || async {
        let counts: (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'succeeded'), \
                    count(*) FILTER (WHERE last_error LIKE 'lease expired%') \
             FROM keel_jobs WHERE kind = 'welcome_email'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (counts.0 == 20).then_some(counts)
    })
    .await;
    assert!(killed.elapsed() < Duration::from_secs(15));
    assert_eq!(succeeded, 20);
    assert!(taken_over > 0, "A held no job when it died");
    assert_eq!(mails_per_recipient(&smtp).len(), 20);
    // B serves on.
    let (status, _) = post(
        b.url("/users"),
        json!({"email": "after@example.com", "username": "after"}),
    )
    .await;
    assert_eq!(status, 201);
}

async fn connect(shop: &Shop, path: &str) -> Client {
    let url = format!("ws://127.0.0.1:{}{path}", shop.port);
    let (client, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    client
}

/// The next text frame, skipping pings; `None` after `wait`.
async fn next_text(client: &mut Client, wait: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, client.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(text) = frame {
            return Some(text.to_string());
        }
    }
}

/// Sends numbered probes on `from` until one reaches `to` (subscriptions are made in the
/// background); true when one did within 10 s.
async fn crosses(from: &mut Client, to: &mut Client) -> bool {
    for n in 0..100 {
        from.send(Message::text(format!("probe {n}")))
            .await
            .unwrap();
        while let Some(text) = next_text(to, Duration::from_millis(100)).await {
            if text.starts_with("Client says: probe") {
                return true;
            }
        }
    }
    false
}

#[tokio::test]
async fn chat_and_domain_events_reach_the_clients_of_the_other_instance() {
    let smtp = SmtpSink::start(Behaviour::default()).await;
    let Some((_schema, a, b)) = two(&smtp, &[]).await else {
        return;
    };
    let mut chat_on_a = connect(&a, "/ws").await;
    let mut events_on_a = connect(&a, "/ws/events").await;
    let mut chat_on_b = connect(&b, "/ws").await;
    assert!(
        crosses(&mut chat_on_b, &mut chat_on_a).await,
        "no chat crossed from b to a"
    );
    // Drain what is still on its way, then one message, once.
    while next_text(&mut chat_on_a, Duration::from_millis(300))
        .await
        .is_some()
    {}
    chat_on_b.send(Message::text("hello from b")).await.unwrap();
    assert_eq!(
        next_text(&mut chat_on_a, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("Client says: hello from b")
    );
    assert_eq!(
        next_text(&mut chat_on_a, Duration::from_millis(300)).await,
        None
    );

    let (_, user) = post(
        b.url("/users"),
        json!({"email": "ada@example.com", "username": "ada"}),
    )
    .await;
    let (_, product) = post(
        b.url("/products"),
        json!({"name": "lamp", "price_cents": 1500, "stock": 5}),
    )
    .await;
    let (status, order) = post(
        b.url("/orders"),
        json!({"user_id": user["id"], "product_id": product["id"], "quantity": 2}),
    )
    .await;
    assert_eq!(status, 201);
    let mut types = Vec::new();
    while let Some(text) = next_text(&mut events_on_a, Duration::from_secs(5)).await {
        let event: Value = serde_json::from_str(&text).unwrap();
        types.push(event["type"].as_str().unwrap().to_owned());
        if event["type"] == "order.created" {
            assert_eq!(event["data"]["id"], order["id"]);
            break;
        }
    }
    assert_eq!(types, ["user.created", "order.created"]);
}

#[tokio::test]
async fn postgres_cut_off_is_503_never_500_and_service_resumes_without_a_restart() {
    if !tools::postgres() {
        return;
    }
    let schema = Schema::for_shop().await;
    let proxy = Proxy::start(5432).await;
    let url = schema
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    assert_ne!(
        url, schema.url,
        "the test's PostgreSQL URL must name 127.0.0.1:5432"
    );
    let smtp = SmtpSink::start(Behaviour::default()).await;
    let shop = Shop::start_on(&url, smtp.port, &[]).await;
    let (status, _) = post(
        shop.url("/users"),
        json!({"email": "a@example.com", "username": "abc"}),
    )
    .await;
    assert_eq!(status, 201);

    proxy.cut();
    for (n, path) in ["/users", "/users/1", "/readyz"].iter().enumerate() {
        let res = if *path == "/users" {
            reqwest::Client::new()
                .post(shop.url(path))
                .json(&json!({"email": format!("cut{n}@example.com"), "username": format!("cut_{n}")}))
                .send()
                .await
                .unwrap()
        } else {
            reqwest::get(shop.url(path)).await.unwrap()
        };
        assert_eq!(res.status(), 503, "{path}");
        assert_eq!(res.headers()["retry-after"], "1", "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "service_unavailable", "{path}: {body}");
    }
    assert_eq!(
        reqwest::get(shop.url("/healthz")).await.unwrap().status(),
        200
    );

    proxy.restore();
    eventually(20, "writes to resume", || async {
        let (status, _) = post(
            shop.url("/users"),
            json!({"email": "back@example.com", "username": "back"}),
        )
        .await;
        (status == 201).then_some(())
    })
    .await;
    assert_eq!(
        reqwest::get(shop.url("/readyz")).await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn redis_cut_off_keeps_local_delivery_and_readiness_and_crossing_resumes() {
    if !tools::postgres() || !tools::redis() {
        return;
    }
    let schema = Schema::for_shop().await;
    let proxy = Proxy::start(6379).await;
    let redis = format!("redis://127.0.0.1:{}", proxy.port);
    let prefix = format!("shop-test:{}:", uuid::Uuid::new_v4().simple());
    let env = [
        ("REDIS_URL", redis.as_str()),
        ("SHOP_REDIS_PREFIX", prefix.as_str()),
    ];
    let smtp = SmtpSink::start(Behaviour::default()).await;
    let a = Shop::start_on(&schema.url, smtp.port, &env).await;
    let b = Shop::start_on(&schema.url, smtp.port, &env).await;
    let mut chat_on_a = connect(&a, "/ws").await;
    let mut chat_on_b = connect(&b, "/ws").await;
    assert!(crosses(&mut chat_on_b, &mut chat_on_a).await);

    proxy.cut();
    while next_text(&mut chat_on_a, Duration::from_millis(300))
        .await
        .is_some()
    {}
    for n in 0..5 {
        chat_on_a
            .send(Message::text(format!("alone {n}")))
            .await
            .unwrap();
        assert_eq!(
            next_text(&mut chat_on_a, Duration::from_secs(5)).await,
            Some(format!("Client says: alone {n}"))
        );
    }
    assert_eq!(reqwest::get(a.url("/readyz")).await.unwrap().status(), 200);

    proxy.restore();
    assert!(
        crosses(&mut chat_on_b, &mut chat_on_a).await,
        "nothing crossed after Redis came back"
    );
}
