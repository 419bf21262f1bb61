//! The SQLite store under the service: group commit seen from HTTP, retention, and one process
//! per database file.
#![allow(clippy::unwrap_used)]
mod common;

use std::collections::BTreeSet;

use common::{eventually, spawn_app, spawn_app_with};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signups_commit_together_and_only_the_collisions_are_409() {
    let app = spawn_app().await;
    app.create_user("taken@example.com", "taken").await;
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..64 {
        // Every eighth reuses the taken email, in another case.
        let email = if n % 8 == 0 {
            "TAKEN@example.com".to_owned()
        } else {
            format!("user{n}@example.com")
        };
        let body = json!({"email": email, "username": format!("user_{n}")});
        let (client, url) = (app.client.clone(), app.url("/users"));
        requests.spawn(async move {
            let res = client.post(url).json(&body).send().await.unwrap();
            (n, res.status().as_u16(), res.json::<Value>().await.unwrap())
        });
    }
    let mut created = BTreeSet::new();
    for (n, status, body) in requests.join_all().await {
        if n % 8 == 0 {
            assert_eq!(status, 409, "{n}: {body}");
            assert_eq!(body["details"], json!({"field": "email"}));
        } else {
            assert_eq!(status, 201, "{n}: {body}");
            // Answered after the commit: the user is there to read.
            let id = body["id"].as_i64().unwrap();
            let read = app.get(&format!("/users/{id}")).await;
            assert_eq!(read.status(), 200);
            assert_eq!(read.json::<Value>().await.unwrap(), body);
            created.insert(id);
        }
    }
    assert_eq!(created.len(), 56);

    // Each created user has exactly one welcome job; the collisions left none.
    let mut db = app.db().await;
    let jobs: Vec<(i64,)> = sqlx::query_as(common::sql(
        "SELECT json_extract(payload, '$.user_id') FROM keel_jobs WHERE kind = 'welcome_email'",
        "SELECT (payload::json ->> 'user_id')::bigint FROM keel_jobs WHERE kind = 'welcome_email'",
    ))
    .fetch_all(&mut db)
    .await
    .unwrap();
    let with_job: BTreeSet<i64> = jobs.into_iter().map(|(id,)| id).collect();
    assert_eq!(with_job.len(), 57);
    assert!(created.is_subset(&with_job));
}

async fn count(app: &common::TestApp, sql: &str) -> i64 {
    let mut db = app.db().await;
    sqlx::query_scalar(sql).fetch_one(&mut db).await.unwrap()
}

async fn execute(app: &common::TestApp, sql: &'static str) {
    let mut db = app.db().await;
    sqlx::raw_sql(sql).execute(&mut db).await.unwrap();
}

#[tokio::test]
async fn retention_deletes_only_what_is_finished_and_older_than_the_setting() {
    let app = spawn_app_with(|c| {
        c.retention_days = 7;
        c.retention_interval_secs = 1;
    })
    .await;
    for n in 0..4 {
        app.create_user(&format!("user{n}@example.com"), &format!("user_{n}"))
            .await;
    }
    eventually(10, "the four mails and events", || async {
        let done = count(
            &app,
            "SELECT COUNT(*) FROM keel_jobs WHERE state = 'succeeded'",
        )
        .await;
        let events = count(&app, "SELECT COUNT(*) FROM analytics_events").await;
        (done == 4 && events == 4).then_some(())
    })
    .await;
    // Two finished jobs and two events aged past the setting; a pending job aged too, and a
    // finished one just inside it.
    execute(
        &app,
        common::sql(
            "UPDATE keel_jobs SET finished_at = '2020-01-01T00:00:00.000Z' WHERE id IN (1, 2);
             UPDATE keel_jobs SET finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-6 days')
               WHERE id = 3;
             INSERT INTO keel_jobs (queue, kind, payload, max_attempts, run_at, created_at)
               VALUES ('email', 'later', '{}', 8, 9999999999999, '2020-01-01T00:00:00.000Z');
             UPDATE analytics_events SET created_at = '2020-01-01T00:00:00.000Z' WHERE id IN (1, 2);",
            "UPDATE keel_jobs SET finished_at = '2020-01-01T00:00:00Z' WHERE id IN (1, 2);
             UPDATE keel_jobs SET finished_at = now() - interval '6 days' WHERE id = 3;
             INSERT INTO keel_jobs (queue, kind, payload, max_attempts, run_at, created_at)
               VALUES ('email', 'later', '{}', 8, 9999999999999, '2020-01-01T00:00:00Z');
             UPDATE analytics_events SET created_at = '2020-01-01T00:00:00Z' WHERE id IN (1, 2);",
        ),
    )
    .await;
    eventually(10, "the old rows to go", || async {
        (count(&app, "SELECT COUNT(*) FROM keel_jobs").await == 3).then_some(())
    })
    .await;
    let jobs: Vec<(i64, String)> = {
        let mut db = app.db().await;
        sqlx::query_as("SELECT id, state FROM keel_jobs ORDER BY id")
            .fetch_all(&mut db)
            .await
            .unwrap()
    };
    assert_eq!(
        jobs,
        vec![
            (3, "succeeded".to_owned()),
            (4, "succeeded".to_owned()),
            (5, "pending".to_owned())
        ]
    );
    let events: Vec<(i64,)> = {
        let mut db = app.db().await;
        sqlx::query_as("SELECT id FROM analytics_events ORDER BY id")
            .fetch_all(&mut db)
            .await
            .unwrap()
    };
    assert_eq!(events, vec![(3,), (4,)]);
}
