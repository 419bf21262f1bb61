//! sqlx errors from the real PostgreSQL, mapped to the envelope: a violated constraint names
//! its field from the constraint's name; a server that cannot be reached, or a lock not
//! granted in time, is 503 with `Retry-After`.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use http::header::RETRY_AFTER;
use keel::ApiError;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;

async fn schema() -> Option<common::pg::Schema> {
    let schema = common::pg::Schema::create().await?;
    sqlx::raw_sql(
        "CREATE TABLE users (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
           email TEXT NOT NULL CONSTRAINT users_email_key UNIQUE, username TEXT NOT NULL);
         CREATE UNIQUE INDEX users_username_key ON users (lower(username));
         CREATE TABLE orders (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
           user_id BIGINT NOT NULL CONSTRAINT orders_user_id_fkey REFERENCES users (id), \
           quantity BIGINT NOT NULL CONSTRAINT orders_quantity_check CHECK (quantity > 0));
         CREATE TABLE pairs (a TEXT, b TEXT, CONSTRAINT pairs_a_b UNIQUE (a, b));
         INSERT INTO users (email, username) VALUES ('a@b.io', 'Ada');
         INSERT INTO pairs VALUES ('x', 'y');",
    )
    .execute(&schema.pool)
    .await
    .unwrap();
    Some(schema)
}

#[tokio::test]
async fn violations_are_409_naming_the_field_from_the_constraint() {
    let Some(schema) = schema().await else {
        return;
    };
    for (sql, details) in [
        (
            "INSERT INTO users (email, username) VALUES ('a@b.io', 'bob')",
            json!({"field": "email"}),
        ),
        (
            "INSERT INTO users (email, username) VALUES ('b@b.io', 'ADA')",
            json!({"field": "username"}),
        ),
        (
            "INSERT INTO orders (user_id, quantity) VALUES (999, 1)",
            json!({"field": "user_id"}),
        ),
        (
            "INSERT INTO orders (user_id, quantity) VALUES (1, 0)",
            json!({"field": "quantity"}),
        ),
    ] {
        let err: ApiError = sqlx::query(sql)
            .execute(&schema.pool)
            .await
            .unwrap_err()
            .into();
        assert_eq!(
            (err.status().as_u16(), err.code()),
            (409, "conflict"),
            "{sql}"
        );
        assert_eq!(err.details(), Some(&details), "{sql}");
    }
    // A constraint whose name says no single column names none.
    let err: ApiError = sqlx::query("INSERT INTO pairs VALUES ('x', 'y')")
        .execute(&schema.pool)
        .await
        .unwrap_err()
        .into();
    assert_eq!((err.status().as_u16(), err.code()), (409, "conflict"));
    assert_eq!(err.details(), None);
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_is_503_with_retry_after() {
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/test"))
        .unwrap();
    let err: ApiError = sqlx::query("SELECT 1")
        .execute(&pool)
        .await
        .unwrap_err()
        .into();
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (503, "service_unavailable")
    );
    let response = axum::response::IntoResponse::into_response(err);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
}

#[tokio::test]
async fn a_lock_not_granted_within_lock_timeout_is_503() {
    let Some(schema) = schema().await else {
        return;
    };
    let mut holder = schema.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE users IN EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let mut waiter = schema.pool.acquire().await.unwrap();
    sqlx::query("SET lock_timeout = '200ms'")
        .execute(&mut *waiter)
        .await
        .unwrap();
    let err: ApiError = sqlx::query("INSERT INTO users (email, username) VALUES ('c@b.io', 'cy')")
        .execute(&mut *waiter)
        .await
        .unwrap_err()
        .into();
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (503, "service_unavailable")
    );
    holder.rollback().await.unwrap();
}
