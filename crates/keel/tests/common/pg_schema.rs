//! A PostgreSQL schema of its own for each test, on the server at 127.0.0.1:5432 (database
//! `test`, or the URL in `TEST_POSTGRES_URL`), dropped when the test ends. keel's tests and
//! shop's use this one file.

use sqlx::{Connection, PgConnection};

/// The variable naming another server for every PostgreSQL test.
pub const URL_VARIABLE: &str = "TEST_POSTGRES_URL";

/// The server the PostgreSQL tests use.
pub fn server_url() -> String {
    std::env::var(URL_VARIABLE)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema that exists for as long as this value, and a URL whose connections work in it.
#[derive(Debug)]
pub struct TestSchema {
    pub name: String,
    pub url: String,
}

impl TestSchema {
    /// A new empty schema named `{prefix}_…`.
    pub async fn create(prefix: &str) -> Result<TestSchema, sqlx::Error> {
        let server = server_url();
        let mut admin = PgConnection::connect(&server).await?;
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut admin)
            .await?;
        let separator = if server.contains('?') { '&' } else { '?' };
        // Every connection works in the schema, and is named after it so that the drop can
        // end those still open.
        let url =
            format!("{server}{separator}options=-c%20search_path%3D{name}&application_name={name}");
        Ok(TestSchema { name, url })
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (server, name) = (server_url(), self.name.clone());
        // Drop may run inside a runtime that cannot block on a future: a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&server).await {
                    // Connections of pools that cannot be closed from here are ended, so that
                    // none holds a lock the drop would wait for.
                    let _ = sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1",
                    )
                    .bind(&name)
                    .execute(&mut conn)
                    .await;
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}
