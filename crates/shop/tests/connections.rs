//! The service's connection limits from its configuration: silent clients are dropped after
//! `SHOP_HEADER_TIMEOUT_SECS`, and WebSockets count towards `SHOP_MAX_CONNECTIONS`.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::{Duration, Instant};

use common::spawn_app_with;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_dropped_after_the_header_timeout() {
    let app = spawn_app_with(|config| config.header_timeout_secs = 1).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /users/1 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "still open after 5 s");
    assert!(buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));
    assert!(started.elapsed() >= Duration::from_millis(700));
    app.stop().await;
}

#[tokio::test]
async fn websockets_count_towards_the_connection_limit() {
    let app = spawn_app_with(|config| config.max_connections = 1).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.addr))
        .await
        .unwrap();

    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let waited =
        tokio::time::timeout(Duration::from_millis(1_500), stream.read_to_end(&mut buf)).await;
    assert!(
        waited.is_err(),
        "served past the limit: {:?}",
        String::from_utf8_lossy(&buf)
    );

    socket.close(None).await.unwrap();
    drop(socket);
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8(buf).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");
    app.stop().await;
}
