//! Accepting clients, maxclients, and the SIGTERM drain.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::Shared;
use crate::telemetry::{ErrorKind, RejectReason};

/// Why a new client from `ip` is turned away, if it is: `maxclients`
/// (Redis's text), or `max_clients_per_address`.
fn refusal(shared: &Shared, ip: std::net::IpAddr) -> Option<(RejectReason, &'static [u8])> {
    if shared.clients.len() >= shared.server.maxclients {
        return Some((
            RejectReason::MaxClients,
            b"-ERR max number of clients reached\r\n",
        ));
    }
    let per_address = shared.server.max_clients_per_address;
    if per_address > 0 && shared.clients.from_address(ip) >= per_address {
        return Some((
            RejectReason::MaxClientsPerAddress,
            b"-ERR max number of clients reached for this address\r\n",
        ));
    }
    None
}

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
        if shared.drain.is_on() {
            // PROXY DRAIN: not accepting (closed at once, as a stopped
            // listener would refuse it).
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        if let Some((reason, text)) = refusal(&shared, addr.ip()) {
            shared.metrics.client_rejected(reason);
            shared.metrics.error(ErrorKind::MaxClients);
            tokio::spawn(async move {
                let _ = stream.write_all(text).await;
                let _ = stream.shutdown().await;
            });
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
