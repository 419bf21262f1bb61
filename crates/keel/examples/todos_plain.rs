//! The todos service of `todos.rs` written on plain axum and tower-http, without keel: the
//! same routes, answers, envelope, request ids, validation details, durable job and shutdown,
//! to count what keel saves. It uses no keel item. `cargo run -p keel --example todos_plain`
//! serves on `KEEL_EXAMPLE_ADDR` (127.0.0.1:3000), database `KEEL_EXAMPLE_DB` (todos.db).
//! Simplifications against keel: one mutex-guarded connection instead of a group-committing
//! writer, one job at a time, no job leases (a crash leaves `running` jobs to the restart).
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL UNIQUE COLLATE NOCASE, priority INTEGER NOT NULL, tags TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, run_at INTEGER NOT NULL DEFAULT 0, last_error TEXT);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (run_at) WHERE state = 'pending';
UPDATE jobs SET state = 'pending' WHERE state = 'running';";
const TODO: &str =
    "json_object('id', id, 'title', title, 'priority', priority, 'tags', json(tags))";

type Db = Arc<Mutex<Connection>>;

/// The error answer: status, code, message, details; the request id is added by `edge`.
#[derive(Debug)]
struct AppError(StatusCode, &'static str, &'static str, Value);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = json!({"success": false, "error": self.2, "code": self.1, "details": self.3});
        let mut response = (self.0, Json(body)).into_response();
        response.extensions_mut().insert(Enveloped);
        response
    }
}

/// Marks a response whose body is already the envelope.
#[derive(Clone, Copy)]
struct Enveloped;

fn internal(err: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %err, "internal error");
    AppError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "Internal server error",
        Value::Null,
    )
}

fn from_json_rejection(rejection: JsonRejection) -> AppError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => AppError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            Value::Null,
        ),
        JsonRejection::JsonSyntaxError(e) => AppError(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "Malformed JSON body",
            json!({"reason": e.body_text()}),
        ),
        JsonRejection::BytesRejection(_) => AppError(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
            Value::Null,
        ),
        other => AppError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "Validation error",
            json!([{"loc": ["body"], "msg": other.body_text(), "type": "invalid_type"}]),
        ),
    }
}

/// Every problem of a todo body at once, in FastAPI's shape.
fn validate(body: &Value) -> Result<(String, u8, Vec<String>), AppError> {
    let mut details = Vec::new();
    let mut problem = |loc: Value, msg: String, kind: &str| {
        details.push(json!({"loc": loc, "msg": msg, "type": kind}))
    };
    let length = |s: &str, min: usize, max: usize| -> Option<(String, &'static str)> {
        let n = s.chars().count();
        if n < min {
            Some((
                format!(
                    "String should have at least {min} character{}",
                    if min == 1 { "" } else { "s" }
                ),
                "too_short",
            ))
        } else if n > max {
            Some((
                format!("String should have at most {max} characters"),
                "too_long",
            ))
        } else {
            None
        }
    };
    let title = match body.get("title") {
        None => {
            problem(json!(["body", "title"]), "Field required".into(), "missing");
            None
        }
        Some(Value::String(t)) => match length(t, 1, 100) {
            Some((msg, kind)) => {
                problem(json!(["body", "title"]), msg, kind);
                None
            }
            None => Some(t.clone()),
        },
        Some(_) => {
            problem(
                json!(["body", "title"]),
                "Input should be a valid string".into(),
                "invalid_type",
            );
            None
        }
    };
    let priority = match body.get("priority") {
        None => {
            problem(
                json!(["body", "priority"]),
                "Field required".into(),
                "missing",
            );
            None
        }
        Some(Value::Number(n)) => match n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
        {
            Some(p @ 1..=5) => Some(p as u8),
            Some(p) if p < 1 => {
                problem(
                    json!(["body", "priority"]),
                    "Input should be greater than or equal to 1".into(),
                    "out_of_range",
                );
                None
            }
            Some(_) => {
                problem(
                    json!(["body", "priority"]),
                    "Input should be less than or equal to 5".into(),
                    "out_of_range",
                );
                None
            }
            None => {
                problem(
                    json!(["body", "priority"]),
                    "Input should be a valid integer".into(),
                    "invalid_type",
                );
                None
            }
        },
        Some(_) => {
            problem(
                json!(["body", "priority"]),
                "Input should be a valid integer".into(),
                "invalid_type",
            );
            None
        }
    };
    let mut tags = Vec::new();
    match body.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(t) => match length(t, 1, 20) {
                        Some((msg, kind)) => problem(json!(["body", "tags", i]), msg, kind),
                        None => tags.push(t.clone()),
                    },
                    _ => problem(
                        json!(["body", "tags", i]),
                        "Input should be a valid string".into(),
                        "invalid_type",
                    ),
                }
            }
        }
        Some(_) => problem(
            json!(["body", "tags"]),
            "Input should be a valid list".into(),
            "invalid_type",
        ),
    }
    match (title, priority) {
        (Some(title), Some(priority)) if details.is_empty() => Ok((title, priority, tags)),
        _ => Err(AppError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "Validation error",
            Value::Array(details),
        )),
    }
}

async fn create(
    State(db): State<Db>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(from_json_rejection)?;
    if !body.is_object() {
        return Err(AppError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "Validation error",
            json!([{"loc": ["body"], "msg": "Input should be a valid dictionary or object", "type": "invalid_type"}]),
        ));
    }
    let (title, priority, tags) = validate(&body)?;
    let tags = Value::from(tags).to_string();
    let db2 = db.clone();
    let inserted = tokio::task::spawn_blocking(move || {
        let mut conn = db2.lock().map_err(internal)?;
        let tx = conn.transaction().map_err(internal)?;
        let sql = format!(
            "INSERT INTO todos (title, priority, tags) VALUES (?1, ?2, ?3) RETURNING id, {TODO}"
        );
        let row = tx.query_row(&sql, (&title, priority, tags), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        });
        let (id, todo) = match row {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(AppError(
                    StatusCode::CONFLICT,
                    "duplicate_title",
                    "A todo with this title exists",
                    json!({"title": title}),
                ));
            }
            other => other.map_err(internal)?,
        };
        tx.execute(
            "INSERT INTO jobs (kind, payload) VALUES ('todo_created', ?1)",
            [json!({"id": id}).to_string()],
        )
        .map_err(internal)?;
        tx.commit().map_err(internal)?;
        Ok((id, todo))
    });
    let (id, todo) = inserted.await.map_err(internal)??;
    // "After the response": plain axum has no such hook; a spawned task may run before it.
    tokio::spawn(async move { tracing::info!(id, "answered") });
    let todo: Value = serde_json::from_str(&todo).map_err(internal)?;
    let location = HeaderValue::try_from(format!("/todos/{id}")).map_err(internal)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(todo),
    )
        .into_response())
}

async fn show(
    State(db): State<Db>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>, AppError> {
    let Path(id) = id.map_err(|_| AppError(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", "Validation error", json!([{"loc": ["path", "id"], "msg": "Input should be a valid integer", "type": "invalid_type"}])))?;
    let todo = tokio::task::spawn_blocking(move || {
        let conn = db.lock().map_err(internal)?;
        conn.query_row(
            &format!("SELECT {TODO} FROM todos WHERE id = ?1"),
            [id],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(internal)
    });
    let todo = todo.await.map_err(internal)??;
    let todo = todo.ok_or_else(|| {
        AppError(
            StatusCode::NOT_FOUND,
            "not_found",
            "Resource not found",
            json!({"resource": "todo", "id": id}),
        )
    })?;
    Ok(Json(serde_json::from_str(&todo).map_err(internal)?))
}

/// Request id, timeout, and the envelope for any error response made elsewhere.
async fn edge(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(id.clone());
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let response =
        match tokio::time::timeout(Duration::from_secs(10), next.run(req).instrument(span)).await {
            Ok(response) => response,
            Err(_) => AppError(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "Request timed out",
                Value::Null,
            )
            .into_response(),
        };
    let status = response.status();
    let mut response = if status.is_client_error() || status.is_server_error() {
        let enveloped = response.extensions().get::<Enveloped>().is_some();
        let (mut parts, body) = response.into_parts();
        let mut body: Value = match enveloped {
            true => serde_json::from_slice(
                &axum::body::to_bytes(body, 1 << 16)
                    .await
                    .unwrap_or_default(),
            )
            .unwrap_or(Value::Null),
            false => {
                json!({"success": false, "error": status.canonical_reason().unwrap_or("Error"), "code": "http_error", "details": null})
            }
        };
        body["request_id"] = Value::from(id.clone());
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Response::from_parts(parts, axum::body::Body::from(body.to_string()))
    } else {
        response
    };
    if let Ok(value) = HeaderValue::try_from(id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Runs due jobs one at a time until `stop`; a failed one is retried with backoff, 5 attempts.
async fn worker(db: Db, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let db2 = db.clone();
        let claimed = tokio::task::spawn_blocking(
            move || -> rusqlite::Result<Option<(i64, String, i64)>> {
                let conn = db2.lock().map_err(|_| rusqlite::Error::InvalidQuery)?;
                conn.query_row("UPDATE jobs SET state = 'running', attempts = attempts + 1 WHERE id = (SELECT id FROM jobs WHERE state = 'pending' AND run_at <= unixepoch() ORDER BY id LIMIT 1) RETURNING id, payload, attempts", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()
            },
        );
        let Ok(Ok(Some((job, payload, attempts)))) = claimed.await else {
            tokio::select! { () = stop.cancelled() => break, () = tokio::time::sleep(Duration::from_millis(100)) => continue }
        };
        let outcome: Result<(), String> = serde_json::from_str::<Value>(&payload)
            .map_err(|e| e.to_string())
            .map(|p| tracing::info!(id = %p["id"], "todo_created ran"));
        let db2 = db.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let conn = db2.lock().map_err(|_| rusqlite::Error::InvalidQuery)?;
            match outcome {
                Ok(()) => conn.execute("UPDATE jobs SET state = 'succeeded' WHERE id = ?1", [job]),
                Err(e) if attempts >= 5 => conn.execute("UPDATE jobs SET state = 'dead', last_error = ?2 WHERE id = ?1", (job, e)),
                Err(e) => conn.execute("UPDATE jobs SET state = 'pending', last_error = ?2, run_at = unixepoch() + (1 << ?3) WHERE id = ?1", (job, e, attempts)),
            }
        })
        .await;
    }
}

#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = tracing_subscriber::fmt().try_init();
    let addr = std::env::var("KEEL_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let conn =
        Connection::open(std::env::var("KEEL_EXAMPLE_DB").unwrap_or_else(|_| "todos.db".into()))?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; {SCHEMA}"
    ))?;
    let db: Db = Arc::new(Mutex::new(conn));
    let stop = CancellationToken::new();
    let jobs = tokio::spawn(worker(db.clone(), stop.clone()));

    let app = Router::new()
        .route("/todos", post(create))
        .route("/todos/{id}", get(show))
        .route("/panic", get(|| async { panic!("a bug") as &'static str }))
        .fallback(|| async {
            AppError(
                StatusCode::NOT_FOUND,
                "route_not_found",
                "Route not found",
                Value::Null,
            )
        })
        .method_not_allowed_fallback(|| async {
            AppError(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
                Value::Null,
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
        .layer(CatchPanicLayer::custom(|_| {
            internal("handler panicked").into_response()
        }))
        .layer(middleware::from_fn(edge))
        .with_state(db);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "todos (plain axum) listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    stop.cancel();
    jobs.await?;
    Ok(())
}
