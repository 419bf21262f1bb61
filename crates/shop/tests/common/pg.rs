//! A PostgreSQL schema of its own for each test, dropped when the test ends.

use sqlx::{Connection, PgConnection};

/// The server the PostgreSQL runs use.
pub fn server_url() -> String {
    std::env::var("SHOP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema that exists for as long as this value, and the `DATABASE_URL` that works in it.
#[derive(Debug)]
pub struct Schema {
    pub name: String,
    pub url: String,
}

impl Schema {
    /// A new empty schema. Panics when PostgreSQL is not there: the run asked for it.
    pub async fn create() -> Schema {
        let server = server_url();
        let mut admin = PgConnection::connect(&server)
            .await
            .unwrap_or_else(|err| panic!("SHOP_TEST_ENGINE=postgres but {server}: {err}"));
        let name = format!("shop_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let separator = if server.contains('?') { '&' } else { '?' };
        // Every connection of the service works in the schema, and is named after it so that
        // the drop can end those still open.
        let url =
            format!("{server}{separator}options=-c%20search_path%3D{name}&application_name={name}");
        Schema { name, url }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (server, name) = (server_url(), self.name.clone());
        // Drop runs inside a runtime that cannot block on a future: a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&server).await {
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
