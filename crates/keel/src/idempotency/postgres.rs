//! Idempotency answers in PostgreSQL: [`MIGRATIONS`] for the migrations, [`save_answer`] on
//! the transaction that creates the record ([`save`] for a handler that builds its own
//! response), [`PgIdempotency`] for the
//! [`IdempotencyLayer`](crate::idempotency::IdempotencyLayer), [`prune`] for a retention task.
//!
//! Instances that share the database share the answers: a retry that reaches another instance
//! is replayed there, and two instances serving one key at the same moment cannot both commit
//! (the key is the primary key; the loser's [`save`] says false and its transaction rolls back).

use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use crate::idempotency::{
    Answer, Claim, Idempotency, IdempotencyStore, SaveError, Saved, StoredAnswer, Unkeyed,
};
use crate::ApiError;

/// The migrations of the answers' table, numbered from 1: an application places them among its
/// own with [`Migration::at`](crate::migration::Migration::at), as it does the queue's.
pub const MIGRATIONS: &[crate::migration::Migration] = &[crate::migration::Migration::new(
    1,
    "keel idempotency",
    SCHEMA,
)];

/// The table of stored answers.
pub const SCHEMA: &str = r#"
CREATE TABLE keel_idempotency (
    key         TEXT        PRIMARY KEY,
    fingerprint TEXT        NOT NULL,
    status      SMALLINT    NOT NULL,
    location    TEXT,
    body        BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX keel_idempotency_created ON keel_idempotency (created_at);
"#;

/// Stores the answer of the request that holds `claim`, on the transaction that creates the
/// record. An answer stored under the key more than the claim's time to live ago is replaced.
/// False when the key is taken already (another request with the same key committed
/// first): return an error so that the transaction rolls back, such as
/// [`in_progress`](crate::idempotency::in_progress).
pub async fn save(
    conn: &mut PgConnection,
    claim: &Claim,
    status: u16,
    location: Option<&str>,
    body: &[u8],
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO keel_idempotency (key, fingerprint, status, location, body) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO UPDATE SET \
         fingerprint = excluded.fingerprint, status = excluded.status, \
         location = excluded.location, body = excluded.body, created_at = now() \
         WHERE keel_idempotency.created_at < now() - make_interval(secs => $6)",
    )
    .bind(&claim.key)
    .bind(&claim.fingerprint)
    .bind(i16::try_from(status).unwrap_or(i16::MAX))
    .bind(location)
    .bind(body)
    .bind(claim.ttl.as_secs_f64())
    .execute(conn)
    .await?;
    claim.mark_saved();
    Ok(inserted.rows_affected() == 1)
}

/// Stores the answer of the request whose key is `key` (nothing, for a request without one)
/// on the transaction that creates the record, and returns it as the handler's [`Saved`]
/// answer. On an error, let the transaction roll back.
pub async fn save_answer(
    conn: &mut PgConnection,
    key: &Idempotency,
    answer: Answer,
) -> Result<Saved, SaveError<sqlx::Error>> {
    let Some(claim) = &key.0 else {
        return Ok(Unkeyed(()).answer(answer));
    };
    let (status, location) = (answer.status().as_u16(), answer.location());
    let inserted = save(conn, claim, status, location, answer.body()).await;
    Saved::stored(answer, inserted)
}

/// Deletes up to `limit` answers stored more than `ttl` ago; returns how many.
pub async fn prune(pool: &PgPool, ttl: Duration, limit: usize) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(
        "DELETE FROM keel_idempotency WHERE key IN ( \
           SELECT key FROM keel_idempotency \
           WHERE created_at < now() - make_interval(secs => $1) LIMIT $2)",
    )
    .bind(ttl.as_secs_f64())
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

/// The answers in a database whose schema includes [`SCHEMA`], each valid for `ttl`.
#[derive(Debug, Clone)]
pub struct PgIdempotency {
    pool: PgPool,
    ttl: Duration,
}

impl PgIdempotency {
    /// Answers in `pool`'s database, replayed for `ttl` after they were stored.
    pub fn new(pool: PgPool, ttl: Duration) -> Self {
        Self { pool, ttl }
    }
}

impl IdempotencyStore for PgIdempotency {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    async fn lookup(&self, key: &str) -> Result<Option<StoredAnswer>, ApiError> {
        let row: Option<(String, i16, Option<String>, Vec<u8>)> = sqlx::query_as(
            "SELECT fingerprint, status, location, body FROM keel_idempotency \
             WHERE key = $1 AND created_at >= now() - make_interval(secs => $2)",
        )
        .bind(key)
        .bind(self.ttl.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map(|(fingerprint, status, location, body)| StoredAnswer {
                fingerprint,
                status: u16::try_from(status).unwrap_or(500),
                location,
                body,
            }),
        )
    }

    async fn save(&self, claim: &Claim, answer: &StoredAnswer) -> Result<bool, ApiError> {
        let mut conn = self.pool.acquire().await?;
        Ok(save(
            &mut conn,
            claim,
            answer.status,
            answer.location.as_deref(),
            &answer.body,
        )
        .await?)
    }
}
