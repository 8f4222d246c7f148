//! Wiring and shutdown: the only module that sees every other one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::router::Router;
use crate::config::Config;
use crate::protocol::RequestParser;
use crate::server::{self, Shared};
use crate::telemetry::{self, Metrics, Readiness};

/// A running strata: its bound addresses and the handle to stop it.
#[derive(Debug)]
pub struct Running {
    /// Where clients connect (the real port when the config said 0).
    pub addr: SocketAddr,
    /// Where /metrics and /health/* are served, when enabled.
    pub http_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    listener: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets sessions finish their in-flight replies within
    /// the grace period, and returns when done.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.listener.await;
    }

    /// Waits until the listener finishes (after a shutdown).
    pub async fn wait(self) {
        let _ = self.listener.await;
    }

    /// Signals shutdown without waiting.
    pub fn trigger_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// Starts strata: binds the listeners, connects the backend, and serves.
/// Must run inside a tokio runtime.
pub async fn start(config: Config) -> std::io::Result<Running> {
    let metrics = Arc::new(Metrics::new());
    let backend = Router::standalone(&config.backend, &metrics);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let http_addr = if config.telemetry.listen.is_empty() {
        None
    } else {
        let listener = TcpListener::bind(&config.telemetry.listen).await?;
        let addr = listener.local_addr()?;
        let ready_backend = backend.clone();
        let state = Arc::new(telemetry::HttpState {
            metrics: metrics.clone(),
            ready: Box::new(move || {
                let primary = ready_backend.primary();
                if primary.is_healthy() {
                    Readiness::Ready
                } else {
                    Readiness::NotReady(format!("primary {} not answering PING\n", primary.addr()))
                }
            }),
        });
        let mut rx = shutdown_rx.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = telemetry::serve(listener, state, stop).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
        Some(addr)
    };

    let listener = TcpListener::bind(config.server.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, backend = %config.backend.address, "strata listening");
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let shared = Arc::new(Shared {
        parser: RequestParser::new(config.server.proto_max_bulk_len),
        server: config.server,
        backend,
        metrics,
        clients: server::clients::ClientRegistry::default(),
        started: Instant::now(),
    });
    let listener = tokio::spawn(server::listener::run(listener, shared, shutdown_rx, grace));
    Ok(Running {
        addr,
        http_addr,
        shutdown: shutdown_tx,
        listener,
    })
}
