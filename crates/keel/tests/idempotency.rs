//! `Idempotency-Key` that a handler cannot forget: a handler that never takes its claim is still
//! run once per key, its answer stored by the layer; one that stores the answer in its own
//! transaction is not stored twice; an error is never stored. A handler routed with
//! `keel::idempotency::post` answers only with what it stored, in the record's transaction. Over a real socket, on a real
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
use keel::idempotency::{Answer, Idempotency, IdempotencyLayer, IdempotencyStore, Saved};
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
    key: Idempotency,
) -> Result<impl IntoResponse, ApiError> {
    let claim = key.claim().cloned();
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

/// The things a typed handler creates, and keel's answers, on either engine.
const THINGS: keel::db::Schema = keel::db::Schema {
    sqlite: &[
        idempotency::MIGRATIONS[0],
        Migration::new(2, "things", "CREATE TABLE things (name TEXT NOT NULL)"),
    ],
    postgres: &[
        keel::idempotency::postgres::MIGRATIONS[0],
        Migration::new(2, "things", "CREATE TABLE things (name TEXT NOT NULL)"),
    ],
};

/// A handler routed with `keel::idempotency::post`: it can only answer with the `Saved` its
/// transaction stored. It waits at `gate` first, so that two requests can be made to meet.
async fn typed(
    State((db, gate)): State<(keel::db::Db, Arc<tokio::sync::Barrier>)>,
    key: Idempotency,
    Json(body): Json<Value>,
) -> Result<Saved, ApiError> {
    gate.wait().await;
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    let answer = Answer::created(
        &format!("/things/{name}"),
        json!({"name": name}).to_string(),
    )?;
    match &db {
        keel::db::Db::Sqlite { db, .. } => {
            let write = move |conn: &rusqlite::Connection| {
                conn.execute("INSERT INTO things (name) VALUES (?1)", [name])?;
                Ok::<_, ApiError>(idempotency::save_answer(conn, &key, answer)?)
            };
            db.writer().write(write).await
        }
        keel::db::Db::Postgres { pool, .. } => {
            let mut tx = pool.begin().await?;
            let insert = sqlx::query("INSERT INTO things (name) VALUES ($1)").bind(name);
            insert.execute(&mut *tx).await?;
            let saved = keel::idempotency::postgres::save_answer(&mut tx, &key, answer).await?;
            tx.commit().await?;
            Ok(saved)
        }
    }
}

/// The rows of `table`.
async fn count(db: &keel::db::Db, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    match db {
        keel::db::Db::Sqlite { db, .. } => db
            .readers()
            .read(|c| c.query_row(&sql, [], |r| r.get(0)))
            .unwrap(),
        keel::db::Db::Postgres { pool, .. } => {
            sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap()
        }
    }
}

/// Two instances (each its own layer, so neither knows the other's key in flight) serve one
/// key at the same moment: one commits the thing with its answer; the other's save finds the
/// key taken, so its thing rolls back and it answers 409, and its retry gets the replay.
/// Without a key, the typed handler answers as it is, nothing stored.
async fn a_typed_handler_stores_its_answer_with_its_record(db: keel::db::Db) {
    let client = reqwest::Client::new();
    let gate = Arc::new(tokio::sync::Barrier::new(2));
    let mut urls = Vec::new();
    for _ in 0..2 {
        let layer = IdempotencyLayer::new(db.answers(TTL));
        let routes = Router::new()
            .route("/things", keel::idempotency::post(typed, layer))
            .with_state((db.clone(), gate.clone()));
        let addr = common::serve(ServiceLayers::new().apply(routes).into_router()).await;
        urls.push(format!("http://{addr}/things"));
    }
    let body = json!({"name": "a"});
    let (one, two) = tokio::join!(
        post_with_key(&client, urls[0].clone(), Some("both"), body.clone()),
        post_with_key(&client, urls[1].clone(), Some("both"), body.clone()),
    );
    let mut statuses = [one.status().as_u16(), two.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
    let (created, refused) = if one.status() == 201 {
        (one, two)
    } else {
        (two, one)
    };
    assert_eq!(created.headers()["location"], "/things/a");
    assert_eq!(created.headers()["content-type"], "application/json");
    assert_eq!(created.text().await.unwrap(), r#"{"name":"a"}"#);
    assert_eq!(refused.headers()["retry-after"], "1");
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["code"], "idempotency_in_progress");
    assert_eq!(count(&db, "things").await, 1);

    for url in &urls {
        let gate_opened = async {
            // The replay does not reach the handler: nobody else waits at the gate.
            post_with_key(&client, url.clone(), Some("both"), body.clone()).await
        };
        let again = tokio::time::timeout(Duration::from_secs(10), gate_opened).await;
        let again = again.expect("a replay does not run the handler");
        assert_eq!(again.status(), 201);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.headers()["location"], "/things/a");
        assert_eq!(again.text().await.unwrap(), r#"{"name":"a"}"#);
    }
    assert_eq!(count(&db, "things").await, 1);

    let unkeyed = |url: String| post_with_key(&client, url, None, json!({"name": "b"}));
    let (one, two) = tokio::join!(unkeyed(urls[0].clone()), unkeyed(urls[1].clone()));
    assert_eq!(
        (one.status(), two.status()),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert!(one.headers().get("idempotent-replayed").is_none());
    assert_eq!(count(&db, "things").await, 3);
    // Only the keyed answer was stored.
    assert_eq!(count(&db, "keel_idempotency").await, 1);
}

#[tokio::test]
async fn on_sqlite_a_typed_handler_stores_its_answer_with_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("typed.db").display().to_string();
    let db = keel::db::Db::open(&url, &THINGS).await.unwrap();
    a_typed_handler_stores_its_answer_with_its_record(db).await;
}

#[tokio::test]
async fn on_postgres_a_typed_handler_stores_its_answer_with_its_record() {
    let Some(schema) = common::pg::Schema::create().await else {
        return;
    };
    let db = keel::db::Db::open(&schema.schema.url, &THINGS)
        .await
        .unwrap();
    a_typed_handler_stores_its_answer_with_its_record(db).await;
}

/// An answer a replay could not give back as it went out is refused when made, before anything
/// is stored.
#[test]
fn an_answer_is_checked_when_made() {
    use keel::idempotency::AnswerError;
    let location = Answer::created("/things/café", "{}");
    assert!(
        matches!(location, Err(AnswerError::Location)),
        "{location:?}"
    );
    let utf8 = Answer::created("/things/1", b"\"\xff\"".to_vec());
    assert!(matches!(utf8, Err(AnswerError::Utf8)), "{utf8:?}");
    let json = Answer::created("/things/1", "not json");
    assert!(matches!(json, Err(AnswerError::Json(_))), "{json:?}");
    let status = Answer::json(StatusCode::CONFLICT, &1);
    assert!(
        matches!(status, Err(AnswerError::Status(StatusCode::CONFLICT))),
        "{status:?}"
    );
    let answer = Answer::created("/things/1", r#"{"id":1}"#).unwrap();
    assert_eq!(
        (answer.status(), answer.location(), answer.body()),
        (StatusCode::CREATED, Some("/things/1"), &br#"{"id":1}"#[..])
    );
}
