//! The "limit" baseline of `bench/http.sh`: what SQLite gives on this machine, with nothing of
//! keel or shop's store in the way. Same tables (shop's migrations), same SQL:
//!
//! - `GET /users/{id}`: a thread-local read-only rusqlite connection with a cached statement,
//!   queried inline on the runtime thread.
//! - `POST /users`: one writer thread that takes every request waiting, inserts each user and
//!   its welcome job in its own savepoint of one transaction, commits once, then answers.
//!
//! No validation beyond serde, no request id, no envelope, no jobs run, no mail written.
//!
//! `cargo run --release -p bench --bin sqlite_limit -- 127.0.0.1:8002 /tmp/limit.db`

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bench::{error, server_args};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{json, Value};
use tokio::sync::oneshot;

type Answer = oneshot::Sender<Result<Value, StatusCode>>;

#[derive(Clone)]
struct Limit {
    path: Arc<PathBuf>,
    writes: mpsc::SyncSender<(String, String, Answer)>,
}

#[derive(serde::Deserialize)]
struct NewUser {
    email: String,
    username: String,
}

thread_local! {
    static READER: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

fn read_user(path: &std::path::Path, id: i64) -> rusqlite::Result<Option<Value>> {
    READER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            *slot = Some(Connection::open_with_flags(path, flags)?);
        }
        let Some(conn) = slot.as_ref() else {
            return Ok(None);
        };
        let user = conn
            .prepare_cached("SELECT id, email, username, created_at FROM users WHERE id = ?1")?
            .query_row([id], |row| {
                Ok(
                    json!({"id": row.get::<_, i64>(0)?, "email": row.get::<_, String>(1)?,
                    "username": row.get::<_, String>(2)?, "created_at": row.get::<_, String>(3)?}),
                )
            })
            .optional();
        user
    })
}

async fn show(State(limit): State<Limit>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        let details = json!([{"loc": ["path", "id"], "msg": "Input should be a valid integer", "type": "invalid_type"}]);
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            details,
        );
    };
    match read_user(&limit.path, id) {
        Ok(Some(user)) => Json(user).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            json!({"resource": "user", "id": id}),
        ),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn create(State(limit): State<Limit>, Json(body): Json<NewUser>) -> Response {
    let (tx, rx) = oneshot::channel();
    if limit.writes.send((body.email, body.username, tx)).is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match rx.await {
        Ok(Ok(user)) => (StatusCode::CREATED, Json(user)).into_response(),
        Ok(Err(status)) => status.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The writer thread: every waiting request in one transaction, a savepoint each.
fn writer(conn: Connection, requests: mpsc::Receiver<(String, String, Answer)>) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        batch.extend(requests.try_iter().take(511));
        if conn.execute_batch("BEGIN IMMEDIATE").is_err() {
            for (_, _, answer) in batch {
                let _ = answer.send(Err(StatusCode::SERVICE_UNAVAILABLE));
            }
            continue;
        }
        let mut answers = Vec::with_capacity(batch.len());
        for (email, username, answer) in batch {
            let result = insert(&conn, &email, &username);
            answers.push((answer, result));
        }
        let committed = conn.execute_batch("COMMIT").is_ok();
        if !committed {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for (answer, result) in answers {
            let result = match result {
                Ok(user) if committed => Ok(user),
                Ok(_) => Err(StatusCode::SERVICE_UNAVAILABLE),
                Err(status) => Err(status),
            };
            let _ = answer.send(result);
        }
    }
}

fn insert(conn: &Connection, email: &str, username: &str) -> Result<Value, StatusCode> {
    let run = || -> rusqlite::Result<Value> {
        conn.prepare_cached("SAVEPOINT w")?.execute([])?;
        let user = conn
            .prepare_cached(
                "INSERT INTO users (email, username) VALUES (?1, ?2) \
                 RETURNING id, email, username, created_at",
            )?
            .query_row([email, username], |row| {
                Ok(
                    json!({"id": row.get::<_, i64>(0)?, "email": row.get::<_, String>(1)?,
                    "username": row.get::<_, String>(2)?, "created_at": row.get::<_, String>(3)?}),
                )
            })?;
        let payload = json!({"user_id": user["id"], "email": email, "username": username});
        conn.prepare_cached(
            "INSERT INTO keel_jobs (queue, kind, payload, max_attempts, run_at) \
             VALUES ('email', 'welcome_email', ?1, 8, 0)",
        )?
        .execute([payload.to_string()])?;
        conn.prepare_cached("RELEASE w")?.execute([])?;
        Ok(user)
    };
    run().map_err(|_| {
        let _ = conn.execute_batch("ROLLBACK TO w; RELEASE w");
        StatusCode::CONFLICT
    })
}

#[tokio::main]
async fn main() {
    let (addr, path) = server_args("127.0.0.1:8002", "limit.db");
    let path = PathBuf::from(path);
    // shop's own migrations make the tables; then the store lets go of the file.
    let store = shop::store::Store::open(&format!("sqlite://{}", path.display()), 8)
        .await
        .expect("second argument: a database file");
    store.close().await;

    let conn = Connection::open(&path).expect("open the database");
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .expect("configure the database");
    let (writes, requests) = mpsc::sync_channel(4096);
    std::thread::spawn(move || writer(conn, requests));
    let limit = Limit {
        path: Arc::new(path),
        writes,
    };
    let app = Router::new()
        .route("/users", post(create))
        .route("/users/{id}", get(show))
        .with_state(limit);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("cannot listen");
    axum::serve(listener, app).await.expect("server failed");
}
