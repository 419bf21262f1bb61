//! Webhook subscribers, their deliveries, and inbound payment webhooks, on SQLite.
//!
//! A domain event is fanned out inside the transaction of the change that caused it: one
//! delivery row and one durable job per subscribed endpoint, so that the event is delivered if
//! and only if the change committed.

use keel::jobs::now_ms;
use keel::jobs::sqlite::SqliteQueue;
use rusqlite::{Connection, OptionalExtension, Row};

use super::{remember, SqliteStore, NOW_TEXT};
use crate::events::Event;
use crate::store::payloads::{DeliverWebhook, ProcessPayment};
use crate::store::webhooks::{webhook_payload, Delivery, Endpoint, EndpointSummary, Outgoing};
use crate::store::{Remember, Saved, StoreError};

impl Delivery {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Delivery {
            id: row.get(0)?,
            event: row.get(1)?,
            status: row.get(2)?,
            attempts: row.get(3)?,
            last_status_code: row.get(4)?,
            last_error: row.get(5)?,
            next_attempt_at: row.get(6)?,
        })
    }
}

impl SqliteStore {
    /// Adds a subscriber; with `key`, stores the answer (the secret included) under it in the
    /// same write.
    pub(crate) async fn create_endpoint(
        &self,
        url: &str,
        events: &[String],
        secret: &str,
        key: Remember,
    ) -> Result<(Endpoint, Saved), StoreError> {
        let events_json = serde_json::to_string(events)?;
        let (url, secret) = (url.to_owned(), secret.to_owned());
        let events = events.to_vec();
        self.writer()
            .write(move |conn| {
                let (id, created_at) = conn
                    .prepare_cached(
                        "INSERT INTO webhook_endpoints (url, events, secret) VALUES (?1, ?2, ?3) \
                         RETURNING id, created_at",
                    )?
                    .query_row([&url, &events_json, &secret], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?;
                let endpoint = Endpoint {
                    id,
                    url,
                    events,
                    secret,
                    created_at,
                };
                let saved = remember(conn, &key, endpoint.id, &endpoint)?;
                Ok((endpoint, saved))
            })
            .await
    }

    /// Every subscriber (the 100 newest) with its `latest` deliveries, newest first.
    pub(crate) async fn endpoint_summaries(
        &self,
        latest: usize,
    ) -> Result<Vec<EndpointSummary>, StoreError> {
        Ok(self.readers().read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, url, events, created_at FROM webhook_endpoints \
                 WHERE deleted_at IS NULL ORDER BY id DESC LIMIT 100",
            )?;
            let endpoints = stmt
                .query_map([], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get::<_, String>(2)?,
                        row.get(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<(i64, String, String, String)>>>()?;
            let mut summaries = Vec::with_capacity(endpoints.len());
            for (id, url, events, created_at) in endpoints {
                summaries.push(EndpointSummary {
                    id,
                    url,
                    events: serde_json::from_str(&events).unwrap_or_default(),
                    created_at,
                    latest_deliveries: latest_deliveries(conn, id, latest)?,
                });
            }
            Ok(summaries)
        })?)
    }

    /// The deliveries of an endpoint, newest first; `None` when the endpoint does not exist.
    pub(crate) async fn deliveries(
        &self,
        endpoint_id: i64,
    ) -> Result<Option<Vec<Delivery>>, StoreError> {
        Ok(self.readers().read(|conn| {
            let exists = conn
                .prepare_cached(
                    "SELECT 1 FROM webhook_endpoints WHERE id = ?1 AND deleted_at IS NULL",
                )?
                .exists([endpoint_id])?;
            if !exists {
                return Ok(None);
            }
            latest_deliveries(conn, endpoint_id, 500).map(Some)
        })?)
    }

    /// What an attempt of delivery `id` sends, and where.
    pub(crate) async fn outgoing(&self, id: i64) -> Result<Option<Outgoing>, StoreError> {
        Ok(self.readers().read(|conn| {
            // A deleted endpoint has nothing more to send.
            conn.prepare_cached(
                "SELECT e.url, e.secret, \
                   CASE WHEN e.previous_secret_until > ?2 THEN e.previous_secret END, \
                   d.message_id, d.payload \
                 FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                 WHERE d.id = ?1 AND e.deleted_at IS NULL",
            )?
            .query_row([id, now_ms()], |row| {
                Ok(Outgoing {
                    url: row.get(0)?,
                    secret: row.get(1)?,
                    previous_secret: row.get(2)?,
                    message_id: row.get(3)?,
                    payload: row.get(4)?,
                })
            })
            .optional()
        })?)
    }

    /// Records the answer of the last attempt of delivery `id`.
    pub(crate) async fn record_attempt(
        &self,
        id: i64,
        status_code: Option<u16>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let error = error.map(str::to_owned);
        self.writer()
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE webhook_deliveries SET last_status_code = ?2, last_error = ?3 \
                     WHERE id = ?1",
                )?
                .execute(rusqlite::params![
                    id,
                    status_code.map(i64::from),
                    error
                ])?;
                Ok(())
            })
            .await
    }

    /// Stores an inbound payment webhook and queues its processing, once per `message_id`:
    /// a repeat changes nothing. Returns whether it was new.
    pub(crate) async fn receive_payment(
        &self,
        message_id: &str,
        kind: &str,
        order_id: i64,
    ) -> Result<bool, StoreError> {
        let (message_id, kind) = (message_id.to_owned(), kind.to_owned());
        let jobs = self.jobs.clone();
        let new = self
            .writer()
            .write(move |conn| {
                let inbound: Option<i64> = conn
                    .prepare_cached(
                        "INSERT INTO inbound_webhooks (message_id, type, order_id) \
                         VALUES (?1, ?2, ?3) ON CONFLICT (message_id) DO NOTHING RETURNING id",
                    )?
                    .query_row(rusqlite::params![message_id, kind, order_id], |row| {
                        row.get(0)
                    })
                    .optional()?;
                let Some(inbound_id) = inbound else {
                    return Ok(false);
                };
                jobs.enqueue(conn, &ProcessPayment { inbound_id })?;
                Ok::<_, StoreError>(true)
            })
            .await?;
        if new {
            self.jobs.wake();
        }
        Ok(new)
    }
}

/// The `last_error` of deliveries stopped by their endpoint's deletion.
const ENDPOINT_DELETED: &str = "endpoint deleted";

/// The `limit` newest deliveries of an endpoint.
fn latest_deliveries(
    conn: &Connection,
    endpoint_id: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.id, d.event, \
           CASE j.state WHEN 'succeeded' THEN 'succeeded' WHEN 'dead' THEN 'dead' \
             ELSE 'pending' END AS status, \
           COALESCE(j.attempts, 0) AS attempts, d.last_status_code, d.last_error, \
           CASE WHEN j.state = 'pending' \
             THEN strftime('%Y-%m-%dT%H:%M:%fZ', j.run_at / 1000.0, 'unixepoch') \
           END AS next_attempt_at \
         FROM webhook_deliveries d LEFT JOIN keel_jobs j ON j.id = d.job_id \
         WHERE d.endpoint_id = ?1 ORDER BY d.id DESC LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(500);
    let rows = stmt.query_map([endpoint_id, limit], Delivery::from_row)?;
    rows.collect()
}

/// Queues `event` for every endpoint subscribed to it, inside the write of the change: one
/// delivery row and one job per endpoint, carrying the whole record.
pub(crate) fn fan_out(
    conn: &Connection,
    jobs: &SqliteQueue,
    event: &Event,
) -> Result<(), StoreError> {
    let name = event.kind().name();
    // The subscribers, each row with the time of the change: one statement, as on PostgreSQL.
    let endpoints = conn
        .prepare_cached(&format!(
            "SELECT id, {NOW_TEXT} FROM webhook_endpoints WHERE deleted_at IS NULL \
             AND EXISTS (SELECT 1 FROM json_each(events) WHERE value = ?1) ORDER BY id"
        ))?
        .query_map([name], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<(i64, String)>>>()?;
    let Some((_, now)) = endpoints.first() else {
        return Ok(());
    };
    let payload = webhook_payload(event, now);
    for &(endpoint_id, _) in &endpoints {
        let message_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let delivery_id: i64 = conn
            .prepare_cached(
                "INSERT INTO webhook_deliveries (endpoint_id, event, message_id, payload) \
                 VALUES (?1, ?2, ?3, ?4) RETURNING id",
            )?
            .query_row(
                rusqlite::params![endpoint_id, name, message_id, payload],
                |row| row.get(0),
            )?;
        let job_id = jobs.enqueue(conn, &DeliverWebhook { delivery_id })?;
        conn.prepare_cached("UPDATE webhook_deliveries SET job_id = ?2 WHERE id = ?1")?
            .execute([delivery_id, job_id])?;
    }
    Ok(())
}

impl SqliteStore {
    /// Deletes endpoint `id`: no new deliveries, and those still pending or running are
    /// `dead` with `last_error` "endpoint deleted". False when there is no such endpoint.
    pub(crate) async fn delete_endpoint(&self, id: i64) -> Result<bool, StoreError> {
        self.writer()
            .write(move |conn| {
                let deleted = conn
                    .prepare_cached(&format!(
                        "UPDATE webhook_endpoints SET deleted_at = {NOW_TEXT} \
                         WHERE id = ?1 AND deleted_at IS NULL"
                    ))?
                    .execute([id])?;
                if deleted == 0 {
                    return Ok(false);
                }
                conn.prepare_cached(&format!(
                    "UPDATE keel_jobs SET state = 'dead', locked_until = NULL, \
                       finished_at = {NOW_TEXT}, last_error = ?2 \
                     WHERE state IN ('pending', 'running') AND id IN \
                       (SELECT job_id FROM webhook_deliveries WHERE endpoint_id = ?1)"
                ))?
                .execute(rusqlite::params![id, ENDPOINT_DELETED])?;
                conn.prepare_cached(
                    "UPDATE webhook_deliveries SET last_error = ?2 \
                     WHERE endpoint_id = ?1 AND job_id IN \
                       (SELECT id FROM keel_jobs WHERE state = 'dead' AND last_error = ?2)",
                )?
                .execute(rusqlite::params![id, ENDPOINT_DELETED])?;
                Ok::<_, StoreError>(true)
            })
            .await
    }

    /// Gives endpoint `id` the new secret `secret`; the current one goes on signing beside it
    /// for `overlap`, then is forgotten. False when there is no such endpoint.
    pub(crate) async fn rotate_secret(
        &self,
        id: i64,
        secret: &str,
        overlap: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let secret = secret.to_owned();
        let until = now_ms().saturating_add(keel::jobs::ms(overlap));
        self.writer()
            .write(move |conn| {
                let rotated = conn
                    .prepare_cached(
                        "UPDATE webhook_endpoints \
                         SET previous_secret = secret, previous_secret_until = ?3, secret = ?2 \
                         WHERE id = ?1 AND deleted_at IS NULL",
                    )?
                    .execute(rusqlite::params![id, secret, until])?;
                Ok(rotated == 1)
            })
            .await
    }
}
