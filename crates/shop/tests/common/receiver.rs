//! A webhook receiver on a loopback port that answers from a script, records every request,
//! and has them checked by an implementation of Standard Webhooks that is not ours: the
//! Python `standardwebhooks` package (`pip install standardwebhooks`; `.ci/run` installs it).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    RetryAfter(u16, u64),
    Hang(Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    pub at: Instant,
}

#[derive(Clone, Default)]
struct Shared {
    script: Arc<Mutex<VecDeque<Reply>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
}

impl Receiver {
    /// Answers each request with the next reply of `script`, then 200.
    pub async fn start(script: Vec<Reply>) -> Receiver {
        let shared = Shared {
            script: Arc::new(Mutex::new(script.into())),
            ..Shared::default()
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    shared.received.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    });
    let reply = shared.script.lock().unwrap().pop_front();
    match reply {
        None => StatusCode::OK.into_response(),
        Some(Reply::Status(code)) => StatusCode::from_u16(code).unwrap().into_response(),
        Some(Reply::RetryAfter(code, secs)) => (
            StatusCode::from_u16(code).unwrap(),
            [("retry-after", secs.to_string())],
        )
            .into_response(),
        Some(Reply::Hang(d)) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
    }
}

fn python(script: &str, input: &serde_json::Value) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Verifies each message with the `standardwebhooks` package; panics on the first failure.
pub fn verify_independently(secret: &str, messages: &[Received]) {
    let input = serde_json::json!({
        "secret": secret,
        "messages": messages.iter().map(|m| serde_json::json!({
            "headers": {"webhook-id": m.id, "webhook-timestamp": m.timestamp, "webhook-signature": m.signature},
            "body": m.body,
        })).collect::<Vec<_>>(),
    });
    let out = python(
        "import json, sys\n\
         from standardwebhooks.webhooks import Webhook\n\
         data = json.load(sys.stdin)\n\
         hook = Webhook(data['secret'])\n\
         for m in data['messages']:\n\
         \x20   hook.verify(m['body'], m['headers'])\n\
         print(len(data['messages']))\n",
        &input,
    );
    assert_eq!(out.trim(), messages.len().to_string());
}

/// Signs `body` as message `id` at `timestamp` (Unix seconds) with the `standardwebhooks`
/// package; returns the signature header.
pub fn sign_independently(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let input =
        serde_json::json!({"secret": secret, "id": id, "timestamp": timestamp, "body": body});
    let out = python(
        "import json, sys\n\
         from datetime import datetime, timezone\n\
         from standardwebhooks.webhooks import Webhook\n\
         d = json.load(sys.stdin)\n\
         print(Webhook(d['secret']).sign(d['id'], datetime.fromtimestamp(d['timestamp'], tz=timezone.utc), d['body']))\n",
        &input,
    );
    out.trim().to_owned()
}
