//! `spawn_app`: the real service on 127.0.0.1:0 over a fresh database, and a real HTTP client
//! to talk to it.
//!
//! The database is a new SQLite file, or, with `SHOP_TEST_ENGINE=postgres`, a new schema of its
//! own on the PostgreSQL server at 127.0.0.1:5432 (or `TEST_POSTGRES_URL`): the same
//! suite runs on either engine. The few tests about one engine's own behaviour (a SQLite
//! file's lock, say) say so and return at once on the other.
#![allow(dead_code, clippy::unwrap_used)]

pub mod browser;
pub mod pg;
pub mod process;
pub mod proxy;
pub mod receiver;
pub mod smtp;
pub mod tools;

use std::net::SocketAddr;

use reqwest::{Method, Response};
use serde_json::Value;
use shop::app::App;
use shop::config::Config;
use tokio::sync::oneshot;

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub db_path: std::path::PathBuf,
    /// The `DATABASE_URL` the service was started with.
    pub database_url: String,
    pub mail_dir: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    _schema: Option<pg::Schema>,
}

/// The engine the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// `SHOP_TEST_ENGINE`: `postgres`, or SQLite by default.
pub fn engine() -> Engine {
    match std::env::var("SHOP_TEST_ENGINE").as_deref() {
        Ok("postgres") => Engine::Postgres,
        _ => Engine::Sqlite,
    }
}

/// `sqlite` or `postgres`, whichever the suite runs on: for SQL that differs between them.
pub fn sql(sqlite: &'static str, postgres: &'static str) -> &'static str {
    match engine() {
        Engine::Sqlite => sqlite,
        Engine::Postgres => postgres,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with the configuration adjusted by `configure` first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("shop.db");
    let schema = match engine() {
        Engine::Sqlite => None,
        Engine::Postgres => Some(pg::Schema::for_shop().await),
    };
    let database_url = match &schema {
        None => format!("sqlite://{}", db_path.display()),
        Some(schema) => schema.url.clone(),
    };
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), database_url.clone());
    config.mail_dir = dir.path().join("mail");
    config.job_backoff_base_ms = 50;
    configure(&mut config);
    let mail_dir = config.mail_dir.clone();
    let app = App::build(config).await.unwrap();
    let addr = app.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        db_path,
        database_url,
        mail_dir,
        stop: Some(stop),
        server: Some(server),
        _dir: dir,
        _schema: schema,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` as JSON with `X-Request-ID: request_id`.
    pub async fn post_json_as(&self, path: &str, body: &Value, request_id: &str) -> Response {
        self.client
            .post(self.url(path))
            .header("x-request-id", request_id)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A request with any method, raw body and content type.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send().await.unwrap()
    }

    /// Writes `request` as is on a fresh connection and returns everything the server sends
    /// back until it closes the connection (send `Connection: close`).
    pub async fn raw(&self, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut response),
        );
        // A server may reset after answering a request whose body it did not read.
        let _ = read.await.unwrap();
        String::from_utf8_lossy(&response).into_owned()
    }

    pub async fn create_user(&self, email: &str, username: &str) -> Value {
        let res = self
            .post_json(
                "/users",
                &serde_json::json!({"email": email, "username": username}),
            )
            .await;
        assert_eq!(res.status(), 201, "creating user {username}");
        res.json().await.unwrap()
    }

    pub async fn create_product(&self, name: &str, price_cents: i64, stock: i64) -> Value {
        let res = self
            .post_json(
                "/products",
                &serde_json::json!({"name": name, "price_cents": price_cents, "stock": stock}),
            )
            .await;
        assert_eq!(res.status(), 201, "creating product {name}");
        res.json().await.unwrap()
    }

    /// A connection of its own to the service's database, to look at what the API does not
    /// show, on either engine (write `$1` for parameters; both read it).
    pub async fn db(&self) -> sqlx::AnyConnection {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(&self.database_url)
            .await
            .unwrap()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }
}

/// Asserts an error response: status, JSON content type, the request id header equal to the
/// body's, and the envelope with exactly this code, message and details.
pub async fn assert_envelope(
    res: Response,
    status: u16,
    code: &str,
    error: &str,
    details: Value,
) -> Value {
    assert_eq!(res.status(), status, "status");
    assert_eq!(res.headers()["content-type"], "application/json");
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "success": false,
            "error": error,
            "code": code,
            "details": details,
            "request_id": request_id,
        })
    );
    body
}

/// [`assert_envelope`] for a 422 `validation_error` with these details.
pub async fn assert_validation_error(res: Response, details: Value) -> Value {
    assert_envelope(res, 422, "validation_error", "Validation error", details).await
}

/// The fields of an RFC 3339 UTC timestamp as SQLite writes them.
pub fn assert_timestamp(value: &Value) {
    let s = value.as_str().unwrap();
    assert_eq!(s.len(), 24, "{s}");
    assert!(s.ends_with('Z') && &s[10..11] == "T", "{s}");
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
