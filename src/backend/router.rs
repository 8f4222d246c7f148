//! Which node a request goes to.
//!
//! The topology (the primary, and the replicas reads may use) is an
//! immutable snapshot swapped atomically (`arc-swap`): the request path
//! loads it without locking, and a background task (Sentinel discovery)
//! replaces it. A replaced node is retired, so whatever it had in flight
//! fails with a clear error instead of silently vanishing.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::dedicated::Dedicated;
use super::mux::MuxReply;
use super::node::Node;
use super::users::Credentials;
use super::BackendError;
use crate::config::{BackendConfig, ReadFrom};
use crate::protocol::Protocol;
use crate::telemetry::Metrics;

/// The current topology.
#[derive(Debug)]
pub struct Topology {
    /// Where writes (and, by default, reads) go.
    pub primary: Arc<Node>,
    /// Where reads may go, per `read_from`.
    pub replicas: Vec<Arc<Node>>,
}

/// Routes requests to the current primary or a replica.
#[derive(Debug)]
pub struct Router {
    mode: &'static str,
    topology: ArcSwap<Topology>,
    read_from: ReadFrom,
    next_replica: AtomicUsize,
    request_timeout: Duration,
    /// False while service discovery (Sentinel) cannot be reached; strata
    /// keeps serving the primary it knows.
    discovery_ok: AtomicBool,
    failovers: AtomicU64,
    last_failover_ms: AtomicU64,
    /// True while a failover is under way (Sentinel mode): requests wait
    /// rather than reach a primary that is being demoted. `held` is the
    /// hot path's one relaxed load; `hold` wakes the waiters.
    held: AtomicBool,
    hold: watch::Sender<bool>,
    hold_max: Duration,
}

impl Router {
    /// A router over a fixed topology.
    pub fn new(mode: &'static str, topology: Topology, config: &BackendConfig) -> Router {
        Router {
            mode,
            topology: ArcSwap::from_pointee(topology),
            read_from: config.read_from,
            next_replica: AtomicUsize::new(0),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            discovery_ok: AtomicBool::new(true),
            failovers: AtomicU64::new(0),
            last_failover_ms: AtomicU64::new(0),
            held: AtomicBool::new(false),
            hold: watch::channel(false).0,
            hold_max: Duration::from_millis(config.sentinel.failover_hold_ms),
        }
    }

    /// One standalone Redis server.
    pub fn standalone(config: &BackendConfig, metrics: &Arc<Metrics>) -> Arc<Router> {
        let primary = Node::start(&config.address, config, metrics);
        Arc::new(Router::new(
            "standalone",
            Topology {
                primary,
                replicas: Vec::new(),
            },
            config,
        ))
    }

    /// "standalone", "sentinel", …
    pub fn mode(&self) -> &'static str {
        self.mode
    }

    /// The current primary.
    pub fn primary(&self) -> Arc<Node> {
        self.topology.load().primary.clone()
    }

    /// The current topology snapshot.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.load_full()
    }

    /// Replaces the topology. Nodes that are no longer in it are retired
    /// with `reason`, failing what they have in flight.
    pub fn swap(&self, next: Topology, reason: &str) {
        let keep: Vec<String> = std::iter::once(next.primary.addr().to_string())
            .chain(next.replicas.iter().map(|n| n.addr().to_string()))
            .collect();
        let old = self.topology.swap(Arc::new(next));
        for node in std::iter::once(&old.primary).chain(old.replicas.iter()) {
            if !keep.iter().any(|a| a == node.addr()) {
                node.retire(reason.to_string());
            }
        }
    }

    /// Replaces the topology for a config reload: requests already sent
    /// to nodes no longer in it are answered there (they are retired only
    /// after `grace`, the request timeout and a margin), new ones go to
    /// the new nodes.
    pub fn swap_draining(self: &Arc<Self>, next: Topology, reason: &str, grace: Duration) {
        // Nodes the next topology keeps (the same node, not merely the
        // same address: a reload that changes timeouts starts a new node
        // for the same server, and the old one must still be retired).
        let keep: Vec<Arc<Node>> = std::iter::once(next.primary.clone())
            .chain(next.replicas.iter().cloned())
            .collect();
        let old = self.topology.swap(Arc::new(next));
        let reason = reason.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            for node in std::iter::once(&old.primary).chain(old.replicas.iter()) {
                if !keep.iter().any(|k| Arc::ptr_eq(k, node)) {
                    node.retire(reason.clone());
                }
            }
        });
    }

    /// Records a completed failover for metrics and INFO.
    pub fn record_failover(&self, duration: Duration) {
        self.failovers.fetch_add(1, Ordering::Relaxed);
        self.last_failover_ms
            .store(duration.as_millis() as u64, Ordering::Relaxed);
    }

    /// (failovers followed, duration of the last one in ms).
    pub fn failover_stats(&self) -> (u64, u64) {
        (
            self.failovers.load(Ordering::Relaxed),
            self.last_failover_ms.load(Ordering::Relaxed),
        )
    }

    /// Marks service discovery reachable or not.
    pub fn set_discovery_ok(&self, ok: bool) {
        self.discovery_ok.store(ok, Ordering::Relaxed);
    }

    /// True while service discovery answers (always, in standalone mode).
    pub fn discovery_ok(&self) -> bool {
        self.discovery_ok.load(Ordering::Relaxed)
    }

    /// Holds new requests (they wait in `send`/`dedicated`) until
    /// [`Router::release_hold`], or at most `backend.sentinel.failover_hold_ms`
    /// each: a failover is under way and the primary may be demoted any moment.
    pub fn hold(&self) {
        self.hold.send_replace(true);
        self.held.store(true, Ordering::Release);
    }

    /// Lets held requests go, to the primary of the current topology.
    pub fn release_hold(&self) {
        self.held.store(false, Ordering::Release);
        self.hold.send_replace(false);
    }

    /// True while requests are held.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    async fn wait_hold(&self) {
        let mut rx = self.hold.subscribe();
        let _ = tokio::time::timeout(self.hold_max, rx.wait_for(|held| !*held)).await;
    }

    /// Sends `count` pipelined commands on the client's multiplexed
    /// connection to the node `read_only` commands may use, or the primary.
    pub async fn send(
        &self,
        client_id: u64,
        proto: Protocol,
        frames: Bytes,
        count: usize,
        read_only: bool,
        user: Option<&Credentials>,
    ) -> oneshot::Receiver<MuxReply> {
        if self.held.load(Ordering::Relaxed) {
            self.wait_hold().await;
        }
        let topology = self.topology.load();
        if read_only && self.read_from != ReadFrom::Primary && !topology.replicas.is_empty() {
            if let Some(node) = self.pick_replica(&topology.replicas, client_id) {
                return node.send(client_id, proto, frames, count, user).await;
            }
        }
        let primary = topology.primary.clone();
        drop(topology);
        primary.send(client_id, proto, frames, count, user).await
    }

    fn pick_replica(&self, replicas: &[Arc<Node>], client_id: u64) -> Option<Arc<Node>> {
        let usable = |n: &&Arc<Node>| n.is_healthy() && n.breaker().allow();
        match self.read_from {
            ReadFrom::Primary => None,
            ReadFrom::PreferReplica => {
                // Sticky per client, so one client's reads see one replica's view.
                let start = client_id as usize % replicas.len();
                replicas[start..]
                    .iter()
                    .chain(replicas[..start].iter())
                    .find(usable)
                    .cloned()
            }
            ReadFrom::ReplicaRoundRobin => {
                let start = self.next_replica.fetch_add(1, Ordering::Relaxed) % replicas.len();
                replicas[start..]
                    .iter()
                    .chain(replicas[..start].iter())
                    .find(usable)
                    .cloned()
            }
        }
    }

    /// The node a command runs on: a replica for a read-only command when
    /// `read_from` allows and one is usable, else the primary (for a
    /// script's connection of its own, see `server/session/scripts.rs`).
    pub async fn node_for(&self, read_only: bool, client_id: u64) -> Arc<Node> {
        if self.held.load(Ordering::Relaxed) {
            self.wait_hold().await;
        }
        let topology = self.topology.load();
        if read_only && self.read_from != ReadFrom::Primary && !topology.replicas.is_empty() {
            if let Some(node) = self.pick_replica(&topology.replicas, client_id) {
                return node;
            }
        }
        topology.primary.clone()
    }

    /// Borrows a dedicated connection to the primary, and says which node
    /// that is (its `retired` signal fires if a failover retires it while
    /// the client holds the connection).
    pub async fn dedicated(
        &self,
        proto: Protocol,
        user: Option<&Credentials>,
    ) -> Result<(Dedicated, Arc<Node>), BackendError> {
        if self.held.load(Ordering::Relaxed) {
            self.wait_hold().await;
        }
        let primary = self.primary();
        let conn = primary.dedicated(proto, user).await?;
        Ok((conn, primary))
    }

    /// Gives a dedicated connection back (RESET first, in the background).
    pub fn release(&self, conn: Dedicated) {
        super::dedicated::release(conn, self.request_timeout);
    }

    /// The request timeout, for dedicated-mode deadlines.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }
}
