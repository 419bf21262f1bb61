//! A connection's outbound queue, bounded in bytes.
//!
//! The hub offers each broadcast to every member's [`Outbox`] without waiting; the writer takes
//! from the [`Inbox`] and reports the bytes it has handed to the socket. A member whose queue
//! would pass its limit is full: the hub closes it (1013), and nobody else waits for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

/// A new queue holding at most `limit` bytes (an empty queue takes any one message).
pub(super) fn queue(limit: usize) -> (Outbox, Inbox) {
    // Unbounded in messages, bounded in bytes by `Outbox::offer`: a count of messages would
    // let 64 KiB frames take a thousand times the memory of 64 B ones.
    let (tx, rx) = mpsc::unbounded_channel();
    let load = Arc::new(Load {
        limit,
        bytes: AtomicUsize::new(0),
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
    /// Bytes offered and not yet handed to the socket.
    bytes: AtomicUsize,
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
        match self.tx.send(text.clone()) {
            Ok(()) => Offer::Queued,
            Err(_) => {
                self.load.bytes.fetch_sub(len, Ordering::Relaxed);
                Offer::Closed
            }
        }
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

    /// The writer has handed `len` bytes of frames to the socket.
    pub(super) fn written(&self, len: usize) {
        self.load.bytes.fetch_sub(len, Ordering::Relaxed);
    }

    /// Messages still queued.
    pub(super) fn len(&self) -> usize {
        self.rx.len()
    }
}
