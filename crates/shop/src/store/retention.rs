//! Deleting what is finished and old, a small batch at a time.

use std::time::Duration;

use super::{Engine, Store, StoreError};

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: usize,
    pub deliveries: usize,
    pub inbound: usize,
    pub analytics: usize,
    pub idempotency_keys: usize,
}

impl Pruned {
    /// One round's counts, in the order of the fields (keel counts its answers in `u64`).
    pub(crate) fn of(
        jobs: usize,
        deliveries: usize,
        inbound: usize,
        analytics: usize,
        idempotency_keys: u64,
    ) -> Self {
        let idempotency_keys = usize::try_from(idempotency_keys).unwrap_or(usize::MAX);
        Pruned {
            jobs,
            deliveries,
            inbound,
            analytics,
            idempotency_keys,
        }
    }

    pub fn total(&self) -> usize {
        self.jobs + self.deliveries + self.inbound + self.analytics + self.idempotency_keys
    }
}

/// How long each kind of row is kept.
#[derive(Debug, Clone, Copy)]
pub struct Ages {
    /// Finished jobs, webhook deliveries, inbound webhooks, analytics events.
    pub finished: Duration,
    /// `Idempotency-Key`s and their stored answers.
    pub idempotency_keys: Duration,
}

impl Store {
    /// Deletes at most `batch` rows of each kind older than its age: finished (succeeded or
    /// dead) jobs with their webhook deliveries, processed or failed inbound webhooks, analytics
    /// events, idempotency keys. One write, so that the writer is never held for long; call again while it
    /// deletes anything.
    ///
    /// An inbound webhook's id is forgotten with its row; a replay that old is refused by the
    /// signature's five-minute timestamp tolerance anyway.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn prune(&self, ages: Ages, batch: usize) -> Result<Pruned, StoreError> {
        forward!(&self.engine, Engine, db => db.prune(ages, batch).await)
    }
}
