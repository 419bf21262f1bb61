//! `keel::db::Db::open` reads the URL as documented: PostgreSQL for `postgres://`, a SQLite
//! file for `sqlite://PATH`, `sqlite:PATH` (its query string cut) or a bare path, and refuses
//! an in-memory database or a scheme it does not know instead of making a file of it.
#![allow(clippy::unwrap_used)]

use keel::db::{Db, OpenError, Schema};
use keel::migration::Migration;

const NOTES: Schema = Schema {
    sqlite: &[Migration::new(1, "notes", "CREATE TABLE notes (body TEXT)")],
    postgres: &[Migration::new(1, "notes", "CREATE TABLE notes (body TEXT)")],
};

#[tokio::test]
async fn a_sqlite_url_or_a_bare_path_opens_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    for (url, file) in [
        (format!("sqlite://{}", at("a.db")), "a.db"),
        (format!("sqlite:{}?mode=rwc", at("b.db")), "b.db"),
        (at("c.db"), "c.db"),
    ] {
        let db = Db::open(&url, &NOTES).await.unwrap();
        assert!(matches!(db, Db::Sqlite { .. }), "{url}");
        db.close().await;
        assert!(dir.path().join(file).is_file(), "{url} made no {file}");
    }
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".db"))
        .collect();
    files.sort();
    assert_eq!(files, ["a.db", "b.db", "c.db"]);
}

#[tokio::test]
async fn an_unknown_scheme_or_an_in_memory_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    for url in [
        "mysql://root@localhost/db",
        "postgress://x",
        "sqlite::memory:",
        ":memory:",
        "",
        "sqlite://",
    ] {
        let err = Db::open(url, &NOTES).await.unwrap_err();
        assert!(
            matches!(&err, OpenError::UnsupportedUrl(u) if u == url),
            "{url:?}: {err}"
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_postgres_server_that_does_not_answer_says_why() {
    // Port 9 (discard) on loopback: nothing listens there.
    let err = Db::open("postgres://postgres@127.0.0.1:9/test", &NOTES)
        .await
        .unwrap_err();
    assert!(matches!(err, OpenError::Postgres(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot connect to PostgreSQL: "),
        "{err}"
    );
}
