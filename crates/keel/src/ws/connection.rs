//! One connection: a reader task and a writer task around one socket.
//!
//! The writer drains the connection's queue, sends pings at a third of the idle timeout, and
//! gives up on a client that takes longer than the write timeout to accept a burst of frames.
//! The reader hands text frames to the topic's handler, paces the client by its own
//! [`Budget`], and notices silence, oversize frames and the peer's close. Either side ending
//! ends the other: the [`CloseSignal`] carries the close code the writer sends on the way out
//! (first reason wins).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::task::AtomicWaker;
use futures_util::{SinkExt, StreamExt};

use super::budget::Budget;
use super::hub::{Handle, Hub};
use super::queue::{self, Inbox};
use super::{WsConfig, CLOSE_GOING_AWAY, CLOSE_TOO_BIG};

pub(super) type OnText = Arc<dyn Fn(Utf8Bytes) + Send + Sync>;

/// How long a connection closed for an oversize frame stays open for its 1009 to be read.
const LINGER_AFTER_TOO_BIG: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a closed connection waits for the peer's close reply.
const CLOSE_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Most frames written in one flush.
const MAX_BURST: usize = 64;

/// Most bytes gathered into one burst: the write timeout covers a whole burst, so a client
/// that keeps reading at a few KB/s is not judged on a megabyte at once.
const MAX_BURST_BYTES: usize = 64 * 1024;

/// Close code: the peer was silent past the idle timeout.
const CLOSE_IDLE: u16 = 1000;

/// Tells both tasks of a connection to stop, and the writer which close frame to send.
///
/// Each task waits on its own waker: both look at the signal on every turn of their loop, so
/// the look is one atomic load and a waker swap, with no lock.
pub(crate) struct CloseSignal {
    closed: AtomicBool,
    writer: AtomicWaker,
    reader: AtomicWaker,
    /// 0 while no code is set: the writer then just flushes (e.g. the reply to a peer's close).
    code: AtomicU16,
    reason: Mutex<&'static str>,
}

impl CloseSignal {
    fn new() -> Self {
        CloseSignal {
            closed: AtomicBool::new(false),
            writer: AtomicWaker::new(),
            reader: AtomicWaker::new(),
            code: AtomicU16::new(0),
            reason: Mutex::new(""),
        }
    }

    /// Asks the connection to close with `code`; the first code asked for wins.
    pub(crate) fn close(&self, code: u16, reason: &'static str) {
        if self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason;
        }
        self.end();
    }

    /// Ends the connection without a close frame of our own (the peer is gone or closed).
    fn end(&self) {
        self.closed.store(true, Ordering::Release);
        self.writer.wake();
        self.reader.wake();
    }

    /// Completes once the connection is to end; `waker` is the waiting task's own slot.
    fn ended<'a>(&'a self, waker: &'a AtomicWaker) -> impl Future<Output = ()> + 'a {
        std::future::poll_fn(move |cx| {
            if self.closed.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            waker.register(cx.waker());
            // A close between the load and the registration woke the waker it replaced.
            if self.closed.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// Completes once the writer is to stop.
    fn writer_stops(&self) -> impl Future<Output = ()> + '_ {
        self.ended(&self.writer)
    }

    /// Completes once the reader is to stop.
    fn reader_stops(&self) -> impl Future<Output = ()> + '_ {
        self.ended(&self.reader)
    }

    fn frame(&self) -> Option<CloseFrame> {
        let code = self.code.load(Ordering::Acquire);
        (code != 0).then(|| CloseFrame {
            code,
            reason: Utf8Bytes::from_static(*self.reason.lock().unwrap_or_else(|e| e.into_inner())),
        })
    }
}

/// Serves `socket` as a member of `topic` until either side ends it.
pub(super) async fn run(hub: Hub, socket: WebSocket, topic: String, on_text: OnText) {
    let config = hub.config().clone();
    let (outbox, inbox) = queue::queue(config.queue_bytes);
    let close = Arc::new(CloseSignal::new());
    let id = hub.join(
        &topic,
        Handle {
            outbox,
            close: close.clone(),
        },
    );
    // A handshake that completes during shutdown is closed at once.
    if hub.is_closing() {
        close.close(CLOSE_GOING_AWAY, "server shutting down");
    }
    let gauge = metrics::gauge!("websocket_connections", "path" => topic.clone());
    gauge.increment(1.0);
    // Leaves the hub however this function ends, a panicking `on_text` included.
    let membership = Membership {
        hub: hub.clone(),
        topic,
        id,
        close: close.clone(),
        gauge,
    };

    // Two tasks, so that a burst of reads (each one a broadcast) never starves the writes.
    let (sink, stream) = socket.split();
    let writer = {
        let (close, config) = (close.clone(), config.clone());
        tokio::spawn(async move { write_loop(sink, inbox, &close, &config).await })
    };
    let stream = read_loop(stream, &close, &on_text, &config).await;
    let _ = writer.await;
    drop(membership);
    if close.code.load(Ordering::Acquire) == CLOSE_TOO_BIG {
        // The rest of the oversize frame is still unread: closing the socket now would make
        // the kernel reset it and the peer might never read our 1009. Give it a moment.
        tokio::time::sleep(LINGER_AFTER_TOO_BIG).await;
    }
    drop(stream);
}

/// A connection's place in the hub, given up on drop.
struct Membership {
    hub: Hub,
    topic: String,
    id: u64,
    close: Arc<CloseSignal>,
    gauge: metrics::Gauge,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.close.end();
        self.hub.leave(&self.topic, self.id);
        self.gauge.decrement(1.0);
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut inbox: Inbox,
    close: &CloseSignal,
    config: &WsConfig,
) {
    let mut ping = tokio::time::interval(config.idle_timeout / 3);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await; // the first tick is immediate
    loop {
        let first = tokio::select! {
            // A close request goes first: a client being closed for slowness has a full queue.
            biased;
            () = close.writer_stops() => break,
            next = inbox.recv() => match next {
                Some(text) => Some(text),
                None => break,
            },
            _ = ping.tick() => None,
        };
        if write_burst(&mut sink, &mut inbox, first, config.write_timeout)
            .await
            .is_err()
        {
            // The peer is gone, or accepted nothing for the write timeout: nothing more can be
            // said to it, and what was queued for it is lost.
            metrics::counter!("websocket_messages_dropped_total").increment(inbox.len() as u64);
            close.end();
            return;
        }
    }
    // A client closed for falling behind never gets what was still queued for it.
    if close.code.load(Ordering::Acquire) == super::CLOSE_TRY_AGAIN_LATER {
        metrics::counter!("websocket_messages_dropped_total").increment(inbox.len() as u64);
    }
    // Send our close frame, or flush the reply to the peer's; either way bounded in time.
    let closing = async {
        match close.frame() {
            Some(frame) => sink.send(Message::Close(Some(frame))).await,
            None => sink.close().await,
        }
    };
    let _ = tokio::time::timeout(config.write_timeout, closing).await;
}

/// Writes `first` (a ping when `None`) and what is queued behind it, up to [`MAX_BURST`]
/// frames or [`MAX_BURST_BYTES`], then flushes: frames are gathered in the write buffer and reach the socket in as
/// few calls as it takes, so that a busy connection drains its queue as fast as it fills. The
/// whole burst gets `timeout` to be accepted: one timer per burst, not per frame.
async fn write_burst(
    sink: &mut SplitSink<WebSocket, Message>,
    inbox: &mut Inbox,
    first: Option<Utf8Bytes>,
    timeout: std::time::Duration,
) -> Result<(), ()> {
    let burst = async {
        let mut next = Some(first.map_or(Message::Ping(Default::default()), Message::Text));
        let mut frames = 0;
        let mut bytes = 0;
        while let Some(frame) = next.take() {
            if let Message::Text(text) = &frame {
                bytes += text.len();
            }
            sink.feed(frame).await?;
            frames += 1;
            if frames < MAX_BURST && bytes < MAX_BURST_BYTES {
                next = inbox.try_recv().map(Message::Text);
            }
        }
        sink.flush().await?;
        Ok::<_, axum::Error>(bytes)
    };
    match tokio::time::timeout(timeout, burst).await {
        Ok(Ok(bytes)) => {
            inbox.written(bytes);
            Ok(())
        }
        Ok(Err(_)) | Err(_) => Err(()),
    }
}

/// Reads until the connection ends; returns the stream, still open.
async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    close: &CloseSignal,
    on_text: &OnText,
    config: &WsConfig,
) -> SplitStream<WebSocket> {
    let mut budget = Budget::new(
        config.send_rate_bytes,
        config.send_burst_bytes,
        std::time::Instant::now(),
    );
    loop {
        let next = tokio::select! {
            () = close.reader_stops() => return drain(stream).await,
            next = tokio::time::timeout(config.idle_timeout, stream.next()) => next,
        };
        match next {
            Err(_silent) => {
                close.close(CLOSE_IDLE, "idle timeout");
                return drain(stream).await;
            }
            Ok(None) => {
                close.end();
                return stream;
            }
            Ok(Some(Err(err))) => {
                if is_too_big(&err) {
                    close.close(CLOSE_TOO_BIG, "message too big");
                    return drain(stream).await;
                }
                close.end();
                return stream;
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                let pause = budget.spend(text.len(), std::time::Instant::now());
                on_text(text);
                // Over its budget, the client's next frames wait in its socket: TCP slows it.
                if let Some(pause) = pause {
                    tokio::select! {
                        () = close.reader_stops() => return drain(stream).await,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
            Ok(Some(Ok(Message::Close(_)))) => {
                close.end();
                return stream;
            }
            // Pings are answered by the protocol layer; any frame proves the peer alive.
            Ok(Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_)))) => {}
        }
    }
}

/// After we close: reads (and drops) what the peer still sends until its close reply, its end,
/// or [`CLOSE_DRAIN`]. Dropping a socket with unread data makes the kernel reset it, and a peer
/// answering a ping at that moment would see an error instead of our close frame.
async fn drain(mut stream: SplitStream<WebSocket>) -> SplitStream<WebSocket> {
    let until_closed = async {
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_DRAIN, until_closed).await;
    stream
}

/// A frame or message over `max_message_size`: tungstenite's `Capacity` error, inside axum's.
fn is_too_big(err: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(Error::Capacity(_)) = e.downcast_ref::<Error>() {
            return true;
        }
        source = e.source();
    }
    false
}
