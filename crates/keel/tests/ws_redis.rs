//! Two hubs (two instances) joined by `RedisBroker` over the Redis at 127.0.0.1:6379: a chat
//! message sent on either reaches the clients of both, once each and in order, and each
//! instance keeps delivering to its own clients when Redis is unreachable.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use keel::layers::ServiceLayers;
use keel::ws::redis::RedisBroker;
use keel::ws::{Hub, WsConfig, WsUpgrade};
use keel::TaskTracker;
use tokio_tungstenite::tungstenite::Message;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Whether Redis answers at 127.0.0.1:6379; when not, says so and the test checks nothing
/// (under `KEEL_REQUIRE_TEST_TOOLS`, as in CI, it fails instead).
fn redis_running() -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], 6379));
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        return true;
    }
    common::skip::skip(
        "Redis at 127.0.0.1:6379",
        "apt-get install redis-server, then start it",
    );
    false
}

/// One instance: a hub with a chat room at `/ws`, its broker on `url` with `prefix`.
async fn instance(url: &str, prefix: &str) -> (SocketAddr, Hub, Arc<RedisBroker>) {
    let hub = Hub::new(WsConfig::default());
    let broker = RedisBroker::start(url, prefix, &hub, &TaskTracker::new()).unwrap();
    hub.set_broker(broker.clone());
    let chat = hub.clone();
    let routes = Router::new().route(
        "/ws",
        get(move |WsUpgrade(ws): WsUpgrade| {
            let hub = chat.clone();
            async move {
                let echo = hub.clone();
                hub.serve(ws, "/ws", move |text| {
                    echo.publish("/ws", format!("Client says: {text}"))
                })
            }
        }),
    );
    let addr = common::serve(ServiceLayers::new().apply(routes)).await;
    (addr, hub, broker)
}

async fn connect(addr: SocketAddr, hub: &Hub) -> Client {
    let (client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    for _ in 0..100 {
        if hub.connection_counts().get("/ws") == Some(&1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client
}

/// The next `n` texts, or a panic after 5 s.
async fn texts(client: &mut Client, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} texts within 5 s: {got:?}", got.len()))
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            got.push(text.to_string());
        }
    }
    got
}

/// Nothing more arrives within `wait`.
async fn quiet(client: &mut Client, wait: Duration) {
    if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(wait, client.next()).await {
        panic!("unexpected {text}");
    }
}

#[tokio::test]
async fn a_message_sent_on_either_instance_reaches_every_client_once_in_order() {
    if !redis_running() {
        return;
    }
    let prefix = format!("keel-test:{}:", uuid::Uuid::new_v4().simple());
    let (addr_a, hub_a, broker_a) = instance("redis://127.0.0.1:6379", &prefix).await;
    let (addr_b, hub_b, broker_b) = instance("redis://127.0.0.1:6379", &prefix).await;
    assert!(
        broker_a.subscribed(Duration::from_secs(5)).await,
        "Redis at 127.0.0.1:6379"
    );
    assert!(broker_b.subscribed(Duration::from_secs(5)).await);
    let mut on_a = connect(addr_a, &hub_a).await;
    let mut on_b = connect(addr_b, &hub_b).await;

    for n in 0..20 {
        on_b.send(Message::text(format!("b{n}"))).await.unwrap();
    }
    on_a.send(Message::text("a0")).await.unwrap();
    let expected_from_b: Vec<String> = (0..20).map(|n| format!("Client says: b{n}")).collect();
    for client in [&mut on_a, &mut on_b] {
        let got = texts(client, 21).await;
        let from_b: Vec<String> = got.iter().filter(|t| t.contains(": b")).cloned().collect();
        assert_eq!(from_b, expected_from_b);
        assert_eq!(got.iter().filter(|t| *t == "Client says: a0").count(), 1);
        quiet(client, Duration::from_millis(300)).await;
    }
    broker_a.stop();
    broker_b.stop();
}

#[tokio::test]
async fn without_redis_an_instance_still_delivers_to_its_own_clients() {
    // Nothing listens on this port: the broker keeps retrying in the background.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (addr, hub, broker) = instance(&format!("redis://127.0.0.1:{port}"), "keel-test:").await;
    assert!(!broker.subscribed(Duration::from_millis(300)).await);
    let mut client = connect(addr, &hub).await;
    client.send(Message::text("hello")).await.unwrap();
    assert_eq!(texts(&mut client, 1).await, ["Client says: hello"]);
    broker.stop();
}

/// A TCP proxy to the Redis at 127.0.0.1:6379 that the test can cut and restore.
struct Proxy {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let accepting = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !accepting.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let mut cuts = cuts.clone();
                // Only a cut after this connection was made closes it.
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect("127.0.0.1:6379").await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy { port, up, cut }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Closes every connection through the proxy and refuses new ones until `restore`.
    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn when_redis_is_cut_off_local_delivery_goes_on_and_crossing_resumes_after() {
    if !redis_running() {
        return;
    }
    let prefix = format!("keel-test:{}:", uuid::Uuid::new_v4().simple());
    let proxy = Proxy::start().await;
    let (addr_a, hub_a, broker_a) = instance(&proxy.url(), &prefix).await;
    let (addr_b, hub_b, broker_b) = instance("redis://127.0.0.1:6379", &prefix).await;
    assert!(broker_a.subscribed(Duration::from_secs(5)).await);
    assert!(broker_b.subscribed(Duration::from_secs(5)).await);
    let mut on_a = connect(addr_a, &hub_a).await;
    let mut on_b = connect(addr_b, &hub_b).await;
    on_b.send(Message::text("before")).await.unwrap();
    assert_eq!(texts(&mut on_a, 1).await, ["Client says: before"]);
    assert_eq!(texts(&mut on_b, 1).await, ["Client says: before"]);

    // A loses Redis: its own clients still get what they send.
    proxy.cut();
    for _ in 0..100 {
        if !broker_a.subscribed(Duration::from_millis(1)).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!broker_a.subscribed(Duration::from_millis(1)).await);
    on_a.send(Message::text("during")).await.unwrap();
    assert_eq!(texts(&mut on_a, 1).await, ["Client says: during"]);

    // Back: A resubscribes by itself and messages cross again, both ways.
    proxy.restore();
    assert!(
        broker_a.subscribed(Duration::from_secs(10)).await,
        "A did not resubscribe"
    );
    on_b.send(Message::text("after")).await.unwrap();
    assert_eq!(texts(&mut on_b, 1).await, ["Client says: after"]);
    let got = texts(&mut on_a, 1).await;
    assert_eq!(got, ["Client says: after"]);
    on_a.send(Message::text("from a again")).await.unwrap();
    assert_eq!(texts(&mut on_a, 1).await, ["Client says: from a again"]);
    // What A published while cut off waited in its queue: it may arrive first.
    let mut got_b = texts(&mut on_b, 1).await;
    if got_b[0] == "Client says: during" {
        got_b = texts(&mut on_b, 1).await;
    }
    assert_eq!(got_b, ["Client says: from a again"]);
    broker_a.stop();
    broker_b.stop();
}
