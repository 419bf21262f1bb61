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
