//! One handle on a service's database, SQLite or PostgreSQL as its URL says: [`Db::open`]
//! connects and migrates, and gives the job queue ([`Db::jobs`]) and the idempotency answers
//! ([`Db::answers`]) in that database. The service's own SQL stays its own: a handler matches
//! on the [`Db`] once, and each arm holds one engine's statements (a writer closure on SQLite,
//! a transaction on PostgreSQL), enqueuing with that engine's queue in the same commit.
//!
//! A variant exists for each engine feature built (`sqlite`, `postgres`); a URL naming an
//! engine the build lacks is [`OpenError::NotBuilt`]. Features add variants: a crate that
//! matches on [`Db`] with one engine's feature only stops compiling when another crate of the
//! build turns the other feature on, so match with both arms (turn both features on) or end
//! with `_ =>`.
//!
//! ```no_run
//! # #[cfg(all(feature = "sqlite", feature = "postgres"))] {
//! use keel::db::{Db, Schema};
//! use keel::migration::Migration;
//!
//! const SCHEMA: Schema = Schema {
//!     sqlite: &[Migration::new(1, "notes", "CREATE TABLE notes (body TEXT NOT NULL)")],
//!     postgres: &[Migration::new(1, "notes", "CREATE TABLE notes (body TEXT NOT NULL)")],
//! };
//!
//! async fn add(db: &Db, body: String) -> Result<(), keel::ApiError> {
//!     match db {
//!         Db::Sqlite { db, .. } => {
//!             let insert = move |conn: &rusqlite::Connection| {
//!                 conn.execute("INSERT INTO notes (body) VALUES (?1)", [body])?;
//!                 Ok::<_, keel::sqlite::Error>(())
//!             };
//!             db.writer().write(insert).await?;
//!         }
//!         Db::Postgres { pool, .. } => {
//!             sqlx::query("INSERT INTO notes (body) VALUES ($1)").bind(body).execute(pool).await?;
//!         }
//!     }
//!     Ok(())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "notes.db".into());
//! let db = Db::open(&url, &SCHEMA).await?;
//! add(&db, "hello".into()).await?;
//! db.close().await;
//! # Ok(()) }
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::idempotency::{Claim, IdempotencyStore, StoredAnswer};
use crate::jobs::{JobFilter, JobView, MinuteCount, Registry, RetryOutcome, Worker, WorkerConfig};
use crate::migration::{MigrateError, Migration};
use crate::ApiError;
use crate::{CancellationToken, TaskTracker};

#[cfg(feature = "postgres")]
use crate::{idempotency::postgres::PgIdempotency, jobs::postgres::PgQueue};
#[cfg(feature = "sqlite")]
use crate::{idempotency::sqlite::SqliteIdempotency, jobs::sqlite::SqliteQueue, sqlite::Database};

/// A service's migrations for each engine, keel's tables (the queue's, the answers') placed
/// among them with [`Migration::at`]. Only the list of the engine opened is applied.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Applied to a SQLite database.
    pub sqlite: &'static [Migration],
    /// Applied to a PostgreSQL database.
    pub postgres: &'static [Migration],
}

/// How [`Db::open_with`] opens a database: change the fields of `Settings::default()` (new
/// fields may come, and a field exists for each engine feature built).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Attempts of each job enqueued through [`Db::jobs`] (at least 1).
    pub job_max_attempts: u32,
    /// Most connections to PostgreSQL (at least 2).
    pub max_connections: u32,
    /// How long a PostgreSQL request waits for a free connection, and a write for a lock held
    /// by another session, before it fails with a 503 and `Retry-After`.
    pub wait: Duration,
    /// The SQLite writer's settings.
    #[cfg(feature = "sqlite")]
    pub sqlite: crate::sqlite::Options,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            job_max_attempts: 5,
            max_connections: 16,
            wait: Duration::from_secs(5),
            #[cfg(feature = "sqlite")]
            sqlite: crate::sqlite::Options::default(),
        }
    }
}

/// The file a `sqlite://PATH` or `sqlite:PATH` URL names, its query string cut; `None` for any
/// other URL, and for an in-memory database (each connection would see one of its own).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Why a database could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Neither a PostgreSQL URL nor a SQLite file.
    #[error(
        "unsupported database URL {0:?}: expected postgres://USER@HOST/DATABASE, sqlite://PATH \
         or a file's path"
    )]
    UnsupportedUrl(String),
    /// The URL names an engine this build of keel lacks (its feature is off).
    #[error("{url:?} needs keel's `{feature}` feature, which this build lacks")]
    NotBuilt {
        /// The URL as given.
        url: String,
        /// The missing feature.
        feature: &'static str,
    },
    /// The SQLite file could not open, or be migrated.
    #[cfg(feature = "sqlite")]
    #[error(transparent)]
    Sqlite(#[from] crate::sqlite::OpenError),
    /// The jobs left running by the last process could not be put back.
    #[cfg(feature = "sqlite")]
    #[error("cannot recover interrupted jobs: {0}")]
    Recover(#[from] crate::sqlite::Error),
    /// PostgreSQL could not be reached, or refused the URL.
    #[cfg(feature = "postgres")]
    #[error("cannot connect to PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A PostgreSQL migration failed.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
}

/// A database of either engine, with the job queue in it. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Db {
    /// A SQLite file: one writer, inline readers.
    #[cfg(feature = "sqlite")]
    Sqlite {
        /// The database.
        db: Database,
        /// Its queue: enqueue inside the writer closure of the change.
        jobs: SqliteQueue,
    },
    /// A PostgreSQL database, shared by every instance of the service.
    #[cfg(feature = "postgres")]
    Postgres {
        /// The pool of connections.
        pool: sqlx::PgPool,
        /// Its queue: enqueue on the transaction of the change.
        jobs: PgQueue,
    },
}

impl Db {
    /// Opens the database `url` names, with default [`Settings`]: `postgres://…` (or
    /// `postgresql://…`) is PostgreSQL; `sqlite://PATH`, `sqlite:PATH` or a bare path is a
    /// SQLite file, created if needed (an in-memory database or another scheme is
    /// [`OpenError::UnsupportedUrl`]). Applies the engine's migrations from `schema`; on SQLite, also puts
    /// back the jobs a stopped process left running, when the schema has the queue.
    pub async fn open(url: &str, schema: &Schema) -> Result<Db, OpenError> {
        Self::open_with(url, schema, &Settings::default()).await
    }

    /// Like [`Db::open`], with `settings`.
    pub async fn open_with(
        url: &str,
        schema: &Schema,
        settings: &Settings,
    ) -> Result<Db, OpenError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Self::open_postgres(url, schema, settings).await;
        }
        if let Some(path) = sqlite_path(url) {
            return Self::open_sqlite(&path, schema, settings).await;
        }
        // A bare path; anything with a scheme keel does not know is refused, not made a file.
        let bare = !(url.is_empty() || url.contains("://") || url.starts_with("sqlite:"));
        if bare && url != ":memory:" {
            return Self::open_sqlite(Path::new(url), schema, settings).await;
        }
        Err(OpenError::UnsupportedUrl(url.to_owned()))
    }

    #[cfg(feature = "sqlite")]
    async fn open_sqlite(
        path: &Path,
        schema: &Schema,
        settings: &Settings,
    ) -> Result<Db, OpenError> {
        let db = Database::open(path, settings.sqlite.clone(), schema.sqlite)?;
        let jobs = SqliteQueue::new(db.clone(), settings.job_max_attempts);
        // The file's lock makes this process its only user: what is running was interrupted.
        // (A schema without the queue has nothing to recover.)
        let has_queue = db.readers().read(|conn| {
            let tables =
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'keel_jobs'";
            conn.query_row(tables, [], |row| row.get::<_, i64>(0))
        })?;
        if has_queue > 0 {
            jobs.recover_interrupted().await?;
        }
        Ok(Db::Sqlite { db, jobs })
    }

    #[cfg(not(feature = "sqlite"))]
    async fn open_sqlite(path: &Path, _: &Schema, _: &Settings) -> Result<Db, OpenError> {
        Err(OpenError::NotBuilt {
            url: path.display().to_string(),
            feature: "sqlite",
        })
    }

    #[cfg(feature = "postgres")]
    async fn open_postgres(
        url: &str,
        schema: &Schema,
        settings: &Settings,
    ) -> Result<Db, OpenError> {
        use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
        use sqlx::{ConnectOptions as _, Connection as _};
        use std::str::FromStr as _;

        let lock_timeout = format!("{}ms", settings.wait.as_millis());
        let options = PgConnectOptions::from_str(url)?.options([("lock_timeout", lock_timeout)]);
        // One connection first, so that a server that cannot be reached says why (a pool
        // would only say that it timed out).
        options.connect().await?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(2))
            .acquire_timeout(settings.wait)
            .connect_with(options)
            .await?;
        crate::postgres::migrate(&pool, schema.postgres).await?;
        let jobs = PgQueue::new(pool.clone(), settings.job_max_attempts);
        Ok(Db::Postgres { pool, jobs })
    }

    #[cfg(not(feature = "postgres"))]
    async fn open_postgres(url: &str, _: &Schema, _: &Settings) -> Result<Db, OpenError> {
        Err(OpenError::NotBuilt {
            url: url.to_owned(),
            feature: "postgres",
        })
    }

    /// The job queue in this database.
    pub fn jobs(&self) -> Queue {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite { jobs, .. } => Queue::Sqlite(jobs.clone()),
            #[cfg(feature = "postgres")]
            Db::Postgres { jobs, .. } => Queue::Postgres(jobs.clone()),
        }
    }

    /// The idempotency answers in this database (its schema includes the engine's
    /// `keel::idempotency::*::MIGRATIONS`), each replayed for `ttl`.
    pub fn answers(&self, ttl: Duration) -> Answers {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite { db, .. } => Answers::Sqlite(SqliteIdempotency::new(db.clone(), ttl)),
            #[cfg(feature = "postgres")]
            Db::Postgres { pool, .. } => Answers::Postgres(PgIdempotency::new(pool.clone(), ttl)),
        }
    }

    /// Tells an idle worker here that a job is due: call it once a change that enqueued has
    /// committed.
    pub fn wake(&self) {
        self.jobs().wake();
    }

    /// Commits what was handed over and closes: SQLite's writer and lock, PostgreSQL's pool.
    pub async fn close(&self) {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite { db, .. } => db.close().await,
            #[cfg(feature = "postgres")]
            Db::Postgres { pool, .. } => pool.close().await,
        }
    }
}

/// A failed read or write of either engine; `?` in a handler makes it the envelope, by keel's
/// mapping of that engine's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// On SQLite.
    #[cfg(feature = "sqlite")]
    #[error(transparent)]
    Sqlite(#[from] crate::sqlite::Error),
    /// On PostgreSQL.
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Postgres(#[from] sqlx::Error),
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            #[cfg(feature = "sqlite")]
            Error::Sqlite(err) => err.into(),
            #[cfg(feature = "postgres")]
            Error::Postgres(err) => err.into(),
        }
    }
}

/// Runs `$body` with `$queue` bound to the engine's queue, its error made a [`Error`].
macro_rules! on_queue {
    ($self:expr, $queue:ident => $body:expr) => {
        match $self {
            #[cfg(feature = "sqlite")]
            Queue::Sqlite($queue) => Ok($body.await?),
            #[cfg(feature = "postgres")]
            Queue::Postgres($queue) => Ok($body.await?),
        }
    };
}

/// The job queue of a [`Db`], either engine.
#[derive(Debug, Clone)]
pub enum Queue {
    /// In a SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteQueue),
    /// In PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(PgQueue),
}

impl Queue {
    /// Starts the workers, owned by `tracker` and stopped by `shutdown`; on PostgreSQL also
    /// the listener that wakes them when any instance enqueues.
    pub fn spawn_workers(
        self,
        registry: Registry,
        config: WorkerConfig,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        match self {
            #[cfg(feature = "sqlite")]
            Queue::Sqlite(queue) => Worker::spawn(queue, registry, config, shutdown, tracker),
            #[cfg(feature = "postgres")]
            Queue::Postgres(queue) => {
                let (listener, listening) = (queue.clone(), shutdown.clone());
                tracker.spawn(async move { listener.listen(listening).await });
                Worker::spawn(queue, registry, config, shutdown, tracker);
            }
        }
    }

    /// Number of jobs by queue and state (states with none left out).
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>, Error> {
        on_queue!(self, queue => queue.counts())
    }

    /// Jobs newest first, filtered; keyset pagination by `before_id`.
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<JobView>, Error> {
        on_queue!(self, queue => queue.list(filter))
    }

    /// Puts a dead job back to pending, due now, its attempts reset.
    pub async fn retry(&self, id: i64) -> Result<RetryOutcome, Error> {
        on_queue!(self, queue => queue.retry(id))
    }

    /// Jobs finished per minute over the last `minutes` minutes, oldest first.
    pub async fn finished_per_minute(&self, minutes: u32) -> Result<Vec<MinuteCount>, Error> {
        on_queue!(self, queue => queue.finished_per_minute(minutes))
    }

    /// Tells an idle worker here that a job is due.
    pub fn wake(&self) {
        match self {
            #[cfg(feature = "sqlite")]
            Queue::Sqlite(queue) => queue.wake(),
            #[cfg(feature = "postgres")]
            Queue::Postgres(queue) => queue.wake(),
        }
    }
}

/// The idempotency answers of a [`Db`], either engine: the store of an
/// [`IdempotencyLayer`](crate::idempotency::IdempotencyLayer).
#[derive(Debug, Clone)]
pub enum Answers {
    /// In a SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteIdempotency),
    /// In PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(PgIdempotency),
}

impl IdempotencyStore for Answers {
    fn ttl(&self) -> Duration {
        match self {
            #[cfg(feature = "sqlite")]
            Answers::Sqlite(store) => store.ttl(),
            #[cfg(feature = "postgres")]
            Answers::Postgres(store) => store.ttl(),
        }
    }

    async fn lookup(&self, key: &str) -> Result<Option<StoredAnswer>, ApiError> {
        match self {
            #[cfg(feature = "sqlite")]
            Answers::Sqlite(store) => store.lookup(key).await,
            #[cfg(feature = "postgres")]
            Answers::Postgres(store) => store.lookup(key).await,
        }
    }

    async fn save(&self, claim: &Claim, answer: &StoredAnswer) -> Result<bool, ApiError> {
        match self {
            #[cfg(feature = "sqlite")]
            Answers::Sqlite(store) => store.save(claim, answer).await,
            #[cfg(feature = "postgres")]
            Answers::Postgres(store) => store.save(claim, answer).await,
        }
    }
}
