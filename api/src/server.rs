//! Running the API (and its outbox relay) on a listener until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;

use archer_store::Clock;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppState};
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("database: {0}")]
    Store(#[from] archer_store::StoreError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
}

/// A running API server.
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    http: JoinHandle<std::io::Result<()>>,
    relay: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, finishes requests in flight, stops the relay.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.http.await;
        if let Some(r) = self.relay {
            let _ = r.await;
        }
    }

    /// [`stop`](Self::stop), but gives up after `grace`: requests still running then are
    /// abandoned (their transactions roll back; a client retries), and the relay's deliveries
    /// still under way are not marked (the rows go out again, which is harmless). Returns
    /// whether everything finished in time.
    pub async fn stop_within(self, grace: std::time::Duration) -> bool {
        let (http, relay) = (self.http.abort_handle(), self.relay.as_ref().map(|r| r.abort_handle()));
        let done = tokio::time::timeout(grace, self.stop()).await.is_ok();
        if !done {
            tracing::warn!(?grace, "shutdown grace period over: abandoning requests and deliveries still running");
            http.abort();
            if let Some(r) = relay {
                r.abort();
            }
        }
        done
    }

    /// Resolves when the server stops on its own (an error) or is stopped.
    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Connects to the database and serves on `listener` (and runs the relay if configured),
/// reading time from `clock` (`archer_store::SystemClock` but in tests).
pub async fn start(config: Config, listener: TcpListener, clock: Arc<dyn Clock>) -> Result<RunningServer, ServeError> {
    let pool = config.connect_db(config.database_max_connections, clock).await?.watched("api");
    if !archer_store::migrations_current(&pool).await.unwrap_or(false) {
        tracing::warn!("database migrations are pending: run `archer migrate`; /ready reports not ready until then");
    }
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    archer_store::metrics::metrics().running("api");
    let relay = config.relay.then(|| {
        archer_store::metrics::metrics().running("relay");
        tokio::spawn(crate::relay::run(pool.clone(), config.temporal(), shutdown.clone()))
    });
    let state = AppState::new(pool, config).map_err(|e| ServeError::Setup(e.to_string()))?;
    let router = app::router(state);
    let token = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
    });
    tracing::info!(%addr, "API listening");
    Ok(RunningServer { addr, shutdown, http, relay })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
