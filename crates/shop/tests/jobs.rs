//! Durable background work of `POST /users`: the welcome mail over a real SMTP server or as an
//! `.eml` file, retries, dead jobs, and the analytics event after the response.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::{Duration, Instant};

use common::smtp::{Behaviour, SmtpSink};
use common::{eventually, spawn_app, spawn_app_with};
use serde_json::json;

type JobRow = (String, i64, Option<String>, Option<String>);

async fn jobs(app: &common::TestApp) -> Vec<JobRow> {
    let mut db = app.db().await;
    sqlx::query_as("SELECT state, attempts, last_error, request_id FROM keel_jobs ORDER BY id")
        .fetch_all(&mut db)
        .await
        .unwrap()
}

async fn job_in_state(app: &common::TestApp, state: &'static str) -> JobRow {
    eventually(10, state, || async {
        jobs(app).await.into_iter().find(|job| job.0 == state)
    })
    .await
}

#[tokio::test]
async fn the_welcome_mail_goes_out_over_smtp_with_the_request_id_on_its_job() {
    let smtp = SmtpSink::start(Behaviour::default()).await;
    let app = spawn_app_with(|c| c.smtp_url = Some(smtp.url())).await;
    let res = app
        .post_json_as(
            "/users",
            &json!({"email": "Ada@Example.com", "username": "ada"}),
            "signup-1",
        )
        .await;
    assert_eq!(res.status(), 201);

    let mail = eventually(10, "the welcome mail", || async { smtp.accepted().pop() }).await;
    assert_eq!(mail.to, vec!["ada@example.com".to_owned()]);
    assert!(
        mail.data.contains("Subject: Welcome to our service!\r\n"),
        "{}",
        mail.data
    );
    assert!(
        mail.data.contains("To: ada@example.com\r\n"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("Hello ada,"), "{}", mail.data);

    let job = job_in_state(&app, "succeeded").await;
    assert_eq!((job.1, job.3.as_deref()), (1, Some("signup-1")));
    assert_eq!(smtp.accepted().len(), 1);
}

#[tokio::test]
async fn without_smtp_the_welcome_mail_is_an_eml_file() {
    let app = spawn_app().await;
    app.create_user("grace@example.com", "grace").await;
    let file = eventually(10, "an .eml file", || async {
        std::fs::read_dir(&app.mail_dir)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .map(|e| e.path())
    })
    .await;
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        text.contains("Subject: Welcome to our service!\r\n"),
        "{text}"
    );
    assert!(text.contains("To: grace@example.com\r\n"), "{text}");
    job_in_state(&app, "succeeded").await;
}

#[tokio::test]
async fn an_smtp_server_that_refuses_at_first_is_retried_until_it_accepts() {
    let smtp = SmtpSink::start(Behaviour {
        refuse_first: 2,
        ..Behaviour::default()
    })
    .await;
    let app = spawn_app_with(|c| c.smtp_url = Some(smtp.url())).await;
    app.create_user("ada@example.com", "ada").await;

    let job = job_in_state(&app, "succeeded").await;
    assert_eq!(job.1, 3, "two refusals, then success");
    assert!(job.2.unwrap().contains("451"));
    assert_eq!((smtp.transactions(), smtp.accepted().len()), (3, 1));
}

#[tokio::test]
async fn an_smtp_server_that_always_refuses_leaves_the_job_dead_after_max_attempts() {
    let smtp = SmtpSink::start(Behaviour {
        refuse_all: true,
        ..Behaviour::default()
    })
    .await;
    let app = spawn_app_with(|c| {
        c.smtp_url = Some(smtp.url());
        c.job_max_attempts = 3;
    })
    .await;
    app.create_user("ada@example.com", "ada").await;

    let job = job_in_state(&app, "dead").await;
    assert_eq!(job.1, 3);
    let error = job.2.unwrap();
    assert!(error.contains("451"), "{error}");
    assert_eq!((smtp.transactions(), smtp.accepted().len()), (3, 0));
}

#[tokio::test]
async fn a_slow_smtp_server_does_not_slow_the_response() {
    let smtp = SmtpSink::start(Behaviour {
        delay: Duration::from_secs(2),
        ..Behaviour::default()
    })
    .await;
    let app = spawn_app_with(|c| c.smtp_url = Some(smtp.url())).await;
    let started = Instant::now();
    app.create_user("ada@example.com", "ada").await;
    let answered = started.elapsed();
    assert!(
        answered < Duration::from_millis(1500),
        "answered after {answered:?}"
    );

    eventually(10, "the slow mail", || async { smtp.accepted().pop() }).await;
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn a_user_that_is_not_created_enqueues_no_mail() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "ada").await;
    let res = app
        .post_json(
            "/users",
            &json!({"email": "ADA@example.com", "username": "other"}),
        )
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(jobs(&app).await.len(), 1);
}

#[tokio::test]
async fn user_and_order_analytics_events_are_recorded_after_the_response() {
    let app = spawn_app().await;
    let res = app
        .post_json_as(
            "/users",
            &json!({"email": "ada@example.com", "username": "ada"}),
            "analytics-1",
        )
        .await;
    assert_eq!(res.status(), 201);
    app.create_product("Lamp", 250, 5).await;
    let res = app
        .post_json_as(
            "/orders",
            &json!({"user_id": 1, "product_id": 1, "quantity": 2}),
            "analytics-2",
        )
        .await;
    assert_eq!(res.status(), 201);

    let events: Vec<(String, String, Option<String>)> = eventually(10, "two events", || async {
        let mut db = app.db().await;
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT name, CAST(properties AS TEXT), request_id FROM analytics_events ORDER BY id",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        (rows.len() == 2).then_some(rows)
    })
    .await;
    assert_eq!(events[0].0, "user_created");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&events[0].1).unwrap(),
        json!({"user_id": 1})
    );
    assert_eq!(events[0].2.as_deref(), Some("analytics-1"));
    assert_eq!(events[1].0, "order_created");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&events[1].1).unwrap(),
        json!({"order_id": 1, "user_id": 1, "product_id": 1, "quantity": 2, "total_cents": 500})
    );
    assert_eq!(events[1].2.as_deref(), Some("analytics-2"));
}

/// The welcome job's payload is `WelcomeEmail` as serde writes it, on either path that writes
/// it: PostgreSQL's one-statement sign-up builds it in SQL (no key), the other path from the
/// type (with an `Idempotency-Key`).
#[tokio::test]
async fn the_welcome_jobs_payload_is_the_welcome_email_type() {
    let app = spawn_app().await;
    let plain = app.create_user("ada@example.com", "ada").await;
    let keyed = app
        .client
        .post(app.url("/users"))
        .header("idempotency-key", "welcome-payload")
        .json(&json!({"email": "Grace@Example.com", "username": "grace"}))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 201);
    let keyed: serde_json::Value = keyed.json().await.unwrap();
    let mut db = app.db().await;
    let payloads: Vec<(String,)> =
        sqlx::query_as("SELECT payload FROM keel_jobs WHERE kind = 'welcome_email' ORDER BY id")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(payloads.len(), 2);
    for ((payload,), user) in payloads.iter().zip([plain, keyed]) {
        let expected = serde_json::to_value(shop::jobs::WelcomeEmail {
            user_id: user["id"].as_i64().unwrap(),
            email: user["email"].as_str().unwrap().to_owned(),
            username: user["username"].as_str().unwrap().to_owned(),
        })
        .unwrap();
        let written: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(written, expected);
    }
}
