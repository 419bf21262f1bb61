//! A [`Broker`] on Redis pub/sub: a broadcast on one instance reaches the clients of every
//! instance, once each.
//!
//! - Each message goes to the channel `{prefix}{topic}` as `{instance id} {text}`; every
//!   instance subscribes to `{prefix}*` and hands what other instances sent to its hub, skipping
//!   its own echo (the hub has already delivered it locally).
//! - Publishing never waits: messages go into a bounded queue (`queue` messages) drained by one
//!   task that pipelines them over one connection, in order; when the queue is full the message
//!   is dropped for the other instances and counted in `websocket_broker_dropped_total`.
//! - Both tasks reconnect with backoff (100 ms doubling to 5 s), the subscriber resubscribing.
//!   While Redis is away, local delivery goes on; what this instance publishes waits in the
//!   queue (dropped, counted, when it is full or its write fails); what other instances publish
//!   meanwhile is never received (Redis pub/sub keeps nothing).
//!
//! ```no_run
//! # async fn run(hub: keel::ws::Hub, tracker: &keel::TaskTracker) -> Result<(), keel::ws::redis::RedisError> {
//! use std::sync::Arc;
//! use keel::ws::redis::RedisBroker;
//!
//! let broker = RedisBroker::start("redis://127.0.0.1:6379", "shop:ws:", &hub, tracker)?;
//! hub.set_broker(broker.clone());
//! // ... serve; at shutdown:
//! broker.stop();
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use redis::RedisError;

use super::{Broker, Hub, WeakHub};

/// Messages waiting for Redis, at most.
pub const QUEUE: usize = 10_000;
/// Messages written in one pipeline, at most.
const BATCH: usize = 256;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The Redis broker of one instance.
#[derive(Debug)]
pub struct RedisBroker {
    instance: String,
    prefix: String,
    queue: mpsc::Sender<(String, Utf8Bytes)>,
    subscribed: watch::Receiver<bool>,
    stop: CancellationToken,
}

impl RedisBroker {
    /// Starts the publishing and subscribing tasks on `tracker` for `hub`, with channels named
    /// `{prefix}{topic}`; they connect (and reconnect) in the background. Fails only on a URL
    /// that is not a Redis URL.
    pub fn start(
        url: &str,
        prefix: &str,
        hub: &Hub,
        tracker: &TaskTracker,
    ) -> Result<Arc<Self>, RedisError> {
        let client = redis::Client::open(url)?;
        let (queue, outbound) = mpsc::channel(QUEUE);
        let (ready, subscribed) = watch::channel(false);
        let broker = Arc::new(RedisBroker {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            prefix: prefix.to_owned(),
            queue,
            subscribed,
            stop: CancellationToken::new(),
        });
        tracker.spawn(publish_loop(client.clone(), outbound, broker.stop.clone()));
        tracker.spawn(subscribe_loop(
            client,
            broker.prefix.clone(),
            broker.instance.clone(),
            hub.downgrade(),
            ready,
            broker.stop.clone(),
        ));
        Ok(broker)
    }

    /// Completes once subscribed (again, after a reconnection), or after `limit`; true if
    /// subscribed.
    pub async fn subscribed(&self, limit: Duration) -> bool {
        let mut subscribed = self.subscribed.clone();
        tokio::time::timeout(limit, subscribed.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops both tasks; what is still queued is not sent.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Broker for RedisBroker {
    fn publish(&self, topic: &str, text: Utf8Bytes) {
        let channel = format!("{}{topic}", self.prefix);
        let payload = format!("{} {}", self.instance, text.as_str());
        if self
            .queue
            .try_send((channel, Utf8Bytes::from(payload)))
            .is_err()
        {
            metrics::counter!("websocket_broker_dropped_total").increment(1);
            tracing::warn!(
                topic,
                "broadcast not sent to other instances: broker queue full"
            );
        }
    }
}

async fn backoff(delay: &mut Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => return false,
        () = tokio::time::sleep(*delay) => {}
    }
    *delay = (*delay * 2).min(BACKOFF_MAX);
    true
}

/// Drains the queue into Redis, a pipeline at a time, reconnecting on failure.
async fn publish_loop(
    client: redis::Client,
    mut outbound: mpsc::Receiver<(String, Utf8Bytes)>,
    stop: CancellationToken,
) {
    let mut delay = BACKOFF_START;
    'connect: loop {
        let mut conn = tokio::select! {
            () = stop.cancelled() => return,
            conn = client.get_multiplexed_async_connection() => match conn {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(error = %err, "broker: cannot connect to Redis to publish");
                    if backoff(&mut delay, &stop).await { continue 'connect } else { return }
                }
            },
        };
        delay = BACKOFF_START;
        loop {
            let first = tokio::select! {
                () = stop.cancelled() => return,
                next = outbound.recv() => match next {
                    Some(message) => message,
                    None => return,
                },
            };
            let mut pipe = redis::pipe();
            let mut count = 1;
            pipe.cmd("PUBLISH")
                .arg(&first.0)
                .arg(first.1.as_str())
                .ignore();
            while count < BATCH {
                match outbound.try_recv() {
                    Ok((channel, payload)) => {
                        pipe.cmd("PUBLISH")
                            .arg(channel)
                            .arg(payload.as_str())
                            .ignore();
                        count += 1;
                    }
                    Err(_) => break,
                }
            }
            if let Err(err) = pipe.query_async::<()>(&mut conn).await {
                metrics::counter!("websocket_broker_dropped_total").increment(count as u64);
                tracing::warn!(error = %err, messages = count, "broker: publishing to Redis failed");
                continue 'connect;
            }
        }
    }
}

/// Hands what other instances publish to the hub, resubscribing after any failure.
async fn subscribe_loop(
    client: redis::Client,
    prefix: String,
    instance: String,
    hub: WeakHub,
    ready: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut delay = BACKOFF_START;
    let pattern = format!("{prefix}*");
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(&pattern).await?;
            Ok::<_, RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            () = stop.cancelled() => return,
            pubsub = subscribed => pubsub,
        };
        match pubsub {
            Ok(mut pubsub) => {
                delay = BACKOFF_START;
                let _ = ready.send(true);
                let mut messages = pubsub.on_message();
                loop {
                    let message = tokio::select! {
                        () = stop.cancelled() => return,
                        message = messages.next() => message,
                    };
                    let Some(message) = message else { break };
                    let Some(hub) = hub.upgrade() else { return };
                    let channel = message.get_channel_name();
                    let Some(topic) = channel.strip_prefix(prefix.as_str()) else {
                        continue;
                    };
                    let Ok(payload) = std::str::from_utf8(message.get_payload_bytes()) else {
                        continue;
                    };
                    match payload.split_once(' ') {
                        Some((from, _)) if from == instance => {}
                        Some((_, text)) => {
                            hub.deliver(topic, Utf8Bytes::from(text.to_owned()));
                        }
                        None => {}
                    }
                }
                let _ = ready.send(false);
                tracing::warn!("broker: Redis subscription lost; resubscribing");
            }
            Err(err) => {
                tracing::warn!(error = %err, "broker: cannot subscribe to Redis");
            }
        }
        if !backoff(&mut delay, &stop).await {
            return;
        }
    }
}
