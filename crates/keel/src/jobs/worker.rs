//! Workers: keep up to `concurrency` jobs running, record each outcome as it finishes, claim
//! more as slots free.
//!
//! Each worker is one loop owned by the caller's [`TaskTracker`] and stopped by its
//! [`CancellationToken`]. A loop claims due jobs for its free slots, runs each in its own tokio
//! task (a panic fails that job only) under the per-job timeout, and records outcomes as jobs
//! finish: whatever has finished by the time the previous record is written goes in the next
//! one, so a slow job never keeps finished ones in `running`. When nothing is due it sleeps
//! until the poll interval passes or an enqueue wakes it.
//!
//! Leases are short (`lease`, 10 s by default) and renewed every third of it while the job
//! runs, so a job whose process died is claimed again within about one lease. A job whose
//! lease could not be renewed (another worker took it after the lease ran out) is aborted
//! here: at least once, never twice at the same time. Jobs running in this process are never
//! claimed by it again, whatever the clock says, so a clock step cannot start a second copy.
//!
//! Shutdown: stop claiming, let running jobs finish within the grace period, abort what is
//! left and hand it back to the queue with its attempt not counted.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::{AbortHandle, Id as TaskId, JoinSet};
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
    /// Its queue.
    pub queue: String,
    /// Its kind, which picks the handler.
    pub kind: String,
    /// The job's serde payload, as JSON.
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// Attempts it gets in all.
    pub max_attempts: u32,
    /// The request that enqueued the job.
    pub request_id: Option<String>,
}

/// A claimed job as its worker knows it: id and lease expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The job's id.
    pub id: i64,
    /// The lease's expiry as claimed, ms since the epoch.
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
    Retry {
        /// When, in ms since the epoch.
        run_at_ms: i64,
        /// Why this attempt failed.
        error: String,
    },
    /// No more attempts.
    Dead {
        /// Why the last attempt failed.
        error: String,
    },
}

/// Where a worker takes jobs from and records what became of them.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Takes up to `limit` due jobs (pending and due, or running with an expired lease, except
    /// those in `running_here`), counting an attempt and leasing them for `lease` from the
    /// moment the claim is written.
    fn claim(
        &self,
        limit: usize,
        lease: Duration,
        running_here: &[i64],
    ) -> impl Future<Output = Result<Vec<Claimed>, BackendError>> + Send;

    /// Extends the leases still held to `lease` from now; returns the new leases of those
    /// (a lease missing from the answer was lost).
    fn renew(
        &self,
        leases: &[Lease],
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<Lease>, BackendError>> + Send;

    /// Records outcomes, for the jobs whose lease is still the one given.
    fn finish(
        &self,
        outcomes: &[(Lease, Outcome)],
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// [`Backend::finish`] then [`Backend::claim`], as one unit when the backend can make them
    /// one (a single statement): a worker whose jobs finished records them and takes the next
    /// in one round trip. When it fails, neither happened. By default, the two in turn; then
    /// a failed claim after a recorded finish is answered with no jobs, not an error.
    fn finish_and_claim(
        &self,
        outcomes: &[(Lease, Outcome)],
        limit: usize,
        lease: Duration,
        running_here: &[i64],
    ) -> impl Future<Output = Result<Vec<Claimed>, BackendError>> + Send {
        async move {
            self.finish(outcomes).await?;
            match self.claim(limit, lease, running_here).await {
                Ok(claimed) => Ok(claimed),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot claim jobs; trying again");
                    Ok(Vec::new())
                }
            }
        }
    }

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
    /// Most jobs one loop runs at once (and so claims at once).
    pub concurrency: usize,
    /// Longest one attempt may run before it counts as failed.
    pub job_timeout: Duration,
    /// How long a claim holds a job without renewal; renewed every third of it.
    pub lease: Duration,
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
            concurrency: 64,
            job_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl WorkerConfig {
    fn renew_every(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(10))
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
        let shared = Arc::new(Shared {
            registry,
            config,
            running: Mutex::new(HashSet::new()),
        });
        for n in 0..shared.config.workers.max(1) {
            let work = Loop::new(backend.clone(), shared.clone(), shutdown.clone()).run();
            tracker.spawn(work.instrument(tracing::info_span!("worker", n)));
        }
    }
}

/// What the loops of one process share.
struct Shared {
    registry: Registry,
    config: WorkerConfig,
    /// Ids of the jobs running in this process, in any loop: never claimed again here.
    running: Mutex<HashSet<i64>>,
}

/// What joining an attempt's task gives.
type Joined = Result<(TaskId, Result<(), JobError>), tokio::task::JoinError>;

/// A running job as its loop knows it.
struct Running {
    job: Claimed,
    lease: Lease,
    abort: AbortHandle,
}

struct Loop<B> {
    backend: B,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: JoinSet<Result<(), JobError>>,
    running: HashMap<TaskId, Running>,
    /// Outcomes finished and not yet recorded.
    finished: Vec<(Lease, Outcome)>,
}

impl<B: Backend> Loop<B> {
    fn new(backend: B, shared: Arc<Shared>, shutdown: CancellationToken) -> Self {
        Loop {
            backend,
            shared,
            shutdown,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            finished: Vec::new(),
        }
    }

    async fn run(mut self) {
        let config = self.shared.config.clone();
        let mut renew = tokio::time::interval(config.renew_every());
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renew.reset();
        let mut poll = tokio::time::interval(config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Claim at once on start; after that, when woken or when slots free (once a quarter
        // of them is free, or none is busy: a claim per finished job would be one write per
        // job, a claim per quarter is one per batch), and on every poll for any free slot, so
        // that long jobs holding most slots never leave the rest idle for long.
        let (mut claim_now, mut claim_any) = (true, false);
        let slots = config.concurrency.max(1);
        let claim_at = (slots / 4).max(1);
        while !self.shutdown.is_cancelled() {
            let free = slots - self.running.len();
            let batch_ready = free >= claim_at || self.running.is_empty();
            let claiming = (claim_now && batch_ready) || (claim_any && free > 0);
            // Outcomes are written at once; with the next claim, when one is due, in one go.
            match (self.finished.is_empty(), claiming) {
                (false, true) => claim_now = self.record_and_claim().await,
                (false, false) => self.record().await,
                (true, true) => claim_now = self.claim().await,
                (true, false) => {}
            }
            if claiming {
                claim_any = false;
            }
            tokio::select! {
                joined = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.joined(joined);
                    // Let the jobs that are ready to finish do so first: one record for them
                    // all rather than one each.
                    tokio::task::yield_now().await;
                    // Everything else that finished meanwhile goes in the same record.
                    while let Some(joined) = self.tasks.try_join_next_with_id() {
                        self.joined(Some(joined));
                    }
                    claim_now = true;
                }
                _ = renew.tick() => self.renew().await,
                () = self.backend.woken() => claim_now = true,
                _ = poll.tick() => claim_any = true,
                () = self.shutdown.cancelled() => {}
            }
        }
        self.wind_down().await;
    }

    /// Claims for the free slots and starts the jobs; returns whether a full claim suggests
    /// more are due.
    async fn claim(&mut self) -> bool {
        let config = &self.shared.config;
        let free = config.concurrency.max(1) - self.running.len();
        let here: Vec<i64> = match self.shared.running.lock() {
            Ok(running) => running.iter().copied().collect(),
            Err(_) => return false,
        };
        let batch = match self.backend.claim(free, config.lease, &here).await {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(error = %err, "cannot claim jobs; trying again");
                return false;
            }
        };
        let full = batch.len() == free;
        for job in batch {
            self.start(job);
        }
        full
    }

    /// Records the finished outcomes and claims for the free slots in one go; returns whether a
    /// full claim suggests more are due. When that fails, the outcomes are recorded alone, as
    /// [`Loop::record`] does, and nothing is claimed this time.
    async fn record_and_claim(&mut self) -> bool {
        let config = self.shared.config.clone();
        let free = config.concurrency.max(1) - self.running.len();
        let here: Vec<i64> = match self.shared.running.lock() {
            Ok(running) => running.iter().copied().collect(),
            Err(_) => return false,
        };
        let outcomes = std::mem::take(&mut self.finished);
        match self
            .backend
            .finish_and_claim(&outcomes, free, config.lease, &here)
            .await
        {
            Ok(batch) => {
                let ids: Vec<i64> = outcomes.iter().map(|(lease, _)| lease.id).collect();
                self.no_longer_here(&ids);
                let full = batch.len() == free;
                for job in batch {
                    self.start(job);
                }
                full
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot record job outcomes and claim; recording alone");
                self.finished = outcomes;
                self.record().await;
                false
            }
        }
    }

    fn start(&mut self, job: Claimed) {
        if let Ok(mut running) = self.shared.running.lock() {
            running.insert(job.id);
        }
        let attempt = run_one(&self.shared.registry, &self.shared.config, &job);
        let abort = self.tasks.spawn(attempt);
        let lease = job.lease();
        self.running
            .insert(abort.id(), Running { job, lease, abort });
    }

    /// Takes a finished task off the running set and keeps its outcome for the next record.
    fn joined(&mut self, joined: Option<Joined>) {
        let Some(joined) = joined else { return };
        let (task, result) = match joined {
            Ok((task, result)) => (task, result),
            Err(join) if join.is_cancelled() => {
                // Aborted because its lease was lost: nothing to record, and the job is no
                // longer this process's.
                if let Some(running) = self.forget(join.id()) {
                    self.no_longer_here(&[running.job.id]);
                }
                return;
            }
            Err(join) => {
                let task = join.id();
                let message = format!("job panicked: {}", panic_message(join.into_panic()));
                (task, Err(JobError::retry(message)))
            }
        };
        let Some(Running { job, lease, .. }) = self.forget(task) else {
            return;
        };
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
        let outcome = outcome(&job, result, &self.shared.config);
        self.finished.push((lease, outcome));
    }

    /// Takes a task off this loop's slots. Its job stays in the process's running set until
    /// its outcome is written: until then its lease may run out, and a claim must not take it.
    fn forget(&mut self, task: TaskId) -> Option<Running> {
        self.running.remove(&task)
    }

    fn no_longer_here(&self, ids: &[i64]) {
        if let Ok(mut here) = self.shared.running.lock() {
            for id in ids {
                here.remove(id);
            }
        }
    }

    /// Writes the finished outcomes, trying again for up to a third of the lease: past that the
    /// jobs would be claimed again anyway (at least once allows it).
    async fn record(&mut self) {
        if self.finished.is_empty() {
            return;
        }
        let outcomes = std::mem::take(&mut self.finished);
        let backend = self.backend.clone();
        retry_for(self.shared.config.lease / 3, "record job outcomes", || {
            backend.finish(&outcomes)
        })
        .await;
        let ids: Vec<i64> = outcomes.iter().map(|(lease, _)| lease.id).collect();
        self.no_longer_here(&ids);
    }

    /// Extends the leases of the running jobs; aborts those whose lease was lost.
    async fn renew(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let held: Vec<Lease> = self.running.values().map(|r| r.lease).collect();
        let renewed = match self.backend.renew(&held, self.shared.config.lease).await {
            Ok(renewed) => renewed,
            Err(err) => {
                tracing::warn!(error = %err, "cannot renew job leases; trying at the next tick");
                return;
            }
        };
        let renewed: HashMap<i64, Lease> = renewed.into_iter().map(|l| (l.id, l)).collect();
        for running in self.running.values_mut() {
            match renewed.get(&running.job.id) {
                Some(lease) => running.lease = *lease,
                None => {
                    tracing::warn!(
                        job_id = running.job.id,
                        kind = %running.job.kind,
                        "job lease lost; the attempt is stopped here and runs elsewhere"
                    );
                    running.abort.abort();
                }
            }
        }
    }

    /// Shutdown: no more claims; running jobs get the grace period, renewed meanwhile, and
    /// what is left goes back to the queue.
    async fn wind_down(mut self) {
        let config = self.shared.config.clone();
        let grace = tokio::time::sleep(config.shutdown_grace.min(Duration::from_secs(86_400)));
        tokio::pin!(grace);
        let mut renew = tokio::time::interval(config.renew_every());
        renew.reset();
        while !self.tasks.is_empty() {
            tokio::select! {
                joined = self.tasks.join_next_with_id() => {
                    self.joined(joined);
                    self.record().await;
                }
                _ = renew.tick() => self.renew().await,
                () = &mut grace => break,
            }
        }
        self.tasks.abort_all();
        // Keep what finished in the meantime: only the jobs really cut short go back.
        while let Some(joined) = self.tasks.join_next_with_id().await {
            if matches!(&joined, Err(join) if join.is_cancelled()) {
                continue;
            }
            self.joined(Some(joined));
        }
        self.record().await;
        let unfinished: Vec<Lease> = self.running.values().map(|r| r.lease).collect();
        if !unfinished.is_empty() {
            let backend = self.backend.clone();
            retry_for(config.lease / 3, "hand back unfinished jobs", || {
                backend.release(&unfinished)
            })
            .await;
            let ids: Vec<i64> = unfinished.iter().map(|lease| lease.id).collect();
            self.no_longer_here(&ids);
        }
    }
}

/// Runs `write` until it succeeds or `budget` has passed, backing off between tries.
async fn retry_for<F, Fut>(budget: Duration, what: &str, mut write: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), BackendError>>,
{
    let deadline = tokio::time::Instant::now() + budget;
    let mut pause = Duration::from_millis(50);
    loop {
        let err = match write().await {
            Ok(()) => return,
            Err(err) => err,
        };
        if tokio::time::Instant::now() + pause > deadline {
            tracing::error!(error = %err, "cannot {what}: the jobs will run again when their lease expires");
            return;
        }
        tracing::warn!(error = %err, "cannot {what}; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
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
