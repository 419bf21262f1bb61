//! The checkpointer: copies the WAL back into the database file from its own thread.
//!
//! SQLite's automatic checkpoint runs on the connection that commits, inside the commit that
//! crossed the threshold, fsync included: with one writer that would stop every caller for the
//! length of a disk flush. Here the writer's automatic checkpoint is off and this thread runs a
//! `PASSIVE` checkpoint every [`INTERVAL`] on a connection of its own. A passive checkpoint
//! never waits for the writer or the readers; it copies what it can, and the WAL is reused from
//! its start once everything in it is copied and no reader still needs it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::Options;

/// Time between two checkpoints.
const INTERVAL: Duration = Duration::from_millis(250);

/// The handle that stops the thread.
#[derive(Debug, Clone)]
pub(super) struct Checkpointer {
    stop: Arc<Mutex<Option<std::sync::mpsc::Sender<oneshot::Sender<()>>>>>,
}

impl Checkpointer {
    /// Starts the thread; it holds `lock` (a handle on the database's lock file) until it ends.
    pub(super) fn start(
        path: &Path,
        lock: std::fs::File,
        options: &Options,
    ) -> std::io::Result<Self> {
        let conn = Connection::open(path).map_err(std::io::Error::other)?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(std::io::Error::other)?;
        let (stop, stopped) = std::sync::mpsc::channel::<oneshot::Sender<()>>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let done = run(conn, stopped);
                drop(lock);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            })?;
        Ok(Checkpointer {
            stop: Arc::new(Mutex::new(Some(stop))),
        })
    }

    /// Runs a last checkpoint and stops the thread.
    pub(super) async fn close(&self) {
        let stop = self.stop.lock().ok().and_then(|mut s| s.take());
        let Some(stop) = stop else { return };
        let (done, finished) = oneshot::channel();
        if stop.send(done).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(30), finished).await;
        }
    }
}

/// Checkpoints until asked to stop; returns the stop's answer, to send once the lock is gone.
fn run(
    conn: Connection,
    stop: std::sync::mpsc::Receiver<oneshot::Sender<()>>,
) -> Option<oneshot::Sender<()>> {
    loop {
        let done = match stop.recv_timeout(INTERVAL) {
            Ok(done) => Some(done),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
        };
        let mode = if done.is_some() {
            "TRUNCATE"
        } else {
            "PASSIVE"
        };
        let checkpointed =
            conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()));
        if let Err(err) = checkpointed {
            tracing::warn!(error = %err, "checkpoint failed; the next one will try again");
        }
        if done.is_some() {
            return done;
        }
    }
}
