//! Webhook benchmark: outbound deliveries per second to a fast local receiver, and inbound
//! verified payment webhooks per second. Run through `bench/webhooks.sh`.
//!
//! `webhooks_bench [deliveries] [inbound]` (defaults 5000 and 20000)
//!
//! Starts `target/release/shop` on a fresh database with a subscriber on this process's
//! receiver. Outbound: creates `deliveries` users (64 at a time); each `user.created` is one
//! signed, durable delivery; the rate is deliveries received per second from the first
//! `POST /users` to the last delivery. Inbound: sends `inbound` distinct signed
//! `payment.succeeded` webhooks (64 at a time), each verified, stored and queued by the
//! service before its 202.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::routing::post;
use keel::webhooks::{sign, Secret};
use serde_json::json;

const CONCURRENCY: usize = 64;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .map(|a| a.parse().expect("numeric arguments"))
        .unwrap_or(default)
}

/// Runs `total` calls of `call`, `CONCURRENCY` at a time; returns how many returned true.
async fn run<F, Fut>(total: u64, call: F) -> u64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (call, next, ok) = (call.clone(), next.clone(), ok.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                if call(n).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    ok.load(Ordering::Relaxed)
}

#[tokio::main]
async fn main() {
    let deliveries = arg(1, 5000);
    let inbound = arg(2, 20_000);

    // The receiver: counts what it gets, answers 200.
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let hook_url = format!("http://{}/hook", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let dir = std::env::temp_dir().join(format!("shop-webhooks-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    // The .eml files go to tmpfs when there is one (see bench/http.sh: on virtual ext4 disks,
    // creating thousands of files a second measures the kernel's inode allocator); the
    // database stays on disk. MAIL_DIR=... to choose.
    let mail_dir = std::env::var("MAIL_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            let shm = std::path::Path::new("/dev/shm");
            let base = if shm.is_dir() {
                shm.to_path_buf()
            } else {
                dir.clone()
            };
            base.join(format!("shop-webhooks-bench-mail-{}", std::process::id()))
        });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let secret = Secret::generate();
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let mut shop = std::process::Command::new(format!("{target}/release/shop"))
        .env("SHOP_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/shop.db", dir.display()),
        )
        .env("SHOP_MAIL_DIR", &mail_dir)
        .env("SHOP_ADMIN_TOKEN", "bench-admin-token")
        .env("SHOP_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("SHOP_PAYMENTS_SECRET", secret.to_string())
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("target/release/shop (cargo build --release)");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let subscribed = http
        .post(format!("{base}/webhook-endpoints"))
        .bearer_auth("bench-admin-token")
        .json(&json!({"url": hook_url, "events": ["user.created"]}))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(subscribed.status(), 201, "subscribing");

    // Outbound.
    let started = Instant::now();
    let (h, b) = (http.clone(), base.clone());
    let created = run(deliveries, move |n| {
        let (http, base) = (h.clone(), b.clone());
        async move {
            let body =
                json!({"email": format!("u{n}@example.com"), "username": format!("user_{n}")});
            http.post(format!("{base}/users"))
                .json(&body)
                .send()
                .await
                .is_ok_and(|r| r.status() == 201)
        }
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.load(Ordering::Relaxed) < created && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    println!(
        "outbound: {got} of {created} deliveries in {secs:.2} s: {:.0} deliveries/s",
        got as f64 / secs
    );

    // Inbound: one order to pay, then distinct signed messages about it.
    let product = http
        .post(format!("{base}/products"))
        .json(&json!({"name": "Lamp", "price_cents": 100, "stock": 10}))
        .send()
        .await
        .expect("product");
    assert_eq!(product.status(), 201);
    let order = http
        .post(format!("{base}/orders"))
        .json(&json!({"user_id": 1, "product_id": 1, "quantity": 1}))
        .send()
        .await
        .expect("order");
    assert_eq!(order.status(), 201);
    let secret = Arc::new(secret);
    let started = Instant::now();
    let (h, b) = (http.clone(), base.clone());
    let accepted = run(inbound, move |n| {
        let (http, base, secret) = (h.clone(), b.clone(), secret.clone());
        async move {
            let body = json!({"type": "payment.succeeded", "data": {"order_id": 1}}).to_string();
            let id = format!("msg_bench_{n}");
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let signature = sign(&secret, &id, ts, body.as_bytes());
            http.post(format!("{base}/webhooks/payments"))
                .header("webhook-id", id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signature)
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status() == 202)
        }
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    println!("inbound: {accepted} of {inbound} verified and accepted (202) in {secs:.2} s: {:.0} webhooks/s", accepted as f64 / secs);

    let _ = shop.kill();
    let _ = shop.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&mail_dir);
}
