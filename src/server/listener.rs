//! Accepting clients, maxclients, and the SIGTERM drain.
//!
//! One loop accepts on the plain listener and the TLS one (either may be
//! absent), so both share maxclients, the registry and the drain. A TLS
//! client's handshake runs in its session's task, never in this loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::Shared;
use crate::telemetry::{ErrorKind, RejectReason};
use crate::tls::{Acceptor, Stream};

/// Why a new client from `ip` is turned away, if it is: `maxclients`
/// (Redis's text), or `max_clients_per_address`.
fn refusal(shared: &Shared, ip: std::net::IpAddr) -> Option<(RejectReason, &'static [u8])> {
    let server = shared.server.load();
    if shared.clients.len() >= server.maxclients {
        return Some((
            RejectReason::MaxClients,
            b"-ERR max number of clients reached\r\n",
        ));
    }
    let per_address = server.max_clients_per_address;
    if per_address > 0 && shared.clients.from_address(ip) >= per_address {
        return Some((
            RejectReason::MaxClientsPerAddress,
            b"-ERR max number of clients reached for this address\r\n",
        ));
    }
    None
}

/// The listening sockets: plain (`server.listen`) and TLS (`tls.listen`).
#[derive(Debug, Default)]
pub struct Listeners {
    /// Plain TCP, unless `tls.plain = false`.
    pub plain: Option<TcpListener>,
    /// TLS, with the acceptor holding the current certificate.
    pub tls: Option<(TcpListener, Arc<Acceptor>)>,
}

/// The next connection on `listener`; never, when there is none.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Accepts clients until `shutdown` turns true, then waits up to `grace`
/// for every session to finish the replies it owes.
pub async fn run(
    listeners: Listeners,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    // Each session holds a clone of `done_tx`; when all are dropped,
    // `done_rx.recv()` returns None: every session has finished.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let tls_listener = listeners.tls.as_ref().map(|(l, _)| l);
    loop {
        let (accepted, tls) = tokio::select! {
            r = accept(listeners.plain.as_ref()) => (r, None),
            r = accept(tls_listener) => (r, listeners.tls.as_ref().map(|(_, a)| a.clone())),
            _ = shutdown.changed() => break,
        };
        let (stream, addr) = match accepted {
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
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut stream = match tls {
                    // The refusal is sent inside TLS, as Redis sends it.
                    Some(tls) => match tls.accept(stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            shared
                                .metrics
                                .tls_handshake_failed(crate::tls::failure::reason(&e));
                            return;
                        }
                    },
                    None => Stream::Plain(stream),
                };
                let _ = stream.write_all(text).await;
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
            let stream = match tls {
                None => Stream::Plain(stream),
                Some(tls) => match Box::pin(tls.accept(stream)).await {
                    Ok(s) => s,
                    Err(e) => {
                        // A scanner, a client that does not trust the
                        // certificate, a plain client on the TLS port.
                        let reason = crate::tls::failure::reason(&e);
                        tracing::debug!(client = %addr, error = %e, reason = reason.as_str(), "TLS handshake failed");
                        shared.metrics.tls_handshake_failed(reason);
                        shared.clients.unregister(info.id);
                        return;
                    }
                },
            };
            super::session::serve(stream, shared.clone(), info).await;
            drop(counted);
            drop(done);
        });
    }
    drop(listeners);
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
