//! What operators see of a queue, whatever the database: the same for every backend.

/// A job as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "postgres", derive(sqlx::FromRow))]
pub struct JobView {
    /// The job's id, in the order jobs were enqueued.
    pub id: i64,
    /// The queue it waits in (`Job::QUEUE`).
    pub queue: String,
    /// What it does (`Job::KIND`).
    pub kind: String,
    /// `pending`, `running`, `succeeded` or `dead`.
    pub state: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// Attempts it gets before it is dead.
    pub max_attempts: i64,
    /// Why the last attempt failed, cut to 1,000 bytes.
    pub last_error: Option<String>,
    /// When the job is (or was) due, RFC 3339.
    pub run_at: String,
    /// When it was enqueued, RFC 3339.
    pub created_at: String,
    /// The request that enqueued it.
    pub request_id: Option<String>,
}

/// Which jobs a queue's `list` returns.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<String>,
    /// Only jobs of this queue.
    pub queue: Option<String>,
    /// Only jobs with a smaller id: the last id of the previous page.
    pub before_id: Option<i64>,
    /// Most jobs returned.
    pub limit: u32,
}

/// What a queue's `retry` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The dead job is pending again, attempts reset.
    Retried(JobView),
    /// The job is not dead: nothing changed.
    NotDead(JobView),
    /// No such job.
    NotFound,
}

/// Jobs finished in one minute.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "postgres", derive(sqlx::FromRow))]
pub struct MinuteCount {
    /// The minute, `YYYY-MM-DDTHH:MMZ`.
    pub minute: String,
    /// Jobs that succeeded in it.
    pub succeeded: i64,
    /// Jobs that ran out of attempts in it.
    pub dead: i64,
}
