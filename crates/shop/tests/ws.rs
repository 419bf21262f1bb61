//! `/ws` and `/ws/events` with a real WebSocket client over a real socket.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::Duration;

use common::{spawn_app, spawn_app_with, TestApp};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(app: &TestApp, path: &str) -> Client {
    let url = format!("ws://{}{}", app.addr, path);
    let (client, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    client
}

/// The next text frame, skipping pings; panics after 10 s.
async fn next_text(client: &mut Client) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("a frame within 10 s")
            .expect("the connection open")
            .unwrap();
        match frame {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Reads until the server closes; returns the close code it sent, if any.
async fn close_code(client: &mut Client, secs: u64) -> Option<CloseCode> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Err(_) => panic!("the server did not close within {secs} s"),
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return None,
        }
    }
}

#[tokio::test]
async fn the_handshake_carries_the_request_id() {
    let app = spawn_app().await;
    let mut request = format!("ws://{}/ws", app.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-request-id", "ws-1".parse().unwrap());
    let (_client, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["x-request-id"], "ws-1");
}

#[tokio::test]
async fn a_plain_get_to_a_websocket_path_gets_the_envelope() {
    let app = spawn_app().await;
    for path in ["/ws", "/ws/events"] {
        let res = app.get(path).await;
        let status = res.status().as_u16();
        assert_eq!(res.headers()["upgrade"], "websocket");
        common::assert_envelope(
            res,
            status,
            "websocket_upgrade_required",
            "WebSocket upgrade required",
            json!(null),
        )
        .await;
        assert!(status == 400 || status == 426, "{status}");
    }
}

#[tokio::test]
async fn chat_messages_reach_every_client_including_the_sender_in_order() {
    let app = spawn_app().await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&app, "/ws").await);
    }
    for n in 0..100 {
        clients[0]
            .send(Message::text(format!("m{n}")))
            .await
            .unwrap();
    }
    for client in &mut clients {
        for n in 0..100 {
            assert_eq!(next_text(client).await, format!("Client says: m{n}"));
        }
    }
}

#[tokio::test]
async fn an_abrupt_disconnect_mid_broadcast_harms_no_one() {
    let app = spawn_app().await;
    let mut sender = connect(&app, "/ws").await;
    let mut watcher = connect(&app, "/ws").await;
    let doomed = connect(&app, "/ws").await;

    for n in 0..500 {
        sender.send(Message::text(format!("m{n}"))).await.unwrap();
        if n == 250 {
            // Drop the TCP stream without a close frame: a reset from the server's view.
            drop(doomed.into_inner());
            break;
        }
    }
    for n in 251..500 {
        sender.send(Message::text(format!("m{n}"))).await.unwrap();
    }
    for n in 0..500 {
        assert_eq!(next_text(&mut watcher).await, format!("Client says: m{n}"));
    }
    for n in 0..500 {
        assert_eq!(next_text(&mut sender).await, format!("Client says: m{n}"));
    }
    // New clients are served as before.
    let mut late = connect(&app, "/ws").await;
    sender.send(Message::text("after")).await.unwrap();
    assert_eq!(next_text(&mut late).await, "Client says: after");
}

/// Reads `total` chat messages numbered from 0, in order, then returns; panics on a close or
/// after `secs`. With `rate` (bytes per second), reads no faster than that.
async fn read_numbered<S>(mut stream: S, total: usize, rate: Option<f64>, secs: u64) -> S
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let started = std::time::Instant::now();
    let mut bytes = 0usize;
    let mut n = 0;
    let reading = async {
        while n < total {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => {
                    assert_eq!(&text[..18], format!("Client says: {n:05}"), "message {n}");
                    n += 1;
                    bytes += text.len();
                    if let Some(rate) = rate {
                        let due = Duration::from_secs_f64(bytes as f64 / rate);
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("after {n} messages: {other:?}"),
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(secs), reading)
        .await
        .is_err()
    {
        panic!("{n} of {total} messages within {secs} s");
    }
    stream
}

/// One client sends `total` messages of `size` bytes as fast as it can while it and a second
/// client (at `rate` bytes per second, if given) read all along: both get every message in
/// order and nobody is closed.
async fn burst(size: usize, total: usize, rate: Option<f64>) {
    let app = spawn_app().await;
    let (mut send, sender_reads) = connect(&app, "/ws").await.split();
    let (_reader_writes, reader_reads) = connect(&app, "/ws").await.split();
    let echoes = tokio::spawn(read_numbered(sender_reads, total, None, 20));
    let others = tokio::spawn(read_numbered(reader_reads, total, rate, 20));
    let body = "x".repeat(size - 6);
    let started = std::time::Instant::now();
    for n in 0..total {
        send.send(Message::text(format!("{n:05} {body}")))
            .await
            .unwrap();
    }
    let mut sender_reads = echoes.await.unwrap();
    let mut reader_reads = others.await.unwrap();
    println!(
        "{total} messages of {size} bytes to both in {:?}",
        started.elapsed()
    );
    // Both are still connected: one more message reaches both.
    send.send(Message::text(format!("{total:05} last")))
        .await
        .unwrap();
    for stream in [&mut sender_reads, &mut reader_reads] {
        let frame = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
        let text = match frame {
            Ok(Some(Ok(Message::Text(text)))) => text,
            other => panic!("{other:?}"),
        };
        assert_eq!(text.as_str(), format!("Client says: {total:05} last"));
    }
}

#[tokio::test]
async fn a_burst_of_small_chat_messages_reaches_both_reading_clients() {
    // Read at 150 kB/s: the second client falls hundreds of messages behind, which a queue
    // counted in frames would not hold; 300 kB is well within one counted in bytes.
    burst(100, 3_000, Some(150_000.0)).await;
}

#[tokio::test]
async fn a_burst_of_4_kib_chat_messages_reaches_both_reading_clients() {
    // 12 MB, read by the second client at 5 MB/s: the sender's budget (1 MiB/s) paces it,
    // and a reader faster than that budget is never closed.
    burst(4096, 3_000, Some(5_000_000.0)).await;
}

#[tokio::test]
async fn a_sender_is_paced_by_its_own_budget_and_a_slow_link_that_keeps_up_gets_everything() {
    let app = spawn_app().await;
    // A 4 KiB receive buffer, read at 2 MB/s: more than the sender's budget of 1 MiB/s.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let (slow, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", app.addr), stream)
        .await
        .unwrap();
    let (_slow_writes, slow_reads) = slow.split();
    let (mut send, sender_reads) = connect(&app, "/ws").await.split();

    // 400 messages of 16 KiB: 6.5 MB, six times the sender's burst.
    let total = 400;
    let slow_reader = tokio::spawn(read_numbered(slow_reads, total, Some(2_000_000.0), 40));
    let echoes = tokio::spawn(read_numbered(sender_reads, total, None, 40));
    let body = "y".repeat(16 * 1024 - 6);
    let started = std::time::Instant::now();
    for n in 0..total {
        send.send(Message::text(format!("{n:05} {body}")))
            .await
            .unwrap();
    }
    let sending = started.elapsed();
    let _sender_reads = echoes.await.unwrap();
    let echoed = started.elapsed();
    let _slow_reads = slow_reader.await.unwrap();
    println!(
        "sent in {sending:?} (into the socket buffers), echoed in {echoed:?}, read on the slow \
         link in {:?}",
        started.elapsed()
    );
    // The service read the first MiB at once and the other 5.5 MB at 1 MiB/s: the last echo
    // comes after about 5 s (without pacing, 0.1 s).
    assert!(echoed > Duration::from_secs(4), "echoed in {echoed:?}");
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_and_the_others_get_everything_in_order() {
    let app = spawn_app_with(|c| {
        c.ws_queue_bytes = 256 * 1024;
        c.ws_send_rate_bytes = 4 << 20;
    })
    .await;
    let mut sender = connect(&app, "/ws").await;
    let mut reader = connect(&app, "/ws").await;
    let mut stuck = connect(&app, "/ws").await;
    // The recorder is the process's: other tests in it may close slow clients too.
    let slow_closed_before = slow_clients_closed(&app).await;

    // 3,000 messages of 4 KiB: far more than the stuck client's socket buffers and queue hold.
    let body = "x".repeat(4096);
    let total = 3_000;
    // The sender reads its own echoes as it goes (it is a member of the room too), a window
    // of 32 at a time: a client that floods without reading is a slow client itself.
    let publish = async {
        let mut echoed = 0;
        for n in 0..total {
            sender
                .send(Message::text(format!("{n:05} {body}")))
                .await
                .unwrap();
            if n % 32 == 31 || n == total - 1 {
                while echoed <= n {
                    let text = next_text(&mut sender).await;
                    assert_eq!(&text[..18], format!("Client says: {echoed:05}"));
                    echoed += 1;
                }
            }
        }
    };
    let read_all = async {
        for n in 0..total {
            let text = next_text(&mut reader).await;
            assert_eq!(&text[..18], format!("Client says: {n:05}"), "message {n}");
        }
    };
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(publish, read_all)
    })
    .await
    .expect("every message within 60 s");
    println!("3,000 messages to the reader in {:?}", started.elapsed());

    // The stuck client got a prefix, then the close (1013) or, if that frame could not be
    // written in time, the end of the connection.
    let mut seen = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(30), stuck.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(_))) => seen += 1,
            Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert!(seen < total, "the stuck client was never cut off");
    assert!(matches!(code, None | Some(CloseCode::Again)), "{code:?}");

    // What it never got is counted: at least the message that found its queue full.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("websocket_messages_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped >= 1.0, "{dropped}");
    // Closed for overflowing its queue: the stuck client (the other two got everything).
    let slow_closed = slow_clients_closed(&app).await - slow_closed_before;
    assert!(slow_closed >= 1.0, "{slow_closed}");
}

/// `websocket_slow_clients_closed_total` as `/metrics` shows it.
async fn slow_clients_closed(app: &TestApp) -> f64 {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("websocket_slow_clients_closed_total "))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_that_connection_with_1009() {
    let app = spawn_app_with(|c| c.ws_max_message_bytes = 1024).await;
    let mut big = connect(&app, "/ws").await;
    let mut other = connect(&app, "/ws").await;
    big.send(Message::text("y".repeat(2048))).await.unwrap();
    assert_eq!(close_code(&mut big, 5).await, Some(CloseCode::Size));
    other.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_text(&mut other).await, "Client says: still here");
}

#[tokio::test]
async fn a_silent_peer_is_dropped_after_the_idle_timeout_and_a_live_one_is_not() {
    let app = spawn_app_with(|c| c.ws_idle_timeout_secs = 1).await;
    let mut silent = connect(&app, "/ws").await;
    let mut live = connect(&app, "/ws").await;
    // The live client reads, so its library answers the server's pings.
    let keep_reading = async {
        let mut texts = Vec::new();
        while let Some(Ok(frame)) = live.next().await {
            if let Message::Text(t) = frame {
                texts.push(t.to_string());
                if texts.len() == 1 {
                    break;
                }
            }
        }
        (live, texts)
    };
    let handle = tokio::spawn(keep_reading);
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // The silent client never read: no pongs went out, so the server has dropped it.
    assert_eq!(close_code(&mut silent, 5).await, Some(CloseCode::Normal));

    let mut sender = connect(&app, "/ws").await;
    sender.send(Message::text("alive?")).await.unwrap();
    let (_live, texts) = tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(texts, vec!["Client says: alive?".to_owned()]);
}

#[tokio::test]
async fn shutdown_closes_every_client_with_1001() {
    let app = spawn_app().await;
    let mut chat = connect(&app, "/ws").await;
    let mut events = connect(&app, "/ws/events").await;
    let stopping = tokio::spawn(app.stop());
    assert_eq!(close_code(&mut chat, 10).await, Some(CloseCode::Away));
    assert_eq!(close_code(&mut events, 10).await, Some(CloseCode::Away));
    tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn domain_events_are_pushed_to_ws_events_as_json() {
    let app = spawn_app().await;
    let mut feed = connect(&app, "/ws/events").await;
    // What clients send there is ignored.
    feed.send(Message::text("hello?")).await.unwrap();

    // Anyone may listen: the user is named, the email is not sent.
    let user = app.create_user("ada@example.com", "ada").await;
    let event: Value = serde_json::from_str(&next_text(&mut feed).await).unwrap();
    assert_eq!(
        event,
        json!({"type": "user.created", "data": {
            "id": user["id"], "username": "ada", "created_at": user["created_at"]}})
    );

    app.create_product("Lamp", 250, 5).await;
    let res = app
        .post_json(
            "/orders",
            &json!({"user_id": 1, "product_id": 1, "quantity": 2}),
        )
        .await;
    let order: Value = res.json().await.unwrap();
    let event: Value = serde_json::from_str(&next_text(&mut feed).await).unwrap();
    assert_eq!(event, json!({"type": "order.created", "data": order}));
}

/// A handshake to `path` with `Origin: origin`: the status, and the body when refused.
async fn handshake_from(app: &TestApp, path: &str, origin: &str) -> (u16, Option<Value>) {
    handshake_as(app, path, None, origin).await
}

/// [`handshake_from`], naming `host` in the `Host` header instead of the service's address.
async fn handshake_as(
    app: &TestApp,
    path: &str,
    host: Option<&str>,
    origin: &str,
) -> (u16, Option<Value>) {
    let mut request = format!("ws://{}{path}", app.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    if let Some(host) = host {
        request.headers_mut().insert("host", host.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_client, response)) => (response.status().as_u16(), None),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            (
                response.status().as_u16(),
                serde_json::from_slice(body).ok(),
            )
        }
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn browsers_may_open_sockets_only_from_the_services_own_or_allowed_origins() {
    let app = spawn_app_with(|c| c.allowed_origins = vec!["https://app.example.com".into()]).await;
    let own = format!("http://{}", app.addr);
    for path in ["/ws", "/ws/events"] {
        assert_eq!(handshake_from(&app, path, &own).await, (101, None));
        assert_eq!(
            handshake_from(&app, path, "https://app.example.com").await,
            (101, None)
        );
        let (status, body) = handshake_from(&app, path, "https://evil.example").await;
        assert_eq!(status, 403);
        let body = body.unwrap();
        assert_eq!(
            (&body["code"], &body["error"], &body["success"]),
            (
                &json!("origin_not_allowed"),
                &json!("Origin not allowed"),
                &json!(false)
            )
        );
        assert!(body["request_id"].is_string(), "{body}");
    }
    // Not a browser: no Origin, no check.
    connect(&app, "/ws/events").await;
}

#[tokio::test]
async fn with_a_public_origin_the_host_header_no_longer_names_the_services_own() {
    // Without it, a page on a rebinding domain names itself in both headers: the development
    // default lets it through.
    let app = spawn_app().await;
    let rebinding = handshake_as(&app, "/ws", Some("evil.example"), "http://evil.example").await;
    assert_eq!(rebinding, (101, None));

    let app = spawn_app_with(|c| c.public_origin = Some("https://shop.example.com".into())).await;
    for (host, origin) in [
        ("evil.example", "http://evil.example"),
        ("shop.example.com", "http://shop.example.com"),
    ] {
        let (status, body) = handshake_as(&app, "/ws", Some(host), origin).await;
        assert_eq!(status, 403, "{origin}");
        assert_eq!(body.unwrap()["code"], "origin_not_allowed");
    }
    for origin in ["https://shop.example.com", "https://shop.example.com:443"] {
        let got = handshake_as(&app, "/ws", Some("evil.example"), origin).await;
        assert_eq!(got, (101, None), "{origin}");
    }
}

/// Two instances (each on its own database here) joined by the Redis at 127.0.0.1:6379: chat
/// and domain events published on one reach the clients of the other.
#[tokio::test]
async fn with_redis_a_broadcast_on_one_instance_reaches_the_clients_of_another() {
    if !common::tools::redis() {
        return;
    }
    let prefix = format!("shop-test:{}:", uuid::Uuid::new_v4().simple());
    let with_redis = |c: &mut shop::config::Config| {
        c.redis_url = Some("redis://127.0.0.1:6379".into());
        c.redis_prefix = prefix.clone();
    };
    let a = spawn_app_with(with_redis).await;
    let b = spawn_app_with(with_redis).await;
    let mut chat_on_a = connect(&a, "/ws").await;
    let mut events_on_a = connect(&a, "/ws/events").await;
    let mut chat_on_b = connect(&b, "/ws").await;

    // Subscriptions are made in the background: retry the first message until it crosses.
    let mut crossed = false;
    for n in 0..50 {
        chat_on_b
            .send(Message::text(format!("probe {n}")))
            .await
            .unwrap();
        assert_eq!(
            next_text(&mut chat_on_b).await,
            format!("Client says: probe {n}")
        );
        if let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_millis(100), chat_on_a.next()).await
        {
            assert!(text.starts_with("Client says: probe "), "{text}");
            crossed = true;
            break;
        }
    }
    assert!(crossed, "no message crossed from b to a through Redis");
    chat_on_b.send(Message::text("hello from b")).await.unwrap();
    let mut seen = next_text(&mut chat_on_a).await;
    while seen.starts_with("Client says: probe ") {
        seen = next_text(&mut chat_on_a).await;
    }
    assert_eq!(seen, "Client says: hello from b");

    let user = b.create_user("ada@example.com", "ada").await;
    let event: Value = serde_json::from_str(&next_text(&mut events_on_a).await).unwrap();
    assert_eq!(event["type"], "user.created");
    assert_eq!(event["data"]["id"], user["id"]);
    assert!(event["data"].get("email").is_none());
}

/// Runs `tests/python/ws_clients.py MODE` against `app`; what each client got.
async fn python_clients(app: &TestApp, mode: &str, a: u32, b: u32) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/ws_clients.py");
    let args = [
        script.to_owned(),
        mode.to_owned(),
        app.addr.port().to_string(),
        a.to_string(),
        b.to_string(),
    ];
    // On a thread of its own: the service runs on this test's runtime.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args(args).output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// 3,000 messages of 100 bytes, then of 4 KiB (12 MiB: eleven seconds of the default budget),
/// each client reading while it sends: everything arrives in order, and nobody is closed.
#[tokio::test]
async fn python_asyncio_clients_get_a_burst_in_order_and_nobody_is_closed() {
    if !common::tools::python_websockets() {
        return;
    }
    let app = spawn_app().await;
    for size in [100, 4096] {
        let got = python_clients(&app, "burst", 3_000, size).await;
        for client in ["sender", "other"] {
            assert_eq!(
                got[client],
                json!({"got": 3000, "error": null}),
                "{size} B: {got}"
            );
        }
        assert!(got["total"].as_f64().unwrap() < 20.0, "{size} B: {got}");
    }
}

/// A member reading 1 KiB/s joins a room whose sender sends 800 messages of 1 KB a second: the
/// sender and the other reader never wait for it.
#[tokio::test]
async fn a_member_reading_1_kib_a_second_never_pauses_the_room() {
    if !common::tools::python_websockets() {
        return;
    }
    let app = spawn_app().await;
    let got = python_clients(&app, "slow-member", 800, 6).await;
    for client in ["sender", "reader"] {
        assert_eq!(got[client], json!({"got": 4800, "error": null}), "{got}");
        let pause = got[format!("{client}_longest_pause")].as_f64().unwrap();
        assert!(pause < 1.0, "{client} waited {pause} s: {got}");
    }
    assert!(got["sent_in"].as_f64().unwrap() < 8.0, "{got}");
}
