//! A PostgreSQL schema of its own for each test, dropped when the test ends: keel's helper,
//! shared by both crates' tests.

#[path = "../../../keel/tests/common/pg_schema.rs"]
mod pg_schema;

pub use pg_schema::{TestSchema as Schema, URL_VARIABLE};

impl Schema {
    /// A new empty schema for shop. Panics when PostgreSQL is not there: the run asked for it.
    pub async fn for_shop() -> Schema {
        Schema::create("shop_test").await.unwrap_or_else(|err| {
            panic!(
                "SHOP_TEST_ENGINE=postgres but {}: {err}",
                pg_schema::server_url()
            )
        })
    }
}
