//! Migrations, embedded in the binary so that `shop` runs from anywhere.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::SqlitePool;

/// `(version, description, sql)`, in order. Append; never edit one that has shipped.
const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "users products orders",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "keel jobs",
        include_str!("../../migrations/sqlite/0002_keel_jobs.sql"),
    ),
    (
        3,
        "analytics events",
        include_str!("../../migrations/sqlite/0003_analytics.sql"),
    ),
    (
        4,
        "webhooks",
        include_str!("../../migrations/sqlite/0004_webhooks.sql"),
    ),
    (
        5,
        "jobs finished index",
        include_str!("../../migrations/sqlite/0005_jobs_finished_index.sql"),
    ),
];

#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

pub(super) async fn run(pool: &SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(SQLITE)).await?.run(pool).await
}

#[cfg(test)]
mod tests {
    /// When keel's queue schema changes, shop needs a new migration, not an edited one.
    #[test]
    fn the_frozen_job_migration_is_keels_current_schema() {
        let frozen = include_str!("../../migrations/sqlite/0002_keel_jobs.sql");
        let body = frozen.split_once('\n').map_or("", |(_, rest)| rest);
        assert_eq!(body.trim(), keel::jobs::sqlite::SCHEMA.trim());
    }
}
