//! `Idempotency-Key` that a handler cannot forget: a handler that never takes its claim is still
//! run once per key, its answer stored by the layer; one that stores the answer in its own
//! transaction is not stored twice; an error is never stored. Over a real socket, on a real
//! SQLite file and, when it answers, the PostgreSQL at 127.0.0.1:5432.
#![allow(clippy::unwrap_used)]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header::LOCATION, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use keel::idempotency::sqlite as idempotency;
use keel::idempotency::{Idempotency, IdempotencyLayer, IdempotencyStore};
use keel::layers::ServiceLayers;
use keel::sqlite::{Database, Migration, Options};
use keel::{ApiError, Json};
use serde_json::{json, Value};

const TTL: Duration = Duration::from_secs(3600);

/// How many times each handler ran.
#[derive(Clone, Default)]
struct Runs {
    forgetful: Arc<AtomicUsize>,
    failing: Arc<AtomicUsize>,
    careful: Arc<AtomicUsize>,
    plain: Arc<AtomicUsize>,
    db: Option<Database>,
}

/// Creates "a thing" and never looks at the key.
async fn forgetful(State(runs): State<Runs>, Json(body): Json<Value>) -> impl IntoResponse {
    let n = runs.forgetful.fetch_add(1, Ordering::SeqCst) + 1;
    (
        StatusCode::CREATED,
        [(LOCATION, format!("/things/{n}"))],
        Json(json!({"n": n, "name": body["name"]})),
    )
}

/// Fails after doing its work: nothing is stored, a retry runs again.
async fn failing(State(runs): State<Runs>) -> ApiError {
    runs.failing.fetch_add(1, Ordering::SeqCst);
    ApiError::new(StatusCode::CONFLICT, "taken", "Taken")
}

/// Answers text: not what a replay can give back, so the layer leaves it unstored.
async fn plain(State(runs): State<Runs>) -> (StatusCode, String) {
    let n = runs.plain.fetch_add(1, Ordering::SeqCst) + 1;
    (StatusCode::CREATED, format!("created {n}"))
}

/// Stores its answer in its own transaction (SQLite's writer).
async fn careful(
    State(runs): State<Runs>,
    Idempotency(claim): Idempotency,
) -> Result<impl IntoResponse, ApiError> {
    let n = runs.careful.fetch_add(1, Ordering::SeqCst) + 1;
    let body = json!({"n": n}).to_string();
    let db = runs.db.clone().unwrap();
    let stored = body.clone();
    db.writer()
        .write(move |conn| {
            if let Some(claim) = &claim {
                idempotency::save(conn, claim, 201, None, stored.as_bytes())?;
            }
            Ok::<_, keel::sqlite::Error>(())
        })
        .await?;
    Ok((StatusCode::CREATED, body))
}

fn app<S: IdempotencyStore>(store: S, runs: Runs) -> Router {
    let layer = IdempotencyLayer::new(store);
    let routes = Router::new()
        .route("/things", post(forgetful).layer(layer.clone()))
        .route("/failing", post(failing).layer(layer.clone()))
        .route("/careful", post(careful).layer(layer.clone()))
        .route("/plain", post(plain).layer(layer))
        .with_state(runs);
    ServiceLayers::new().apply(routes).into_router()
}

async fn post_with_key(
    client: &reqwest::Client,
    url: String,
    key: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = client.post(url).json(&body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

/// The forgetful and failing handlers behind `store`.
async fn a_handler_that_never_stores_runs_once_per_key<S: IdempotencyStore>(store: S) {
    let runs = Runs::default();
    let addr = common::serve(app(store, runs.clone())).await;
    let client = reqwest::Client::new();
    let things = format!("http://{addr}/things");

    let first = post_with_key(&client, things.clone(), Some("k1"), json!({"name": "a"})).await;
    assert_eq!(first.status(), 201);
    assert_eq!(first.headers()["location"], "/things/1");
    assert!(first.headers().get("idempotent-replayed").is_none());
    assert_eq!(
        first.json::<Value>().await.unwrap(),
        json!({"n": 1, "name": "a"})
    );

    let again = post_with_key(&client, things.clone(), Some("k1"), json!({"name": "a"})).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["location"], "/things/1");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["content-type"], "application/json");
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        json!({"n": 1, "name": "a"})
    );
    assert_eq!(runs.forgetful.load(Ordering::SeqCst), 1);

    let other = post_with_key(&client, things.clone(), Some("k1"), json!({"name": "b"})).await;
    assert_eq!(other.status(), 422);
    let other: Value = other.json().await.unwrap();
    assert_eq!(other["code"], "idempotency_key_reused");
    assert_eq!(runs.forgetful.load(Ordering::SeqCst), 1);

    let unkeyed = post_with_key(&client, things.clone(), None, json!({"name": "a"})).await;
    assert_eq!(unkeyed.status(), 201);
    assert_eq!(runs.forgetful.load(Ordering::SeqCst), 2);

    let plain = format!("http://{addr}/plain");
    for attempt in 1..=2 {
        let res = post_with_key(&client, plain.clone(), Some("k3"), json!({})).await;
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(res.text().await.unwrap(), format!("created {attempt}"));
    }

    let failing = format!("http://{addr}/failing");
    for attempt in 1..=2 {
        let res = post_with_key(&client, failing.clone(), Some("k2"), json!({})).await;
        assert_eq!(res.status(), 409);
        assert!(res.headers().get("idempotent-replayed").is_none());
        assert_eq!(runs.failing.load(Ordering::SeqCst), attempt);
    }
}

fn sqlite_db(dir: &tempfile::TempDir) -> Database {
    let migrations = &[Migration::new(1, "keel idempotency", idempotency::SCHEMA)];
    Database::open(dir.path().join("keys.db"), Options::default(), migrations).unwrap()
}

#[tokio::test]
async fn on_sqlite_a_handler_that_never_stores_its_answer_runs_once_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir);
    a_handler_that_never_stores_runs_once_per_key(idempotency::SqliteIdempotency::new(db, TTL))
        .await;
}

#[tokio::test]
async fn an_answer_stored_in_the_handlers_transaction_is_not_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir);
    let runs = Runs {
        db: Some(db.clone()),
        ..Runs::default()
    };
    let store = idempotency::SqliteIdempotency::new(db, TTL);
    let addr = common::serve(app(store, runs.clone())).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/careful");
    let key = "careful-key-only-here";
    for replayed in [false, true] {
        let res = post_with_key(&client, url.clone(), Some(key), json!({})).await;
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers().get("idempotent-replayed").is_some(), replayed);
        assert_eq!(res.json::<Value>().await.unwrap(), json!({"n": 1}));
    }
    assert_eq!(runs.careful.load(Ordering::SeqCst), 1);
    // The layer would have found the key taken, and said so.
    assert!(
        !common::logs().contains("another request stored one under its key"),
        "{}",
        common::logs()
    );
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn on_postgres_a_handler_that_never_stores_its_answer_runs_once_per_key() {
    let Some(schema) = common::pg::Schema::create().await else {
        return;
    };
    sqlx::raw_sql(keel::idempotency::postgres::SCHEMA)
        .execute(&schema.pool)
        .await
        .unwrap();
    let store = keel::idempotency::postgres::PgIdempotency::new(schema.pool.clone(), TTL);
    a_handler_that_never_stores_runs_once_per_key(store).await;
}
