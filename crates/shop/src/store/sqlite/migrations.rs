//! Migrations, embedded in the binary so that `shop` runs from anywhere.
//!
//! The applied version lives in `PRAGMA user_version`. Databases created before that, whose
//! versions sqlx recorded in `_sqlx_migrations`, start from the highest version recorded there.

use keel::sqlite::{migrate, MigrateError, Migration};
use rusqlite::{Connection, OptionalExtension};

/// In order. Append; never edit one that has shipped.
const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "users products orders",
        sql: include_str!("../../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "keel jobs",
        sql: include_str!("../../../migrations/sqlite/0002_keel_jobs.sql"),
    },
    Migration {
        version: 3,
        name: "analytics events",
        sql: include_str!("../../../migrations/sqlite/0003_analytics.sql"),
    },
    Migration {
        version: 4,
        name: "webhooks",
        sql: include_str!("../../../migrations/sqlite/0004_webhooks.sql"),
    },
    Migration {
        version: 5,
        name: "jobs finished index",
        sql: include_str!("../../../migrations/sqlite/0005_jobs_finished_index.sql"),
    },
    Migration {
        version: 6,
        name: "retention indexes",
        sql: include_str!("../../../migrations/sqlite/0006_retention_indexes.sql"),
    },
    Migration {
        version: 7,
        name: "keel job counts",
        sql: include_str!("../../../migrations/sqlite/0007_keel_job_counts.sql"),
    },
    Migration {
        version: 8,
        name: "endpoint rotation and deletion",
        sql: include_str!("../../../migrations/sqlite/0008_endpoint_rotation_deletion.sql"),
    },
    Migration {
        version: 9,
        name: "keel idempotency",
        sql: include_str!("../../../migrations/sqlite/0009_keel_idempotency.sql"),
    },
];

pub(super) fn run(conn: &mut Connection) -> Result<(), MigrateError> {
    adopt_sqlx_history(conn).map_err(MigrateError::Version)?;
    migrate(conn, SQLITE)
}

/// Carries the version of a database migrated by sqlx over to `user_version`.
fn adopt_sqlx_history(conn: &Connection) -> rusqlite::Result<()> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if current != 0 {
        return Ok(());
    }
    let recorded: Option<u32> = conn
        .query_row(
            "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
            [],
            |row| row.get(0),
        )
        .optional()
        .or_else(|err| match err {
            // No such table: a database that sqlx never migrated.
            rusqlite::Error::SqliteFailure(..) => Ok(None),
            other => Err(other),
        })?
        .flatten();
    if let Some(version) = recorded {
        conn.pragma_update(None, "user_version", version)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// When keel's queue schema changes, shop needs a new migration, not an edited one.
    #[test]
    fn the_frozen_job_migration_is_keels_current_schema() {
        let frozen = include_str!("../../../migrations/sqlite/0002_keel_jobs.sql");
        let body = frozen.split_once('\n').map_or("", |(_, rest)| rest);
        assert_eq!(body.trim(), keel::jobs::sqlite::SCHEMA.trim());
        let frozen = include_str!("../../../migrations/sqlite/0005_jobs_finished_index.sql");
        let body = frozen.split_once('\n').map_or("", |(_, rest)| rest);
        assert_eq!(
            body.trim(),
            keel::jobs::sqlite::SCHEMA_FINISHED_INDEX.trim()
        );
        let frozen = include_str!("../../../migrations/sqlite/0007_keel_job_counts.sql");
        let body = frozen.split_once('\n').map_or("", |(_, rest)| rest);
        assert_eq!(body.trim(), keel::jobs::sqlite::SCHEMA_COUNTS.trim());
        let frozen = include_str!("../../../migrations/sqlite/0009_keel_idempotency.sql");
        let body = frozen.split_once('\n').map_or("", |(_, rest)| rest);
        assert_eq!(body.trim(), keel::sqlite::idempotency::SCHEMA.trim());
    }
}
