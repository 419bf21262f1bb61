//! Durable jobs: a queue kept in the service's own database, so that work enqueued with a
//! business write commits or rolls back with it, and survives a crash once committed.
//!
//! - A job is a serde payload with a [`Job::KIND`] (and a [`Job::QUEUE`]). Enqueue it with
//!   `sqlite::SqliteQueue::enqueue` (or `postgres::PgQueue::enqueue`) on the connection of the
//!   write that makes the business change: if the transaction rolls back, the job never existed; if it commits, the
//!   job will run even if the process dies the next instant.
//! - A [`Registry`] maps each kind to its handler. [`Worker`]s keep up to `concurrency` jobs
//!   running under short, renewed leases, run each with a per-job timeout, record outcomes as
//!   jobs finish, and retry failures with exponential backoff and jitter until `max_attempts`,
//!   when the job becomes `dead` with its last error. A job whose worker died is claimed again
//!   when its lease expires.
//! - Delivery is **at least once**: a job can run again after a crash between its work and the
//!   record of its success. Handlers keep their own idempotency (a delivery id, a unique key).
//! - On shutdown workers stop claiming, give running jobs a grace period, and hand the rest back
//!   to the queue, attempt not counted, to be run again at the next start.
//!
//! Each job runs inside a `job` span carrying `job_id`, `kind`, `attempt` and the
//! `request_id` of the request that enqueued it, and in that request id's scope.
//!
//! States: `pending` → `running` → `succeeded`, or back to `pending` (retry), or `dead`.

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod view;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use view::{JobFilter, JobView, MinuteCount, RetryOutcome};
pub use worker::{Backend, BackendError, Claimed, Lease, Outcome, Worker, WorkerConfig};

/// A kind of durable job: its payload is the implementing type.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct WelcomeEmail { user_id: i64 }
///
/// impl keel::jobs::Job for WelcomeEmail {
///     const KIND: &'static str = "welcome_email";
///     const QUEUE: &'static str = "email";
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// Stable name stored with each job; renaming it orphans queued jobs.
    const KIND: &'static str;
    /// The queue it is counted and listed under.
    const QUEUE: &'static str = "default";
}

/// Why a job failed, and whether to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    message: String,
    retry: Retry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// After the usual backoff.
    Backoff,
    /// Not before this long (a `Retry-After`), if attempts remain.
    After(Duration),
    /// Never: the job is dead at once.
    Never,
}

impl JobError {
    /// A failure worth another attempt after the backoff.
    pub fn retry(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            retry: Retry::Backoff,
        }
    }

    /// A failure worth another attempt, not before `delay`.
    pub fn retry_after(message: impl Into<String>, delay: Duration) -> Self {
        JobError {
            message: message.into(),
            retry: Retry::After(delay),
        }
    }

    /// A failure no retry can fix: the job becomes `dead` now.
    pub fn permanent(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            retry: Retry::Never,
        }
    }

    /// The message recorded as the job's `last_error`.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error> From<E> for JobError {
    fn from(err: E) -> Self {
        JobError::retry(err.to_string())
    }
}

/// What a handler knows about the job it runs.
#[derive(Debug, Clone)]
pub struct JobMeta {
    /// The job's id in the queue table.
    pub id: i64,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Attempts allowed before the job is dead.
    pub max_attempts: u32,
    /// The request that enqueued the job, if any.
    pub request_id: Option<String>,
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(&str, JobMeta) -> HandlerFuture + Send + Sync>;

/// Which handler runs each kind of job.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<&'static str, Handler>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs jobs of kind `J::KIND` with `handler`.
    ///
    /// ```
    /// use keel::jobs::{Job, JobError, JobMeta, Registry};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Ping;
    /// impl Job for Ping { const KIND: &'static str = "ping"; }
    ///
    /// let registry = Registry::new().register(|_: Ping, meta: JobMeta| async move {
    ///     tracing::info!(attempt = meta.attempt, "pong");
    ///     Ok::<(), JobError>(())
    /// });
    /// ```
    pub fn register<J, F, Fut>(mut self, handler: F) -> Self
    where
        J: Job,
        F: Fn(J, JobMeta) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |payload: &str, meta: JobMeta| {
            // A payload that no longer parses (the type changed under queued jobs) will not
            // parse on a retry either.
            let job = serde_json::from_str::<J>(payload).map_err(|err| {
                JobError::permanent(format!("payload does not parse as {}: {err}", J::KIND))
            });
            let handler = handler.clone();
            Box::pin(async move { handler(job?, meta).await })
        });
        self.handlers.insert(J::KIND, erased);
        self
    }

    fn get(&self, kind: &str) -> Option<&Handler> {
        self.handlers.get(kind)
    }
}

/// Milliseconds since the Unix epoch: the clock of `run_at` and leases, and of any SQLite
/// column a service keeps on it.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, ms)
}

/// Longest `last_error` kept, in bytes: enough for a cause, not for a response body.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
const MAX_ERROR_LEN: usize = 1000;

/// `message` cut to [`MAX_ERROR_LEN`] bytes, on a character boundary.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn truncate(message: &str) -> &str {
    if message.len() <= MAX_ERROR_LEN {
        return message;
    }
    let mut end = MAX_ERROR_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// A duration in whole milliseconds, saturating.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The delay before attempt `attempt + 1` after `attempt` failed: `base × 2^(attempt-1)`,
/// capped, then jittered into its upper half so that jobs failing together spread out.
pub fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    let delay = base.saturating_mul(1u32 << exponent).min(cap);
    let half = delay / 2;
    half + half.mul_f64(jitter_fraction())
}

/// A fraction in [0, 1) from a per-thread generator seeded from the OS.
fn jitter_fraction() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(uuid::Uuid::new_v4().as_u64_pair().0 | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let base = Duration::from_millis(1000);
        let cap = Duration::from_secs(3600);
        for attempt in 1..=6 {
            let full = base * 2u32.pow(attempt - 1);
            for _ in 0..100 {
                let d = backoff(base, cap, attempt);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
        for _ in 0..100 {
            let d = backoff(base, cap, 40);
            assert!(d >= cap / 2 && d <= cap, "{d:?}");
        }
    }
}
