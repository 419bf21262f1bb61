//! sqlx errors from a real SQLite database, mapped to the envelope's statuses and codes.
#![cfg(feature = "sqlx")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http::header::RETRY_AFTER;
use keel::error::ResultExt;
use keel::ApiError;
use serde_json::json;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::SqlitePool;

async fn pool() -> SqlitePool {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200))
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::query(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE);
         CREATE TABLE pairs (a TEXT, b TEXT, UNIQUE (a, b));
         CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id));
         INSERT INTO users (email) VALUES ('a@b.io');
         INSERT INTO pairs VALUES ('x', 'y');",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool
}

fn response_of(err: ApiError) -> http::Response<axum::body::Body> {
    axum::response::IntoResponse::into_response(err)
}

#[tokio::test]
async fn a_unique_violation_is_409_naming_the_column() {
    let pool = pool().await;
    let err: ApiError = sqlx::query("INSERT INTO users (email) VALUES ('a@b.io')")
        .execute(&pool)
        .await
        .unwrap_err()
        .into();
    assert_eq!(err.status(), 409);
    assert_eq!(err.code(), "conflict");
    assert_eq!(err.details(), Some(&json!({"field": "email"})));
}

#[tokio::test]
async fn a_composite_unique_or_foreign_key_violation_is_409_without_a_field() {
    let pool = pool().await;
    for sql in [
        "INSERT INTO pairs VALUES ('x', 'y')",
        "INSERT INTO orders (user_id) VALUES (999)",
    ] {
        let err: ApiError = sqlx::query(sql).execute(&pool).await.unwrap_err().into();
        assert_eq!(
            (err.status().as_u16(), err.code()),
            (409, "conflict"),
            "{sql}"
        );
        assert_eq!(err.details(), None, "{sql}");
    }
}

#[tokio::test]
async fn row_not_found_is_404_and_can_name_the_record() {
    let pool = pool().await;
    let fetch =
        || sqlx::query_scalar::<_, i64>("SELECT id FROM users WHERE id = 7").fetch_one(&pool);
    let err: ApiError = fetch().await.unwrap_err().into();
    assert_eq!((err.status().as_u16(), err.code()), (404, "not_found"));
    let err = fetch().await.not_found("user", 7).unwrap_err();
    assert_eq!(err.details(), Some(&json!({"resource": "user", "id": 7})));
}

#[tokio::test]
async fn an_exhausted_pool_is_503_with_retry_after() {
    let pool = pool().await;
    let _held = pool.acquire().await.unwrap();
    let err: ApiError = sqlx::query("SELECT 1")
        .execute(&pool)
        .await
        .unwrap_err()
        .into();
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (503, "service_unavailable")
    );
    assert_eq!(response_of(err).headers()[RETRY_AFTER], "1");
}

#[tokio::test]
async fn any_other_database_error_is_500_and_hides_the_driver_message() {
    let pool = pool().await;
    let err: ApiError = sqlx::query("SELEKT nonsense FROM users")
        .execute(&pool)
        .await
        .unwrap_err()
        .into();
    assert_eq!((err.status().as_u16(), err.code()), (500, "internal_error"));
    assert_eq!(err.message(), "Internal server error");
    assert_eq!(err.details(), None);
    assert!(std::error::Error::source(&err)
        .unwrap()
        .to_string()
        .contains("SELEKT"));
}

#[tokio::test]
async fn on_constraint_matches_sqlite_violations_by_column() {
    let pool = pool().await;
    let taken = || ApiError::new(http::StatusCode::CONFLICT, "email_taken", "Email taken");
    for name in ["email", "users.email"] {
        let err = sqlx::query("INSERT INTO users (email) VALUES ('a@b.io')")
            .execute(&pool)
            .await
            .on_constraint(name, |_| taken())
            .unwrap_err();
        assert_eq!(err.code(), "email_taken", "{name}");
    }
    let err = sqlx::query("INSERT INTO pairs VALUES ('x', 'y')")
        .execute(&pool)
        .await
        .on_constraint("pairs.a, pairs.b", |_| taken())
        .unwrap_err();
    assert_eq!(err.code(), "email_taken");
    // Another constraint falls through to the default mapping.
    let err = sqlx::query("INSERT INTO users (email) VALUES ('a@b.io')")
        .execute(&pool)
        .await
        .on_constraint("username", |_| taken())
        .unwrap_err();
    assert_eq!(
        (err.code(), err.details()),
        ("conflict", Some(&json!({"field": "email"})))
    );
}
