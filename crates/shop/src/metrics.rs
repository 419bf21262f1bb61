//! The Prometheus recorder behind `GET /metrics`, installed once per process.
//!
//! Metrics recorded elsewhere (keel's HTTP, task, WebSocket and analytics counters) land here;
//! `background_jobs{queue,state}` is read from the queue's count table at each scrape (a few
//! rows, whatever the size of the queue), so that it is right across restarts and instances;
//! every queue of shop's job kinds is there at 0 from the first scrape.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::Store;

/// Latency buckets, in seconds: from a cached read to a request held by a lock.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const JOB_STATES: &[&str] = &["pending", "running", "succeeded", "dead"];

/// The queues of shop's job kinds: exported even before their first job.
const QUEUES: &[&str] = &[
    <crate::jobs::WelcomeEmail as keel::jobs::Job>::QUEUE,
    <crate::jobs::DeliverWebhook as keel::jobs::Job>::QUEUE,
    <crate::jobs::ProcessPayment as keel::jobs::Job>::QUEUE,
    <crate::jobs::ExpireOrder as keel::jobs::Job>::QUEUE,
];

/// The process's recorder; the first call installs it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".into()),
                LATENCY_BUCKETS,
            )
            .and_then(|builder| builder.install_recorder())
            .expect("the Prometheus recorder must be the process's only metrics recorder");
        // Counters that must be visible before their first event.
        metrics::counter!("websocket_messages_dropped_total").increment(0);
        metrics::counter!("websocket_slow_clients_closed_total").increment(0);
        metrics::counter!("background_tasks_failed_total").increment(0);
        for path in [crate::events::CHAT_TOPIC, crate::events::EVENTS_TOPIC] {
            metrics::gauge!("websocket_connections", "path" => path).increment(0.0);
        }
        handle
    })
}

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds recorded histogram samples into their buckets every 5 s. The recorder
/// keeps each sample until then: without this, a service nobody scrapes would grow by every
/// request's duration.
pub fn spawn_upkeep(
    tracker: &tokio_util::task::TaskTracker,
    stop: tokio_util::sync::CancellationToken,
) {
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => handle().run_upkeep(),
            }
        }
    });
}

/// The Prometheus text, with the job gauges refreshed from the database.
pub async fn render(store: &Store) -> String {
    let handle = handle();
    match store.jobs().counts().await {
        Ok(counts) => {
            let mut queues: Vec<&str> = counts.iter().map(|(q, _, _)| q.as_str()).collect();
            queues.extend_from_slice(QUEUES);
            queues.sort_unstable();
            queues.dedup();
            for queue in queues {
                for state in JOB_STATES {
                    let n = counts
                        .iter()
                        .find(|(q, s, _)| q == queue && s == state)
                        .map_or(0, |(_, _, n)| *n);
                    metrics::gauge!("background_jobs", "queue" => queue.to_owned(), "state" => *state)
                        .set(n as f64);
                }
            }
        }
        Err(err) => tracing::warn!(error = %err, "cannot count jobs for /metrics"),
    }
    handle.run_upkeep();
    handle.render()
}
