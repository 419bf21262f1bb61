//! The real binary's life and death: welcome mails enqueued while the SMTP server is down survive
//! `kill -9`; `SIGTERM` lets a running job finish, or hands it back to the queue when it
//! outlives the grace period, and exits 0.
#![allow(clippy::unwrap_used)]
mod common;

use std::collections::BTreeMap;
use std::process::Command;

use std::time::Duration;

use common::eventually;
use common::process::{free_port, sigterm, Shop};
use common::smtp::{Behaviour, SmtpSink};
use serde_json::json;

#[tokio::test]
async fn welcome_mails_survive_kill_9_and_arrive_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let smtp_port = free_port();

    let mut first = Shop::start(&db, smtp_port).await;
    let client = reqwest::Client::new();
    let users = 5;
    for n in 0..users {
        let res = client
            .post(first.url("/users"))
            .json(
                &json!({"email": format!("user{n}@example.com"), "username": format!("user_{n}")}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    // Let a few attempts fail against the closed port, then kill without warning.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();

    let smtp = SmtpSink::start_on(smtp_port, Behaviour::default()).await;
    assert!(smtp.accepted().is_empty());
    let _second = Shop::start(&db, smtp_port).await;

    eventually(30, "every welcome mail", || async {
        (smtp.accepted().len() >= users).then_some(())
    })
    .await;
    // Nothing more comes once the queue is drained.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut per_address = BTreeMap::new();
    for mail in smtp.accepted() {
        *per_address.entry(mail.to.join(",")).or_insert(0) += 1;
    }
    let expected: BTreeMap<String, i32> = (0..users)
        .map(|n| (format!("user{n}@example.com"), 1))
        .collect();
    assert_eq!(per_address, expected);
}

async fn job_states(db: &std::path::Path) -> Vec<(String, i64)> {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query_as("SELECT state, attempts FROM keel_jobs ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// Waits until the shop has begun sending a mail to `smtp`.
async fn mail_in_flight(smtp: &SmtpSink) {
    eventually(10, "the mail transaction to begin", || async {
        (smtp.transactions() == 1).then_some(())
    })
    .await;
}

async fn create_user(shop: &Shop) {
    let res = reqwest::Client::new()
        .post(shop.url("/users"))
        .json(&json!({"email": "ada@example.com", "username": "ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn sigterm_lets_a_running_job_finish_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let smtp = SmtpSink::start(Behaviour {
        delay: Duration::from_millis(1500),
        ..Behaviour::default()
    })
    .await;
    let mut shop = Shop::start_with(&db, smtp.port, &[("SHOP_JOB_TIMEOUT_SECS", "10")]).await;
    create_user(&shop).await;
    mail_in_flight(&smtp).await;

    let status = shop.terminate(15).await;
    assert_eq!(status.code(), Some(0));
    assert_eq!(smtp.accepted().len(), 1);
    assert_eq!(job_states(&db).await, vec![("succeeded".to_owned(), 1)]);
}

#[tokio::test]
async fn sigterm_hands_a_job_that_outlives_the_grace_back_to_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let slow = SmtpSink::start(Behaviour {
        delay: Duration::from_secs(5),
        ..Behaviour::default()
    })
    .await;
    let env = [
        ("SHOP_JOB_TIMEOUT_SECS", "10"),
        ("SHOP_SHUTDOWN_GRACE_SECS", "1"),
    ];
    let mut shop = Shop::start_with(&db, slow.port, &env).await;
    create_user(&shop).await;
    mail_in_flight(&slow).await;

    let status = shop.terminate(10).await;
    assert_eq!(status.code(), Some(0));
    // Back to pending, the interrupted attempt not counted.
    assert_eq!(job_states(&db).await, vec![("pending".to_owned(), 0)]);

    slow.stop();
    let smtp = SmtpSink::start(Behaviour::default()).await;
    let _again = Shop::start(&db, smtp.port).await;
    eventually(10, "the mail after restart", || async {
        smtp.accepted().pop()
    })
    .await;
    assert_eq!(job_states(&db).await, vec![("succeeded".to_owned(), 1)]);
}

#[tokio::test]
async fn a_job_killed_mid_run_runs_again_as_a_retry_as_soon_as_the_service_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let hanging = SmtpSink::start(Behaviour {
        delay: Duration::from_secs(30),
        ..Behaviour::default()
    })
    .await;
    let mut first = Shop::start(&db, hanging.port).await;
    create_user(&first).await;
    mail_in_flight(&hanging).await;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert_eq!(job_states(&db).await, vec![("running".to_owned(), 1)]);

    // The restart finds it interrupted and runs it again at once, its second attempt; the
    // lease it held (10 s) is not waited for.
    let smtp = SmtpSink::start(Behaviour::default()).await;
    let _second = Shop::start(&db, smtp.port).await;
    eventually(5, "the mail after the restart", || async {
        smtp.accepted().pop()
    })
    .await;
    assert_eq!(job_states(&db).await, vec![("succeeded".to_owned(), 2)]);
    assert_eq!(smtp.accepted().len(), 1, "the mail was sent twice");
}

#[tokio::test]
async fn webhook_deliveries_pending_at_kill_9_are_all_delivered_after_restart() {
    use common::receiver::{Receiver, Reply};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let smtp = SmtpSink::start(Behaviour::default()).await;
    // The receiver fails everything at first, so the deliveries are pending when the process dies.
    let receiver = Receiver::start(vec![Reply::Status(503); 10]).await;
    let env = [
        ("SHOP_ADMIN_TOKEN", "lifecycle-token-01"),
        ("SHOP_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("SHOP_JOB_BACKOFF_BASE_MS", "300"),
    ];
    let mut first = Shop::start_with(&db, smtp.port, &env).await;
    let client = reqwest::Client::new();
    let res = client
        .post(first.url("/webhook-endpoints"))
        .bearer_auth("lifecycle-token-01")
        .json(&json!({"url": receiver.url(), "events": ["user.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let users = 5;
    for n in 0..users {
        let res = client
            .post(first.url("/users"))
            .json(
                &json!({"email": format!("user{n}@example.com"), "username": format!("user_{n}")}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    eventually(10, "the first failures", || async {
        (receiver.received().len() >= users).then_some(())
    })
    .await;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let failed_before = receiver.received().len();

    let _second = Shop::start_with(&db, smtp.port, &env).await;
    // Every user's event arrives with a 2xx in the end: the script's failures run out.
    let ids = eventually(30, "every delivery to succeed", || async {
        let conn = job_states(&db).await;
        let deliveries: Vec<_> = conn.iter().filter(|(s, _)| s == "succeeded").collect();
        (deliveries.len() >= 2 * users).then(|| receiver.received())
    })
    .await;
    let distinct: std::collections::BTreeSet<String> = ids.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        distinct.len(),
        users,
        "one webhook-id per user, kept across attempts"
    );
    assert!(ids.len() > failed_before);
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let smtp = SmtpSink::start(Behaviour::default()).await;
    let mut shop = Shop::start(&db, smtp.port).await;

    // Hold the write lock so that the next POST waits inside the service.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    let in_flight = tokio::spawn(
        reqwest::Client::new()
            .post(shop.url("/users"))
            .json(&json!({"email": "slow@example.com", "username": "slow"}))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = shop.child.id().to_string();
    assert!(sigterm(&pid).success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", shop.port))
            .await
            .is_err(),
        "the listener is closed once SIGTERM arrives"
    );
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();

    let answered = in_flight.await.unwrap().unwrap();
    assert_eq!(answered.status(), 201);
    let status = shop.terminate(15).await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_second_shop_on_the_same_database_file_exits_at_once_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let smtp = SmtpSink::start(Behaviour::default()).await;
    let first = Shop::start(&db, smtp.port).await;

    let second = Command::new(env!("CARGO_BIN_EXE_shop"))
        .env("SHOP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(
        stderr.trim(),
        format!(
            "shop could not start: {} is in use by another process (lock file {}.lock is held): \
             only one process may write a SQLite database; stop the other one or use another file",
            db.display(),
            db.display()
        )
    );
    // The first one never noticed.
    let res = reqwest::get(first.url("/readyz")).await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn an_admin_token_shorter_than_16_characters_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let refused = Command::new(env!("CARGO_BIN_EXE_shop"))
        .env("SHOP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("SHOP_ADMIN_TOKEN", "fifteen-chars-x")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim(),
        "shop could not start: SHOP_ADMIN_TOKEN is 15 characters long: an operator token needs at least 16"
    );
    assert!(!db.exists(), "refused before touching the database");
}

/// The answer of a POST with an `Idempotency-Key` is lost: the client never read it and the
/// service was killed once the record was committed. After the restart the retry gets that
/// answer, and the record, its job and its webhook exist once.
#[tokio::test]
async fn a_retry_after_kill_9_between_the_commit_and_the_answer_gets_the_stored_answer() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let smtp = SmtpSink::start(Behaviour::default()).await;
    let smtp_port: u16 = smtp.url().rsplit(':').next().unwrap().parse().unwrap();
    let mut first = Shop::start(&db, smtp_port).await;

    let body = r#"{"email": "ada@example.com", "username": "ada"}"#;
    let request = format!(
        "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Idempotency-Key: order-form-7\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Sent, never read.
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", first.port))
        .await
        .unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    eventually(10, "the user to be committed", || async {
        let rows = user_rows(&db).await;
        (rows == 1).then_some(())
    })
    .await;
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    drop(socket);

    let second = Shop::start(&db, smtp_port).await;
    let retry = reqwest::Client::new()
        .post(second.url("/users"))
        .header("content-type", "application/json")
        .header("idempotency-key", "order-form-7")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["location"], "/users/1");
    let user: serde_json::Value = retry.json().await.unwrap();
    assert_eq!(user["id"], 1);
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user_rows(&db).await, 1);
    let jobs = job_states(&db).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
}

async fn user_rows(db: &std::path::Path) -> i64 {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", db.display());
    let Ok(mut conn) = sqlx::SqliteConnection::connect(&url).await else {
        return 0;
    };
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0)
}

#[tokio::test]
async fn a_postgresql_server_that_cannot_be_reached_at_start_up_is_named_with_the_cause() {
    let port = free_port();
    let shop = Command::new(env!("CARGO_BIN_EXE_shop"))
        .env("SHOP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{port}/shop"),
        )
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(shop.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&shop.stderr).trim(),
        "shop could not start: cannot connect to PostgreSQL: error communicating with database: \
         Connection refused (os error 111)"
    );
}
