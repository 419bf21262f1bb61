//! Idempotency answers in the service's SQLite database: [`MIGRATIONS`] for its migrations,
//! [`save_answer`] inside the writer closure that creates the record (see
//! [`crate::idempotency`] for a whole handler), [`SqliteIdempotency`] for the
//! [`IdempotencyLayer`](crate::idempotency::IdempotencyLayer), [`prune`] for the retention task.
//! [`save`] is the same write for a handler that builds its own response.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use crate::idempotency::{
    Answer, Claim, Idempotency, IdempotencyStore, SaveError, Saved, StoredAnswer, Unkeyed,
};
use crate::jobs::{ms, now_ms};
use crate::sqlite::Database;
use crate::ApiError;

/// The migrations of the answers' table, numbered from 1: an application places them among its
/// own with [`Migration::at`](crate::sqlite::Migration::at), as it does the queue's.
pub const MIGRATIONS: &[crate::sqlite::Migration] =
    &[crate::sqlite::Migration::new(1, "keel idempotency", SCHEMA)];

/// The table of stored answers; `created_at` is milliseconds since the Unix epoch.
pub const SCHEMA: &str = r#"
CREATE TABLE keel_idempotency (
    key         TEXT    PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    location    TEXT,
    body        BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX keel_idempotency_created ON keel_idempotency (created_at);
"#;

/// Stores the answer of the request that holds `claim`; call it inside the transaction that
/// creates the record. An answer stored under the key more than the claim's time to live ago
/// is replaced. False when the key is taken already (another instance served the same key at
/// the same moment): return an error, so that the transaction rolls back, such as
/// [`in_progress`](crate::idempotency::in_progress).
pub fn save(
    conn: &Connection,
    claim: &Claim,
    status: u16,
    location: Option<&str>,
    body: &[u8],
) -> rusqlite::Result<bool> {
    let now = now_ms();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO keel_idempotency (key, fingerprint, status, location, body, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key) DO UPDATE SET \
             fingerprint = excluded.fingerprint, status = excluded.status, \
             location = excluded.location, body = excluded.body, created_at = excluded.created_at \
             WHERE keel_idempotency.created_at < ?7",
        )?
        .execute(rusqlite::params![
            claim.key,
            claim.fingerprint,
            status,
            location,
            body,
            now,
            now.saturating_sub(ms(claim.ttl)),
        ])?;
    claim.mark_saved();
    Ok(inserted == 1)
}

/// Stores the answer of the request whose key is `key` (nothing, for a request without one)
/// and returns it as the handler's [`Saved`] answer: call it inside the writer closure that
/// creates the record, and return the [`Saved`] from the handler. On an error, return it from
/// the closure, so that the record rolls back with the answer.
pub fn save_answer(
    conn: &Connection,
    key: &Idempotency,
    answer: Answer,
) -> Result<Saved, SaveError<rusqlite::Error>> {
    let Some(claim) = &key.0 else {
        return Ok(Unkeyed(()).answer(answer));
    };
    let (status, location) = (answer.status().as_u16(), answer.location());
    let inserted = save(conn, claim, status, location, answer.body());
    Saved::stored(answer, inserted)
}

/// Deletes up to `limit` answers stored more than `ttl` ago; returns how many (a `u64`, as on
/// PostgreSQL). Synchronous, on the connection of a writer closure, where PostgreSQL's takes a
/// pool: each engine's way of writing.
pub fn prune(conn: &Connection, ttl: Duration, limit: usize) -> rusqlite::Result<u64> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM keel_idempotency WHERE key IN \
         (SELECT key FROM keel_idempotency WHERE created_at < ?1 LIMIT ?2)",
        )?
        .execute(rusqlite::params![
            now_ms().saturating_sub(ms(ttl)),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ])?;
    Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
}

/// The answers of a [`Database`] whose schema includes [`SCHEMA`], each valid for `ttl`.
#[derive(Debug, Clone)]
pub struct SqliteIdempotency {
    db: Database,
    ttl: Duration,
}

impl SqliteIdempotency {
    /// Answers in `db`, replayed for `ttl` after they were stored.
    pub fn new(db: Database, ttl: Duration) -> Self {
        Self { db, ttl }
    }
}

impl IdempotencyStore for SqliteIdempotency {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    async fn lookup(&self, key: &str) -> Result<Option<StoredAnswer>, ApiError> {
        let since = now_ms().saturating_sub(ms(self.ttl));
        let found = self.db.readers().read(|conn| {
            conn.prepare_cached(
                "SELECT fingerprint, status, location, body FROM keel_idempotency \
                 WHERE key = ?1 AND created_at >= ?2",
            )?
            .query_row(rusqlite::params![key, since], |row| {
                Ok(StoredAnswer {
                    fingerprint: row.get(0)?,
                    status: row.get(1)?,
                    location: row.get(2)?,
                    body: row.get(3)?,
                })
            })
            .optional()
        })?;
        Ok(found)
    }

    async fn save(&self, claim: &Claim, answer: &StoredAnswer) -> Result<bool, ApiError> {
        let (claim, answer) = (claim.clone(), answer.clone());
        let saved = self.db.writer().write(move |conn| {
            save(
                conn,
                &claim,
                answer.status,
                answer.location.as_deref(),
                &answer.body,
            )
            .map_err(crate::sqlite::Error::from)
        });
        Ok(saved.await?)
    }
}
