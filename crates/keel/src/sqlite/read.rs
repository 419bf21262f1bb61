//! Inline reads: a read-only connection per thread, statements cached, no hop to another
//! thread.
//!
//! A read is a few microseconds of work on pages that are almost always in memory; sending it
//! to another thread and back would cost more than the query. So [`Readers::read`] runs the
//! closure on the calling thread (a tokio worker thread, normally) with that thread's own
//! connection to the database, opening it on first use. A connection is taken out of the
//! thread's list for the duration of the closure, so a closure that reads again (or a second
//! database on the same thread) never finds it borrowed.
//!
//! Connections of a closed or dropped `Readers` are dropped the next time their thread opens a
//! connection.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::Connection;

use super::Error;

/// Gives each `Readers` its own key in the per-thread lists.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CONNECTIONS: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
}

struct Cached {
    id: u64,
    owner: Weak<Inner>,
    conn: Connection,
}

/// Read-only access to a database, one connection per thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Readers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: u64,
    path: PathBuf,
    busy_timeout: Duration,
    closed: AtomicBool,
}

impl Readers {
    pub(super) fn new(path: PathBuf, busy_timeout: Duration) -> Self {
        Readers {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                path,
                busy_timeout,
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Runs `f` with this thread's read-only connection. Prepare statements with
    /// `prepare_cached`: each connection keeps them.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let (conn, opened) = match self.take() {
            Some(conn) => (conn, false),
            None => (
                super::open_read_only(&self.inner.path, self.inner.busy_timeout)?,
                true,
            ),
        };
        let result = f(&conn);
        self.put_back(conn, opened);
        result.map_err(Error::from)
    }

    /// Refuses further reads. Connections already open are dropped by their threads.
    pub(super) fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
    }

    fn take(&self) -> Option<Connection> {
        CONNECTIONS.with(|cell| {
            let mut list = cell.try_borrow_mut().ok()?;
            let at = list.iter().position(|c| c.id == self.inner.id)?;
            Some(list.swap_remove(at).conn)
        })
    }

    /// Returns `conn` to this thread's list. When it was just opened, the list is pruned of
    /// the connections of databases that are gone or closed first: pruning costs an atomic
    /// operation per entry, so it is not done on every read.
    fn put_back(&self, conn: Connection, opened: bool) {
        CONNECTIONS.with(|cell| {
            let Ok(mut list) = cell.try_borrow_mut() else {
                return;
            };
            if opened {
                list.retain(|c| {
                    c.owner
                        .upgrade()
                        .is_some_and(|owner| !owner.closed.load(Ordering::Acquire))
                });
            }
            list.push(Cached {
                id: self.inner.id,
                owner: Arc::downgrade(&self.inner),
                conn,
            });
        });
    }
}
