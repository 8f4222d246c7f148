//! The cluster router: which node serves a slot, and following the
//! cluster when that changes.
//!
//! The slot map and a [`Node`] per address (each with its multiplexed
//! connections and dedicated pool) form one immutable [`ClusterView`],
//! swapped atomically (`arc-swap`) by a background task. That task reads
//! the topology every `refresh_interval_ms`, and at once when poked: a
//! MOVED reply, a lost connection, an unreachable node. Nodes that leave
//! the topology are retired, so what they had in flight fails with a
//! clear error instead of hanging.
//!
//! [`ClusterRouter::follow`] is where a reply that asks for another try
//! (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, or a node that could not be
//! reached) is retried until it is final: the client only ever sees final
//! replies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{watch, Notify};

use super::redirect::{self, check_target, classify, Hops, Redirect};
use super::slots::SlotMap;
use super::stats::{ClusterStats, RetryKind};
use super::topology::read_topology;
use crate::backend::mux::MuxReply;
use crate::backend::node::Node;
use crate::backend::users::Credentials;
use crate::backend::{BackendError, ConnSettings};
use crate::config::{BackendConfig, ReadFrom};
use crate::protocol::reply::{self, frame_len};
use crate::protocol::Protocol;
use crate::telemetry::Metrics;

/// Least time between two topology reads, however often they are asked for.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);

/// The nodes of one shard.
#[derive(Debug)]
struct ShardNodes {
    primary: Arc<Node>,
    /// Online replicas (only when `read_from` uses them).
    replicas: Vec<Arc<Node>>,
    /// Online replicas, whatever `read_from` says: what a command for
    /// every node (`Route::AllNodes`) reaches besides the primary.
    online: Vec<Arc<Node>>,
}

/// One consistent picture: the slot map and the node serving each part.
#[derive(Debug)]
pub struct ClusterView {
    /// Who owns each slot.
    pub map: SlotMap,
    /// By shard index of `map`.
    shards: Vec<ShardNodes>,
    /// Every node, by address.
    nodes: HashMap<String, Arc<Node>>,
}

impl ClusterView {
    /// The primary serving `slot`; `None` while no shard owns it.
    #[inline]
    pub fn primary(&self, slot: u16) -> Option<&Arc<Node>> {
        Some(&self.shards.get(self.map.shard_index(slot)?)?.primary)
    }

    /// The primaries, in shard order (the order SCAN cursors number).
    pub fn primaries(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.shards.iter().map(|s| &s.primary)
    }

    /// The primary of shard `index`.
    pub fn primary_of_shard(&self, index: usize) -> Option<&Arc<Node>> {
        self.shards.get(index).map(|s| &s.primary)
    }

    /// The node at `addr`, if it is part of this view.
    pub fn node(&self, addr: &str) -> Option<&Arc<Node>> {
        self.nodes.get(addr)
    }

    /// A primary for keyless commands: spread by client, stable per client.
    pub fn any_primary(&self, client_id: u64) -> Option<&Arc<Node>> {
        if self.shards.is_empty() {
            return None;
        }
        Some(&self.shards[(client_id as usize) % self.shards.len()].primary)
    }

    /// Every node.
    pub fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.nodes.values()
    }

    /// Every serving node, shard by shard: the primary, then its online
    /// replicas. A replica the cluster flags as failed is left out (it
    /// could only answer an error), and learns settings when it is back
    /// and promoted only if told again.
    pub fn serving_nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.shards
            .iter()
            .flat_map(|s| std::iter::once(&s.primary).chain(s.online.iter()))
    }

    /// strata's pub/sub node: the primary of slot 0 (else the first
    /// primary, while slot 0 has no owner). Every SUBSCRIBE, PSUBSCRIBE,
    /// PUBLISH and PUBSUB CHANNELS/NUMSUB/NUMPAT of strata's clients goes
    /// there, so PUBLISH counts every subscriber strata has, as one Redis
    /// would (a node counts only its own subscribers, though the cluster
    /// bus delivers the message everywhere). It follows slot 0 through
    /// failovers and resharding; subscribers follow it (see
    /// `server/writer/resubscribe.rs`).
    pub fn pubsub_node(&self) -> Option<&Arc<Node>> {
        self.primary(0).or_else(|| self.primary_of_shard(0))
    }
}

/// What [`ClusterRouter::follow`] needs to send a request again.
#[derive(Debug, Clone, Copy)]
pub struct Resend<'a> {
    /// The client (its mux connection per node keeps its order).
    pub client_id: u64,
    /// The protocol the request was sent in.
    pub proto: Protocol,
    /// The request, one RESP command.
    pub request: &'a Bytes,
    /// The slot it was routed by (`None`: keyless or fan-out).
    pub slot: Option<u16>,
    /// A read-only command: safe to send again after a lost connection.
    pub read_only: bool,
    /// The ACL user the client logged in as (`None`: strata's own).
    pub user: Option<&'a Credentials>,
}

/// Routes by slot and keeps the view current.
#[derive(Debug)]
pub struct ClusterRouter {
    pub(super) config: BackendConfig,
    pub(super) metrics: Arc<Metrics>,
    pub(super) settings: ConnSettings,
    view: ArcSwap<ClusterView>,
    /// The seed list (`backend.cluster.seeds`; a reload may replace it,
    /// `reseed.rs`). Held across a whole topology read, so a refresh and a
    /// reseed never cross.
    pub(super) seeds: tokio::sync::Mutex<Vec<String>>,
    /// Poked to refresh the topology now.
    refresh: Notify,
    /// Bumped after every topology read, changed or not.
    generation: watch::Sender<u64>,
    next_replica: AtomicUsize,
    /// False while the last topology read failed or left slots unserved.
    pub(super) healthy: AtomicBool,
    /// Topology changes followed.
    changes: AtomicU64,
    stats: ClusterStats,
}

/// The error a client gets for a slot no shard serves.
pub fn slot_unserved(slot: u16) -> Bytes {
    reply::error(&format!(
        "CLUSTERDOWN Hash slot {slot} is not served (strata's slot map has no owner for it)"
    ))
}

impl ClusterRouter {
    /// Reads the topology from the seeds (retrying up to
    /// `cluster.discovery_timeout_ms`), starts a node per address and the
    /// refresh task.
    pub async fn start(
        config: &BackendConfig,
        metrics: &Arc<Metrics>,
        stats: ClusterStats,
    ) -> Result<Arc<ClusterRouter>, String> {
        let settings = ConnSettings::from_config(config);
        let deadline = Instant::now() + Duration::from_millis(config.cluster.discovery_timeout_ms);
        let map = loop {
            match read_topology(&config.cluster.seeds, &settings).await {
                Ok(map) if map.is_complete() => break map,
                Ok(map) if Instant::now() >= deadline => break map,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("cluster discovery failed: {e}"))
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        if !map.is_complete() {
            tracing::warn!(
                unserved = map.unassigned(),
                "cluster slot map is incomplete; serving the slots that have an owner"
            );
        }
        let view = build_view(map, None, config, metrics);
        stats.topology(false, view.map.unassigned(), view.map.shards().len());
        let router = Arc::new(ClusterRouter {
            config: config.clone(),
            metrics: metrics.clone(),
            settings,
            healthy: AtomicBool::new(view.map.is_complete()),
            view: ArcSwap::from_pointee(view),
            seeds: tokio::sync::Mutex::new(config.cluster.seeds.clone()),
            refresh: Notify::new(),
            generation: watch::channel(0).0,
            next_replica: AtomicUsize::new(0),
            changes: AtomicU64::new(0),
            stats,
        });
        tokio::spawn(refresh_loop(Arc::downgrade(&router)));
        for node in router.view().nodes() {
            tokio::spawn(watch_trouble(Arc::downgrade(&router), node.clone()));
        }
        tracing::info!(
            shards = router.view().map.shards().len(),
            "cluster topology read"
        );
        Ok(router)
    }

    /// The current view (one atomic load).
    #[inline]
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.load_full()
    }

    /// The node for a command on `slot`: a replica for reads when
    /// `read_from` says so and one is usable, else the primary.
    #[inline]
    pub fn node_for<'v>(
        &self,
        view: &'v ClusterView,
        slot: u16,
        read_only: bool,
        client_id: u64,
    ) -> Option<&'v Arc<Node>> {
        let shard = view.shards.get(view.map.shard_index(slot)?)?;
        if read_only && self.config.read_from != ReadFrom::Primary && !shard.replicas.is_empty() {
            let usable = |n: &&Arc<Node>| n.is_healthy() && n.breaker().allow();
            let n = shard.replicas.len();
            let start = match self.config.read_from {
                ReadFrom::PreferReplica => client_id as usize % n,
                _ => self.next_replica.fetch_add(1, Ordering::Relaxed) % n,
            };
            if let Some(node) = shard.replicas[start..]
                .iter()
                .chain(shard.replicas[..start].iter())
                .find(usable)
            {
                return Some(node);
            }
        }
        Some(&shard.primary)
    }

    /// Asks the refresh task to read the topology now.
    pub fn refresh_soon(&self) {
        self.refresh.notify_one();
    }

    /// Reads the topology now and waits (at most the request timeout)
    /// until the new view is in place.
    pub async fn refresh_now(&self) {
        let mut rx = self.generation.subscribe();
        let seen = *rx.borrow_and_update();
        self.refresh.notify_one();
        let _ =
            tokio::time::timeout(self.settings.request_timeout, rx.wait_for(|g| *g > seen)).await;
    }

    /// Changes after every topology read (changed or not): what a
    /// subscriber watches to follow strata's pub/sub node when slot 0
    /// moves to another primary.
    pub fn topology_reads(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// True while the slot map is complete.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Topology changes followed since start.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.settings.request_timeout
    }

    /// Retries `reply` (the answer of `node` to `request`, one command)
    /// until it is final, and returns it as the client's reply frame.
    ///
    /// * MOVED: refresh the map, check the target is a known node (after
    ///   one more refresh if not), resend there.
    /// * ASK: `ASKING` and the request as one unit on the target's
    ///   connection, for this request only.
    /// * TRYAGAIN, CLUSTERDOWN, or a node that could not be reached (the
    ///   request never left strata): wait (backoff), re-read the map, resend
    ///   to the slot's owner, up to `retry_limit` times.
    ///
    /// A connection lost with the request in flight is retried only for a
    /// read-only command: a write may have run, and running it twice is not
    /// safe in general.
    /// Redirects are capped at `max_redirects`.
    pub async fn follow(
        &self,
        resend: Resend<'_>,
        mut node_addr: String,
        mut reply: MuxReply,
    ) -> Bytes {
        let Resend {
            client_id,
            proto,
            request,
            slot,
            read_only,
            user,
        } = resend;
        let mut hops = Hops::with_limit(self.config.cluster.max_redirects);
        let mut attempts = 0u32;
        loop {
            let frame = match reply {
                Ok(frame) => frame,
                Err(BackendError::Unavailable { .. } | BackendError::ConnectionLost { .. })
                    if attempts < self.config.cluster.retry_limit
                        && (read_only
                            || matches!(reply, Err(BackendError::Unavailable { .. }))) =>
                {
                    // Never sent (unavailable), or a read (safe to run
                    // twice): send again once the map is fresh, to the
                    // slot's primary (a read's replica may be the one down).
                    self.stats.retry(RetryKind::unreachable);
                    self.refresh_soon();
                    tokio::time::sleep(redirect::retry_backoff(attempts)).await;
                    attempts += 1;
                    let view = self.view();
                    let Some(node) = self.resend_target(&view, slot, &node_addr) else {
                        return slot.map_or_else(
                            || reply::error("CLUSTERDOWN no node serves this request"),
                            slot_unserved,
                        );
                    };
                    node_addr = node.addr().to_string();
                    reply = recv(node.send(client_id, proto, request.clone(), 1, user).await).await;
                    continue;
                }
                Err(e) => {
                    if matches!(e, BackendError::ConnectionLost { .. }) {
                        self.refresh_soon();
                    }
                    self.metrics.error(e.kind());
                    return e.to_reply();
                }
            };
            let redirect = classify(&frame);
            match redirect {
                Redirect::Other => return frame,
                Redirect::Moved { slot: to_slot, .. } | Redirect::Ask { slot: to_slot, .. } => {
                    let Some(target) = redirect.target(&node_addr) else {
                        return frame;
                    };
                    if let Err(e) = hops.follow(to_slot, &target) {
                        return e.to_reply();
                    }
                    let ask = matches!(redirect, Redirect::Ask { .. });
                    if hops.count() > 1 {
                        // Redirected again: nodes disagree for a moment (a
                        // slot move's last step reaches one node before the
                        // other). Let them settle rather than ping-pong.
                        tokio::time::sleep(redirect::retry_backoff(u32::from(hops.count()) - 2))
                            .await;
                    }
                    if ask {
                        self.stats.retry(RetryKind::ask);
                    } else {
                        self.stats.retry(RetryKind::moved);
                        self.refresh_soon();
                    }
                    let node = match self.known_node(&target, to_slot).await {
                        Ok(node) => node,
                        Err(text) => return text,
                    };
                    node_addr = target;
                    reply = if ask {
                        let mut both = bytes::BytesMut::with_capacity(request.len() + 20);
                        both.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
                        both.extend_from_slice(request);
                        second_frame(
                            recv(node.send(client_id, proto, both.freeze(), 2, user).await).await,
                        )
                    } else {
                        recv(node.send(client_id, proto, request.clone(), 1, user).await).await
                    };
                }
                Redirect::TryAgain | Redirect::ClusterDown => {
                    if attempts >= self.config.cluster.retry_limit {
                        return frame;
                    }
                    if matches!(redirect, Redirect::ClusterDown) {
                        self.stats.retry(RetryKind::clusterdown);
                        self.refresh_soon();
                    } else {
                        self.stats.retry(RetryKind::tryagain);
                    }
                    tokio::time::sleep(redirect::retry_backoff(attempts)).await;
                    attempts += 1;
                    let view = self.view();
                    let Some(node) = self.resend_target(&view, slot, &node_addr) else {
                        return frame;
                    };
                    node_addr = node.addr().to_string();
                    reply = recv(node.send(client_id, proto, request.clone(), 1, user).await).await;
                }
            }
        }
    }

    /// Where a retried request goes: the slot's primary in the current
    /// map, or (keyless or fan-out requests) the same node if it is still
    /// part of the view.
    fn resend_target(
        &self,
        view: &ClusterView,
        slot: Option<u16>,
        node_addr: &str,
    ) -> Option<Arc<Node>> {
        match slot {
            Some(slot) => view.primary(slot).cloned(),
            None => view.node(node_addr).cloned(),
        }
    }

    /// The node at a redirect's target, which must be a node of the map:
    /// a target no map names is refused (after one refresh), never dialled.
    async fn known_node(&self, target: &str, slot: u16) -> Result<Arc<Node>, Bytes> {
        let view = self.view();
        if check_target(&view.map, target, slot).is_ok() {
            if let Some(node) = view.node(target) {
                return Ok(node.clone());
            }
        }
        self.refresh_now().await;
        let view = self.view();
        if let Err(e) = check_target(&view.map, target, slot) {
            return Err(e.to_reply());
        }
        view.node(target).cloned().ok_or_else(|| {
            reply::error(&format!(
                "ERR cluster redirect to {target}: node not connected yet"
            ))
        })
    }

    /// Reads the topology once; swaps the view when it changed.
    async fn refresh_once(self: &Arc<Self>) {
        let configured = self.seeds.lock().await;
        let current = self.view();
        // The nodes strata knows first (the seeds may be long gone), then the seeds.
        let mut seeds: Vec<String> = current.map.primaries().map(str::to_string).collect();
        seeds.extend(current.map.nodes().map(|n| n.addr.clone()));
        seeds.extend(configured.iter().cloned());
        // Each address once, first place kept (primaries are listed twice).
        let mut seen = std::collections::HashSet::new();
        seeds.retain(|a| seen.insert(a.clone()));
        match read_topology(&seeds, &self.settings).await {
            Ok(map) => {
                self.healthy.store(map.is_complete(), Ordering::Relaxed);
                let changed = map != current.map;
                self.stats
                    .topology(changed, map.unassigned(), map.shards().len());
                if changed {
                    let next = build_view(map, Some(&current), &self.config, &self.metrics);
                    self.adopt(next, &current);
                }
            }
            Err(e) => {
                self.healthy.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "cluster topology refresh failed");
            }
        }
        drop(configured);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Puts `next` in force in place of `current`: nodes that left are
    /// retired once what they have in flight had time to finish, new ones
    /// are watched for trouble.
    pub(super) fn adopt(self: &Arc<Self>, next: ClusterView, current: &ClusterView) {
        let fresh: Vec<Arc<Node>> = next
            .nodes
            .iter()
            .filter(|(a, _)| !current.nodes.contains_key(*a))
            .map(|(_, n)| n.clone())
            .collect();
        self.view.store(Arc::new(next));
        self.changes.fetch_add(1, Ordering::Relaxed);
        let next = self.view();
        // A node that left the map may still be answering what it has in
        // flight (MOVED, which strata follows): retire it once that had
        // time to finish, not at once.
        let grace = self.settings.request_timeout;
        for (addr, node) in &current.nodes {
            if !next.nodes.contains_key(addr) {
                let (addr, node) = (addr.clone(), node.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    node.retire(format!("{addr} left the cluster topology"));
                });
            }
        }
        for node in fresh {
            tokio::spawn(watch_trouble(Arc::downgrade(self), node));
        }
        tracing::info!(
            shards = next.map.shards().len(),
            unserved = next.map.unassigned(),
            "cluster topology changed"
        );
    }
}

impl ClusterView {
    /// A view with no shards: what an idle pooled batch points at
    /// (`server/routed.rs`), and for tests that only need a view.
    pub(crate) fn empty() -> ClusterView {
        ClusterView {
            map: SlotMap::from_ranges(Vec::new()).unwrap_or_else(|e| panic!("{e}")),
            shards: Vec::new(),
            nodes: HashMap::new(),
        }
    }
}

/// Builds a view for `map`, reusing the nodes of `previous` by address.
pub(super) fn build_view(
    map: SlotMap,
    previous: Option<&ClusterView>,
    config: &BackendConfig,
    metrics: &Arc<Metrics>,
) -> ClusterView {
    let mut nodes: HashMap<String, Arc<Node>> = HashMap::new();
    let mut get = |addr: &str| -> Arc<Node> {
        if let Some(n) = nodes.get(addr) {
            return n.clone();
        }
        let node = previous
            .and_then(|p| p.nodes.get(addr).cloned())
            // READONLY on every connection: replicas then serve reads, and
            // on a primary it changes nothing (a replica promoted later
            // keeps its connections).
            .unwrap_or_else(|| Node::start_with(addr, config, metrics, true));
        nodes.insert(addr.to_string(), node.clone());
        node
    };
    let use_replicas = config.read_from != ReadFrom::Primary;
    let shards = map
        .shards()
        .iter()
        .map(|shard| {
            // Every replica the map lists gets its node (connections) even
            // when reads stay on primaries (only online ones serve reads): a failover's MOVED then points at a
            // node strata is already connected to, and nothing waits for a
            // connection at the worst moment.
            for replica in &shard.replicas {
                get(&replica.addr);
            }
            let replicas: Vec<Arc<Node>> =
                shard.readable_replicas().map(|r| get(&r.addr)).collect();
            ShardNodes {
                primary: get(&shard.primary.addr),
                replicas: if use_replicas {
                    replicas.clone()
                } else {
                    Vec::new()
                },
                online: replicas,
            }
        })
        .collect();
    ClusterView { map, shards, nodes }
}

/// Reads the topology every `refresh_interval_ms`, or sooner when poked.
async fn refresh_loop(router: std::sync::Weak<ClusterRouter>) {
    let interval = match router.upgrade() {
        Some(r) => Duration::from_millis(r.config.cluster.refresh_interval_ms),
        None => return,
    };
    loop {
        {
            let Some(r) = router.upgrade() else { return };
            let _ = tokio::time::timeout(interval, r.refresh.notified()).await;
            r.refresh_once().await;
        }
        tokio::time::sleep(MIN_REFRESH_GAP).await;
    }
}

/// A node's connection trouble (lost, unreachable) asks for a refresh: a
/// primary that died is replaced by its replica, and strata should learn
/// it as soon as the cluster does.
async fn watch_trouble(router: std::sync::Weak<ClusterRouter>, node: Arc<Node>) {
    let mut retired = node.retired();
    loop {
        tokio::select! {
            _ = node.trouble().notified() => {}
            _ = retired.changed() => return,
        }
        match router.upgrade() {
            Some(r) => r.refresh_soon(),
            None => return,
        }
    }
}

async fn recv(rx: tokio::sync::oneshot::Receiver<MuxReply>) -> MuxReply {
    rx.await.unwrap_or_else(|_| {
        Err(BackendError::ConnectionLost {
            addr: "backend".into(),
            reason: "connection closed before replying".into(),
        })
    })
}

/// The reply to the second of two pipelined commands (ASKING, request).
fn second_frame(reply: MuxReply) -> MuxReply {
    let frames = reply?;
    match frame_len(&frames) {
        Ok(Some(first)) if first < frames.len() => Ok(frames.slice(first..)),
        _ => Ok(reply::error("ERR strata: malformed reply to ASKING")),
    }
}
