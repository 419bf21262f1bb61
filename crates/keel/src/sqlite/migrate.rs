//! Versioned schema changes, safe to run at every start.
//!
//! Each [`Migration`] has a version; the database remembers the highest version applied in
//! `PRAGMA user_version`. [`migrate`] applies, in order and each in its own transaction with
//! the version bump, those above it. Append migrations; never edit one that has shipped.

use rusqlite::{Connection, TransactionBehavior};

pub use crate::migration::{MigrateError, Migration};

/// Applies the migrations above the database's `user_version`; a list whose versions do not
/// increase strictly is refused before anything runs.
pub fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), MigrateError> {
    crate::migration::check_order(migrations)?;
    let current: u32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(MigrateError::version)?;
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if current > known {
        return Err(MigrateError::TooNew {
            found: current,
            known,
        });
    }
    for migration in migrations.iter().filter(|m| m.version > current) {
        let failed = |source: rusqlite::Error| MigrateError::failed(migration, source);
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
