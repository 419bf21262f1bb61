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
                let install = format!("{url}: {err}; set {}", pg_schema::URL_VARIABLE);
                super::skip::skip("PostgreSQL", &install);
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
