//! Versioned schema changes, safe to run at every start.
//!
//! Each [`Migration`] has a version; the database remembers the highest version applied in
//! `PRAGMA user_version`. [`migrate`] applies, in order and each in its own transaction with
//! the version bump, those above it. Append migrations; never edit one that has shipped.

use rusqlite::{Connection, TransactionBehavior};

pub use crate::migration::Migration;

/// A migration that failed, or a database newer than this program.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        version: u32,
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error(
        "the database is at schema version {found}, newer than this program knows ({known}): \
         run a newer version"
    )]
    TooNew { found: u32, known: u32 },
    #[error("cannot read the schema version: {0}")]
    Version(rusqlite::Error),
}

/// Applies the migrations above the database's `user_version`.
pub fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), MigrateError> {
    let current: u32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(MigrateError::Version)?;
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if current > known {
        return Err(MigrateError::TooNew {
            found: current,
            known,
        });
    }
    for migration in migrations.iter().filter(|m| m.version > current) {
        let failed = |source| MigrateError::Failed {
            version: migration.version,
            name: migration.name,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        tx.execute_batch(migration.sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", migration.version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "migrated"
        );
    }
    Ok(())
}
