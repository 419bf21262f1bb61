//! Start-up and shutdown: open the store, build the router, start the job workers, serve until
//! a signal, then stop in order.
//!
//! Shutdown order: the listener stops taking connections, WebSockets are closed with 1001, and
//! requests in flight finish; then the workers stop claiming and their running jobs get the grace period (what is left goes
//! back to the queue); after-response tasks get the same grace; then the database closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use keel::jobs::{Registry, WorkerConfig};
use keel::webhooks::Secret;
use keel::ws::Hub;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::analytics::Analytics;
use crate::config::Config;
use crate::mail::{MailSetupError, Mailer};
use crate::outbound::Sender;
use crate::state::{AppState, Shared};
use crate::store::{OpenError, Store};
use crate::{jobs, routes};

/// The shortest operator token the service accepts.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error(transparent)]
    Mail(#[from] MailSetupError),
    #[error(
        "SHOP_ADMIN_TOKEN is {0} characters long: an operator token needs at least {MIN_ADMIN_TOKEN_CHARS}"
    )]
    AdminTokenTooShort(usize),
    #[error("invalid SHOP_PAYMENTS_SECRET: {0}")]
    PaymentsSecret(keel::webhooks::SecretError),
    #[error("invalid REDIS_URL: {0}")]
    Redis(keel::ws::redis::RedisError),
    #[error("cannot build the webhook HTTP client: {0}")]
    HttpClient(reqwest::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A service bound to its address and ready to serve.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: Router,
    state: AppState,
    registry: Registry,
    workers: WorkerConfig,
    server: keel::serve::Server,
    broker: Option<std::sync::Arc<keel::ws::redis::RedisBroker>>,
    /// Owns the job workers, the analytics recorder and the after-response tasks.
    tracker: TaskTracker,
    /// Stops them.
    stop_background: CancellationToken,
}

impl App {
    /// Opens the database (migrating it), sets up mail and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        if let Some(token) = config.admin_token.as_deref() {
            // Empty means unset (the routes answer 403); anything shorter than this is a
            // token a guess can find.
            let chars = token.chars().count();
            if chars > 0 && chars < MIN_ADMIN_TOKEN_CHARS {
                return Err(StartError::AdminTokenTooShort(chars));
            }
        }
        crate::metrics::handle();
        let store = Store::open_with(
            &config.database_url,
            config.job_max_attempts,
            config.db_max_connections,
        )
        .await?;
        let mailer = Mailer::new(
            config.smtp_url.as_deref(),
            &config.mail_dir,
            &config.mail_from,
        )?;
        let payments_secret = match config.payments_secret.as_deref() {
            Some(text) => Some(Arc::new(
                Secret::parse(text).map_err(StartError::PaymentsSecret)?,
            )),
            None => None,
        };
        let tracker = TaskTracker::new();
        let stop_background = CancellationToken::new();
        let analytics = Analytics::spawn(store.clone(), &tracker, stop_background.clone());
        crate::metrics::spawn_upkeep(&tracker, stop_background.clone());
        crate::retention::spawn(
            store.clone(),
            crate::store::retention::Ages {
                finished: Duration::from_secs(u64::from(config.retention_days) * 86_400),
                idempotency_keys: Duration::from_secs(config.idempotency_ttl_secs),
            },
            Duration::from_secs(config.retention_interval_secs),
            &tracker,
            stop_background.clone(),
        );
        let hub = Hub::new(config.ws_config());
        // With Redis, broadcasts reach the WebSocket clients of every instance.
        let broker = match &config.redis_url {
            Some(url) => {
                let broker =
                    keel::ws::redis::RedisBroker::start(url, &config.redis_prefix, &hub, &tracker)
                        .map_err(StartError::Redis)?;
                hub.set_broker(broker.clone());
                Some(broker)
            }
            None => None,
        };
        let state = AppState::new(Shared {
            store,
            analytics,
            hub,
            payments_secret,
            webhook_allow_private: config.webhook_allow_private,
            allowed_origins: keel::ws::AllowedOrigins::new(&config.allowed_origins)
                .public_origin(config.public_origin.as_deref().unwrap_or_default()),
            order_payment_window: Duration::from_secs(config.order_payment_window_secs),
        });
        // An attempt must end before its job's timeout cuts it off, or its outcome is lost.
        let webhook_timeout =
            Duration::from_secs(config.webhook_timeout_secs.min(config.job_timeout_secs));
        let sender = Sender::new(webhook_timeout, config.webhook_allow_private)
            .map_err(StartError::HttpClient)?;
        let limits = routes::Limits {
            admin_token: config.admin_token.clone(),
            max_body_bytes: config.max_body_bytes,
            request_timeout: Duration::from_secs(config.request_timeout_secs),
            idempotency_ttl: Duration::from_secs(config.idempotency_ttl_secs),
        };
        let router = routes::router(
            state.clone(),
            &limits,
            tracker.clone(),
            crate::openapi::router(),
        );
        let listener = listen(config.addr).map_err(|source| StartError::Bind {
            addr: config.addr,
            source,
        })?;
        let registry = jobs::registry(jobs::Context {
            store: state.store.clone(),
            hub: state.hub.clone(),
            mailer,
            sender,
        });
        Ok(App {
            listener,
            router,
            state,
            registry,
            workers: config.worker_config(),
            server: config.server().fit_open_files(config.reserved_files()),
            broker,
            tracker,
            stop_background,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops in the order of the module docs.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let stop_workers = self.stop_background.clone();
        let grace = self.workers.shutdown_grace;
        self.state.store.jobs().spawn_workers(
            self.registry,
            self.workers,
            stop_workers.clone(),
            &self.tracker,
        );
        if let Ok(addr) = self.listener.local_addr() {
            tracing::info!(%addr, "shop listening");
        }
        // WebSockets are closed (1001) as soon as the signal comes: upgraded connections are
        // not requests the server would wait for.
        let signal = self.state.hub.close_on(shutdown);
        let served = self.server.serve(self.listener, self.router, signal).await;
        if let Err(err) = served {
            tracing::error!(error = %err, "server stopped with an error");
        }

        self.state.hub.shutdown(Duration::from_secs(5)).await;
        if let Some(broker) = &self.broker {
            broker.stop();
        }
        stop_workers.cancel();
        self.tracker.close();
        // The workers give their jobs `grace`, then record what finished and hand back what
        // is left, each write retried for up to a third of the 10 s lease if the database
        // is busy; the margin covers both, so that the store is not closed under them.
        let limit = grace + Duration::from_secs(15);
        if tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("background work still running at exit; jobs will be retried");
        }
        self.state.store.close().await;
        tracing::info!("shop stopped");
    }
}

/// Binds `addr` as `TcpListener::bind` does (address reuse), with a backlog of 1024 (tokio's
/// takes 128: connections past `SHOP_MAX_CONNECTIONS` wait there). Socket buffers are left to
/// the kernel's automatic sizing: a connection that never reads pins no more kernel memory than
/// the kernel chooses to give it.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = new_socket(addr)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn new_socket(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    Ok(socket)
}
