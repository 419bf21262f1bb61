//! Migrations, embedded in the binary so that `shop` runs from anywhere.
//!
//! The applied version lives in `PRAGMA user_version`. Databases created before that, whose
//! versions sqlx recorded in `_sqlx_migrations`, start from the highest version recorded there.

use keel::sqlite::{migrate, MigrateError, Migration};
use rusqlite::{Connection, OptionalExtension};

/// In order. Append; never edit one that has shipped. keel's own tables are keel's constants,
/// placed at the versions they shipped at (keel never edits a migration either).
const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "users products orders",
        sql: include_str!("../../../migrations/sqlite/0001_init.sql"),
    },
    keel::jobs::sqlite::MIGRATIONS[0].at(2),
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
    keel::jobs::sqlite::MIGRATIONS[2].at(5),
    Migration {
        version: 6,
        name: "retention indexes",
        sql: include_str!("../../../migrations/sqlite/0006_retention_indexes.sql"),
    },
    keel::jobs::sqlite::MIGRATIONS[1].at(7),
    Migration {
        version: 8,
        name: "endpoint rotation and deletion",
        sql: include_str!("../../../migrations/sqlite/0008_endpoint_rotation_deletion.sql"),
    },
    keel::idempotency::sqlite::MIGRATIONS[0].at(9),
];

pub(super) fn run(conn: &mut Connection) -> Result<(), MigrateError> {
    adopt_sqlx_history(conn).map_err(MigrateError::version)?;
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
