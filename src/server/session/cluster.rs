//! The session in cluster mode: routing by slot, the CLUSTER commands a
//! cluster-aware client asks strata, and transactions bound to a node.
//!
//! Plain commands are planned with the command table
//! ([`split::plan`]) and gathered per node into a [`RoutedBatch`] (see
//! `server/routed.rs`); the writer resolves it.
//!
//! A transaction runs on one node's dedicated connection. MULTI names no
//! key, so strata answers it itself and queues (answering `+QUEUED`) the
//! keyless commands that follow, until the first command with a key (or
//! EXEC) says which node: MULTI and the queued commands are then replayed
//! there, their replies dropped, as the client was already answered.
//! Keys of another slot inside a transaction get CROSSSLOT and abort it
//! at EXEC, as in Redis Cluster.

use super::*;
use crate::backend::cluster::split::{self, Plan};
use crate::backend::cluster::topology::SingleNode;
use crate::backend::cluster::{scan, slot_unserved, ClusterRouter, ClusterView};
use crate::backend::node::Node;
use crate::command::slot::hash_slot;
use crate::command::Merge;
use crate::server::routed::{add_to, GroupsOf, Item, RoutedBatch};

/// A command queued while a cluster transaction is not bound to a node.
pub(super) struct Queued {
    req: Request,
    spec: Option<&'static CommandSpec>,
    timing: Timing,
    plan: Option<ReplyPlan>,
}

fn crossslot() -> Bytes {
    split::CrossSlot.to_reply()
}

impl Session {
    /// Cluster mode: adds a command to the routed batch.
    pub(super) async fn route(
        &mut self,
        req: Request,
        spec: Option<&'static CommandSpec>,
        timing: Timing,
        read_only: bool,
        plan: Option<Box<ReplyPlan>>,
    ) -> Flow {
        if self.cluster.is_none() {
            return Flow::Close; // only called in cluster mode
        }
        let fits = self.routed.as_ref().is_some_and(|b| {
            b.items.len() < self.batch_max && b.bytes + req.frame.len() <= BATCH_MAX_BYTES
        });
        if !fits && !self.flush_batch().await {
            return Flow::Close;
        }
        self.route_into(req, spec, timing, read_only, plan);
        Flow::Continue
    }

    /// [`Session::route`] once the command fits the routed batch (or
    /// there is none).
    pub(super) fn route_into(
        &mut self,
        req: Request,
        spec: Option<&'static CommandSpec>,
        timing: Timing,
        read_only: bool,
        plan: Option<Box<ReplyPlan>>,
    ) {
        let (client_id, proto) = (self.info.id, self.proto);
        let Some(cluster) = self.cluster.as_deref() else {
            return;
        };
        let pool = &self.batch_pool;
        let auth = &self.auth;
        let batch = self.routed.get_or_insert_with(|| {
            let mut batch = pool.take(cluster.view(), client_id, proto, timing.started);
            batch.user = auth.backend_user_arc().cloned();
            batch
        });
        let item = plan_item(cluster, batch, req, spec, read_only);
        let item = match self.reply_mode {
            ReplyMode::On => item,
            // Not `reply_mode_item`: `batch` borrows `self.routed`.
            ReplyMode::Off => Item::Silent(Box::new(item)),
            ReplyMode::Skip => {
                self.reply_mode = ReplyMode::On;
                Item::Silent(Box::new(item))
            }
        };
        if let Some(plan) = plan {
            batch.plans.push((batch.items.len(), plan));
        }
        batch.items.push(item);
        if let Some(m) = timing.metrics {
            batch.metrics.push(m);
        }
    }

    /// Sends the routed batch, one message per node, and queues it for
    /// the writer.
    pub(super) async fn flush_routed(&mut self) -> bool {
        let Some(mut batch) = self.routed.take() else {
            return true;
        };
        let commands = batch.items.len();
        if !self.tx.wait_room(commands).await {
            return false;
        }
        let frames = batch.group_frames();
        for (group, frames) in batch.groups.iter_mut().zip(frames) {
            group.sent = frames.clone();
            group.reply = Some(
                group
                    .node
                    .send(
                        batch.client_id,
                        batch.proto,
                        frames,
                        group.count,
                        batch.user.as_deref(),
                    )
                    .await,
            );
        }
        batch.sent_at = Instant::now();
        self.tx.send(Pending::Routed(batch), commands).await
    }

    /// Cluster mode: commands strata answers differently from a single
    /// Redis. `None`: not one of them, go on as usual.
    pub(super) async fn cluster_special(
        &mut self,
        req: &Request,
        spec: &'static CommandSpec,
    ) -> Option<Flow> {
        let name = spec.name;
        if name.starts_with("cluster|") {
            return Some(self.cluster_command(req, spec).await);
        }
        match name {
            "select" if spec.arity_ok(req.args().len()) => {
                let db = crate::protocol::request::parse_int(&req.args()[1]);
                Some(match db {
                    Some(0) => self.reply(reply::ok()).await,
                    Some(_) => {
                        self.error("ERR SELECT is not allowed in cluster mode")
                            .await
                    }
                    None => {
                        self.error("ERR value is not an integer or out of range")
                            .await
                    }
                })
            }
            "multi" if spec.arity_ok(req.args().len()) => {
                self.unbound_multi = Some(Vec::new());
                self.multi_plans.clear();
                self.multi_refused = false;
                Some(self.reply(reply::ok()).await)
            }
            "client|tracking" if !spec.arity_ok(req.args().len()) => {
                Some(self.error(&local::wrong_arity(spec.name)).await)
            }
            "client|tracking" => {
                let router = self.cluster.clone()?;
                let out = crate::server::tracking::cluster::command(
                    &self.shared,
                    &router,
                    &self.info,
                    req.args(),
                )
                .await;
                Some(self.reply(out).await)
            }
            _ => None,
        }
    }

    /// Default CLIENT TRACKING in cluster mode: a keyed read runs on the
    /// client's own tracked connection to its slot's primary
    /// (`tracking::cluster::PerRead`; a multi-slot MGET part by part,
    /// merged as on the routed path), after every reply due, so Redis
    /// records the keys for this client. `None`: not such a read (writes,
    /// keyless commands, transformed values, CLIENT REPLY OFF/SKIP), go on
    /// as usual.
    pub(super) async fn tracked_read(
        &mut self,
        req: &Request,
        spec: &'static CommandSpec,
        transformed: bool,
        tracked: &crate::server::tracking::cluster::PerRead,
    ) -> Option<Flow> {
        if transformed
            || self.reply_mode != ReplyMode::On
            || !spec.has(Flags::READ)
            || spec.has(Flags::WRITE)
            || spec.has(Flags::BLOCKING)
            || !spec.arity_ok(req.args().len())
        {
            return None;
        }
        // One part per slot: the request itself, or MGET's per-slot parts.
        let (parts, split) = match split::plan(spec, req.args()) {
            Ok(Plan::Slot(slot)) => (vec![(slot, req.frame.clone())], None),
            Ok(Plan::Split(split)) => (
                split
                    .parts()
                    .iter()
                    .map(|p| (p.slot, p.frame.clone()))
                    .collect(),
                Some(split),
            ),
            _ => return None,
        };
        let view = self.cluster.as_ref()?.view();
        let mut nodes = Vec::with_capacity(parts.len());
        for (slot, _) in &parts {
            nodes.push(view.primary(*slot)?.clone());
        }
        // Everything sent before is answered first: the read sees it.
        if !self.set_barrier().await || !self.await_barrier().await {
            return Some(Flow::Close);
        }
        let mut replies = Vec::with_capacity(parts.len());
        for ((_, frame), node) in parts.iter().zip(&nodes) {
            match tracked
                .call(node, self.proto, self.auth.backend_user(), frame)
                .await
            {
                Ok(f) if crate::backend::cluster::classify(&f).slot().is_some() => {
                    // MOVED/ASK: the view is stale; the shared path follows
                    // it (a read runs again harmlessly; the supervisor
                    // flushes the client once the view changes).
                    if let Some(cluster) = self.cluster.as_ref() {
                        cluster.refresh_now().await;
                    }
                    return None;
                }
                Ok(f) => replies.push(f),
                Err(e) => return Some(self.reply(e).await),
            }
        }
        let out = match split {
            Some(split) => split.merge(&replies),
            None => replies.pop().unwrap_or_default(),
        };
        Some(self.reply(out).await)
    }

    /// CLUSTER subcommands: strata is, to its clients, one node that owns
    /// every slot, at the address the client reached it at.
    async fn cluster_command(&mut self, req: &Request, spec: &'static CommandSpec) -> Flow {
        if !spec.arity_ok(req.args().len()) {
            return self.error(&local::wrong_arity(spec.name)).await;
        }
        let me = SingleNode::new(&self.info.laddr.ip().to_string(), self.info.laddr.port());
        let proto = self.proto;
        let healthy = self.cluster.as_ref().is_some_and(|c| c.is_healthy());
        match spec.name {
            "cluster|slots" => self.reply(me.cluster_slots(proto)).await,
            "cluster|shards" => self.reply(me.cluster_shards(proto)).await,
            "cluster|nodes" => self.reply(me.cluster_nodes(proto)).await,
            "cluster|myid" => self.reply(me.cluster_myid(proto)).await,
            "cluster|info" => self.reply(me.cluster_info(proto, healthy)).await,
            "cluster|keyslot" => {
                let slot = hash_slot(&req.args()[2]);
                let mut r = ReplyBuf::new(proto);
                r.integer(i64::from(slot));
                self.reply(r.freeze()).await
            }
            "cluster|countkeysinslot" | "cluster|getkeysinslot" => {
                // Asked of the node that owns the slot.
                let slot = crate::protocol::request::parse_int(&req.args()[2])
                    .and_then(|s| u16::try_from(s).ok())
                    .filter(|s| *s < crate::command::slot::SLOT_COUNT);
                let Some(slot) = slot else {
                    return self.error("ERR Invalid slot").await;
                };
                let timing = Timing {
                    started: Instant::now(),
                    metrics: None,
                };
                // Re-encode: the routed path plans by the table, which has
                // no key here; the slot argument decides.
                self.route_to_slot(req.frame.clone(), slot, timing).await
            }
            _ => {
                let sub = spec.name.trim_start_matches("cluster|").to_uppercase();
                self.error(&format!(
                    "ERR CLUSTER {sub} is not supported through strata (it fronts the cluster; ask a node directly)"
                ))
                .await
            }
        }
    }

    /// INFO in cluster mode: asked of every primary, merged by the writer.
    pub(super) async fn route_info(&mut self, req: Request, timing: Timing, proxy: bool) -> Flow {
        if req.args().len() == 2 && req.args()[1].eq_ignore_ascii_case(b"proxy") {
            let mut r = ReplyBuf::new(self.proto);
            r.verbatim(self.shared.proxy_info().as_bytes());
            return self.reply(r.freeze()).await;
        }
        let proto = self.proto;
        self.route_alone(timing, |batch| {
            let view = batch.view.clone();
            let subs: Vec<_> = view
                .primaries()
                .map(|node| batch.add(node, &req.frame, None, true))
                .collect();
            if subs.is_empty() {
                Item::Ready(reply::error("CLUSTERDOWN no primary serves any slot"))
            } else {
                Item::Info { subs, proto, proxy }
            }
        })
        .await
    }

    /// Sends one command's requests as a batch of their own (after what is
    /// gathered): `build` adds them and returns the command's item.
    async fn route_alone(
        &mut self,
        timing: Timing,
        build: impl FnOnce(&mut RoutedBatch) -> Item,
    ) -> Flow {
        let Some(cluster) = self.cluster.clone() else {
            return Flow::Close;
        };
        if !self.flush_batch().await {
            return Flow::Close;
        }
        let (client_id, proto) = (self.info.id, self.proto);
        let mut batch = self
            .batch_pool
            .take(cluster.view(), client_id, proto, timing.started);
        batch.user = self.auth.backend_user_arc().cloned();
        let item = build(&mut batch);
        let item = self.reply_mode_item(item);
        batch.items.push(item);
        if let Some(m) = timing.metrics {
            batch.metrics.push(m);
        }
        self.routed = Some(batch);
        if self.flush_batch().await {
            Flow::Continue
        } else {
            Flow::Close
        }
    }

    /// CLIENT REPLY OFF/SKIP: the command runs, its reply is not written.
    fn reply_mode_item(&mut self, item: Item) -> Item {
        match self.reply_mode {
            ReplyMode::On => item,
            ReplyMode::Off => Item::Silent(Box::new(item)),
            ReplyMode::Skip => {
                self.reply_mode = ReplyMode::On;
                Item::Silent(Box::new(item))
            }
        }
    }

    /// Routes a request to the primary of `slot`.
    async fn route_to_slot(&mut self, frame: Bytes, slot: u16, timing: Timing) -> Flow {
        self.route_alone(timing, |batch| {
            let view = batch.view.clone();
            match view.primary(slot) {
                Some(node) => Item::One(batch.add(node, &frame, Some(slot), true)),
                None => Item::Ready(slot_unserved(slot)),
            }
        })
        .await
    }

    /// Cluster mode: the node a command needing a dedicated connection
    /// goes to (the owner of its keys' slot, else any primary), and the
    /// slot the client is then pinned to.
    pub(super) fn dedicated_target(
        &self,
        spec: &'static CommandSpec,
        args: &[Bytes],
    ) -> Result<(Arc<Node>, Option<u16>), Bytes> {
        let Some(cluster) = self.cluster.as_ref() else {
            return Err(reply::error("ERR strata: not in cluster mode"));
        };
        let view = cluster.view();
        match split::plan(spec, args) {
            Err(_) | Ok(Plan::Split(_)) => Err(crossslot()),
            Ok(Plan::Slot(slot)) => match view.primary(slot) {
                Some(node) => Ok((node.clone(), Some(slot))),
                None => Err(slot_unserved(slot)),
            },
            // SUBSCRIBE and PSUBSCRIBE (pub/sub, no key): strata's pub/sub
            // node, where PUBLISH goes (see `ClusterView::pubsub_node`).
            Ok(_) if spec.has(Flags::PUBSUB) => match view.pubsub_node() {
                Some(node) => Ok((node.clone(), None)),
                None => Err(reply::error("CLUSTERDOWN no primary serves any slot")),
            },
            Ok(_) => match view.any_primary(self.info.id) {
                Some(node) => Ok((node.clone(), None)),
                None => Err(reply::error("CLUSTERDOWN no primary serves any slot")),
            },
        }
    }

    /// Cluster mode, on a dedicated connection: a command whose keys are
    /// in another slot than the one the client is pinned to is refused
    /// with CROSSSLOT (and aborts a transaction at EXEC). `Some(reply)`:
    /// refused.
    pub(super) fn check_pinned(
        &mut self,
        spec: Option<&'static CommandSpec>,
        args: &[Bytes],
    ) -> Option<Bytes> {
        self.cluster.as_ref()?;
        let spec = spec?;
        let slot = match split::plan(spec, args) {
            Ok(Plan::Slot(slot)) => slot,
            Err(_) | Ok(Plan::Split(_)) => {
                if self.state.in_multi {
                    self.multi_refused = true;
                }
                return Some(crossslot());
            }
            Ok(_) => return None,
        };
        match self.pinned_slot {
            Some(pinned) if pinned != slot => {
                if self.state.in_multi {
                    self.multi_refused = true;
                }
                Some(crossslot())
            }
            Some(_) => None,
            None => {
                self.pinned_slot = Some(slot);
                None
            }
        }
    }

    /// A command while MULTI is not yet bound to a node (see the module docs).
    pub(super) async fn multi_unbound(
        &mut self,
        req: Request,
        spec: Option<&'static CommandSpec>,
        timing: Timing,
        plan: Option<ReplyPlan>,
    ) -> Flow {
        let Some(spec) = spec else {
            self.multi_refused = true;
            return self
                .error(&crate::command::unknown_command_error(req.args()))
                .await;
        };
        match spec.name {
            "discard" => {
                self.unbound_multi = None;
                self.multi_plans.clear();
                self.multi_refused = false;
                return self.reply(reply::ok()).await;
            }
            "multi" => return self.error("ERR MULTI calls can not be nested").await,
            "watch" => return self.error("ERR WATCH inside MULTI is not allowed").await,
            "quit" | "reset" => {
                self.unbound_multi = None;
                self.multi_plans.clear();
                self.multi_refused = false;
                return self.local(req, spec).await;
            }
            _ => {}
        }
        if !spec.arity_ok(req.args().len()) {
            self.multi_refused = true;
            return self.error(&local::wrong_arity(spec.name)).await;
        }
        if let Some(refused) = self.refused_in_multi(Some(spec)) {
            return self.error(refused).await;
        }
        let Some(cluster) = self.cluster.clone() else {
            return Flow::Close;
        };
        let view = cluster.view();
        let target = match split::plan(spec, &req) {
            Err(_) | Ok(Plan::Split(_)) => {
                self.multi_refused = true;
                return self.reply(crossslot()).await;
            }
            Ok(Plan::Slot(slot)) => match view.primary(slot) {
                Some(node) => Some((node.clone(), Some(slot))),
                None => {
                    self.multi_refused = true;
                    return self.reply(slot_unserved(slot)).await;
                }
            },
            _ if spec.name == "exec" => view.any_primary(self.info.id).map(|n| (n.clone(), None)),
            _ => None,
        };
        let Some((node, slot)) = target else {
            if spec.name == "exec" {
                return self.error("CLUSTERDOWN no primary serves any slot").await;
            }
            if let Some(queue) = self.unbound_multi.as_mut() {
                queue.push(Queued {
                    req,
                    spec: Some(spec),
                    timing,
                    plan,
                });
            }
            return self.reply(Bytes::from_static(b"+QUEUED\r\n")).await;
        };
        if let Err(e) = self.bind_multi(node, slot).await {
            self.shared.metrics.error(e.kind());
            return self.reply(e.to_reply()).await;
        }
        Box::pin(self.handle_dedicated(req, Some(spec), timing, plan)).await
    }

    /// Takes a dedicated connection to `node` and replays MULTI and the
    /// queued commands there, their replies dropped.
    async fn bind_multi(
        &mut self,
        node: Arc<Node>,
        slot: Option<u16>,
    ) -> Result<(), crate::backend::BackendError> {
        self.enter_dedicated(Some(node)).await?;
        self.pinned_slot = slot;
        let queued = self.unbound_multi.take().unwrap_or_default();
        let refused = self.multi_refused;
        self.suppress_reply = true;
        let multi = Request::from_args(vec![Bytes::from_static(b"MULTI")]);
        let spec = command::lookup(multi.args());
        let timing = Timing {
            started: Instant::now(),
            metrics: None,
        };
        Box::pin(self.handle_dedicated(multi, spec, timing, None)).await;
        self.multi_refused = refused;
        for q in queued {
            Box::pin(self.handle_dedicated(q.req, q.spec, q.timing, q.plan)).await;
        }
        self.suppress_reply = false;
        Ok(())
    }
}

/// Plans one command into the batch (see `routed.rs`).
fn plan_item(
    cluster: &ClusterRouter,
    batch: &mut RoutedBatch,
    req: Request,
    spec: Option<&'static CommandSpec>,
    read_only: bool,
) -> Item {
    let RoutedBatch {
        view,
        groups,
        requests,
        bytes,
        client_id,
        ..
    } = batch;
    let view: &ClusterView = view;
    let client_id = *client_id;
    let mut add = |node: &Arc<Node>, request: &Bytes, slot: Option<u16>, read_only: bool| {
        let to = GroupsOf {
            groups: &mut *groups,
            requests: &mut *requests,
            bytes: &mut *bytes,
        };
        add_to(to, node, request, slot, read_only)
    };
    let plan = match spec {
        Some(spec) => split::plan(spec, &req),
        None => Ok(Plan::Keyless),
    };
    match plan {
        Err(cross) => Item::Ready(cross.to_reply()),
        Ok(Plan::Keyless) => match view.any_primary(client_id) {
            Some(node) => Item::One(add(node, &req.frame, None, read_only)),
            None => Item::Ready(reply::error("CLUSTERDOWN no primary serves any slot")),
        },
        Ok(Plan::Slot(slot)) => match cluster.node_for(view, slot, read_only, client_id) {
            Some(node) => Item::One(add(node, &req.frame, Some(slot), read_only)),
            None => Item::Ready(slot_unserved(slot)),
        },
        Ok(Plan::Split(split)) => {
            // Every part needs a node before any is added: a part without
            // one would leave its siblings' replies unclaimed.
            let mut nodes = Vec::with_capacity(split.parts().len());
            for part in split.parts() {
                match cluster.node_for(view, part.slot, read_only, client_id) {
                    Some(node) => nodes.push(node),
                    None => return Item::Ready(slot_unserved(part.slot)),
                }
            }
            let subs = split
                .parts()
                .iter()
                .zip(nodes)
                .map(|(part, node)| add(node, &part.frame, Some(part.slot), read_only))
                .collect();
            Item::Split(Box::new(split), subs)
        }
        Ok(Plan::AllPrimaries(Merge::Scan)) => {
            if spec.is_some_and(|s| !s.arity_ok(req.args().len())) {
                return Item::Ready(reply::error(&local::wrong_arity("scan")));
            }
            match scan::decode(&view.map, &req.args()[1]) {
                Ok(Some(pos)) => match view.primary_of_shard(pos.node) {
                    Some(node) => {
                        let request = scan::node_request(req.args(), pos.cursor);
                        Item::Scan(pos, add(node, &request, None, true))
                    }
                    None => Item::Ready(scan::ScanError::TopologyChanged.to_reply()),
                },
                Ok(None) => Item::Ready(scan::empty_reply()),
                Err(e) => Item::Ready(e.to_reply()),
            }
        }
        Ok(Plan::PubSub) => match view.pubsub_node() {
            Some(node) => Item::One(add(node, &req.frame, None, read_only)),
            None => Item::Ready(reply::error("CLUSTERDOWN no primary serves any slot")),
        },
        Ok(Plan::AllPrimaries(merge)) | Ok(Plan::AllNodes(merge)) => {
            if view.primaries().next().is_none() {
                return Item::Ready(reply::error("CLUSTERDOWN no primary serves any slot"));
            }
            let subs = if matches!(plan, Ok(Plan::AllNodes(_))) {
                view.serving_nodes()
                    .map(|node| add(node, &req.frame, None, read_only))
                    .collect()
            } else {
                view.primaries()
                    .map(|node| add(node, &req.frame, None, read_only))
                    .collect()
            };
            Item::Fanout(merge, subs)
        }
    }
}
