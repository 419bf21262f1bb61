//! The todos example (`crates/keel/examples/todos.rs`), started as it ships, answers as its
//! documentation says, and runs each new todo's durable job once, on a SQLite file and on
//! PostgreSQL; so does the same service on plain axum (`todos_plain.rs`), which the README
//! compares it with.
#![allow(clippy::unwrap_used)]

mod common;

#[allow(dead_code)]
#[path = "../examples/todos.rs"]
mod todos;
#[allow(dead_code)]
#[path = "../examples/todos_plain.rs"]
mod todos_plain;

type Main = fn() -> Result<(), Box<dyn std::error::Error>>;

/// Environment variables are per process: one example starts at a time.
static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[tokio::test]
async fn the_todos_example_answers_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    check(
        todos::main,
        Db::Sqlite(dir.path().join("todos.db"), "keel_jobs"),
        true,
    )
    .await;
}

#[tokio::test]
async fn the_todos_example_gives_the_same_answers_on_postgres() {
    let Some(schema) = common::pg::Schema::create().await else {
        return;
    };
    check(todos::main, Db::Postgres(&schema), true).await;
}

#[tokio::test]
async fn the_plain_axum_version_gives_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    check(
        todos_plain::main,
        Db::Sqlite(dir.path().join("todos.db"), "jobs"),
        false,
    )
    .await;
}

/// Where the example under test keeps its todos and jobs.
enum Db<'a> {
    /// A SQLite file, and the name of the jobs' table.
    Sqlite(std::path::PathBuf, &'static str),
    Postgres(&'a common::pg::Schema),
}

impl Db<'_> {
    fn url(&self) -> String {
        match self {
            Db::Sqlite(path, _) => path.display().to_string(),
            Db::Postgres(schema) => schema.schema.url.clone(),
        }
    }

    /// Kind, state and attempts of every job.
    async fn jobs(&self) -> Vec<(String, String, i64)> {
        match self {
            Db::Sqlite(path, table) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let mut query = conn
                    .prepare(&format!("SELECT kind, state, attempts FROM {table}"))
                    .unwrap();
                let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
                let rows = query.query_map([], row).unwrap();
                rows.collect::<Result<Vec<_>, _>>().unwrap()
            }
            Db::Postgres(schema) => {
                sqlx::query_as("SELECT kind, state, attempts::bigint FROM keel_jobs")
                    .fetch_all(&schema.pool)
                    .await
                    .unwrap()
            }
        }
    }
}

use std::time::Duration;

use serde_json::{json, Value};

/// `live`: the example also pushes each new todo to `/todos/live`.
async fn check(main: Main, db: Db<'_>, live: bool) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    {
        let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("KEEL_EXAMPLE_ADDR", format!("127.0.0.1:{port}"));
        std::env::set_var("KEEL_EXAMPLE_DB", db.url());
        std::thread::spawn(move || main().unwrap());
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let post = |body: Value| client.post(format!("{base}/todos")).json(&body).send();
    let mut feed = if live {
        let url = format!("ws://127.0.0.1:{port}/todos/live");
        Some(tokio_tungstenite::connect_async(url).await.unwrap().0)
    } else {
        None
    };

    let res = post(json!({"title": "Buy milk", "priority": 3, "tags": ["home"]}))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["location"], "/todos/1");
    let created: Value = res.json().await.unwrap();
    assert_eq!(
        created,
        json!({"id": 1, "title": "Buy milk", "priority": 3, "tags": ["home"]})
    );
    if let Some(feed) = feed.as_mut() {
        use futures_util::StreamExt;
        let frame = tokio::time::timeout(Duration::from_secs(5), feed.next()).await;
        let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) = frame else {
            panic!("no todo on /todos/live: {frame:?}");
        };
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), created);
    }

    let res = post(json!({"title": "BUY MILK", "priority": 1}))
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "duplicate_title");
    assert_eq!(body["error"], "A todo with this title exists");
    assert_eq!(body["details"], json!({"title": "BUY MILK"}));

    let res = post(json!({"title": "", "priority": 9, "tags": ["ok", "x".repeat(21)]}))
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["details"],
        json!([
            {"loc": ["body", "title"], "msg": "String should have at least 1 character", "type": "too_short"},
            {"loc": ["body", "priority"], "msg": "Input should be less than or equal to 5", "type": "out_of_range"},
            {"loc": ["body", "tags", 1], "msg": "String should have at most 20 characters", "type": "too_long"},
        ])
    );

    let res = client.get(format!("{base}/todos/1")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), created);
    let res = client.get(format!("{base}/todos/99")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["details"], json!({"resource": "todo", "id": 99}));
    let res = client.get(format!("{base}/panic")).send().await.unwrap();
    assert_eq!(res.status(), 500);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["code"].as_str(), body["request_id"].as_str()),
        (Some("internal_error"), Some(id.as_str()))
    );

    // The job of the one todo created ran, once.
    let mut states = Vec::new();
    for _ in 0..100 {
        states = db.jobs().await;
        if states.iter().all(|(_, state, _)| state == "succeeded") && !states.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        states,
        [("todo_created".to_owned(), "succeeded".to_owned(), 1)]
    );
    if live {
        check_openapi(&client, &base).await;
        check_idempotency(&client, &base, &db).await;
    }
}

/// A create retried with its `Idempotency-Key` gets the first answer again, and makes no
/// second todo nor job.
async fn check_idempotency(client: &reqwest::Client, base: &str, db: &Db<'_>) {
    let post = |title: &str| {
        let body = json!({"title": title, "priority": 2});
        let request = client.post(format!("{base}/todos")).json(&body);
        request.header("idempotency-key", "bread-1").send()
    };
    let first = post("Buy bread").await.unwrap();
    assert_eq!(first.status(), 201);
    // PostgreSQL's sequence skipped the id of the refused duplicate; SQLite reuses it.
    let id = if matches!(db, Db::Postgres(_)) { 3 } else { 2 };
    assert_eq!(first.headers()["location"], format!("/todos/{id}").as_str());
    assert!(first.headers().get("idempotent-replayed").is_none());
    let body = first.text().await.unwrap();
    let expected = format!(r#"{{"id":{id},"title":"Buy bread","priority":2,"tags":[]}}"#);
    assert_eq!(body, expected);

    let again = post("Buy bread").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["location"], format!("/todos/{id}").as_str());
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["content-type"], "application/json");
    assert_eq!(again.text().await.unwrap(), body);

    let other = post("Buy butter").await.unwrap();
    assert_eq!(other.status(), 422);
    let other: Value = other.json().await.unwrap();
    assert_eq!(other["code"], "idempotency_key_reused");

    let res = client.get(format!("{base}/todos/{}", id + 1)).send().await;
    assert_eq!(res.unwrap().status(), 404);
    let mut jobs = Vec::new();
    for _ in 0..100 {
        jobs = db.jobs().await;
        if jobs.iter().all(|(_, state, _)| state == "succeeded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = ("todo_created".to_owned(), "succeeded".to_owned(), 1);
    assert_eq!(jobs, [job.clone(), job]);
}

/// The example's document shows the rules `NewTodo` declares, and both routes.
async fn check_openapi(client: &reqwest::Client, base: &str) {
    let res = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths, ["/todos", "/todos/{id}"]);
    assert_eq!(
        doc["paths"]["/todos"]["post"]["requestBody"]["content"]["application/json"]["schema"],
        json!({"$ref": "#/components/schemas/NewTodo"})
    );
    assert_eq!(
        doc["components"]["schemas"]["NewTodo"],
        json!({
            "type": "object",
            "description": "A todo to create.",
            "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": 100},
                "priority": {"type": "integer", "format": "int32", "description": "1 (lowest) to 5.", "minimum": 1, "maximum": 5},
                "tags": {"type": ["array", "null"], "items": {"type": "string", "minLength": 1, "maxLength": 20}}
            },
            "required": ["title", "priority"]
        })
    );
}
