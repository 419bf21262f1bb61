//! The retention task: every `SHOP_RETENTION_INTERVAL_SECS`, deletes what is finished and
//! older than `SHOP_RETENTION_DAYS`, and idempotency keys older than
//! `SHOP_IDEMPOTENCY_TTL_SECS` (see [`Store::prune`]).
//!
//! It deletes at most [`BATCH`] rows of each kind per write and pauses between writes, so that
//! requests waiting for the one writer never wait behind a long delete: a pass over a large
//! backlog becomes many small writes interleaved with everyone else's.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::retention::{Ages, Pruned};
use crate::store::Store;

/// Most rows of each kind deleted in one write: a few milliseconds of the writer's time.
pub const BATCH: usize = 200;
/// Pause between two writes of one pass.
const PAUSE: Duration = Duration::from_millis(20);

/// Starts the task on `tracker`; it stops when `stop` is cancelled.
pub fn spawn(
    store: Store,
    ages: Ages,
    interval: Duration,
    tracker: &TaskTracker,
    stop: CancellationToken,
) {
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            pass(&store, ages, &stop).await;
        }
    });
}

/// Deletes batches until one deletes nothing, or shutdown.
async fn pass(store: &Store, ages: Ages, stop: &CancellationToken) {
    let mut total = Pruned::default();
    while !stop.is_cancelled() {
        match store.prune(ages, BATCH).await {
            Ok(pruned) if pruned.total() == 0 => break,
            Ok(pruned) => {
                total.jobs += pruned.jobs;
                total.deliveries += pruned.deliveries;
                total.inbound += pruned.inbound;
                total.analytics += pruned.analytics;
                total.idempotency_keys += pruned.idempotency_keys;
            }
            Err(err) => {
                tracing::warn!(error = %err, "retention pass stopped; next one at the interval");
                break;
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
    if total.total() > 0 {
        tracing::info!(
            jobs = total.jobs,
            deliveries = total.deliveries,
            inbound = total.inbound,
            analytics = total.analytics,
            idempotency_keys = total.idempotency_keys,
            "old rows deleted"
        );
    }
}
