//! Analytics events, recorded after the response in batches.
//!
//! Requests hand their events to a bounded channel (from an after-response task, so never
//! before the response); one recorder task writes whatever has gathered in a single
//! transaction. Under load that is one write for many events instead of one each, which
//! matters with SQLite's single writer. When the channel is full (the database cannot keep
//! up) new events are refused, and the refusal is logged and counted as a failed task:
//! analytics are best-effort, the requests are not.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::store::analytics::Event;
use crate::store::Store;

/// Events waiting to be written before new ones are refused.
const QUEUE: usize = 10_000;
/// Most events written in one transaction.
const BATCH: usize = 500;

/// Why an event was not taken.
#[derive(Debug, thiserror::Error)]
#[error("analytics queue full or closed: event {0} dropped")]
pub struct Dropped(&'static str);

/// The handle requests record events through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Analytics {
    queue: mpsc::Sender<Event>,
}

impl Analytics {
    /// Starts the recorder on `tracker`; it writes what is queued and stops when `stop` is
    /// cancelled, after writing what is left.
    pub fn spawn(store: Store, tracker: &TaskTracker, stop: CancellationToken) -> Analytics {
        let (queue, events) = mpsc::channel(QUEUE);
        tracker.spawn(record(store, events, stop));
        Analytics { queue }
    }

    /// Queues an event without waiting.
    pub fn record(&self, event: Event) -> Result<(), Dropped> {
        let name = event.name;
        self.queue.try_send(event).map_err(|_| Dropped(name))
    }
}

async fn record(store: Store, mut events: mpsc::Receiver<Event>, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            first = events.recv() => first,
            () = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < BATCH {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        write(&store, &mut batch).await;
    }
    // Shutting down: what is already queued is still written.
    events.close();
    while let Some(event) = events.recv().await {
        batch.push(event);
        if batch.len() == BATCH {
            write(&store, &mut batch).await;
        }
    }
    write(&store, &mut batch).await;
}

async fn write(store: &Store, batch: &mut Vec<Event>) {
    if batch.is_empty() {
        return;
    }
    match store.record_events(batch).await {
        Ok(()) => {
            for event in batch.iter() {
                metrics::counter!("analytics_events_total", "name" => event.name).increment(1);
            }
        }
        Err(err) => {
            tracing::error!(error = %err, events = batch.len(), "analytics events not recorded");
            metrics::counter!("background_tasks_failed_total", "task" => "analytics")
                .increment(batch.len() as u64);
        }
    }
    batch.clear();
}
