//! What operators see of a queue, whatever the database: the same for every backend.

/// A job as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "postgres", derive(sqlx::FromRow))]
pub struct JobView {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub last_error: Option<String>,
    /// When the job is (or was) due, RFC 3339.
    pub run_at: String,
    pub created_at: String,
    /// The request that enqueued it.
    pub request_id: Option<String>,
}

/// Which jobs a queue's `list` returns.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<String>,
    pub queue: Option<String>,
    /// Only jobs with a smaller id: the last id of the previous page.
    pub before_id: Option<i64>,
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
    pub succeeded: i64,
    pub dead: i64,
}
