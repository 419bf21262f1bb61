//! A PostgreSQL schema of its own for each test, with a pool working in it (see
//! `pg_schema.rs`); the test skips, saying so, when no server answers.
#![cfg(feature = "postgres")]

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

#[path = "pg_schema.rs"]
mod pg_schema;

/// A schema that exists for as long as this value, and a pool whose connections use it.
#[derive(Debug)]
pub struct Schema {
    pub pool: PgPool,
    pub schema: pg_schema::TestSchema,
}

impl Schema {
    /// A new empty schema and its pool; `None` (after saying so) when no PostgreSQL answers
    /// and `KEEL_REQUIRE_TEST_TOOLS` is unset.
    pub async fn create() -> Option<Schema> {
        let schema = match pg_schema::TestSchema::create("keel_test").await {
            Ok(schema) => schema,
            Err(err) => {
                let url = pg_schema::server_url();
                assert!(
                    std::env::var_os("KEEL_REQUIRE_TEST_TOOLS").is_none(),
                    "PostgreSQL is not reachable at {url} ({err}) and KEEL_REQUIRE_TEST_TOOLS is set"
                );
                eprintln!(
                    "SKIPPED: PostgreSQL is not reachable at {url} ({err}) (set {}): this test checked nothing",
                    pg_schema::URL_VARIABLE
                );
                return None;
            }
        };
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&schema.url)
            .await
            .unwrap();
        Some(Schema { pool, schema })
    }
}
