//! A complete keel service: todos on SQLite or PostgreSQL, every failure in the envelope.
//! `cargo run -p keel --example todos` serves on `KEEL_EXAMPLE_ADDR` (127.0.0.1:3000), database
//! `KEEL_EXAMPLE_DB`: a SQLite file (todos.db) or a `postgres://` URL, with the same answers:
//! `POST /todos` → 201, 409 `duplicate_title` or 422 listing every problem;
//! `GET /todos/{id}` → 200 or 404; each new todo's job `todo_created` runs once, durably, and
//! `/todos/live` (WebSocket) gets each new todo; SIGINT or SIGTERM closes it with 1001.
//! `/openapi.json` documents both routes from the same declarations that validate them.
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header::CONTENT_TYPE, StatusCode};
use keel::db::{Db, Schema};
use keel::idempotency::{self as answers, Answer, Idempotency, IdempotencyLayer, Saved};
use keel::jobs::{postgres::MIGRATIONS as PG_QUEUE, sqlite::MIGRATIONS as SQLITE_QUEUE};
use keel::migration::Migration;
use keel::prelude::*;
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::query_scalar;

/// Each engine's migrations: keel's queue and answers, then the todos.
const SCHEMA: Schema = Schema {
    sqlite: &[
        SQLITE_QUEUE[0],
        SQLITE_QUEUE[1],
        SQLITE_QUEUE[2],
        answers::sqlite::MIGRATIONS[0].at(4),
        Migration::new(5, "todos", TODOS[0]),
    ],
    postgres: &[
        PG_QUEUE[0],
        PG_QUEUE[1],
        answers::postgres::MIGRATIONS[0].at(3),
        Migration::new(4, "todos", TODOS[1]),
    ],
};
/// Each engine's table, and the view showing a todo as the API does (the same bytes on both).
const TODOS: [&str; 2] = [
    "CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL UNIQUE COLLATE NOCASE, priority INTEGER NOT NULL, tags TEXT NOT NULL);
     CREATE VIEW todo_json AS SELECT id, json_object('id', id, 'title', title, 'priority', priority, 'tags', json(tags)) AS json FROM todos",
    "CREATE TABLE todos (id BIGSERIAL PRIMARY KEY, title TEXT NOT NULL, priority SMALLINT NOT NULL, tags TEXT NOT NULL);
     CREATE UNIQUE INDEX todos_title ON todos (lower(title));
     CREATE VIEW todo_json AS SELECT t.id, row_to_json(t)::text AS json FROM (SELECT id, title, priority, tags::json AS tags FROM todos) t",
];
/// SQL both engines read alike (SQLite takes `$1` as its first parameter).
const INSERT: &str = "INSERT INTO todos (title, priority, tags) VALUES ($1, $2, $3) RETURNING id";
const SELECT: &str = "SELECT json FROM todo_json WHERE id = $1";

/// A todo to create.
#[derive(Debug, Validate)]
struct NewTodo {
    #[validate(length(min = 1, max = 100))]
    title: String,
    /// 1 (lowest) to 5.
    #[validate(range(ge = 1, le = 5))]
    priority: u8,
    #[validate(each(length(min = 1, max = 20)))]
    tags: Option<Vec<String>>,
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(create, show))]
struct Api;

#[derive(Debug, thiserror::Error)]
#[error("A todo with this title exists")]
struct DuplicateTitle(String);

impl DomainError for DuplicateTitle {
    fn status(&self) -> StatusCode {
        StatusCode::CONFLICT
    }
    fn code(&self) -> &'static str {
        "duplicate_title"
    }
    fn details(&self) -> Option<Value> {
        Some(json!({"title": self.0}))
    }
}

#[derive(Serialize, Deserialize)]
struct TodoCreated {
    id: i64,
}

impl Job for TodoCreated {
    const KIND: &'static str = "todo_created";
}

#[derive(Clone)]
struct App {
    db: Db,
    hub: Hub,
}

#[utoipa::path(post, path = "/todos", request_body = NewTodo, params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, description = "Created"), (status = 409, description = "`duplicate_title`"),
    (status = 422, description = "Every problem of the body")))]
async fn create(
    State(app): State<App>,
    tasks: Tasks,
    key: Idempotency,
    Valid(new): Valid<NewTodo>,
) -> Result<Saved, ApiError> {
    let (title, priority) = (new.title.clone(), i16::from(new.priority));
    let tags = json!(new.tags.unwrap_or_default()).to_string();
    // The todo, its job and the answer to its Idempotency-Key commit together, or none does.
    let written = match &app.db {
        Db::Sqlite { db, jobs } => {
            let jobs = jobs.clone();
            let insert = move |conn: &rusqlite::Connection| {
                let id = conn.query_row(INSERT, (new.title, priority, tags), |r| r.get(0))?;
                jobs.enqueue(conn, &TodoCreated { id })?;
                let todo: String = conn.query_row(SELECT, [id], |r| r.get(0))?;
                let answer = Answer::created(&format!("/todos/{id}"), todo)?;
                Ok::<_, ApiError>(answers::sqlite::save_answer(conn, &key, answer)?)
            };
            db.writer().write(insert).await
        }
        Db::Postgres { pool, jobs } => {
            let insert = async {
                let mut tx = pool.begin().await?;
                let query = query_scalar(INSERT).bind(new.title).bind(priority);
                let id = query.bind(tags).fetch_one(&mut *tx).await?;
                jobs.enqueue(&mut tx, &TodoCreated { id }).await?;
                let todo: String = query_scalar(SELECT).bind(id).fetch_one(&mut *tx).await?;
                let answer = Answer::created(&format!("/todos/{id}"), todo)?;
                let saved = answers::postgres::save_answer(&mut tx, &key, answer).await?;
                tx.commit().await?;
                Ok::<_, ApiError>(saved)
            };
            insert.await
        }
    };
    let saved = match written {
        Err(err) if err.code() == "conflict" => return Err(DuplicateTitle(title).into()),
        written => written?,
    };
    app.db.wake();
    let (hub, todo) = (app.hub.clone(), saved.json().to_owned());
    tasks.add("publish", async move { hub.publish("/todos/live", todo) }); // after the response
    Ok(saved)
}

#[utoipa::path(get, path = "/todos/{id}", params(("id" = i64, Path)),
    responses((status = 200, description = "The todo"), (status = 404, description = "No such todo")))]
async fn show(State(app): State<App>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    let todo: Option<String> = match &app.db {
        Db::Sqlite { db, .. } => {
            let read =
                |c: &rusqlite::Connection| c.query_row(SELECT, [id], |r| r.get(0)).optional();
            db.readers().read(read)?
        }
        Db::Postgres { pool, .. } => query_scalar(SELECT).bind(id).fetch_optional(pool).await?,
    };
    let todo = todo.ok_or_else(|| ApiError::not_found("todo", id))?;
    Ok(([(CONTENT_TYPE, "application/json")], todo).into_response())
}

/// How long an `Idempotency-Key`'s answer is replayed.
const DAY: Duration = Duration::from_secs(24 * 3600);

async fn live(State(app): State<App>, WsUpgrade(ws): WsUpgrade) -> Response {
    app.hub.serve(ws, "/todos/live", |_| {}) // what clients send is ignored
}

#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = tracing_subscriber::fmt().try_init();
    let addr = std::env::var("KEEL_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let url = std::env::var("KEEL_EXAMPLE_DB").unwrap_or_else(|_| "todos.db".into());
    let db = Db::open(&url, &SCHEMA).await?; // migrates, at every start

    let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
    let hub = Hub::new(WsConfig::default());
    let registry = Registry::new().register(|job: TodoCreated, _: JobMeta| async move {
        tracing::info!(id = job.id, "todo_created ran");
        Ok::<(), JobError>(())
    });
    let config = WorkerConfig::default();
    db.jobs()
        .spawn_workers(registry, config, stop.clone(), &tracker);

    let routes = Router::new()
        .route(
            "/todos",
            answers::post(create, IdempotencyLayer::new(db.answers(DAY))),
        )
        .route("/todos/{id}", get(show))
        .route("/todos/live", get(live))
        .route(
            "/openapi.json",
            get(|| async { Json(<Api as utoipa::OpenApi>::openapi()) }),
        )
        .route("/panic", get(|| async { panic!("a bug") as &'static str }));
    let app = ServiceLayers::new()
        .timeout(Duration::from_secs(10))
        .task_tracker(tracker.clone())
        .apply(routes)
        .with_state(App {
            db: db.clone(),
            hub: hub.clone(),
        });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "todos listening");
    // On SIGINT or SIGTERM: WebSockets get 1001 at once, requests in flight finish.
    let shutdown = hub.close_on(keel::serve::shutdown_signal());
    Server::new().serve(listener, app, shutdown).await?;
    hub.shutdown(Duration::from_secs(5)).await; // the close frames go out

    stop.cancel(); // workers stop claiming; running jobs get their grace period
    tracker.close();
    tracker.wait().await;
    db.close().await;
    Ok(())
}
