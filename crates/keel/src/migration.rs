//! One versioned schema change, whatever the database: SQLite's [`crate::sqlite::migrate`] and
//! PostgreSQL's `keel::postgres::migrate` apply lists of these.

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Strictly increasing, from 1.
    pub version: u32,
    /// For the logs and errors.
    pub name: &'static str,
    /// One or more statements.
    pub sql: &'static str,
}

impl Migration {
    /// Migration `version`, called `name`, running `sql`.
    pub const fn new(version: u32, name: &'static str, sql: &'static str) -> Self {
        Migration { version, name, sql }
    }

    /// The same change as version `version` of another list: how an application puts keel's
    /// migrations among its own.
    ///
    /// ```
    /// use keel::migration::Migration;
    ///
    /// const OURS: Migration = Migration::new(1, "users", "CREATE TABLE users (id BIGINT)");
    /// const QUEUE: Migration = Migration::new(1, "keel jobs", "CREATE TABLE keel_jobs (id BIGINT)");
    /// const MIGRATIONS: &[Migration] = &[OURS, QUEUE.at(2)];
    /// assert_eq!((MIGRATIONS[1].version, MIGRATIONS[1].name), (2, "keel jobs"));
    /// ```
    pub const fn at(self, version: u32) -> Self {
        Migration { version, ..self }
    }
}

/// The driver's error under a [`MigrateError`]: rusqlite's on SQLite, sqlx's on PostgreSQL.
pub type DriverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A migration that failed, a database newer than this program, or a list out of order: the
/// one error of both engines' `migrate`.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A migration's statements, or the record of its version, failed: nothing of it stayed.
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        /// Its version.
        version: u32,
        /// Its name.
        name: &'static str,
        /// What the database said.
        source: DriverError,
    },
    /// The database has migrations this program does not know: it is an older program.
    #[error(
        "the database is at schema version {found}, newer than this program knows ({known}): \
         run a newer version"
    )]
    TooNew {
        /// The database's version.
        found: u32,
        /// The highest version this program knows.
        known: u32,
    },
    /// The schema version could not be read or recorded.
    #[error("cannot read the schema version: {0}")]
    Version(DriverError),
    /// The list's versions do not increase strictly: refused before anything ran.
    #[error(
        "migration {version} ({name}) does not come after the one before it: versions must \
         increase strictly"
    )]
    Unordered {
        /// The version out of place.
        version: u32,
        /// Its migration's name.
        name: &'static str,
    },
}

impl MigrateError {
    /// Migration `migration` failed with `source`.
    pub fn failed(migration: &Migration, source: impl Into<DriverError>) -> Self {
        MigrateError::Failed {
            version: migration.version,
            name: migration.name,
            source: source.into(),
        }
    }

    /// The schema version could not be read or written.
    pub fn version(source: impl Into<DriverError>) -> Self {
        MigrateError::Version(source.into())
    }
}

/// Refuses a list whose versions do not increase strictly, before anything runs.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn check_order(migrations: &[Migration]) -> Result<(), MigrateError> {
    match migrations
        .windows(2)
        .find(|pair| pair[0].version >= pair[1].version)
    {
        Some(pair) => Err(MigrateError::Unordered {
            version: pair[1].version,
            name: pair[1].name,
        }),
        None => Ok(()),
    }
}
