//! A PostgreSQL schema of its own for each test, on the server at 127.0.0.1:5432 (or
//! `KEEL_TEST_DATABASE_URL`), dropped when the test ends.
#![cfg(feature = "postgres")]

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

fn server_url() -> String {
    std::env::var("KEEL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema that exists for as long as this value.
#[derive(Debug)]
pub struct Schema {
    pub name: String,
    pub pool: PgPool,
}

impl Schema {
    /// A new empty schema and a pool whose connections use it; `None` (after saying so) when
    /// no PostgreSQL answers and `KEEL_REQUIRE_TEST_TOOLS` is unset.
    pub async fn create() -> Option<Schema> {
        let url = server_url();
        let mut admin = match PgConnection::connect(&url).await {
            Ok(conn) => conn,
            Err(err) => {
                assert!(
                    std::env::var_os("KEEL_REQUIRE_TEST_TOOLS").is_none(),
                    "PostgreSQL is not reachable at {url} ({err}) and KEEL_REQUIRE_TEST_TOOLS is set"
                );
                eprintln!("SKIPPED: PostgreSQL is not reachable at {url} ({err}); this test checked nothing");
                return None;
            }
        };
        let name = format!("keel_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let options = PgConnectOptions::from_str(&url)
            .unwrap()
            .options([("search_path", name.as_str())])
            .application_name(&name);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .unwrap();
        Some(Schema { name, pool })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (server_url(), self.name.clone());
        // Drop runs outside any runtime that could still be polled: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    // The pool's connections cannot be closed from here: end them, so that
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
