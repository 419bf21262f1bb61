//! Start-up and shutdown: open the store, build the router, serve until a signal.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::routes;
use crate::store::{OpenError, Store};

/// What every handler shares: cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] OpenError),
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
}

impl App {
    /// Opens the database (migrating it) and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let store = Store::open(&config.database_url).await?;
        let state = AppState { store };
        let router = routes::router(state.clone(), &config);
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.addr,
                source,
            })?;
        Ok(App {
            listener,
            router,
            state,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight and closes the
    /// database.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Ok(addr) = self.listener.local_addr() {
            tracing::info!(%addr, "shop listening");
        }
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "server stopped with an error");
        }
        self.state.store.close().await;
        tracing::info!("shop stopped");
    }
}

/// Completes on SIGINT or SIGTERM.
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
