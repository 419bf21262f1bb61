//! `keel::serve::Server` over real sockets: slow and silent clients are dropped, idle
//! keep-alive connections closed, busy ones never, and open connections bounded.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use keel::serve::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const REQUEST: &[u8] = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
const BIG_REQUEST: &[u8] = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
/// The size of Swagger UI's bundle: far more than the socket buffers of a client that reads
/// nothing hold.
const BIG: usize = 1_400_000;
const RESPONSE_END: &[u8] = b"hello";

fn app() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/big", get(|| async { vec![b'x'; BIG] }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(2_500)).await;
                "slow"
            }),
        )
}

/// Serves the app with `server` on 127.0.0.1:0; the sender stops it.
async fn start(server: Server) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        server
            .serve(listener, app(), async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop, served)
}

fn short() -> Server {
    Server::new()
        .header_timeout(Duration::from_secs(1))
        .idle_timeout(Duration::from_secs(3))
}

/// Reads until `end` has arrived; panics on EOF or after 5 s.
async fn read_response(stream: &mut TcpStream, end: &[u8]) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !got.ends_with(end) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("no response within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before the response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

/// A connection to `addr` with a 4 KiB receive buffer, as a client on a slow link has.
async fn small_window(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Waits up to `limit` for the server to close the connection; returns when it did, and what it
/// sent before.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => panic!("still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// True when nothing arrives on `stream` within `wait` and it stays open.
async fn silent_for(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 16];
    tokio::time::timeout(wait, stream.read(&mut buf))
        .await
        .is_err()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_dropped_after_the_header_timeout() {
    let (addr, _stop, _served) = start(short()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (after, sent) = closed_within(&mut stream, Duration::from_secs(5)).await;
    assert!(sent.is_empty(), "{sent:?}");
    assert!(
        after >= Duration::from_millis(800),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn headers_trickled_one_line_at_a_time_are_cut_at_the_header_timeout() {
    let (addr, _stop, _served) = start(short()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /hello HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if stream
            .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "the trickling connection was still open after 6 s");
    let after = started.elapsed();
    assert!(
        after < Duration::from_millis(3_000),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn a_keep_alive_connection_outlives_the_header_timeout_and_closes_when_idle() {
    let (addr, _stop, _served) = start(short()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(REQUEST).await.unwrap();
    let first = read_response(&mut stream, RESPONSE_END).await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");

    // Idle for twice the header timeout, still under the idle timeout: the connection serves.
    assert!(silent_for(&mut stream, Duration::from_millis(2_000)).await);
    stream.write_all(REQUEST).await.unwrap();
    let second = read_response(&mut stream, RESPONSE_END).await;
    assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{second}");

    let (after, sent) = closed_within(&mut stream, Duration::from_secs(6)).await;
    assert!(sent.is_empty(), "{sent:?}");
    assert!(
        after >= Duration::from_millis(2_500),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn a_request_in_flight_outlives_both_timeouts() {
    let server = Server::new()
        .header_timeout(Duration::from_secs(1))
        .idle_timeout(Duration::from_secs(1));
    let (addr, _stop, _served) = start(server).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut stream, b"slow").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
}

#[tokio::test]
async fn connections_past_the_maximum_wait_until_one_closes() {
    let (addr, _stop, _served) = start(
        short()
            .idle_timeout(Duration::from_secs(30))
            .max_connections(2),
    )
    .await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    for stream in [&mut first, &mut second] {
        stream.write_all(REQUEST).await.unwrap();
        read_response(stream, RESPONSE_END).await;
    }

    // The third is connected by the kernel but not served while two are open.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(REQUEST).await.unwrap();
    assert!(silent_for(&mut third, Duration::from_millis(1_500)).await);

    drop(first);
    let response = read_response(&mut third, RESPONSE_END).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    second.write_all(REQUEST).await.unwrap();
    read_response(&mut second, RESPONSE_END).await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_lets_a_request_in_flight_finish() {
    let (addr, stop, served) = start(Server::new()).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(REQUEST).await.unwrap();
    read_response(&mut idle, RESPONSE_END).await;
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    stop.send(()).unwrap();
    let (_, sent) = closed_within(&mut idle, Duration::from_secs(2)).await;
    assert!(sent.is_empty(), "{sent:?}");
    let response = read_response(&mut busy, b"slow").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("connection: close\r\n"), "{response}");
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_client_that_never_reads_a_large_answer_is_cut_after_the_send_timeout() {
    let (addr, _stop, _served) = start(Server::new().send_timeout(Duration::from_secs(1))).await;
    let mut stream = small_window(addr).await;
    stream.write_all(BIG_REQUEST).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Had the server kept the connection, reading now would bring the whole answer.
    let (_, got) = closed_within(&mut stream, Duration::from_secs(5)).await;
    assert!(
        got.len() < BIG,
        "got {} bytes: the answer was not abandoned",
        got.len()
    );
}

#[tokio::test]
async fn a_client_reading_50_kb_a_second_gets_the_whole_answer() {
    let (addr, _stop, _served) = start(Server::new().send_timeout(Duration::from_secs(1))).await;
    let mut stream = small_window(addr).await;
    stream.write_all(BIG_REQUEST).await.unwrap();
    // Paced to 50 kB/s: 28 s for the whole answer, each write progressing long before 1 s.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 5_000];
    let started = Instant::now();
    while !got.ends_with(b"xxxx") || got.len() < BIG {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the answer stalled")
            .unwrap();
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        tokio::time::sleep(Duration::from_secs_f64(n as f64 / 50_000.0)).await;
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got.len() - head_end, BIG);
    println!("{BIG} bytes in {:?}", started.elapsed());
}

#[tokio::test]
async fn connections_at_the_cap_held_by_clients_that_never_read_are_released() {
    let (addr, _stop, _served) = start(
        Server::new()
            .send_timeout(Duration::from_secs(1))
            .max_connections(3),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = small_window(addr).await;
        stream.write_all(BIG_REQUEST).await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Every permit is held by an answer nobody reads; within the send timeout they are freed.
    let started = Instant::now();
    let mut next = TcpStream::connect(addr).await.unwrap();
    next.write_all(REQUEST).await.unwrap();
    let response = read_response(&mut next, RESPONSE_END).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "answered at once: the cap was not reached"
    );
}

#[tokio::test]
async fn sigterm_completes_the_shutdown_signal() {
    // tokio's handler is installed for the whole process before the signal is sent, so the
    // SIGTERM cannot end the test process.
    let mut installed =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    let signal = tokio::spawn(keel::serve::shutdown_signal());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    tokio::time::timeout(Duration::from_secs(5), signal)
        .await
        .expect("shutdown_signal completes on SIGTERM")
        .unwrap();
    installed.recv().await;
}
