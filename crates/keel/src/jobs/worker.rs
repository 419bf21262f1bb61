//! Workers: claim a batch, run it, record the outcomes, repeat.
//!
//! Each worker is one loop owned by the caller's [`TaskTracker`] and stopped by its
//! [`CancellationToken`]. A loop claims up to `batch_size` due jobs under a lease, runs them
//! concurrently (each in its own tokio task, so a panic fails that job only, and under the
//! per-job timeout), then records every outcome of the batch in one transaction. When nothing
//! is due it sleeps until the poll interval passes or an enqueue wakes it.
//!
//! The lease is twice the job timeout plus a second: a job cannot outlive its timeout, so a
//! lease that runs out means the worker is gone, and the job is claimed again. Shutdown: stop
//! claiming, let the running batch finish within the grace period, abort what is left and hand
//! it back to the queue with its attempt not counted.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{backoff, ms, now_ms, JobError, JobMeta, Registry, Retry};
use crate::error::panic_message;
use crate::RequestId;

/// A job taken from the queue by a worker, as a [`Backend`] returns it.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The job's id.
    pub id: i64,
    /// The lease's expiry as claimed (ms since the epoch): with the id, the proof that this
    /// worker still holds the job.
    pub lease_until: i64,
    pub queue: String,
    pub kind: String,
    /// The job's serde payload, as JSON.
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
    pub max_attempts: u32,
    /// The request that enqueued the job.
    pub request_id: Option<String>,
}

/// A claimed job as its worker knows it: id and lease expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    pub until: i64,
}

/// Whatever a [`Backend`] fails with; workers log it and try again.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

impl Claimed {
    /// The job's id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// This claim's lease, to record the job's outcome with.
    pub fn lease(&self) -> Lease {
        Lease {
            id: self.id,
            until: self.lease_until,
        }
    }
}

/// What becomes of a job after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Succeeded,
    /// Try again at this time (ms since the epoch).
    Retry { run_at_ms: i64, error: String },
    /// No more attempts.
    Dead { error: String },
}

/// Where a worker takes jobs from and records what became of them.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Takes up to `limit` due jobs (pending and due, or running with an expired lease),
    /// counting an attempt and leasing them for `lease`.
    fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<Claimed>, BackendError>> + Send;

    /// Records the outcomes of a batch, for the jobs whose lease is still the one given.
    fn finish(
        &self,
        outcomes: &[(Lease, Outcome)],
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Hands running jobs back to the queue, due now, their attempt not counted, if their
    /// lease is still the one given.
    fn release(&self, leases: &[Lease]) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Completes when an enqueue asks for a worker.
    fn woken(&self) -> impl Future<Output = ()> + Send;
}

/// How workers run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Worker loops in this process.
    pub workers: usize,
    /// Most jobs one loop claims and runs at once.
    pub batch_size: usize,
    /// Longest one attempt may run before it counts as failed.
    pub job_timeout: Duration,
    /// How often an idle worker looks for due jobs (an enqueue in this process wakes it sooner).
    pub poll_interval: Duration,
    /// Delay before the first retry; each retry doubles it.
    pub backoff_base: Duration,
    /// Longest delay between retries.
    pub backoff_cap: Duration,
    /// How long running jobs may go on after shutdown is asked.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            workers: 2,
            batch_size: 64,
            job_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl WorkerConfig {
    fn lease(&self) -> Duration {
        self.job_timeout
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(1))
    }
}

/// Starts the workers of a queue.
#[derive(Debug)]
pub struct Worker;

impl Worker {
    /// Spawns `config.workers` loops on `tracker`; they stop when `shutdown` is cancelled,
    /// after the grace period, and `tracker.wait()` completes when they have.
    pub fn spawn<B: Backend>(
        backend: B,
        registry: Registry,
        config: WorkerConfig,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        let registry = Arc::new(registry);
        let config = Arc::new(config);
        for n in 0..config.workers.max(1) {
            let work = work_loop(
                backend.clone(),
                registry.clone(),
                config.clone(),
                shutdown.clone(),
            );
            tracker.spawn(work.instrument(tracing::info_span!("worker", n)));
        }
    }
}

async fn work_loop<B: Backend>(
    backend: B,
    registry: Arc<Registry>,
    config: Arc<WorkerConfig>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let batch = match backend.claim(config.batch_size, config.lease()).await {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(error = %err, "cannot claim jobs; trying again");
                idle(&backend, &config, &shutdown).await;
                continue;
            }
        };
        if batch.is_empty() {
            idle(&backend, &config, &shutdown).await;
            continue;
        }
        if shutdown.is_cancelled() {
            // Claimed as shutdown began: back to the queue, untouched.
            let leases: Vec<Lease> = batch.iter().map(Claimed::lease).collect();
            record(&backend, &[], &leases, config.lease()).await;
            break;
        }
        let (outcomes, unfinished) = run_batch(&registry, &config, batch, &shutdown).await;
        record(&backend, &outcomes, &unfinished, config.lease()).await;
    }
}

async fn idle<B: Backend>(backend: &B, config: &WorkerConfig, shutdown: &CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = backend.woken() => {}
        () = tokio::time::sleep(config.poll_interval) => {}
    }
}

/// Writes a batch's outcomes, trying again for up to half the lease: past that the jobs
/// would be claimed again anyway (at-least-once allows it), and a success recorded late must
/// not be mistaken for a lost job.
async fn record<B: Backend>(
    backend: &B,
    outcomes: &[(Lease, Outcome)],
    unfinished: &[Lease],
    lease: Duration,
) {
    let deadline = tokio::time::Instant::now() + lease / 2;
    let mut pause = Duration::from_millis(50);
    loop {
        let finished = if outcomes.is_empty() {
            Ok(())
        } else {
            backend.finish(outcomes).await
        };
        let released = if unfinished.is_empty() {
            Ok(())
        } else {
            backend.release(unfinished).await
        };
        let err = match finished.and(released) {
            Ok(()) => return,
            Err(err) => err,
        };
        if tokio::time::Instant::now() + pause > deadline {
            break;
        }
        tracing::warn!(error = %err, "cannot record job outcomes; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    tracing::error!(
        jobs = outcomes.len() + unfinished.len(),
        "job outcomes not recorded: the jobs will run again when their lease expires"
    );
}

/// Runs a claimed batch; returns the outcomes and the leases of jobs cut short by shutdown.
async fn run_batch(
    registry: &Registry,
    config: &WorkerConfig,
    batch: Vec<Claimed>,
    shutdown: &CancellationToken,
) -> (Vec<(Lease, Outcome)>, Vec<Lease>) {
    let mut running = JoinSet::new();
    let mut jobs = HashMap::with_capacity(batch.len());
    for job in batch {
        let attempt = run_one(registry, config, &job);
        let handle = running.spawn(attempt);
        jobs.insert(handle.id(), job);
    }

    let mut outcomes = Vec::with_capacity(jobs.len());
    // Armed only once shutdown is asked; until then it is a year away and never selected.
    let grace = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    tokio::pin!(grace);
    let mut grace_started = false;
    loop {
        tokio::select! {
            next = running.join_next_with_id() => {
                let Some(next) = next else { break };
                let (task, result) = match next {
                    Ok((task, result)) => (task, result),
                    // Cancellation only follows `abort_all`, after which the loop has ended.
                    Err(join) if !join.is_panic() => continue,
                    Err(join) => {
                        let task = join.id();
                        let message = format!("job panicked: {}", panic_message(join.into_panic()));
                        (task, Err(JobError::retry(message)))
                    }
                };
                let Some(job) = jobs.remove(&task) else { continue };
                if let Err(err) = &result {
                    if err.message().starts_with("job panicked") {
                        tracing::warn!(
                            job_id = job.id,
                            kind = %job.kind,
                            request_id = job.request_id.as_deref().unwrap_or(""),
                            error = %err.message(),
                            "job attempt failed"
                        );
                    }
                }
                outcomes.push((job.lease(), outcome(&job, result, config)));
            }
            () = shutdown.cancelled(), if !grace_started => {
                grace_started = true;
                let grace_period = config.shutdown_grace.min(Duration::from_secs(86_400));
                grace.as_mut().reset(tokio::time::Instant::now() + grace_period);
            }
            () = &mut grace, if grace_started => {
                running.abort_all();
                // Keep what finished in the meantime: only the jobs really cut short go back.
                while let Some(next) = running.join_next_with_id().await {
                    if let Ok((task, result)) = next {
                        if let Some(job) = jobs.remove(&task) {
                            outcomes.push((job.lease(), outcome(&job, result, config)));
                        }
                    }
                }
                break;
            }
        }
    }
    let unfinished = jobs.into_values().map(|job| job.lease()).collect();
    (outcomes, unfinished)
}

/// One attempt of one job, in its span and its request's id scope, under the job timeout.
fn run_one(
    registry: &Registry,
    config: &WorkerConfig,
    job: &Claimed,
) -> impl Future<Output = Result<(), JobError>> + Send + 'static {
    let span = tracing::info_span!(
        "job",
        job_id = job.id,
        queue = %job.queue,
        kind = %job.kind,
        attempt = job.attempts,
        request_id = job.request_id.as_deref().unwrap_or(""),
    );
    let meta = JobMeta {
        id: job.id,
        attempt: job.attempts,
        max_attempts: job.max_attempts,
        request_id: job.request_id.clone(),
    };
    let run = registry
        .get(&job.kind)
        .map(|handler| handler(&job.payload, meta));
    let kind = job.kind.clone();
    let timeout = config.job_timeout;
    let request_id = job
        .request_id
        .as_deref()
        .map(|id| RequestId::from_header(Some(id)));
    let attempt = async move {
        let Some(run) = run else {
            return Err(JobError::permanent(format!(
                "no handler for job kind {kind:?}"
            )));
        };
        let result = match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(JobError::retry(format!(
                "timed out after {} ms",
                timeout.as_millis()
            ))),
        };
        if let Err(err) = &result {
            tracing::warn!(error = %err.message(), "job attempt failed");
        }
        result
    };
    let attempt = async move {
        match request_id {
            Some(id) => id.scope(attempt).await,
            None => attempt.await,
        }
    };
    attempt.instrument(span)
}

/// What becomes of `job` after an attempt that ended with `result`.
fn outcome(job: &Claimed, result: Result<(), JobError>, config: &WorkerConfig) -> Outcome {
    let err = match result {
        Ok(()) => return Outcome::Succeeded,
        Err(err) => err,
    };
    let last_attempt = job.attempts >= job.max_attempts;
    let delay = match err.retry {
        Retry::Never => None,
        _ if last_attempt => None,
        Retry::Backoff => Some(backoff(
            config.backoff_base,
            config.backoff_cap,
            job.attempts,
        )),
        Retry::After(delay) => Some(delay.min(config.backoff_cap)),
    };
    match delay {
        Some(delay) => Outcome::Retry {
            run_at_ms: now_ms().saturating_add(ms(delay)),
            error: err.message,
        },
        None => {
            tracing::error!(
                job_id = job.id,
                kind = %job.kind,
                attempts = job.attempts,
                request_id = job.request_id.as_deref().unwrap_or(""),
                error = %err.message,
                "job is dead"
            );
            Outcome::Dead { error: err.message }
        }
    }
}
