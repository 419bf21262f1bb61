//! A connection's outbound queue, bounded in bytes, and what its writer is getting done.
//!
//! The hub offers each broadcast to every member's [`Outbox`] without waiting; the writer takes
//! from the [`Inbox`] and reports each frame written. From the two the hub knows whether a
//! member is full (to be closed), or busy but progressing (a reason to slow senders down).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

/// A sender waits for its own echoes only while its connection has written something this
/// recently: a client library that cannot read while one of its sends is blocked (Python's
/// sync `websockets` client, for one) would otherwise wait on itself until the write timeout.
pub(super) const OWN_ECHOES_STALLED: Duration = Duration::from_secs(1);

/// A new queue holding at most `limit` bytes. A member that has written nothing for
/// `stalled_after` (the write timeout) while it has something queued no longer slows senders
/// down: it is not reading, and its queue may fill until it is closed. One that writes, however
/// slowly or unevenly, is waited for.
pub(super) fn queue(limit: usize, stalled_after: Duration) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let load = Arc::new(Load {
        limit,
        high: limit / 2,
        stalled_ms: u64::try_from(stalled_after.as_millis()).unwrap_or(u64::MAX),
        bytes: AtomicUsize::new(0),
        start: Instant::now(),
        progress_ms: AtomicU64::new(0),
        drained: Notify::new(),
    });
    (
        Outbox {
            tx,
            load: load.clone(),
        },
        Inbox { rx, load },
    )
}

/// What [`Outbox::offer`] did with a message.
pub(super) enum Offer {
    Queued,
    /// The queue holds too much already: the member is to be closed.
    Full,
    /// The connection has ended.
    Closed,
}

struct Load {
    limit: usize,
    /// Over this many bytes queued, a progressing member slows senders down.
    high: usize,
    bytes: AtomicUsize,
    /// Written nothing for this long, a member is stalled.
    stalled_ms: u64,
    start: Instant,
    /// When the writer last wrote a frame, or the queue last became non-empty, in ms since
    /// `start`.
    progress_ms: AtomicU64,
    /// Woken when the queue falls back under `high`.
    drained: Notify,
}

impl Load {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn mark_progress(&self) {
        self.progress_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Over half full, and written something in the last `stalled_ms`.
    fn slows(&self, stalled_ms: u64) -> bool {
        self.bytes.load(Ordering::Relaxed) > self.high
            && self
                .now_ms()
                .saturating_sub(self.progress_ms.load(Ordering::Relaxed))
                < stalled_ms
    }
}

/// The hub's side of a queue.
#[derive(Clone)]
pub(super) struct Outbox {
    tx: UnboundedSender<Utf8Bytes>,
    load: Arc<Load>,
}

impl Outbox {
    /// Queues `text` unless that would take the queue past its limit (an empty queue takes any
    /// one message).
    pub(super) fn offer(&self, text: &Utf8Bytes) -> Offer {
        let len = text.len();
        let before = self.load.bytes.fetch_add(len, Ordering::Relaxed);
        if before > 0 && before + len > self.load.limit {
            self.load.bytes.fetch_sub(len, Ordering::Relaxed);
            return Offer::Full;
        }
        if before == 0 {
            self.load.mark_progress();
        }
        match self.tx.send(text.clone()) {
            Ok(()) => Offer::Queued,
            Err(_) => {
                self.load.bytes.fetch_sub(len, Ordering::Relaxed);
                Offer::Closed
            }
        }
    }

    /// True while the member has more than half its queue in use and is still writing.
    /// Whether this member holds the senders of its topic back: over half full and written
    /// something within the write timeout (`own`: within [`OWN_ECHOES_STALLED`], for the
    /// sender itself).
    pub(super) fn slows(&self, own: bool) -> bool {
        self.load.slows(self.stalled_ms(own))
    }

    fn stalled_ms(&self, own: bool) -> u64 {
        if own {
            u64::try_from(OWN_ECHOES_STALLED.as_millis()).unwrap_or(u64::MAX)
        } else {
            self.load.stalled_ms
        }
    }

    /// Completes once the member no longer holds senders back (see [`Outbox::slows`]), or
    /// after a recheck period (it may have stalled meanwhile, which wakes no one).
    pub(super) async fn drained(&self, own: bool) {
        let drained = self.load.drained.notified();
        if !self.slows(own) {
            return;
        }
        let recheck =
            Duration::from_millis(self.stalled_ms(own) / 4).min(Duration::from_millis(250));
        let _ = tokio::time::timeout(recheck, drained).await;
    }
}

/// The writer's side of a queue.
pub(super) struct Inbox {
    rx: UnboundedReceiver<Utf8Bytes>,
    load: Arc<Load>,
}

impl Inbox {
    pub(super) async fn recv(&mut self) -> Option<Utf8Bytes> {
        self.rx.recv().await
    }

    pub(super) fn try_recv(&mut self) -> Option<Utf8Bytes> {
        self.rx.try_recv().ok()
    }

    /// The writer has handed a frame of `len` bytes to the socket.
    pub(super) fn written(&self, len: usize) {
        self.load.mark_progress();
        let before = self.load.bytes.fetch_sub(len, Ordering::Relaxed);
        if before > self.load.high && before - len <= self.load.high {
            self.load.drained.notify_waiters();
        }
    }

    /// Messages still queued.
    pub(super) fn len(&self) -> usize {
        self.rx.len()
    }
}
