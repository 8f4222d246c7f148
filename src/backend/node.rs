//! One Redis server behind strata: multiplexed connections per protocol, a
//! pool of dedicated connections, a circuit breaker and a health checker.
//!
//! A node lives as long as strata routes to it. When a failover moves the
//! primary elsewhere the node is *retired*: its connections fail what they
//! have in flight with a clear error and close.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use tokio::sync::watch;

use super::breaker::Breaker;
use super::dedicated::{self, Dedicated, DedicatedPool};
use super::mux::{MuxConnection, MuxReply, MuxSetup};
use super::users::{Credentials, UserConns, UserSpawner};
use super::{handshake, BackendError, ConnSettings};
use crate::config::BackendConfig;
use crate::protocol::Protocol;
use crate::telemetry::{ConnKind, Metrics};

/// One Redis server behind strata.
#[derive(Debug)]
pub struct Node {
    addr: String,
    breaker: Arc<Breaker>,
    retired: watch::Sender<Option<String>>,
    resp2: Vec<MuxConnection>,
    resp3: Vec<MuxConnection>,
    pool: DedicatedPool,
    /// The pool's bound (`backend.dedicated_pool_size`).
    pool_max: u32,
    settings: ConnSettings,
    healthy: Arc<AtomicBool>,
    version: Arc<RwLock<String>>,
    /// Poked by the connections on a `-READONLY` reply or a lost connection:
    /// signs that this may no longer be the primary (Sentinel rediscovers).
    trouble: Arc<tokio::sync::Notify>,
    /// Connections authenticated as the ACL users clients logged in as
    /// (see `users.rs`); empty while every client is strata's own user.
    users: Arc<UserConns>,
    /// Round trips of the health PINGs (`PROXY BACKENDS`' p50/p99): the
    /// node's own latency, measured off the data path.
    ping_latency: crate::telemetry::metrics::LatencyHistogram,
}

impl Node {
    /// Starts the connections and the health checker for `addr`. Must run
    /// inside a tokio runtime.
    pub fn start(addr: &str, config: &BackendConfig, metrics: &Arc<Metrics>) -> Arc<Node> {
        Node::start_with(addr, config, metrics, false)
    }

    /// As [`Node::start`]; with `readonly`, every connection sends
    /// `READONLY` first (a cluster replica that serves reads).
    pub fn start_with(
        addr: &str,
        config: &BackendConfig,
        metrics: &Arc<Metrics>,
        readonly: bool,
    ) -> Arc<Node> {
        let mut settings = ConnSettings::from_config(config);
        settings.readonly = readonly;
        let addr = addr.to_string();
        let breaker = Arc::new(Breaker::new(config.breaker.clone()));
        let (retired, retired_rx) = watch::channel(None);
        let trouble = Arc::new(tokio::sync::Notify::new());
        let spawn_set = |proto: Protocol| -> Vec<MuxConnection> {
            (0..config.connections)
                .map(|_| {
                    MuxConnection::spawn(MuxSetup {
                        addr: addr.clone(),
                        proto,
                        settings: settings.clone(),
                        metrics: metrics.backend_connection(&addr, ConnKind::Multiplexed),
                        breaker: breaker.clone(),
                        retired: retired_rx.clone(),
                        trouble: trouble.clone(),
                    })
                })
                .collect()
        };
        let resp2 = spawn_set(Protocol::Resp2);
        let resp3 = spawn_set(Protocol::Resp3);
        let pool = dedicated::pool(addr.clone(), config.dedicated_pool_size, settings.clone());
        let users = Arc::new(UserConns::new(UserSpawner {
            addr: addr.clone(),
            settings: settings.clone(),
            connections: config.connections,
            pool_size: config.dedicated_pool_size,
            metrics: metrics.clone(),
            breaker: config.breaker.clone(),
            retired: retired_rx.clone(),
            trouble: trouble.clone(),
        }));
        tokio::spawn(super::users::idle_loop(
            Arc::downgrade(&users),
            retired_rx.clone(),
        ));
        let backend = Arc::new(Node {
            addr,
            breaker,
            retired,
            resp2,
            resp3,
            pool,
            pool_max: config.dedicated_pool_size,
            settings,
            healthy: Arc::new(AtomicBool::new(false)),
            version: Arc::new(RwLock::new(String::new())),
            trouble,
            users,
            ping_latency: Default::default(),
        });
        tokio::spawn(health_loop(
            backend.addr.clone(),
            backend.settings.clone(),
            Duration::from_millis(config.health_interval_ms),
            backend.healthy.clone(),
            backend.version.clone(),
            backend.retired.subscribe(),
            backend.ping_latency.clone(),
        ));
        backend
    }

    /// Stops routing to this node: its connections fail what they have in
    /// flight with `reason` and close; clients on its dedicated connections
    /// get an error and are disconnected.
    pub fn retire(&self, reason: String) {
        let _ = self.retired.send(Some(reason));
    }

    /// Resolves when the node is retired, with the reason.
    pub fn retired(&self) -> watch::Receiver<Option<String>> {
        self.retired.subscribe()
    }

    /// Notified when a connection sees a `-READONLY` reply or is lost.
    pub fn trouble(&self) -> &Arc<tokio::sync::Notify> {
        &self.trouble
    }

    /// The node's circuit breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The backend address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends a request on the multiplexed connection for this client. A
    /// client always uses the same connection, so its commands run in the
    /// order it sent them. `user`: the ACL user the client logged in as,
    /// when not strata's own (its commands then run on that user's
    /// connections).
    pub async fn send(
        &self,
        client_id: u64,
        proto: Protocol,
        frames: Bytes,
        count: usize,
        user: Option<&Credentials>,
    ) -> oneshot::Receiver<MuxReply> {
        if !self.breaker.allow() {
            return failed(self.circuit_open());
        }
        if let Some(user) = user {
            return match self.users.mux(user, client_id, proto) {
                Ok(conn) => conn.send(frames, count).await,
                Err(e) => failed(e),
            };
        }
        let set = match proto {
            Protocol::Resp2 => &self.resp2,
            Protocol::Resp3 => &self.resp3,
        };
        let conn = &set[(client_id as usize) % set.len()];
        conn.send(frames, count).await
    }

    /// The per-user connection sets (see `users.rs`).
    pub fn users(&self) -> &UserConns {
        &self.users
    }

    fn circuit_open(&self) -> BackendError {
        BackendError::Unavailable {
            addr: self.addr.clone(),
            reason: "circuit open".into(),
        }
    }

    /// Borrows a dedicated connection, speaking `proto`, authenticated as
    /// `user` (strata's own user when `None`).
    pub async fn dedicated(
        &self,
        proto: Protocol,
        user: Option<&Credentials>,
    ) -> Result<Dedicated, BackendError> {
        if !self.breaker.allow() {
            return Err(self.circuit_open());
        }
        let user_pool;
        let pool = match user {
            None => &self.pool,
            Some(user) => {
                user_pool = self.users.pool(user)?;
                &user_pool
            }
        };
        let unavailable = |reason: String| BackendError::Unavailable {
            addr: self.addr.clone(),
            reason,
        };
        // An idle pooled connection may be dead (the backend restarted).
        // Its socket then reads EOF at once: check without a round trip and
        // take another, so the client never inherits a dead connection.
        let mut conn = pool
            .get_owned()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let mut tries = 0;
        while !dedicated::looks_alive(&mut conn) {
            conn.stream = None; // broken: bb8 discards it
            tries += 1;
            if tries > 8 {
                return Err(unavailable("pooled connections are dead".into()));
            }
            conn = pool
                .get_owned()
                .await
                .map_err(|e| unavailable(e.to_string()))?;
        }
        if proto == Protocol::Resp3 {
            let DedicatedConn { stream, buf, .. } = &mut *conn;
            let stream = stream
                .as_mut()
                .ok_or_else(|| unavailable("connection broken".into()))?;
            if let Err(e) = handshake::call(
                stream,
                buf,
                &[b"HELLO", b"3"],
                self.settings.request_timeout,
            )
            .await
            {
                self.breaker.on_failure();
                conn.stream = None;
                return Err(unavailable(e.to_string()));
            }
        }
        Ok(conn)
    }

    /// True when a dedicated connection can be had without waiting: one is
    /// idle, or the pool may open another. Script calls, which do not need
    /// one to be correct, take the shared connection otherwise rather than
    /// wait (see `server/session/scripts.rs`).
    pub fn dedicated_available(&self) -> bool {
        let state = self.pool.state();
        state.idle_connections > 0 || state.connections < self.pool_max
    }

    /// Gives a dedicated connection back (RESET first, in the background).
    pub fn release(&self, conn: Dedicated) {
        dedicated::release(conn, self.settings.request_timeout);
    }

    /// The request timeout, for dedicated-mode deadlines.
    pub fn request_timeout(&self) -> Duration {
        self.settings.request_timeout
    }

    /// TLS to this node, when `[tls.backend]` is set.
    pub fn tls(&self) -> Option<&crate::tls::Connector> {
        self.settings.tls.as_deref()
    }

    /// True when the last health PING was answered.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Number of multiplexed connections currently up.
    pub fn connections_up(&self) -> usize {
        self.resp2
            .iter()
            .chain(self.resp3.iter())
            .filter(|c| c.is_up())
            .count()
    }

    /// Batches sent on the multiplexed connections and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.resp2
            .iter()
            .chain(self.resp3.iter())
            .map(|c| c.in_flight())
            .sum()
    }

    /// The health PINGs' round trips.
    pub fn ping_latency(&self) -> &crate::telemetry::metrics::LatencyHistogram {
        &self.ping_latency
    }

    /// Number of multiplexed connections in all.
    pub fn connections_total(&self) -> usize {
        self.resp2.len() + self.resp3.len()
    }

    /// The backend's `redis_version`, once known.
    pub fn version(&self) -> String {
        self.version.read().map(|v| v.clone()).unwrap_or_default()
    }
}

use super::dedicated::DedicatedConn;

/// A reply slot already holding an error.
fn failed(e: BackendError) -> oneshot::Receiver<MuxReply> {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(Err(e));
    rx
}

/// PINGs the backend on its own connection every `interval`; the result
/// drives /health/ready. Learns the backend's version on the way.
async fn health_loop(
    addr: String,
    settings: ConnSettings,
    interval: Duration,
    healthy: Arc<AtomicBool>,
    version: Arc<RwLock<String>>,
    mut retired: watch::Receiver<Option<String>>,
    ping_latency: crate::telemetry::metrics::LatencyHistogram,
) {
    let mut conn: Option<(crate::tls::Stream, BytesMut)> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = retired.changed() => return,
        }
        if conn.is_none() {
            match super::connect_authenticated(&addr, &settings).await {
                Ok(stream) => {
                    let mut c = (stream, BytesMut::new());
                    if let Ok(info) = handshake::call(
                        &mut c.0,
                        &mut c.1,
                        &[b"INFO", b"server"],
                        settings.request_timeout,
                    )
                    .await
                    {
                        if let Some(v) = parse_version(&info) {
                            if let Ok(mut slot) = version.write() {
                                *slot = v;
                            }
                        }
                    }
                    conn = Some(c);
                }
                Err(e) => {
                    if healthy.swap(false, Ordering::Relaxed) {
                        tracing::warn!(backend = %addr, error = %e, "backend not reachable");
                    }
                    continue;
                }
            }
        }
        let Some((stream, buf)) = conn.as_mut() else {
            continue;
        };
        let sent = std::time::Instant::now();
        let ok = handshake::call(stream, buf, &[b"PING"], settings.request_timeout)
            .await
            .is_ok();
        if ok {
            ping_latency.observe_n(sent.elapsed(), 1);
        }
        if !ok {
            conn = None;
        }
        let was = healthy.swap(ok, Ordering::Relaxed);
        if was != ok {
            if ok {
                tracing::info!(backend = %addr, "backend answers PING");
            } else {
                tracing::warn!(backend = %addr, "backend stopped answering PING");
            }
        }
    }
}

fn parse_version(info: &[u8]) -> Option<String> {
    let text = crate::protocol::reply::string_payload(info)?;
    let text = std::str::from_utf8(text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_string())
}
