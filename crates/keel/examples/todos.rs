//! A complete keel service: todos on SQLite or PostgreSQL, every failure in the envelope.
//! `cargo run -p keel --example todos` serves on `KEEL_EXAMPLE_ADDR` (127.0.0.1:3000), database
//! `KEEL_EXAMPLE_DB`: a SQLite file (todos.db) or a `postgres://` URL, with the same answers:
//! `POST /todos` → 201, 409 `duplicate_title` or 422 listing every problem;
//! `GET /todos/{id}` → 200 or 404; each new todo's job `todo_created` runs once, durably, and
//! `/todos/live` (WebSocket) gets each new todo; SIGINT or SIGTERM closes it with 1001.
//! `/openapi.json` documents both routes from the same declarations that validate them.
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;
use keel::db::{Db, Schema};
use keel::jobs::{postgres::MIGRATIONS as PG_QUEUE, sqlite::MIGRATIONS as SQLITE_QUEUE};
use keel::migration::Migration;
use keel::prelude::*;
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Each engine's migrations: keel's queue, then the todos. Each SQL pair: SQLite's, PostgreSQL's.
const SCHEMA: Schema = Schema {
    sqlite: &[
        SQLITE_QUEUE[0],
        SQLITE_QUEUE[1],
        SQLITE_QUEUE[2],
        Migration::new(4, "todos", TODOS[0]),
    ],
    postgres: &[
        PG_QUEUE[0],
        PG_QUEUE[1],
        Migration::new(3, "todos", TODOS[1]),
    ],
};
const TODOS: [&str; 2] = [
    "CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL UNIQUE COLLATE NOCASE, priority INTEGER NOT NULL, tags TEXT NOT NULL)",
    "CREATE TABLE todos (id BIGSERIAL PRIMARY KEY, title TEXT NOT NULL, priority SMALLINT NOT NULL, tags JSONB NOT NULL);
     CREATE UNIQUE INDEX todos_title ON todos (lower(title))",
];
/// A todo as the API shows it, made by the database: SQLite's, then PostgreSQL's.
const INSERT: [&str; 2] = [
    "INSERT INTO todos (title, priority, tags) VALUES (?1, ?2, ?3) RETURNING id, json_object('id', id, 'title', title, 'priority', priority, 'tags', json(tags))",
    "INSERT INTO todos (title, priority, tags) VALUES ($1, $2, $3::jsonb) RETURNING id, json_build_object('id', id, 'title', title, 'priority', priority, 'tags', tags)::text",
];
const SELECT: [&str; 2] = [
    "SELECT json_object('id', id, 'title', title, 'priority', priority, 'tags', json(tags)) FROM todos WHERE id = ?1",
    "SELECT json_build_object('id', id, 'title', title, 'priority', priority, 'tags', tags)::text FROM todos WHERE id = $1",
];

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

#[utoipa::path(post, path = "/todos", request_body = NewTodo, responses(
    (status = 201, description = "Created"), (status = 409, description = "`duplicate_title`"),
    (status = 422, description = "Every problem of the body")))]
async fn create(
    State(app): State<App>,
    tasks: Tasks,
    Valid(new): Valid<NewTodo>,
) -> Result<Response, ApiError> {
    let (title, priority) = (new.title.clone(), new.priority);
    let tags = json!(new.tags.unwrap_or_default()).to_string();
    let duplicate = || ApiError::from(DuplicateTitle(title.clone()));
    let (id, todo): (i64, String) = match &app.db {
        Db::Sqlite { db, jobs } => {
            let jobs = jobs.clone();
            let written = db.writer().write(move |conn| {
                let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
                let (id, todo) = conn.query_row(INSERT[0], (new.title, priority, tags), row)?;
                jobs.enqueue(conn, &TodoCreated { id })?; // committed with the todo, or not at all
                Ok::<_, keel::sqlite::Error>((id, todo))
            });
            match written.await {
                Err(err) if err.is_constraint_violation() => return Err(duplicate()),
                written => written?,
            }
        }
        Db::Postgres { pool, jobs } => {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query_as(INSERT[1])
                .bind(new.title)
                .bind(i16::from(priority));
            let (id, todo) = match inserted.bind(tags).fetch_one(&mut *tx).await {
                Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
                    return Err(duplicate())
                }
                inserted => inserted?,
            };
            jobs.enqueue(&mut tx, &TodoCreated { id }).await?; // committed with the todo
            tx.commit().await?;
            (id, todo)
        }
    };
    app.db.wake();
    let (hub, live) = (app.hub.clone(), todo.clone());
    tasks.add("publish", async move { hub.publish("/todos/live", live) }); // after the response
    let todo: Value = serde_json::from_str(&todo).map_err(ApiError::internal)?;
    Ok(keel::created(format!("/todos/{id}"), todo))
}

#[utoipa::path(get, path = "/todos/{id}", params(("id" = i64, Path)),
    responses((status = 200, description = "The todo"), (status = 404, description = "No such todo")))]
async fn show(State(app): State<App>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let todo: Option<String> = match &app.db {
        Db::Sqlite { db, .. } => db
            .readers()
            .read(|c| c.query_row(SELECT[0], [id], |r| r.get(0)).optional())?,
        Db::Postgres { pool, .. } => {
            sqlx::query_scalar(SELECT[1])
                .bind(id)
                .fetch_optional(pool)
                .await?
        }
    };
    let todo = todo.ok_or_else(|| ApiError::not_found("todo", id))?;
    serde_json::from_str(&todo)
        .map(Json)
        .map_err(ApiError::internal)
}

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
        .route("/todos", post(create))
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
