//! Serving a router so that slow or idle clients cannot hold the service.
//!
//! `axum::serve` waits forever for a request's headers and keeps idle keep-alive connections
//! open until the client leaves, without any bound on their number: a few hundred clients
//! that connect and send nothing, or trickle one header line every few seconds, take a service
//! off the air, and so do clients that ask for a large answer and never read it. [`Server`]
//! serves HTTP/1.1 (WebSocket upgrades included) with four bounds:
//!
//! - **header timeout**: a request's head must be complete within this time of its first byte
//!   (of the connection's start, for its first request), or the connection is dropped;
//! - **idle timeout**: a keep-alive connection with no request in flight and no byte received
//!   for this long is closed;
//! - **send timeout**: a write to the socket (a response, or a WebSocket frame after an
//!   upgrade) that makes no progress for this long abandons the connection: it is closed and its
//!   permit freed. A slow reader that keeps reading is never cut, however long the answer takes;
//! - **max connections**: at most this many connections are open at once, upgraded WebSockets
//!   included; past it, new connections wait in the listener's backlog until one closes.
//!
//! A request being served is never cut by the header and idle timeouts (the request timeout of
//! [`ServiceLayers`](crate::layers::ServiceLayers) bounds it). On shutdown the listener stops
//! accepting, idle connections close at once and busy ones after their response, as with
//! `axum::serve(..).with_graceful_shutdown(..)`.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! keel::serve::Server::new()
//!     .header_timeout(Duration::from_secs(10))
//!     .idle_timeout(Duration::from_secs(60))
//!     .send_timeout(Duration::from_secs(30))
//!     .max_connections(10_000)
//!     .serve(listener, app, keel::serve::shutdown_signal())
//!     .await
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::Router;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service as _;

/// An HTTP/1.1 server with header, idle and send timeouts and a bound on open connections.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    header_timeout: Duration,
    idle_timeout: Duration,
    send_timeout: Duration,
    max_connections: usize,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server with a 10 s header timeout, a 60 s idle timeout, a 30 s send timeout and at
    /// most 10,000 connections.
    pub fn new() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }

    /// Time within which a request's head must be complete, counted from its first byte (from
    /// the connection's start for the first request).
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Time after which a keep-alive connection with nothing in flight is closed.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Time a write to a connection may make no progress (the peer reads nothing) before the
    /// connection is closed; upgraded connections included.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// The most connections open at once.
    pub fn connection_limit(&self) -> usize {
        self.max_connections
    }

    /// Fits the connection cap to the process's limit on open files: raises the soft limit
    /// (`RLIMIT_NOFILE`) to the hard one, then lowers the cap, with a warning naming the
    /// numbers, if it and `reserve` descriptors for everything else (database, mail, outbound
    /// HTTP, files) would not fit. Past the limit `accept` fails with "Too many open files",
    /// and every other file the process opens fails with it; within it, connections past the
    /// cap wait in the backlog instead.
    ///
    /// ```
    /// let server = keel::serve::Server::new().max_connections(10_000).fit_open_files(256);
    /// assert!(server.connection_limit() >= 1);
    /// ```
    pub fn fit_open_files(self, reserve: usize) -> Self {
        let Some(limit) = raise_open_files_limit() else {
            return self;
        };
        let fits = limit.saturating_sub(reserve).max(1);
        if self.max_connections <= fits {
            return self;
        }
        tracing::warn!(
            open_files_limit = limit,
            reserve,
            max_connections = self.max_connections,
            lowered_to = fits,
            "the connection cap does not fit the process's limit on open files: lowered"
        );
        self.max_connections(fits)
    }

    /// Connections open at once, upgraded ones included (at least 1).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// Serves `router` on `listener` until `shutdown` completes, then stops accepting and
    /// returns once every connection has closed (upgraded connections excepted: they belong to
    /// the application from the upgrade on).
    pub async fn serve(
        self,
        listener: TcpListener,
        router: impl Into<Router>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let router = router.into();
        let permits = Arc::new(Semaphore::new(self.max_connections));
        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let mut shutdown = pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        accept_failed(err).await;
                        continue;
                    }
                },
            };
            connections.spawn(self.connection(stream, permit, router.clone(), stop.clone()));
        }
        drop(listener);
        stop.cancel();
        connections.close();
        connections.wait().await;
        Ok(())
    }

    async fn connection(
        self,
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        router: Router,
        stop: CancellationToken,
    ) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked {
            stream,
            activity: activity.clone(),
            send_timeout: self.send_timeout,
            stalled: None,
            user_timeout_set: false,
            _permit: permit,
        });
        let service = Tracking {
            router,
            activity: activity.clone(),
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.header_read_timeout(None);
        let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
        let mut watchdog = pin!(activity.expired(self.header_timeout, self.idle_timeout));
        let mut stopping = false;
        loop {
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(err) = served {
                        tracing::trace!(error = %err, "connection ended with an error");
                    }
                    break;
                }
                () = &mut watchdog => {
                    tracing::debug!("connection closed: header or idle timeout");
                    break;
                }
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Has the kernel abort the connection when what was written to it stays unacknowledged, or
/// unsent because the peer's window is closed, for `timeout` (`TCP_USER_TIMEOUT`).
///
/// Set before the first large answer of a connection is written. The send timeout of
/// [`Tracked`] sees only writes that the socket refuses; an answer that fits
/// the kernel's send buffer (several MiB, autotuned) is written at once, and a peer that never
/// reads it would hold the connection until the idle timeout, its data pinned in kernel
/// memory. A peer that keeps reading, however slowly, keeps its window open and is never cut.
fn abandon_unread_after(stream: &TcpStream, timeout: Duration) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // 0 would mean the kernel's default, not "at once".
        let ms = u32::try_from(timeout.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        if let Err(err) = rustix::net::sockopt::set_tcp_user_timeout(stream, ms) {
            tracing::debug!(error = %err, "cannot set TCP_USER_TIMEOUT");
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (stream, timeout);
}

/// Raises the soft limit on open files to the hard limit; the soft limit now in force, or `None`
/// where there is none (or no way to read it).
#[cfg(unix)]
fn raise_open_files_limit() -> Option<usize> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limits = getrlimit(Resource::Nofile);
    let soft = limits.current?;
    let raised = match limits.maximum {
        Some(hard) if hard > soft => {
            let wanted = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            match setrlimit(Resource::Nofile, wanted) {
                Ok(()) => hard,
                Err(err) => {
                    tracing::warn!(error = %err, soft, hard, "cannot raise the limit on open files");
                    soft
                }
            }
        }
        // No hard limit: the soft one may go anywhere, but stays where the operator put it.
        _ => soft,
    };
    Some(usize::try_from(raised).unwrap_or(usize::MAX))
}

#[cfg(not(unix))]
fn raise_open_files_limit() -> Option<usize> {
    None
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what `kill`, systemd and Kubernetes send), logging
/// which: the `shutdown` future to give [`Server::serve`].
///
/// ```no_run
/// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
/// keel::serve::Server::new()
///     .serve(listener, app, keel::serve::shutdown_signal())
///     .await
/// # }
/// ```
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Errors of `accept` that concern one connection only: take the next one.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Any other (out of descriptors, mostly) is logged, and accepting pauses a moment so as not
/// to spin.
async fn accept_failed(err: io::Error) {
    if is_connection_error(&err) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// What a connection is doing, for its watchdog: requests in flight, when the head being read
/// began, when the connection last fell idle. Times are milliseconds since the connection's
/// start; `head_since` is 0 while no head is being read, else that time plus one.
///
/// Requests only store these; nothing wakes the watchdog per request. It wakes at the deadline
/// it can see, and at least every header timeout to look again, so a head begun meanwhile is
/// still cut exactly at its deadline.
#[derive(Debug)]
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    head_since: AtomicU64,
    idle_since: AtomicU64,
    /// A response body over [`SMALL_BODY`] has been started on this connection.
    large_answer: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            // The first request's head is timed from the connection's start.
            head_since: AtomicU64::new(1),
            idle_since: AtomicU64::new(0),
            large_answer: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Bytes arrived: on an idle connection, they begin a request's head.
    fn received(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(self.now() + 1, Ordering::Relaxed);
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.idle_since.store(self.now(), Ordering::Relaxed);
        }
    }

    /// When the connection is to be closed as things stand; `None` while a request is in flight.
    fn deadline(&self, header: Duration, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let at = |ms: u64, limit: Duration| self.start + Duration::from_millis(ms) + limit;
        match self.head_since.load(Ordering::Relaxed) {
            0 => Some(at(self.idle_since.load(Ordering::Relaxed), idle)),
            since => Some(at(since - 1, header)),
        }
    }

    /// Completes when the connection has been idle, or reading one head, for too long.
    async fn expired(&self, header: Duration, idle: Duration) {
        loop {
            let now = Instant::now();
            let wake = match self.deadline(header, idle) {
                Some(deadline) if deadline <= now => return,
                // Reading a head: its deadline cannot move earlier.
                Some(deadline) if self.head_since.load(Ordering::Relaxed) != 0 => deadline,
                // Idle: a head may begin at any moment; look again within a header timeout.
                Some(deadline) => deadline.min(now + header),
                // Busy: look again later.
                None => now + header,
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// Response bodies up to this size end their request as soon as they are made.
const SMALL_BODY: u64 = 64 * 1024;

/// A request in flight on its connection, until its response body is done or dropped.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The router, marking each request in flight until its response has been sent.
#[derive(Debug, Clone)]
struct Tracking {
    router: Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Tracking {
    type Response = Response;
    type Error = Infallible;
    type Future = TrackingFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        TrackingFuture {
            in_flight: Some(self.activity.begin()),
            served: self.router.clone().call(request.map(Body::new)),
        }
    }
}

pin_project_lite::pin_project! {
    /// One request through the router, in flight until its response is made, or for a body
    /// that is not small, until the body has been sent.
    struct TrackingFuture {
        in_flight: Option<InFlight>,
        #[pin]
        served: RouteFuture<Infallible>,
    }
}

impl Future for TrackingFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.served.poll(cx))?;
        let Some(in_flight) = this.in_flight.take() else {
            return Poll::Ready(Ok(response));
        };
        // A small body of known size goes to the socket's buffer in one write: the request is
        // done. Any other keeps it in flight until the body has been sent.
        let small = http_body::Body::size_hint(response.body())
            .exact()
            .is_some_and(|len| len <= SMALL_BODY);
        if small {
            drop(in_flight);
            return Poll::Ready(Ok(response));
        }
        in_flight.0.large_answer.store(true, Ordering::Relaxed);
        Poll::Ready(Ok(response.map(|body| {
            Body::new(Guarded {
                body,
                _in_flight: in_flight,
            })
        })))
    }
}

/// A response body that keeps its request in flight until it is done.
#[derive(Debug)]
struct Guarded {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket: reports received bytes to the watchdog, abandons a write that makes
/// no progress for the send timeout, and holds the connection's permit, which an upgrade
/// carries along until the upgraded connection closes.
///
/// The send timeout lives here rather than in the watchdog because an upgraded connection
/// leaves hyper (and the watchdog) behind but keeps this socket: a WebSocket frame nobody reads
/// is abandoned the same way as a response nobody reads.
///
/// Where the kernel has `TCP_USER_TIMEOUT` it judges progress: it is set before the first large
/// answer, and when a write is first refused, and aborts the connection only when nothing the
/// peer was sent is acknowledged, or its window stays closed, for the timeout. A timer here
/// could not tell a reader that drains a large send buffer slowly (the socket reports room
/// only once a good part of it is free) from one that reads nothing. Elsewhere a refused write
/// that gets no room for the timeout fails.
#[derive(Debug)]
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
    send_timeout: Duration,
    /// Without `TCP_USER_TIMEOUT`: armed while a write waits for room in the socket,
    /// `Some((deadline timer, armed))`, made on the first stall and reset on later ones.
    stalled: Option<(Pin<Box<tokio::time::Sleep>>, bool)>,
    /// `TCP_USER_TIMEOUT` is set. It costs the kernel work on every send, so a connection gets
    /// it only when it needs it: small answers and WebSocket frames that the socket takes at
    /// once go without.
    user_timeout_set: bool,
    _permit: OwnedSemaphorePermit,
}

/// Whether the kernel can abandon unread data itself (`TCP_USER_TIMEOUT`).
const KERNEL_SEND_TIMEOUT: bool = cfg!(any(target_os = "linux", target_os = "android"));

impl Tracked {
    /// Before a write: a connection starting a large answer hands the send timeout to the
    /// kernel, since the kernel may accept all of it at once.
    fn before_write(&mut self) {
        if !self.user_timeout_set && self.activity.large_answer.load(Ordering::Relaxed) {
            self.hand_timeout_to_kernel();
        }
    }

    fn hand_timeout_to_kernel(&mut self) {
        abandon_unread_after(&self.stream, self.send_timeout);
        self.user_timeout_set = true;
    }

    /// A write returned `polled`: progress disarms the timer; a refusal hands the timeout to
    /// the kernel, or without one arms the timer (if not armed already) and fails once it has
    /// run out.
    fn sent(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if polled.is_ready() {
            if let Some((_, armed)) = &mut self.stalled {
                *armed = false;
            }
            return polled;
        }
        if KERNEL_SEND_TIMEOUT {
            if !self.user_timeout_set {
                self.hand_timeout_to_kernel();
            }
            return Poll::Pending;
        }
        // A timeout too large to add is no deadline at all.
        let Some(deadline) = Instant::now().checked_add(self.send_timeout) else {
            return Poll::Pending;
        };
        let (timer, armed) = self
            .stalled
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep_until(deadline)), true));
        if !*armed {
            timer.as_mut().reset(deadline);
            *armed = true;
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "send timeout: the peer accepted nothing",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.before_write();
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.sent(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.before_write();
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.sent(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
