//! SQLite used the way it is fastest: one writer that commits many callers' work at once, and
//! reads served inline on read-only connections.
//!
//! SQLite allows one writer at a time, and a write transaction costs about the same whether it
//! holds one request's rows or a hundred: the price is the lock, the WAL append and the sync.
//! So a [`Database`] has exactly one read-write connection, owned by a dedicated thread (the
//! [`Writer`]). Callers send it closures; it takes every closure waiting, runs each inside its
//! own savepoint of one transaction, commits once, and only then answers each caller. A closure
//! that fails rolls back its savepoint alone; the others commit. A failed `COMMIT` answers
//! every caller of that batch with [`Error::Commit`] (503 with `Retry-After`).
//!
//! Reads never queue behind writes: [`Readers`] keeps a read-only connection per thread (on a
//! tokio runtime, one per worker thread) with its prepared statements cached, and runs the
//! query on the calling thread, holding nothing across an `.await`. WAL lets them read beside
//! the writer, and since the writer answers after its `COMMIT`, a read made after an answer
//! sees that write.
//!
//! Only one process may write a database file: [`Database::open`] takes an exclusive lock on a
//! sidecar file (`PATH.lock`) and refuses to open when another process holds it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use keel::sqlite::{Database, Migration, Options};
//!
//! const MIGRATIONS: &[Migration] = &[Migration {
//!     version: 1,
//!     name: "todos",
//!     sql: "CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL UNIQUE);",
//! }];
//!
//! let db = Database::open("todos.db", Options::default(), MIGRATIONS)?;
//! let id: i64 = db
//!     .writer()
//!     .write(|conn| {
//!         conn.prepare_cached("INSERT INTO todos (title) VALUES (?1) RETURNING id")?
//!             .query_row(["write the docs"], |row| row.get(0))
//!             .map_err(keel::sqlite::Error::from)
//!     })
//!     .await?;
//! let title: String = db.readers().read(|conn| {
//!     conn.prepare_cached("SELECT title FROM todos WHERE id = ?1")?
//!         .query_row([id], |row| row.get(0))
//! })?;
//! # Ok(()) }
//! ```

mod checkpoint;
mod error;
mod migrate;
mod read;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use error::Error;
pub use migrate::{migrate, MigrateError, Migration};
pub use read::Readers;
pub use writer::Writer;

/// How a [`Database`] is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a connection waits on a lock held by another connection before `SQLITE_BUSY`.
    pub busy_timeout: Duration,
    /// Most closures committed in one transaction.
    pub max_batch: usize,
    /// Closures waiting for the writer before callers wait to hand theirs over.
    pub queue_depth: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            busy_timeout: Duration::from_secs(5),
            max_batch: 512,
            queue_depth: 4096,
        }
    }
}

/// Why a database could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process holds the database's lock file.
    #[error(
        "{path} is in use by another process (lock file {lock} is held): only one process may \
         write a SQLite database; stop the other one or use another file"
    )]
    InUse {
        /// The database file.
        path: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// The lock file could not be created.
    #[error("cannot create the lock file {lock}: {source}")]
    Lock {
        /// The lock file.
        lock: PathBuf,
        /// Why it could not be created.
        source: std::io::Error,
    },
    /// SQLite refused to open or configure the file.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A migration failed.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// The writer thread could not start.
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
}

/// One SQLite database file: its [`Writer`], its [`Readers`], its checkpointer and its lock.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: Writer,
    readers: Readers,
    checkpointer: checkpoint::Checkpointer,
}

impl Database {
    /// Opens (creating it if needed) the database at `path`, takes its lock, applies the
    /// `migrations` not yet applied, and starts the writer.
    pub fn open(
        path: impl AsRef<Path>,
        options: Options,
        migrations: &[Migration],
    ) -> Result<Self, OpenError> {
        Self::open_with(path, options, |conn| migrate(conn, migrations))
    }

    /// Like [`Database::open`], with a function that brings the schema up to date on the
    /// writer's connection before anything else runs.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: Options,
        setup: impl FnOnce(&mut Connection) -> Result<(), MigrateError>,
    ) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let lock = lock(&path)?;
        let open_err = |source| OpenError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        configure(&conn, &options).map_err(open_err)?;
        // WAL: readers never wait for the writer. NORMAL: durable across process crashes;
        // only a power loss can take the last commits.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        setup(&mut conn)?;
        // Checkpoints (copying the WAL back into the database, with an fsync) run on their own
        // thread, so that the writer never stops for one while callers wait.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(open_err)?;
        // The two threads that write the file each hold the lock (one open file shared by two
        // handles): it is released when both have ended, not when the handles are dropped.
        let lock_for_checkpoints = lock.try_clone().map_err(|source| OpenError::Lock {
            lock: lock_path(&path),
            source,
        })?;
        let checkpointer = checkpoint::Checkpointer::start(&path, lock_for_checkpoints, &options)
            .map_err(OpenError::Thread)?;
        let writer = Writer::start(conn, lock, &options).map_err(OpenError::Thread)?;
        let readers = Readers::new(path, options.busy_timeout);
        Ok(Database {
            inner: Arc::new(Inner {
                writer,
                readers,
                checkpointer,
            }),
        })
    }

    /// The one writer.
    pub fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    /// The inline readers.
    pub fn readers(&self) -> &Readers {
        &self.inner.readers
    }

    /// Stops the writer once the closures already handed to it are committed, and the
    /// checkpointer after a last checkpoint, and closes the readers. The lock is released when
    /// both threads have ended, so that another process (or a new `Database` in this one) can
    /// open the file; a `Database` dropped without `close` releases it the same way once its
    /// last write is committed.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.checkpointer.close().await;
        self.inner.readers.close();
    }
}

/// Settings every connection gets, the writer's and the readers'.
fn configure(conn: &Connection, options: &Options) -> rusqlite::Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Opens a read-only connection to `path`.
fn open_read_only(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the exclusive lock on `PATH.lock`, held until the returned file is closed. The lock
/// is the operating system's (`flock`), so a process that dies releases it.
fn lock(path: &Path) -> Result<File, OpenError> {
    let lock = lock_path(path);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| OpenError::Lock {
            lock: lock.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::InUse {
            path: path.to_path_buf(),
            lock,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(OpenError::Lock { lock, source }),
    }
}
