//! The PostgreSQL baseline of `bench/http.sh` (`ENGINE=postgres`): what bare axum and sqlx give
//! on the same database, with nothing of keel or shop's store in the way:
//!
//! - `GET /users/{id}`: one query on a pool of 16 connections.
//! - `POST /users`: a transaction that inserts the user and its welcome job row.
//!
//! Its tables are a user table and a job table of the same columns as shop's, in the schema the
//! URL's `search_path` names. No validation beyond serde, no request id, no envelope, no jobs
//! run, no mail written.
//!
//! `cargo run --release -p bench --bin postgres_limit -- 127.0.0.1:8002 postgres://…`

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bench::{error, server_args};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      TEXT        NOT NULL UNIQUE,
    username   TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS users_username_key ON users (lower(username));
CREATE TABLE IF NOT EXISTS jobs (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue      TEXT        NOT NULL,
    kind       TEXT        NOT NULL,
    payload    TEXT        NOT NULL,
    state      TEXT        NOT NULL DEFAULT 'pending',
    run_at     BIGINT      NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (run_at) WHERE state = 'pending';
";

const USER: &str = "id, email, username, \
    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS created_at";

#[derive(serde::Deserialize)]
struct NewUser {
    email: String,
    username: String,
}

#[derive(serde::Serialize, sqlx::FromRow)]
struct User {
    id: i64,
    email: String,
    username: String,
    created_at: String,
}

async fn create(State(pool): State<PgPool>, Json(new): Json<NewUser>) -> Response {
    let created = async {
        let mut tx = pool.begin().await?;
        let user: User = sqlx::query_as(&format!(
            "INSERT INTO users (email, username) VALUES ($1, $2) RETURNING {USER}"
        ))
        .bind(new.email.to_lowercase())
        .bind(&new.username)
        .fetch_one(&mut *tx)
        .await?;
        let payload = json!({"user_id": user.id, "email": user.email, "username": user.username});
        sqlx::query(
            "INSERT INTO jobs (queue, kind, payload, run_at) \
             VALUES ('email', 'welcome_email', $1, (extract(epoch FROM now()) * 1000)::bigint)",
        )
        .bind(payload.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(user)
    };
    match created.await {
        Ok(user) => (StatusCode::CREATED, Json(user)).into_response(),
        Err(_) => StatusCode::CONFLICT.into_response(),
    }
}

async fn show(State(pool): State<PgPool>, Path(id): Path<i64>) -> Response {
    let user: Result<Option<User>, _> =
        sqlx::query_as(&format!("SELECT {USER} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&pool)
            .await;
    match user {
        Ok(Some(user)) => Json(user).into_response(),
        Ok(None) => {
            let details = json!({"resource": "user", "id": id});
            error(StatusCode::NOT_FOUND, "not_found", details)
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[tokio::main]
async fn main() {
    let (addr, url) = server_args("127.0.0.1:8002", "postgres://postgres@127.0.0.1:5432/test");
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await
        .expect("second argument: a postgres:// URL");
    sqlx::raw_sql(SCHEMA)
        .execute(&pool)
        .await
        .expect("create the tables");
    let app = Router::new()
        .route("/users", post(create))
        .route("/users/{id}", get(show))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("cannot listen");
    axum::serve(listener, app).await.expect("server failed");
}
