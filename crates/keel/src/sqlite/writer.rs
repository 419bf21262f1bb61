//! The writer: one thread, the only read-write connection, group commit.
//!
//! The thread waits for the first closure, then takes every other closure already waiting (up
//! to `max_batch`), and runs them in one `BEGIN IMMEDIATE … COMMIT`, each between `SAVEPOINT`
//! and `RELEASE`. A closure that returns an error, or panics, is rolled back to its savepoint:
//! its caller gets the error, the others keep their writes. Answers go out only after the
//! `COMMIT` returns, so a caller never hears of a write that could still be lost; when the
//! `COMMIT` fails, the transaction is rolled back and every caller of the batch hears
//! [`Error::Commit`], failed closures included (their own error is kept).
//!
//! The queue in front of the thread is bounded (`queue_depth`): when the database cannot keep
//! up, callers wait to hand their closure over instead of piling up memory.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{Error, Options};
use crate::RequestId;

/// What the writer thread runs: the caller's closure, returning how to answer once the
/// transaction's fate is known. Given an error instead of the connection (the transaction
/// could not begin), it answers its caller with that error at once.
type Work = Box<dyn FnOnce(Result<&Connection, &Arc<rusqlite::Error>>) -> Ran + Send>;

/// Answers a caller, given the batch's `COMMIT` error if there was one.
type Answer = Box<dyn FnOnce(Option<&Arc<rusqlite::Error>>) + Send>;

/// A closure that has run: whether it failed (and so was rolled back), and its answer.
struct Ran {
    failed: bool,
    answer: Answer,
}

enum Message {
    Work(Work),
    /// Commit what came before, then stop.
    Stop(oneshot::Sender<()>),
}

/// The handle callers write through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer {
    queue: mpsc::Sender<Message>,
    stopped: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Writer {
    pub(super) fn start(conn: Connection, options: &Options) -> std::io::Result<Writer> {
        let (queue, messages) = mpsc::channel(options.queue_depth.max(1));
        let max_batch = options.max_batch.max(1);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, messages, max_batch))?;
        Ok(Writer {
            queue,
            stopped: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Runs `f` on the writer's connection inside its own savepoint, and answers once the
    /// transaction that holds it has committed. `Err` from `f` rolls back `f`'s writes only.
    ///
    /// `f` runs on the writer thread while every other caller waits: keep it to statements
    /// (prepare them with `prepare_cached`), never I/O or waiting. It runs in the caller's
    /// [`RequestId`] scope, so a job it enqueues carries the caller's request id.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, E>>();
        let request_id = RequestId::current();
        let work: Work = Box::new(move |conn| {
            let conn = match conn {
                Ok(conn) => conn,
                Err(err) => {
                    let _ = tx.send(Err(E::from(Error::Commit(err.clone()))));
                    return Ran {
                        failed: true,
                        answer: Box::new(|_| {}),
                    };
                }
            };
            let result = match request_id {
                Some(id) => id.sync_scope(|| f(conn)),
                None => f(conn),
            };
            Ran {
                failed: result.is_err(),
                answer: Box::new(move |commit_failed| {
                    let answer = match (result, commit_failed) {
                        (Ok(_), Some(err)) => Err(E::from(Error::Commit(err.clone()))),
                        (result, _) => result,
                    };
                    let _ = tx.send(answer);
                }),
            }
        });
        if self.queue.send(Message::Work(work)).await.is_err() {
            return Err(E::from(Error::Closed));
        }
        match rx.await {
            Ok(answer) => answer,
            Err(_) => Err(E::from(Error::Abandoned)),
        }
    }

    /// A round trip through the writer: succeeds when it takes work and commits.
    pub async fn ping(&self) -> Result<(), Error> {
        self.write(|conn| {
            conn.prepare_cached("SELECT 1")?
                .query_row([], |_| Ok(()))
                .map_err(Error::from)
        })
        .await
    }

    /// Commits what was handed over before, then stops the thread. Later writes get
    /// [`Error::Closed`].
    pub async fn close(&self) {
        let (done, stopped) = oneshot::channel();
        if self.queue.send(Message::Stop(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(30), stopped).await;
        }
        let thread = self.stopped.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            // The thread has answered the stop (or is gone): joining does not block long.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn run(conn: Connection, mut messages: mpsc::Receiver<Message>, max_batch: usize) {
    let mut batch: Vec<Work> = Vec::with_capacity(max_batch);
    let mut stop = None;
    while stop.is_none() {
        match messages.blocking_recv() {
            Some(Message::Work(work)) => batch.push(work),
            Some(Message::Stop(done)) => stop = Some(done),
            None => break,
        }
        while stop.is_none() && batch.len() < max_batch {
            match messages.try_recv() {
                Ok(Message::Work(work)) => batch.push(work),
                Ok(Message::Stop(done)) => stop = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            commit(&conn, &mut batch);
        }
    }
    messages.close();
    // Written before the stop arrived but not yet taken: commit them too.
    while let Ok(Message::Work(work)) = messages.try_recv() {
        batch.push(work);
        if batch.len() == max_batch {
            commit(&conn, &mut batch);
        }
    }
    if !batch.is_empty() {
        commit(&conn, &mut batch);
    }
    drop(conn);
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

/// Runs a batch in one transaction and answers every caller.
fn commit(conn: &Connection, batch: &mut Vec<Work>) {
    if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %err, "cannot begin a write transaction");
        let err = Arc::new(err);
        for work in batch.drain(..) {
            work(Err(&err));
        }
        return;
    }
    let mut answers = Vec::with_capacity(batch.len());
    for work in batch.drain(..) {
        if let Err(err) = statement(conn, "SAVEPOINT keel_write") {
            tracing::error!(error = %err, "cannot open a savepoint");
            work(Err(&Arc::new(err)));
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| work(Ok(conn)))) {
            Ok(ran) => {
                if ran.failed {
                    undo(conn);
                } else if let Err(err) = statement(conn, "RELEASE keel_write") {
                    tracing::error!(error = %err, "cannot release a savepoint");
                    undo(conn);
                }
                answers.push(ran.answer);
            }
            // The panic is the closure's: its caller hears `Abandoned`, the rest go on.
            Err(_) => {
                tracing::error!("a write closure panicked; its writes are rolled back");
                undo(conn);
            }
        }
    }
    let failed = match conn.execute_batch("COMMIT") {
        Ok(()) => None,
        Err(err) => {
            tracing::error!(error = %err, writes = answers.len(), "commit failed");
            let _ = conn.execute_batch("ROLLBACK");
            Some(Arc::new(err))
        }
    };
    for answer in answers {
        answer(failed.as_ref());
    }
}

fn statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Rolls back to the current savepoint and closes it.
fn undo(conn: &Connection) {
    let undone = statement(conn, "ROLLBACK TO keel_write")
        .and_then(|()| statement(conn, "RELEASE keel_write"));
    if let Err(err) = undone {
        tracing::error!(error = %err, "cannot roll back a savepoint");
    }
}
