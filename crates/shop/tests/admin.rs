//! The operators' console: the auth rules on every operator route, the job API, and the page
//! in headless Chromium.
#![allow(clippy::unwrap_used)]
mod common;

use common::browser::Browser;
use common::smtp::{Behaviour, SmtpSink};
use common::{assert_envelope, assert_validation_error, eventually, spawn_app_with, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

const TOKEN: &str = "console-token-0001";

const OPERATOR_ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/jobs"),
    ("POST", "/admin/jobs/1/retry"),
    ("GET", "/admin/stats"),
    ("GET", "/admin/webhook-endpoints"),
    ("POST", "/webhook-endpoints"),
    ("GET", "/webhook-endpoints/1/deliveries"),
];

async fn call(app: &TestApp, method: &str, path: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            app.url(path),
        )
        .header("content-type", "application/json")
        .body("{}");
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    req.send().await.unwrap()
}

/// A service whose SMTP server refuses the first transaction, with one attempt allowed: the
/// first welcome mail's job dies.
async fn first_mail_dies() -> (SmtpSink, TestApp) {
    let smtp = SmtpSink::start(Behaviour {
        refuse_first: 1,
        ..Behaviour::default()
    })
    .await;
    let app = spawn_app_with(|c| {
        c.admin_token = Some(TOKEN.into());
        c.smtp_url = Some(smtp.url());
        c.job_max_attempts = 1;
    })
    .await;
    (smtp, app)
}

/// Opens the console in Chromium and types the token in.
/// `None` when Chromium is missing (the skip reported).
async fn log_in(app: &TestApp) -> Option<(Browser, common::browser::Tab)> {
    let mut browser = Browser::launch().await?;
    let tab = browser.open(&app.url("/admin")).await;
    browser
        .wait_for(&tab, "document.querySelector('#token') !== null", 10)
        .await;
    browser
        .eval(&tab, &format!("document.querySelector('#token').value = '{TOKEN}'; document.querySelector('#connect').click(); true"))
        .await;
    Some((browser, tab))
}

async fn admin_get(app: &TestApp, path: &str) -> Value {
    let res = call(app, "GET", path, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

#[tokio::test]
async fn every_operator_route_follows_the_auth_rules() {
    let disabled = spawn_app_with(|_| {}).await;
    let app = spawn_app_with(|c| c.admin_token = Some(TOKEN.into())).await;
    for (method, path) in OPERATOR_ROUTES {
        let res = call(&disabled, method, path, Some(&format!("Bearer {TOKEN}"))).await;
        assert_envelope(
            res,
            403,
            "admin_disabled",
            "Admin API disabled",
            json!(null),
        )
        .await;
        for auth in [None, Some("Bearer wrong"), Some(TOKEN)] {
            let res = call(&app, method, path, auth).await;
            assert_eq!(
                res.headers()["www-authenticate"],
                "Bearer",
                "{method} {path} {auth:?}"
            );
            assert_envelope(res, 401, "unauthorized", "Unauthorized", json!(null)).await;
        }
        let res = call(&app, method, path, Some(&format!("Bearer {TOKEN}"))).await;
        assert!(
            ![401, 403].contains(&res.status().as_u16()),
            "{method} {path}: {}",
            res.status()
        );
    }
    // The scheme name is case-insensitive; an empty configured token disables the routes.
    let res = call(
        &app,
        "GET",
        "/admin/stats",
        Some(&format!("bearer {TOKEN}")),
    )
    .await;
    assert_eq!(res.status(), 200);
    let empty = spawn_app_with(|c| c.admin_token = Some(String::new())).await;
    for auth in [None, Some("Bearer "), Some("Bearer")] {
        let res = call(&empty, "GET", "/admin/stats", auth).await;
        assert_envelope(
            res,
            403,
            "admin_disabled",
            "Admin API disabled",
            json!(null),
        )
        .await;
    }

    // The page holds no data and needs no token.
    for app in [&disabled, &app] {
        let page = app.get("/admin").await;
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        let html = page.text().await.unwrap();
        assert!(!html.contains("https://") && html.contains("/admin/jobs"));
    }
}

#[tokio::test]
async fn a_dead_mail_job_carries_its_request_id_and_is_retried_from_the_api() {
    let (smtp, app) = first_mail_dies().await;
    let res = app
        .post_json_as(
            "/users",
            &json!({"email": "ada@example.com", "username": "ada"}),
            "signup-42",
        )
        .await;
    assert_eq!(res.status(), 201);

    let dead = eventually(10, "the dead job", || async {
        let jobs = admin_get(&app, "/admin/jobs?state=dead").await;
        jobs.as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(dead["kind"], "welcome_email");
    assert_eq!(dead["queue"], "email");
    assert_eq!(dead["request_id"], "signup-42");
    assert_eq!(
        (dead["attempts"].as_i64(), dead["max_attempts"].as_i64()),
        (Some(1), Some(1))
    );
    assert!(dead["last_error"].as_str().unwrap().contains("451"));
    let mut keys: Vec<&str> = dead
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "attempts",
            "created_at",
            "id",
            "kind",
            "last_error",
            "max_attempts",
            "queue",
            "request_id",
            "run_at",
            "state"
        ]
    );

    let id = dead["id"].as_i64().unwrap();
    let res = call(
        &app,
        "POST",
        &format!("/admin/jobs/{id}/retry"),
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    assert_eq!(res.status(), 200);
    let retried: Value = res.json().await.unwrap();
    assert_eq!(
        (retried["state"].as_str(), retried["attempts"].as_i64()),
        (Some("pending"), Some(0))
    );

    let mail = eventually(10, "the mail after the retry", || async {
        smtp.accepted().pop()
    })
    .await;
    assert_eq!(mail.to, vec!["ada@example.com".to_owned()]);
    let job = eventually(10, "the job to succeed", || async {
        let jobs = admin_get(&app, "/admin/jobs?queue=email").await;
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|j| j["state"] == "succeeded")
            .cloned()
    })
    .await;
    assert_eq!(job["id"], id);

    // Retrying a job that is not dead changes nothing.
    let res = call(
        &app,
        "POST",
        &format!("/admin/jobs/{id}/retry"),
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    assert_envelope(
        res,
        409,
        "invalid_state",
        "Invalid state",
        json!({"state": "succeeded"}),
    )
    .await;
    let res = call(
        &app,
        "POST",
        "/admin/jobs/9999/retry",
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    assert_envelope(
        res,
        404,
        "not_found",
        "Resource not found",
        json!({"resource": "job", "id": 9999}),
    )
    .await;

    let stats = admin_get(&app, "/admin/stats").await;
    assert_eq!(
        stats["jobs"]["email"],
        json!({"dead": 0, "pending": 0, "running": 0, "succeeded": 1})
    );
    assert_eq!(
        stats["websocket_connections"],
        json!({"/ws": 0, "/ws/events": 0})
    );
    let minutes = stats["finished_per_minute"].as_array().unwrap();
    assert_eq!(
        minutes
            .iter()
            .map(|m| m["succeeded"].as_i64().unwrap())
            .sum::<i64>(),
        1
    );
}

#[tokio::test]
async fn jobs_are_filtered_and_paged_newest_first() {
    let app = spawn_app_with(|c| c.admin_token = Some(TOKEN.into())).await;
    for n in 0..7 {
        app.create_user(&format!("u{n}@example.com"), &format!("user_{n}"))
            .await;
    }
    let page1 = admin_get(&app, "/admin/jobs?limit=3").await;
    let ids1: Vec<i64> = page1
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids1, [7, 6, 5]);
    let page2 = admin_get(&app, "/admin/jobs?limit=3&before_id=5").await;
    let ids2: Vec<i64> = page2
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids2, [4, 3, 2]);
    assert_eq!(
        admin_get(&app, "/admin/jobs?queue=webhooks").await,
        json!([])
    );
    assert_eq!(
        admin_get(&app, "/admin/jobs")
            .await
            .as_array()
            .unwrap()
            .len(),
        7
    );
    // Empty filters, as a form with nothing chosen sends them, mean "any". (Once the workers
    // are done: a job finishing between the two reads would differ.)
    eventually(10, "every welcome mail sent", || async {
        let done = admin_get(&app, "/admin/jobs?state=succeeded").await;
        (done.as_array().unwrap().len() == 7).then_some(())
    })
    .await;
    assert_eq!(
        admin_get(&app, "/admin/jobs?state=&queue=").await,
        admin_get(&app, "/admin/jobs").await
    );

    let res = call(
        &app,
        "GET",
        "/admin/jobs?state=lost&limit=0&before_id=-1",
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    assert_validation_error(res, json!([
            {"loc": ["query", "state"], "msg": "Input should be pending, running, succeeded or dead", "type": "invalid_value"},
            {"loc": ["query", "limit"], "msg": "Input should be between 1 and 500", "type": "out_of_range"},
            {"loc": ["query", "before_id"], "msg": "Input should be greater than 0", "type": "out_of_range"},
        ]),
    )
    .await;
}

#[tokio::test]
async fn the_console_shows_a_dead_job_and_retry_takes_it_off_the_list() {
    let (smtp, app) = first_mail_dies().await;
    app.create_user("ada@example.com", "ada").await;
    eventually(10, "the dead job", || async {
        let jobs = admin_get(&app, "/admin/jobs?state=dead").await;
        jobs.as_array().unwrap().first().cloned()
    })
    .await;

    let Some((mut browser, tab)) = log_in(&app).await else {
        return;
    };
    // The page refreshes every 3 s; a browser on a loaded machine may need several.
    browser
        .wait_for(
            &tab,
            "document.querySelectorAll('#dead tr[data-job-id]').length === 1",
            20,
        )
        .await;
    browser
        .wait_for(&tab, "document.querySelector('#counts tr[data-queue=\"email\"] td[data-state=\"dead\"]')?.textContent === '1'", 10)
        .await;
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("shop-admin.png");
    browser.screenshot(&tab, &shot).await;
    println!("screenshot: {}", shot.display());

    browser
        .eval(
            &tab,
            "document.querySelector('#dead button.retry').click(); true",
        )
        .await;
    browser
        .wait_for(
            &tab,
            "document.querySelectorAll('#dead tr[data-job-id]').length === 0",
            10,
        )
        .await;
    eventually(10, "the mail", || async { smtp.accepted().pop() }).await;
}

#[tokio::test]
async fn the_console_pages_through_a_thousand_dead_jobs() {
    let app = spawn_app_with(|c| c.admin_token = Some(TOKEN.into())).await;
    let mut db = app.db().await;
    let now = common::sql("strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", "now()");
    sqlx::query(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) \
         INSERT INTO keel_jobs (queue, kind, payload, state, attempts, max_attempts, last_error, run_at, finished_at) \
         SELECT 'email', 'welcome_email', '{{}}', 'dead', 8, 8, 'SMTP: refused ' || i, 0, {now} FROM n"
    ))
    .execute(&mut db)
    .await
    .unwrap();

    let Some((mut browser, tab)) = log_in(&app).await else {
        return;
    };
    let first_row = "document.querySelector('#dead tr[data-job-id]')?.dataset.jobId";
    browser
        .wait_for(
            &tab,
            "document.querySelectorAll('#dead tr[data-job-id]').length === 50",
            10,
        )
        .await;
    assert_eq!(browser.eval(&tab, first_row).await, json!("1000"));
    browser
        .eval(&tab, "document.querySelector('#older').click(); true")
        .await;
    browser
        .wait_for(
            &tab,
            "document.querySelector('#dead tr[data-job-id]')?.dataset.jobId === '950'",
            10,
        )
        .await;
    assert_eq!(
        browser
            .eval(
                &tab,
                "document.querySelectorAll('#dead tr[data-job-id]').length"
            )
            .await,
        json!(50)
    );
    browser
        .wait_for(&tab, "document.querySelector('#counts tr[data-queue=\"email\"] td[data-state=\"dead\"]')?.textContent === '1000'", 10)
        .await;
}
