//! The hub: which connections listen to which topic, and the broadcast that never waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::extract::ws::{Utf8Bytes, WebSocketUpgrade};
use axum::response::Response;
use tokio_util::task::TaskTracker;

use super::broker::Broker;
use super::connection::{self, CloseSignal, OnText};
use super::queue::{Offer, Outbox};
use super::{WsConfig, CLOSE_GOING_AWAY, CLOSE_TRY_AGAIN_LATER};

/// The sending side of one connection, as the hub holds it.
#[derive(Clone)]
pub(super) struct Handle {
    pub(super) outbox: Outbox,
    pub(super) close: Arc<CloseSignal>,
}

/// A [`Hub`] that may have been dropped: what a broker holds, so that hub and broker do not
/// keep each other alive.
#[derive(Clone)]
pub struct WeakHub(std::sync::Weak<Inner>);

impl std::fmt::Debug for WeakHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WeakHub")
    }
}

impl WeakHub {
    /// The hub, while it lives.
    pub fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

/// Connections by topic, and the means to reach them. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    config: WsConfig,
    /// Topic → connection id → handle. Held only to insert, remove or offer, never across
    /// an await, so a broadcast costs one short read lock however slow the clients are.
    topics: RwLock<HashMap<String, HashMap<u64, Handle>>>,
    next_id: AtomicU64,
    broker: OnceLock<Arc<dyn Broker>>,
    /// Every connection's task, so that shutdown can wait for the close frames to go out.
    tracker: TaskTracker,
    closing: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.inner.config)
            .field("connections", &self.connection_counts())
            .finish()
    }
}

impl Hub {
    /// A hub whose connections all get `config`'s limits; broadcasts stay in this process until
    /// [`Hub::set_broker`].
    pub fn new(config: WsConfig) -> Self {
        Hub {
            inner: Arc::new(Inner {
                config,
                topics: RwLock::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                broker: OnceLock::new(),
                tracker: TaskTracker::new(),
                closing: tokio_util::sync::CancellationToken::new(),
            }),
        }
    }

    /// Sends broadcasts to the other instances through `broker` too (which hands what it
    /// receives from them to [`Hub::deliver`]). Only the first call has an effect.
    pub fn set_broker(&self, broker: Arc<dyn Broker>) {
        let _ = self.inner.broker.set(broker);
    }

    /// The limits every connection gets.
    pub fn config(&self) -> &WsConfig {
        &self.inner.config
    }

    /// Completes the handshake of `ws` and serves the socket as a member of `topic`: it receives
    /// every message published to the topic, and `on_text` gets each text frame it sends.
    pub fn serve<F>(&self, ws: WebSocketUpgrade, topic: &str, on_text: F) -> Response
    where
        F: Fn(Utf8Bytes) + Send + Sync + 'static,
    {
        let config = &self.inner.config;
        let hub = self.clone();
        let topic = topic.to_owned();
        let on_text: OnText = Arc::new(on_text);
        ws.max_message_size(config.max_message_bytes)
            .max_frame_size(config.max_message_bytes)
            // Small buffers keep an idle connection small; they grow while a message needs it.
            // Writes collect up to 8 KiB before reaching the socket; the writer flushes at the
            // end of every burst.
            .read_buffer_size(4 * 1024)
            .write_buffer_size(8 * 1024)
            .on_upgrade(move |socket| {
                let tracker = hub.inner.tracker.clone();
                tracker.track_future(connection::run(hub, socket, topic, on_text))
            })
    }

    /// Publishes `text` to every connection of `topic`: this instance's at once, the other
    /// instances' through the broker when one is set. Never waits for a client or the broker.
    pub fn publish(&self, topic: &str, text: impl Into<String>) {
        let text = Utf8Bytes::from(text.into());
        if let Some(broker) = self.inner.broker.get() {
            broker.publish(topic, text.clone());
        }
        self.deliver(topic, text);
    }

    /// A handle that does not keep the hub alive (for a broker's receiving task).
    pub fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

    /// Hands `text` to the queue of every connection of `topic` in this process; returns how
    /// many took it. A connection whose queue is full cannot keep up with its topic: it is
    /// closed with 1013, counted in `websocket_slow_clients_closed_total`, and the message in
    /// `websocket_messages_dropped_total`.
    pub fn deliver(&self, topic: &str, text: Utf8Bytes) -> usize {
        let mut delivered = 0;
        let mut gone = Vec::new();
        {
            let topics = self.inner.topics.read().unwrap_or_else(|e| e.into_inner());
            let Some(members) = topics.get(topic) else {
                return 0;
            };
            for (id, handle) in members {
                match handle.outbox.offer(&text) {
                    Offer::Queued => delivered += 1,
                    Offer::Full => {
                        metrics::counter!("websocket_messages_dropped_total").increment(1);
                        metrics::counter!("websocket_slow_clients_closed_total").increment(1);
                        handle.close.close(CLOSE_TRY_AGAIN_LATER, "client too slow");
                        gone.push(*id);
                    }
                    Offer::Closed => gone.push(*id),
                }
            }
        }
        for id in gone {
            self.leave(topic, id);
        }
        delivered
    }

    /// Connections per topic in this process.
    pub fn connection_counts(&self) -> HashMap<String, usize> {
        let topics = self.inner.topics.read().unwrap_or_else(|e| e.into_inner());
        topics
            .iter()
            .map(|(topic, members)| (topic.clone(), members.len()))
            .collect()
    }

    /// Asks every connection to close with 1001, without waiting. Handshakes completing after
    /// this are closed at once.
    pub fn close_all(&self) {
        self.inner.closing.cancel();
        let topics = self.inner.topics.read().unwrap_or_else(|e| e.into_inner());
        for handle in topics.values().flat_map(HashMap::values) {
            handle.close.close(CLOSE_GOING_AWAY, "server shutting down");
        }
    }

    /// Completes when `signal` does, having asked every connection to close with 1001: the
    /// `shutdown` future to give the server, so that WebSocket clients hear of the shutdown
    /// at once (upgraded connections are not requests a server waits for). Then call
    /// [`Hub::shutdown`] to wait for their close frames to go out.
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    /// let hub = keel::ws::Hub::new(keel::ws::WsConfig::default());
    /// keel::serve::Server::new()
    ///     .serve(listener, app, hub.close_on(keel::serve::shutdown_signal()))
    ///     .await?;
    /// hub.shutdown(std::time::Duration::from_secs(5)).await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn close_on(
        &self,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let hub = self.clone();
        async move {
            signal.await;
            hub.close_all();
        }
    }

    /// [`Hub::close_all`], then waits up to `limit` for the connections to end.
    pub async fn shutdown(&self, limit: Duration) {
        self.close_all();
        self.inner.tracker.close();
        if tokio::time::timeout(limit, self.inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("WebSocket connections still open at shutdown");
        }
    }

    pub(super) fn is_closing(&self) -> bool {
        self.inner.closing.is_cancelled()
    }

    pub(super) fn join(&self, topic: &str, handle: Handle) -> u64 {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(topic.to_owned())
            .or_default()
            .insert(id, handle);
        id
    }

    /// Removes a connection; true if it was still a member.
    pub(super) fn leave(&self, topic: &str, id: u64) -> bool {
        let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        let Some(members) = topics.get_mut(topic) else {
            return false;
        };
        let removed = members.remove(&id).is_some();
        if members.is_empty() {
            topics.remove(topic);
        }
        removed
    }
}
