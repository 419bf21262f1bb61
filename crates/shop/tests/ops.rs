//! Operations: Prometheus metrics, and JSON logs carrying the request id into background work.
#![allow(clippy::unwrap_used)]
mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};

use common::{eventually, spawn_app};
use serde_json::{json, Value};

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_show_jobs_and_sockets() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "ada").await;
    assert_eq!(app.get("/users/1").await.status(), 200);
    assert_eq!(app.get("/users/2").await.status(), 404);
    assert_eq!(app.get("/no/such/path/12345").await.status(), 404);
    let (_ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.addr))
        .await
        .unwrap();
    // The welcome mail job has run by the time its file exists.
    eventually(10, "the welcome mail", || async {
        std::fs::read_dir(&app.mail_dir).ok()?.next().map(drop)
    })
    .await;

    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = res.text().await.unwrap();
    let has = |line: &str| text.lines().any(|l| l.starts_with(line));
    assert!(
        has(r#"http_requests_total{method="POST",route="/users",status="201"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"http_requests_total{method="GET",route="/users/{id}",status="200"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"http_requests_total{method="GET",route="/users/{id}",status="404"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#),
        "{text}"
    );
    assert!(!text.contains("12345"), "raw paths never become labels");
    assert!(
        has(r#"http_request_duration_seconds_bucket{method="GET",route="/users/{id}",le="0.005"}"#),
        "{text}"
    );
    assert!(
        has(r#"http_request_duration_seconds_count{method="GET",route="/users/{id}"} 2"#),
        "{text}"
    );
    let succeeded = eventually(10, "the job gauge", || async {
        let text = app.get("/metrics").await.text().await.unwrap();
        text.contains(r#"background_jobs{queue="email",state="succeeded"} 1"#)
            .then_some(text)
    })
    .await;
    assert!(succeeded.contains(r#"background_jobs{queue="email",state="dead"} 0"#));
    assert!(
        succeeded.contains(r#"websocket_connections{path="/ws"} 1"#),
        "{succeeded}"
    );
    assert!(
        succeeded.contains("websocket_messages_dropped_total 0"),
        "{succeeded}"
    );
    assert!(
        succeeded.contains(r#"analytics_events_total{name="user_created"} 1"#),
        "{succeeded}"
    );
}

/// Starts `command` (which execs `shop`) on `port` with a database in `dir`, logging JSON at
/// `level`; each log line as it comes.
fn with_json_logs(
    command: &mut Command,
    dir: &std::path::Path,
    port: u16,
    level: &str,
) -> (std::process::Child, std::sync::mpsc::Receiver<Value>) {
    let mut child = command
        .env("SHOP_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/shop.db", dir.display()),
        )
        .env("SHOP_MAIL_DIR", dir.join("mail"))
        .env("SHOP_LOG_FORMAT", "json")
        .env("RUST_LOG", level)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let parsed: Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            let _ = lines_tx.send(parsed);
        }
    });
    (child, lines)
}

#[tokio::test]
async fn json_logs_carry_the_request_id_into_the_background_work_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::process::free_port();
    let (mut child, lines) = with_json_logs(
        &mut Command::new(env!("CARGO_BIN_EXE_shop")),
        dir.path(),
        port,
        "info",
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    eventually(20, "shop to listen", || async {
        client.get(format!("{base}/healthz")).send().await.ok()
    })
    .await;
    let res = client
        .post(format!("{base}/users"))
        .header("x-request-id", "json-log-1")
        .json(&json!({"email": "ada@example.com", "username": "ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    let mut access = None;
    let mut job = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (access.is_none() || job.is_none()) && std::time::Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(std::time::Duration::from_millis(200)) else {
            continue;
        };
        if line["message"] == "request completed" && line["span"]["request_id"] == "json-log-1" {
            access = Some(line);
        } else if line["message"] == "welcome mail sent" {
            job = Some(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();

    let access = access.expect("an access log line");
    assert_eq!(access["span"]["method"], "POST");
    assert_eq!(access["span"]["route"], "/users");
    assert_eq!(access["status"], 201);
    assert!(access["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(access["level"], "INFO");
    let job = job.expect("the job's log line");
    assert_eq!(job["span"]["request_id"], "json-log-1");
    assert_eq!(job["span"]["kind"], "welcome_email");
}

#[tokio::test]
async fn the_connection_cap_is_fitted_to_the_open_files_limit_and_accepting_never_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::process::free_port();
    // A hard limit of 400 open files, and a soft one of 100 that shop raises to it.
    let (mut child, lines) = with_json_logs(
        Command::new("sh")
            .args(["-c", r#"ulimit -S -n 100 && ulimit -H -n 400 && exec "$0""#])
            .arg(env!("CARGO_BIN_EXE_shop"))
            .env("SHOP_HEADER_TIMEOUT_SECS", "2"),
        dir.path(),
        port,
        "warn",
    );
    let base = format!("http://127.0.0.1:{port}");
    eventually(20, "shop to listen", || async {
        reqwest::get(format!("{base}/healthz")).await.ok()
    })
    .await;

    // 300 connections that never send a request: more than the 400 files allow beside the
    // service's own, fewer than the listen backlog holds.
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    // Those past the cap wait in the backlog and are served as the header timeout frees places.
    let started = std::time::Instant::now();
    let health = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        reqwest::get(format!("{base}/healthz")),
    )
    .await
    .expect("/healthz answered within 20 s")
    .unwrap();
    assert_eq!(health.status(), 200);
    println!("/healthz answered after {:?}", started.elapsed());
    drop(held);
    let _ = child.kill();
    let _ = child.wait();

    let logged: Vec<Value> = lines.try_iter().collect();
    let fitted = logged
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("open files"))
        })
        .unwrap_or_else(|| panic!("no warning about the open files limit: {logged:?}"));
    // 400, less 128 and three per database connection (16): 224.
    assert_eq!(
        (
            &fitted["open_files_limit"],
            &fitted["reserve"],
            &fitted["max_connections"],
            &fitted["lowered_to"]
        ),
        (&json!(400), &json!(176), &json!(10000), &json!(224)),
        "{fitted}"
    );
    assert!(
        !logged
            .iter()
            .any(|l| l["message"] == "accepting a connection failed"),
        "{logged:?}"
    );
}

#[tokio::test]
async fn pretty_logs_written_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::process::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shop"))
        .env("SHOP_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/shop.db", dir.path().display()),
        )
        .env("SHOP_MAIL_DIR", dir.path().join("mail"))
        .env("SHOP_LOG_FORMAT", "pretty")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let listening = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("shop listening"))
    });
    eventually(20, "shop to listen", || async {
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .ok()
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let line = listening.join().unwrap().expect("a `shop listening` line");
    assert!(!line.contains('\u{1b}'), "{line:?}");
    assert!(line.contains("INFO"), "{line:?}");
}
