//! keel's SQLite writer and readers on a real database file: group commit with a savepoint per
//! write, a failed commit answering the whole batch, panics, the lock against a second writer.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http::header::RETRY_AFTER;
use keel::sqlite::{Database, Error, Migration, OpenError, Options};
use keel::ApiError;
use tokio::task::JoinSet;

const SCHEMA: &[Migration] = &[Migration {
    version: 1,
    name: "users",
    sql: "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE);
          CREATE TABLE notes (id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users (id) DEFERRABLE INITIALLY DEFERRED);",
}];

fn open(dir: &tempfile::TempDir) -> Database {
    Database::open(dir.path().join("test.db"), Options::default(), SCHEMA).unwrap()
}

async fn insert(db: &Database, email: String) -> Result<i64, Error> {
    db.writer()
        .write(move |conn| {
            conn.prepare_cached("INSERT INTO users (email) VALUES (?1) RETURNING id")?
                .query_row([email], |row| row.get(0))
                .map_err(Error::from)
        })
        .await
}

fn count(db: &Database, table: &str) -> i64 {
    db.readers()
        .read(|conn| conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)))
        .unwrap()
}

/// Holds the writer thread for `for_ms`, so that writes sent meanwhile form one batch.
fn hold_writer(db: &Database, for_ms: u64) -> tokio::task::JoinHandle<()> {
    let writer = db.writer().clone();
    let held = tokio::spawn(async move {
        writer
            .write(move |_| {
                std::thread::sleep(Duration::from_millis(for_ms));
                Ok::<(), Error>(())
            })
            .await
            .unwrap();
    });
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_commit_together_and_a_failing_one_rolls_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    insert(&db, "taken@example.com".into()).await.unwrap();
    let held = hold_writer(&db, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut writes = JoinSet::new();
    for n in 0..64 {
        let db = db.clone();
        // Every eighth collides with the existing row.
        let email = if n % 8 == 0 {
            "taken@example.com".to_owned()
        } else {
            format!("user{n}@example.com")
        };
        writes.spawn(async move { (n, insert(&db, email).await) });
    }
    let mut results = writes.join_all().await;
    held.await.unwrap();
    results.sort_by_key(|(n, _)| *n);
    for (n, result) in &results {
        match result {
            Ok(id) => {
                assert!(n % 8 != 0, "write {n} should have collided");
                // Answered after the commit: a read now sees it.
                let email: String = db
                    .readers()
                    .read(|c| {
                        c.query_row("SELECT email FROM users WHERE id = ?1", [id], |r| r.get(0))
                    })
                    .unwrap();
                assert_eq!(email, format!("user{n}@example.com"));
            }
            Err(err) => {
                assert_eq!(n % 8, 0, "write {n} failed: {err}");
                assert_eq!(err.unique_column(), Some("email"));
                let api: ApiError = Error::from(rusqlite::Error::QueryReturnedNoRows).into();
                assert_eq!(api.status(), 404);
            }
        }
    }
    assert_eq!(count(&db, "users"), 1 + 56);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_answers_every_write_of_its_batch_with_503_and_the_next_batch_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let held = hold_writer(&db, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut writes = JoinSet::new();
    for n in 0..10 {
        let db = db.clone();
        writes.spawn(async move { insert(&db, format!("user{n}@example.com")).await });
    }
    // A deferred foreign key is checked at COMMIT: this write makes the batch's COMMIT fail.
    let bad = db.clone();
    writes.spawn(async move {
        bad.writer()
            .write(|conn| {
                conn.execute("INSERT INTO notes (user_id) VALUES (999)", [])
                    .map_err(Error::from)?;
                Ok::<i64, Error>(0)
            })
            .await
    });
    let results = writes.join_all().await;
    held.await.unwrap();
    assert_eq!(results.len(), 11);
    for result in results {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Commit(_)), "{err:?}");
        let api: ApiError = err.into();
        assert_eq!(
            (api.status().as_u16(), api.code()),
            (503, "service_unavailable")
        );
        let response = axum::response::IntoResponse::into_response(api);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"success": false, "error": "Service unavailable",
                "code": "service_unavailable", "details": null, "request_id": null})
        );
    }
    assert_eq!(count(&db, "users"), 0);
    assert_eq!(count(&db, "notes"), 0);

    // The cause is gone: the writer goes on.
    insert(&db, "after@example.com".into()).await.unwrap();
    assert_eq!(count(&db, "users"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_write_is_abandoned_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let held = hold_writer(&db, 150);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let panicking = db.clone();
    let panicked = tokio::spawn(async move {
        panicking
            .writer()
            .write(|conn| -> Result<(), Error> {
                conn.execute("INSERT INTO users (email) VALUES ('ghost@example.com')", [])?;
                panic!("a bug in a write");
            })
            .await
    });
    let fine = insert(&db, "fine@example.com".into());
    let (panicked, fine) = tokio::join!(panicked, fine);
    held.await.unwrap();
    let err = panicked.unwrap().unwrap_err();
    assert!(matches!(err, Error::Abandoned), "{err:?}");
    assert_eq!(ApiError::from(err).status(), 500);
    fine.unwrap();
    let emails: Vec<String> = db
        .readers()
        .read(|c| {
            let mut stmt = c.prepare("SELECT email FROM users")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
        .unwrap();
    assert_eq!(emails, vec!["fine@example.com".to_owned()]);
}

#[tokio::test]
async fn a_second_database_on_the_same_file_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let second = Database::open(dir.path().join("test.db"), Options::default(), SCHEMA);
    let err = second.unwrap_err();
    assert!(matches!(err, OpenError::InUse { .. }), "{err:?}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );

    insert(&db, "kept@example.com".into()).await.unwrap();
    db.close().await;
    assert!(matches!(
        insert(&db, "late@example.com".into()).await,
        Err(Error::Closed)
    ));
    let reopened = open(&dir);
    assert_eq!(count(&reopened, "users"), 1);
}

#[test]
fn migrations_apply_once_and_a_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut conn = rusqlite::Connection::open(&path).unwrap();
    keel::sqlite::migrate(&mut conn, SCHEMA).unwrap();
    // A second run finds nothing to do (the CREATE TABLEs would fail if run again).
    keel::sqlite::migrate(&mut conn, SCHEMA).unwrap();
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);
    let err = keel::sqlite::migrate(&mut conn, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the database is at schema version 1, newer than this program knows (0): run a newer version"
    );
}

#[test]
fn migrations_out_of_order_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = rusqlite::Connection::open(dir.path().join("m.db")).unwrap();
    let list = [
        keel::sqlite::Migration::new(2, "second", "CREATE TABLE b (id INTEGER)"),
        keel::sqlite::Migration::new(1, "first", "CREATE TABLE a (id INTEGER)"),
    ];
    let err = keel::sqlite::migrate(&mut conn, &list).unwrap_err();
    assert!(
        matches!(
            err,
            keel::sqlite::MigrateError::Unordered {
                version: 1,
                name: "first"
            }
        ),
        "{err}"
    );
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_disk_full_in_a_batch_every_answer_matches_what_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let held = hold_writer(&db, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut writes = JoinSet::new();
    for n in 0..4 {
        let db = db.clone();
        writes.spawn(async move {
            (
                n,
                insert(&db, format!("before{n}@example.com")).await.is_ok(),
            )
        });
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The disk fills up under this write: SQLite may roll the whole transaction back.
    let full = db.clone();
    writes.spawn(async move {
        let result = full
            .writer()
            .write(|conn| {
                let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                conn.pragma_update(None, "max_page_count", pages)?;
                conn.execute(
                    "INSERT INTO users (email) VALUES (?1)",
                    [format!("{}@example.com", "x".repeat(100_000))],
                )?;
                Ok::<i64, Error>(0)
            })
            .await;
        (100, result.is_ok())
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    for n in 4..8 {
        let db = db.clone();
        writes.spawn(async move {
            (
                n,
                insert(&db, format!("after{n}@example.com")).await.is_ok(),
            )
        });
    }
    let results = writes.join_all().await;
    held.await.unwrap();
    db.writer()
        .write(|conn| {
            conn.pragma_update(None, "max_page_count", 1_073_741_823)
                .map_err(Error::from)
        })
        .await
        .unwrap();

    for (n, answered_ok) in results {
        if n == 100 {
            assert!(
                !answered_ok,
                "the write that filled the disk cannot succeed"
            );
            continue;
        }
        let email = if n < 4 {
            format!("before{n}@example.com")
        } else {
            format!("after{n}@example.com")
        };
        let on_disk: bool = db
            .readers()
            .read(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM users WHERE email = ?1",
                    [&email],
                    |r| r.get::<_, i64>(0),
                )
            })
            .unwrap()
            == 1;
        assert_eq!(
            answered_ok, on_disk,
            "{email}: answered {answered_ok}, on disk {on_disk}"
        );
    }
    // And the writer goes on.
    insert(&db, "later@example.com".into()).await.unwrap();
}
