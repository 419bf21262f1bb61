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
    /// Starts the thread. It owns `lock` (the database's lock file) and drops it only when it
    /// has committed its last write and closed the connection, however it is stopped.
    pub(super) fn start(
        conn: Connection,
        lock: std::fs::File,
        options: &Options,
    ) -> std::io::Result<Writer> {
        let (queue, messages) = mpsc::channel(options.queue_depth.max(1));
        let max_batch = options.max_batch.max(1);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                run(conn, messages, max_batch);
                drop(lock);
            })?;
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
    ///
    /// Gives up after 30 s (the writer stuck on the disk): the thread then goes on alone, and
    /// keeps the database's lock until it ends.
    pub async fn close(&self) {
        let (done, stopped) = oneshot::channel();
        let limit = Duration::from_secs(30);
        let sent = tokio::time::timeout(limit, self.queue.send(Message::Stop(done))).await;
        let acknowledged = match sent {
            Ok(Ok(())) => matches!(tokio::time::timeout(limit, stopped).await, Ok(Ok(()))),
            // The thread is gone already.
            Ok(Err(_)) => true,
            Err(_) => false,
        };
        if !acknowledged {
            tracing::error!("the database writer did not stop within 30 s");
            return;
        }
        let thread = self.stopped.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            // It has answered the stop: joining waits for the lock file to close, no more.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn run(conn: Connection, mut messages: mpsc::Receiver<Message>, max_batch: usize) {
    let mut batch: Vec<Work> = Vec::with_capacity(max_batch);
    let mut stops = Vec::new();
    while stops.is_empty() {
        match messages.blocking_recv() {
            Some(Message::Work(work)) => batch.push(work),
            Some(Message::Stop(done)) => stops.push(done),
            None => break,
        }
        while stops.is_empty() && batch.len() < max_batch {
            match messages.try_recv() {
                Ok(Message::Work(work)) => batch.push(work),
                Ok(Message::Stop(done)) => stops.push(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            commit(&conn, &mut batch);
        }
    }
    messages.close();
    // Handed over before the stop but not yet taken: commit them too (and answer every stop).
    while let Ok(message) = messages.try_recv() {
        match message {
            Message::Work(work) => batch.push(work),
            Message::Stop(done) => stops.push(done),
        }
        if batch.len() == max_batch {
            commit(&conn, &mut batch);
        }
    }
    if !batch.is_empty() {
        commit(&conn, &mut batch);
    }
    drop(conn);
    for done in stops {
        let _ = done.send(());
    }
}

/// Runs a batch in as few transactions as it takes (one, unless SQLite rolls a transaction
/// back by itself) and answers every caller.
fn commit(conn: &Connection, batch: &mut Vec<Work>) {
    let mut works = batch.drain(..);
    loop {
        match transaction(conn, &mut works) {
            Ended::Done => return,
            // Whatever the lost transaction held has been answered; the rest get a new one.
            Ended::Lost => continue,
        }
    }
}

enum Ended {
    /// Every closure has run and been answered.
    Done,
    /// The transaction was lost midway; closures remain.
    Lost,
}

/// One transaction: runs closures from `works` until they are done or the transaction is
/// lost, then commits and answers. A caller is answered `Ok` only after a `COMMIT` that held
/// its write; every other outcome answers an error.
fn transaction(conn: &Connection, works: &mut impl Iterator<Item = Work>) -> Ended {
    // A transaction left open by a failure we could not clean up would make BEGIN fail for
    // ever: end it first.
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %err, "cannot begin a write transaction");
        let err = Arc::new(err);
        for work in works {
            work(Err(&err));
        }
        return Ended::Done;
    }
    let mut answers: Vec<Answer> = Vec::new();
    for work in works.by_ref() {
        if let Err(err) = statement(conn, "SAVEPOINT keel_write") {
            tracing::error!(error = %err, "cannot open a savepoint");
            work(Err(&Arc::new(err)));
            return abandon(conn, answers, "the savepoint could not open");
        }
        match catch_unwind(AssertUnwindSafe(|| work(Ok(conn)))) {
            Ok(ran) if conn.is_autocommit() => {
                // SQLite rolled the whole transaction back by itself (a full disk, an I/O
                // error): the writes answered so far are gone with it.
                answers.push(ran.answer);
                return abandon(conn, answers, "SQLite rolled the transaction back");
            }
            Ok(ran) if ran.failed => {
                answers.push(ran.answer);
                if !undo(conn) {
                    return abandon(conn, answers, "a failed write could not be undone");
                }
            }
            Ok(ran) => match statement(conn, "RELEASE keel_write") {
                Ok(()) => answers.push(ran.answer),
                Err(err) => {
                    tracing::error!(error = %err, "cannot release a savepoint");
                    (ran.answer)(Some(&Arc::new(err)));
                    if !undo(conn) {
                        return abandon(conn, answers, "a savepoint could not be released");
                    }
                }
            },
            // The panic is the closure's: its caller hears `Abandoned`, the rest go on.
            Err(_) => {
                tracing::error!("a write closure panicked; its writes are rolled back");
                if conn.is_autocommit() || !undo(conn) {
                    return abandon(conn, answers, "a panicking write could not be undone");
                }
            }
        }
    }
    let failed = match conn.execute_batch("COMMIT") {
        Ok(()) => None,
        Err(err) => {
            tracing::error!(error = %err, writes = answers.len(), "commit failed");
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Some(Arc::new(err))
        }
    };
    answer_all(answers, failed.as_ref());
    Ended::Done
}

/// Rolls back what is left of the transaction and answers its callers with an error.
fn abandon(conn: &Connection, answers: Vec<Answer>, why: &str) -> Ended {
    tracing::error!(
        writes = answers.len(),
        "{why}; the transaction is rolled back"
    );
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let err = Arc::new(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
        Some(format!("{why}; the transaction was rolled back")),
    ));
    answer_all(answers, Some(&err));
    Ended::Lost
}

/// Answers callers; a panic while answering one (a `Drop` or conversion of the caller's
/// types) does not keep the others waiting.
fn answer_all(answers: Vec<Answer>, failed: Option<&Arc<rusqlite::Error>>) {
    for answer in answers {
        if catch_unwind(AssertUnwindSafe(|| answer(failed))).is_err() {
            tracing::error!("answering a write panicked");
        }
    }
}

fn statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Rolls back to the current savepoint and closes it; false if it could not.
fn undo(conn: &Connection) -> bool {
    let undone = statement(conn, "ROLLBACK TO keel_write")
        .and_then(|()| statement(conn, "RELEASE keel_write"));
    match undone {
        Ok(()) => true,
        Err(err) => {
            tracing::error!(error = %err, "cannot roll back a savepoint");
            false
        }
    }
}
