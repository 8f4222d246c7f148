//! Accepting clients, maxclients, and the SIGTERM drain.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::Shared;
use crate::telemetry::ErrorKind;

/// Accepts clients until `shutdown` turns true, then waits up to `grace`
/// for every session to finish the replies it owes.
pub async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    // Each session holds a clone of `done_tx`; when all are dropped,
    // `done_rx.recv()` returns None: every session has finished.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let (mut stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if shared.clients.len() >= shared.server.maxclients {
            shared
                .metrics
                .client_rejected(crate::telemetry::RejectReason::MaxClients);
            shared.metrics.error(ErrorKind::MaxClients);
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"-ERR max number of clients reached\r\n")
                    .await;
                let _ = stream.shutdown().await;
            });
            continue;
        }
        // `[auth.limits]` allow_cidrs/deny_cidrs: closed before a byte is read.
        if !shared.auth.cidrs.admits(addr.ip()) {
            tracing::debug!(%addr, "connection refused by the CIDR lists");
            drop(stream);
            continue;
        }
        let laddr = stream.local_addr().unwrap_or(addr);
        let info = shared.clients.register(addr, laddr);
        let counted = shared.metrics.client_accepted();
        let shared = shared.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            super::session::serve(stream, shared.clone(), info).await;
            drop(counted);
            drop(done);
        });
    }
    drop(listener);
    drop(done_tx);
    // Every session was registered before its task was spawned, so every
    // one is told (a task not yet started sees the reason when it starts).
    for client in shared.clients.snapshot() {
        client.halt.fire(super::halt::HaltReason::Shutdown);
    }
    tracing::info!(
        clients = shared.clients.len(),
        "stopped accepting; draining sessions"
    );
    if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
        tracing::warn!(
            remaining = shared.clients.len(),
            "grace period over; exiting with sessions open"
        );
    }
}
