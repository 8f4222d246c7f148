//! One client connection: read, parse, dispatch, in request order.
//!
//! The session is two tasks. This one reads and parses the client's
//! requests and dispatches each: answered locally, sent to a multiplexed
//! backend connection, or forwarded to a dedicated one. For every request
//! it queues a [`Pending`] entry; the writer task (`writer.rs`) writes the
//! replies in that order. The queue is bounded (`max_inflight_per_client`),
//! so a client that pipelines faster than its replies drain stops being
//! read: the backpressure reaches its TCP window and no one else.

mod acl;
mod audit;
mod cluster;
mod coord;
mod dedicated;
mod frames;
mod input;
mod local_commands;
mod login;
mod own_commands;
mod scripts;
mod shard_links;
mod tier;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::clients::ClientInfo;
use super::conn_state::ConnState;
use super::halt::HaltReason;
use super::local;
use super::pending::{DedicatedReader, DedicatedReturn, Expect, Pending, Post, Timing};
use super::Shared;
use crate::admin::slow_watch::SlowWatch;
use crate::backend::dedicated::Dedicated;
use crate::command::{self, CommandSpec, Flags, Route};
use crate::protocol::reply::{self, ReplyBuf};
use crate::protocol::{ArgList, Found, Protocol, Request, Scan};
use crate::telemetry::{CommandMetrics, ErrorKind};
use crate::transform::{encode_request, ReplyPlan, Rewrite};

/// Whether the session goes on after a request.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// CLIENT REPLY state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    Skip,
}

/// Serves one client until it leaves, fails, or strata shuts down.
pub async fn serve(stream: crate::tls::Stream, shared: Arc<Shared>, info: Arc<ClientInfo>) {
    let (rd, wr) = stream.into_split();
    let max_inflight = shared.server.load().max_inflight_per_client;
    // Bounded in commands, not entries (see `queue.rs`).
    let (tx, rx) = super::queue::channel(max_inflight);
    info.tracking.set_wake(tx.downgrade());
    info.set_queue(tx.downgrade());
    let (swap_tx, swaps) = mpsc::unbounded_channel();
    let batch_pool = Arc::new(super::routed::BatchPool::default());
    let mut writer = tokio::spawn(super::writer::run(
        wr,
        rx,
        shared.clone(),
        swap_tx,
        batch_pool.clone(),
        info.clone(),
    ));
    let mut session = Session {
        shared: shared.clone(),
        info: info.clone(),
        tx,
        batch_max: BATCH_MAX_COMMANDS.min(max_inflight),
        proto: Protocol::Resp2,
        reply_mode: ReplyMode::On,
        dedicated: None,
        state: ConnState::default(),
        metrics_cache: HashMap::default(),
        batch: None,
        read_len: 0,
        chunk: Bytes::new(),
        multi_plans: Vec::new(),
        multi_refused: false,
        cluster: shared.cluster.clone(),
        routed: None,
        batch_pool,
        pinned_slot: None,
        unbound_multi: None,
        suppress_reply: false,
        swaps,
        barrier: None,
        input: input::ClientInput::new(rd),
        lookup_cache: command::LookupCache::default(),
        shard_links: super::shard_links::ShardLinks::default(),
        auth: crate::auth::ClientAuth::new(&shared.auth),
        coord: None,
    };
    // CLIENT KILL from another client stops the reader wherever it waits
    // (for permits, for the backend) and the writer with what it holds.
    let was_killed = tokio::select! {
        // Polled in order on every wakeup: the session first, and no
        // random draw per poll.
        biased;
        () = session.read_loop() => false,
        () = info.halt.wait(HaltReason::Killed) => true,
    };
    if !was_killed {
        // A script connection goes back to the pool once answered (rather
        // than closed with the session). Bounded: it queues an entry, and
        // a writer that already stopped takes no more.
        let end = session.end_script_run();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), end).await;
    }
    // Dropping the queue's sender lets the writer finish what is queued.
    drop(session);
    tokio::select! {
        _ = &mut writer => {}
        () = info.halt.wait(HaltReason::Killed) => {
            writer.abort();
            let _ = writer.await;
        }
    }
    // A redirect's listener closes with its tracking client.
    info.tracking.clear();
    shared.clients.unregister(info.id);
}

/// Most commands gathered into one backend batch.
const BATCH_MAX_COMMANDS: usize = 128;
/// Most bytes gathered into one backend batch.
const BATCH_MAX_BYTES: usize = 64 * 1024;
/// Most requests found in a read before they are handled (bounds the list).
const FIND_MAX: usize = 256;

/// Consecutive plain commands from one read, sent to the backend together:
/// one channel message, one reply slot and one writer wakeup for all.
struct Batch {
    frames: frames::BatchFrames,
    count: usize,
    read_only: bool,
    started: Instant,
    metrics: Vec<Arc<CommandMetrics>>,
    /// Reply plans (value transforms), by position in the batch.
    plans: Vec<(usize, Box<ReplyPlan>)>,
}

/// The dedicated backend connection's write side, while the client holds one.
struct DedicatedWriter {
    wr: crate::tls::WriteHalf,
    conn: Dedicated,
    /// Commands parsed in this batch, written together.
    out: BytesMut,
    /// Commands sent on this connection so far (each `Expect`'s `seq`).
    sent: u64,
    /// Shared with the writer: see `DedicatedReader::unbounded_at`.
    unbounded_at: Arc<std::sync::atomic::AtomicU64>,
    /// Held for a run of script calls (see `scripts.rs`), not for a
    /// server-side state: it goes back when the run ends.
    script_run: Option<scripts::ScriptRun>,
}

impl DedicatedWriter {
    /// The `seq` of the next command sent on the connection; a command
    /// without a timeout is recorded for the writer.
    fn next_seq(&mut self, unbounded: bool) -> u64 {
        self.sent += 1;
        if unbounded {
            self.unbounded_at
                .store(self.sent, std::sync::atomic::Ordering::Relaxed);
        }
        self.sent
    }
}

struct Session {
    shared: Arc<Shared>,
    info: Arc<ClientInfo>,
    /// The reply queue to the writer, bounded in commands (`queue.rs`).
    tx: super::queue::QueueTx,
    /// Most commands one batch may hold: never more than the in-flight bound.
    batch_max: usize,
    proto: Protocol,
    reply_mode: ReplyMode,
    dedicated: Option<DedicatedWriter>,
    state: ConnState,
    /// Metric handles per command, looked up once per session, keyed by
    /// the address of the command's static table entry.
    metrics_cache: HashMap<usize, Arc<CommandMetrics>, BuildHasherDefault<AddressHasher>>,
    /// Plain commands not yet sent to the backend.
    batch: Option<Batch>,
    /// Bytes the current read brought, to size batch buffers.
    read_len: usize,
    /// The current read's whole requests, taken out of the read buffer in
    /// one piece; their frames are slices of it (see `frames.rs`).
    chunk: Bytes,
    /// Inside MULTI, with transform rules: each queued command's reply
    /// plan, in order, for the EXEC reply.
    multi_plans: Vec<Option<ReplyPlan>>,
    /// Inside MULTI, a command was refused by a transform rule: EXEC
    /// discards the transaction, as Redis does after a queueing error.
    multi_refused: bool,
    /// Cluster mode's router (`None` in other modes).
    cluster: Option<Arc<crate::backend::cluster::ClusterRouter>>,
    /// Cluster mode: commands routed by slot, not yet sent.
    routed: Option<Box<super::routed::RoutedBatch>>,
    /// Emptied cluster batches, shared with the writer that gives them back.
    batch_pool: Arc<super::routed::BatchPool>,
    /// Cluster mode, on a dedicated connection: the slot its keys must be in.
    pinned_slot: Option<u16>,
    /// Cluster mode: inside MULTI, before a key says which node runs it;
    /// the commands queued meanwhile (see `cluster.rs`).
    unbound_multi: Option<Vec<cluster::Queued>>,
    /// Forward to the dedicated connection but drop the reply: the
    /// client was already answered (cluster MULTI replay).
    suppress_reply: bool,
    /// New dedicated write halves from the writer, after it moved the
    /// client's subscriptions to another connection.
    swaps: mpsc::UnboundedReceiver<super::writer::DedicatedSwap>,
    /// Fires once everything queued before the last switch between the
    /// multiplexed and a dedicated connection has been answered; the next
    /// command sent waits for it (see `Pending::Barrier`).
    barrier: Option<tokio::sync::oneshot::Receiver<()>>,
    /// The client's socket and what was read from it, not yet parsed.
    input: input::ClientInput,
    /// The last command looked up (see [`command::LookupCache`]).
    lookup_cache: command::LookupCache,
    /// Cluster mode: shard channels on other nodes than the dedicated
    /// connection's (`server/shard_links.rs`).
    shard_links: super::shard_links::ShardLinks,
    /// Who the client is: logged in or not, as which ACL user (`auth/`).
    auth: crate::auth::ClientAuth,
    /// Coordination state (KEEPALIVE leases), from the first coordination
    /// command on; dropped with the session, which releases its leases.
    coord: Option<Box<crate::coord::ClientCoord>>,
}

impl Session {
    async fn read_loop(&mut self) {
        let parser = self.shared.parser.clone();
        // Before AUTH: Redis's caps, one request at a time (an AUTH lifts them).
        let unauthenticated = parser.unauthenticated();
        // Shutdown, or the writer gone: made once and kept registered,
        // rather than made, registered and dropped on every read.
        let info = self.info.clone();
        let writer_gone = self.tx.closed();
        let stop = async {
            tokio::select! {
                biased;
                () = info.halt.wait(HaltReason::Shutdown) => {}
                () = writer_gone => {}
            }
        };
        tokio::pin!(stop);
        let mut found: Vec<(usize, Found)> = Vec::new();
        let idle = self.shared.server.load().client_idle_timeout_secs;
        loop {
            let mut last_command = None;
            // One clock read per read batch: its commands arrived together.
            let started = Instant::now();
            // What this read brought: a batch never needs more room.
            self.read_len = self.input.buf.len();
            loop {
                // The whole multibulk requests are found in place, then taken
                // out of the buffer in one piece (see `frames.rs`).
                found.clear();
                let mut at = 0;
                let (finder, find_max) = if self.auth.is_authenticated() {
                    (&parser, FIND_MAX)
                } else {
                    (&unauthenticated, 1)
                };
                let next = loop {
                    match finder.find(&self.input.buf[at..]) {
                        Ok(Scan::Request(f)) if found.len() < find_max => {
                            found.push((at, f));
                            at += f.byte_len();
                        }
                        Ok(Scan::Empty(len)) => at += len,
                        other => break other,
                    }
                };
                self.chunk = self.input.buf.split_to(at).freeze();
                let chunk = self.chunk.clone();
                for &(start, f) in &found {
                    let req = f.request(chunk.slice(start..start + f.byte_len()));
                    let spec = self.lookup_cache.lookup(&req);
                    last_command = Some(spec.map_or("unknown", |s| s.name));
                    let Some(req) = self.try_plain(req, spec, started) else {
                        continue;
                    };
                    if self.handle(req, spec, started).await == Flow::Close {
                        self.flush_dedicated().await;
                        return;
                    }
                }
                // Batches hold what they need of it; a large value is not
                // kept alive here until the next read.
                self.chunk = Bytes::new();
                drop(chunk);
                let error = match next {
                    Ok(Scan::Incomplete) => break,
                    // FIND_MAX reached: find the rest.
                    Ok(Scan::Request(_) | Scan::Empty(_)) => continue,
                    // An inline command (re-encoded, so not a slice): alone.
                    Ok(Scan::Inline) => match parser.parse(&mut self.input.buf) {
                        Ok(Some(req)) => {
                            let spec = self.lookup_cache.lookup(&req);
                            last_command = Some(spec.map_or("unknown", |s| s.name));
                            if self.handle(req, spec, started).await == Flow::Close {
                                self.flush_dedicated().await;
                                return;
                            }
                            continue;
                        }
                        Ok(None) => break,
                        Err(e) => e,
                    },
                    Err(e) => e,
                };
                // Redis: reply with the error, then close the connection.
                tracing::debug!(client = self.info.id, error = %error, "protocol error");
                self.shared.metrics.error(ErrorKind::Protocol);
                self.flush_dedicated().await;
                let _ = self
                    .queue(Pending::Ready(reply::error(&error.to_string())))
                    .await;
                let _ = self.queue(Pending::Close).await;
                return;
            }
            if !self.flush_batch().await {
                return;
            }
            // Once per read batch, not per command: CLIENT LIST's idle/cmd.
            if let Some(name) = last_command {
                self.info.touch(self.shared.clients.epoch(), started, name);
            }
            if !self.flush_dedicated().await {
                return;
            }
            if std::mem::take(&mut self.input.unparsed) {
                continue; // read while waiting for a barrier: parse it first
            }
            if self.input.eof {
                return; // seen while waiting; the client is already marked gone
            }
            let buf = &mut self.input.buf;
            match parser.size_hint(buf) {
                Some(total) if total > buf.len() => buf.reserve(total - buf.len()),
                _ => buf.reserve(16 * 1024),
            }
            let in_script_run = self.in_script_run();
            let read = tokio::select! {
                biased;
                () = &mut stop => return,
                r = self.input.read() => r,
                _ = idle_timer(idle), if idle > 0 => {
                    tracing::debug!(client = self.info.id, "closing idle client");
                    return;
                }
                // The writer moved an idle subscriber's subscriptions: take
                // the new write half now, so the old connection closes
                // (and stops receiving) without waiting for a command.
                Some(swap) = self.swaps.recv(), if self.dedicated.is_some() => {
                    self.take_swap(swap);
                    continue;
                }
                () = scripts::idle(in_script_run), if in_script_run => {
                    if self.end_script_run().await == Flow::Close {
                        return;
                    }
                    continue;
                }
            };
            match read {
                Ok(0) | Err(_) => {
                    self.info.hang_up();
                    return;
                }
                Ok(n) => self.shared.metrics.bytes_in(n as u64),
            }
        }
    }

    /// Queues an entry for the writer, after any batch gathered before it
    /// (replies stay in request order); false when the writer is gone.
    async fn queue(&mut self, p: Pending) -> bool {
        if !self.flush_batch().await {
            return false;
        }
        self.send_entry(p, 1).await
    }

    /// Waits for room for `commands` more in flight, then queues the entry.
    async fn send_entry(&mut self, p: Pending, commands: usize) -> bool {
        self.tx.send(p, commands).await
    }

    /// Queues a barrier: what is sent next waits until every reply queued
    /// so far has come back (the client switches backend connections).
    async fn set_barrier(&mut self) -> bool {
        let (done, barrier) = tokio::sync::oneshot::channel();
        // Queued first: `queue` may flush a batch, which must not wait for
        // this barrier.
        let queued = self.queue(Pending::Barrier(done)).await;
        self.barrier = Some(barrier);
        queued
    }

    /// Waits for the last barrier, if one is pending. False when the
    /// writer is gone instead (the client left while a blocking command
    /// waited): nothing queued behind the barrier may be sent, as Redis
    /// runs nothing more for a blocked client that hangs up.
    ///
    /// Meanwhile the client's socket is still read, so a client that hangs
    /// up behind a blocking command is noticed (see `input.rs`).
    async fn await_barrier(&mut self) -> bool {
        match self.barrier.take() {
            Some(barrier) => self
                .input
                .read_until(barrier, &self.info, &self.shared.metrics)
                .await
                .is_ok(),
            None => true,
        }
    }

    /// Sends the gathered batch to the backend and queues its replies.
    async fn flush_batch(&mut self) -> bool {
        if (self.batch.is_some() || self.routed.is_some()) && !self.await_barrier().await {
            return false;
        }
        if self.routed.is_some() {
            return self.flush_routed().await;
        }
        let Some(batch) = self.batch.take() else {
            return true;
        };
        // Room first, so a client over its bound is not read from and its
        // commands wait here rather than at the backend.
        if !self.tx.wait_room(batch.count).await {
            return false;
        }
        let frames = batch.frames.freeze();
        // The slow log's copy of the batch's start (`admin/slowlog.rs`):
        // holding `frames` itself would keep the client's read buffer
        // shared until the reply, and a read meanwhile would allocate anew.
        // With the slow log off (a negative threshold), nothing is kept.
        let kept = if self.shared.slowlog.is_on() {
            Bytes::copy_from_slice(&frames[..frames.len().min(crate::admin::slowlog::KEEP_BYTES)])
        } else {
            Bytes::new()
        };
        let reply = self
            .shared
            .backend
            .send(
                self.info.id,
                self.proto,
                frames,
                batch.count,
                batch.read_only,
                self.auth.backend_user(),
            )
            .await;
        let entry = Pending::Batch {
            reply,
            count: batch.count,
            started: batch.started,
            sent: (Instant::now(), kept),
            metrics: batch.metrics,
            plans: batch.plans,
        };
        self.tx.send(entry, batch.count).await
    }

    /// CLIENT REPLY: whether this command's reply is to be written (OFF:
    /// never; SKIP: not this one, and ON again after it).
    fn reply_wanted(&mut self) -> bool {
        match self.reply_mode {
            ReplyMode::On => true,
            ReplyMode::Off => false,
            ReplyMode::Skip => {
                self.reply_mode = ReplyMode::On;
                false
            }
        }
    }

    /// Queues a locally made reply, honouring CLIENT REPLY OFF/SKIP.
    async fn reply(&mut self, bytes: Bytes) -> Flow {
        if !self.reply_wanted() {
            return Flow::Continue;
        }
        if self.queue(Pending::Ready(bytes)).await {
            Flow::Continue
        } else {
            Flow::Close
        }
    }

    async fn error(&mut self, text: &str) -> Flow {
        self.reply(reply::error(text)).await
    }

    fn command_metrics(
        &mut self,
        spec: Option<&'static CommandSpec>,
    ) -> Option<Arc<CommandMetrics>> {
        let spec = spec?;
        let key = spec as *const CommandSpec as usize;
        if let Some(m) = self.metrics_cache.get(&key) {
            return Some(m.clone());
        }
        let m = Arc::new(self.shared.metrics.command(spec.name));
        self.metrics_cache.insert(key, m.clone());
        Some(m)
    }

    async fn handle(
        &mut self,
        mut req: Request,
        spec: Option<&'static CommandSpec>,
        started: Instant,
    ) -> Flow {
        let timing = Timing {
            started,
            metrics: self.command_metrics(spec),
        };
        match crate::policy::check(&mut self.auth, &req, spec) {
            crate::policy::Step::Proceed => {}
            crate::policy::Step::Answer(answer) => {
                self.policy_refused();
                self.audit_refused(&req, spec, &answer);
                return self.reply(answer).await;
            }
            crate::policy::Step::Acl => return self.acl_command(req).await,
        }
        if spec.is_none() && crate::admin::is_proxy(req.args()) {
            return self.proxy(req, timing).await;
        }
        self.audit_admin_command(&req, spec);
        // Value transforms: seal the values of the request, refuse what a
        // rule forbids, and keep the plan for opening the reply. Commands
        // transforms never look at keep their arguments in the frame.
        let mut plan = None;
        if req
            .arg(0)
            .is_some_and(|name| self.shared.transforms.concerns(name))
        {
            match self.shared.transforms.load().prepare(req.args()) {
                Ok(prepared) => {
                    if let Rewrite::Args(args) = prepared.rewrite {
                        req = Request::with_frame(encode_request(&args), args);
                    }
                    plan = prepared.plan;
                }
                Err(text) => {
                    if (self.dedicated.is_some() && self.state.in_multi)
                        || self.unbound_multi.is_some()
                    {
                        self.multi_refused = true;
                    }
                    return self.error(&text).await;
                }
            }
        }
        // The coordination step (policy/, session/coord.rs).
        if let Some(coord) = &self.shared.coord {
            if let Some(plan) = crate::policy::coord(&req, spec) {
                let coord = coord.clone();
                if let Err(flow) = Box::pin(self.coord_step(&coord, plan, &req, &timing)).await {
                    return flow;
                }
            }
        }
        // The tier step (policy/): one branch when no [[tier]] rule exists;
        // a command on keys no rule names costs the rule match only.
        if let Some(tiers) = &self.shared.tiers {
            let cx = crate::tier::plan::Context {
                // A script run ends at the next other command (tier_step).
                dedicated: (self.dedicated.is_some() && !self.in_script_run())
                    || self.unbound_multi.is_some(),
            };
            let step = crate::policy::tier(tiers, &req, spec, cx);
            if !matches!(step, crate::tier::Plan::Proceed) {
                let tiers = tiers.clone();
                if let Err(flow) = Box::pin(self.tier_step(&tiers, step, &timing, &mut plan)).await
                {
                    return flow;
                }
            }
        }
        if self.in_script_run() {
            match self.script_run_continues(spec, &req).await {
                Ok(true) => {
                    if let Some(spec) = spec {
                        return self.script_on_run(req, spec, timing, plan).await;
                    }
                }
                Ok(false) if self.end_script_run().await == Flow::Close => return Flow::Close,
                Ok(false) => {}
                Err(reply) => return self.reply(reply).await,
            }
        }
        if self.dedicated.is_some() {
            return self.handle_dedicated(req, spec, timing, plan).await;
        }
        if self.unbound_multi.is_some() {
            return self.multi_unbound(req, spec, timing, plan).await;
        }
        let Some(spec) = spec else {
            // Unknown to strata's table (a newer Redis, a module): let the
            // backend answer, on the shared connection.
            return self.forward(req, None, Post::None, timing, false).await;
        };
        if self.cluster.is_some() {
            if let Some(flow) = self.cluster_special(&req, spec).await {
                timing.record();
                return flow;
            }
            if let Some(tracked) = self.info.tracking.per_read() {
                if let Some(flow) = self
                    .tracked_read(&req, spec, plan.is_some(), &tracked)
                    .await
                {
                    timing.record();
                    return flow;
                }
            }
        }
        if spec.has(Flags::RUNS_SCRIPT)
            && self.reply_mode == ReplyMode::On
            && self.shared.server.load().scripts_on_own_connection
        {
            match self.script_node(spec, &req).await {
                Ok(node) if node.dedicated_available() => {
                    return self.script_command(node, req, spec, timing, plan).await
                }
                // The pool is exhausted: the shared connection, as before.
                Ok(_) => {}
                Err(reply) => return self.reply(reply).await,
            }
        }
        match spec.route {
            Route::Local => {
                let flow = self.local(req, spec).await;
                timing.record();
                flow
            }
            Route::Dedicated => self.dedicated_command(req, spec, timing, plan).await,
            Route::Unsupported => {
                self.shared.metrics.error(ErrorKind::Unsupported);
                let text = format!("ERR command '{}' is not supported by strata", spec.name);
                self.error(&text).await
            }
            _ if spec.name == "info" && self.cluster.is_some() => {
                let proxy = info_wants_proxy(req.args());
                self.route_info(req, timing, proxy).await
            }
            _ if spec.name == "info" => {
                let post = if info_wants_proxy(req.args()) {
                    Post::AppendProxyInfo(self.proto)
                } else {
                    Post::None
                };
                if req.args().len() == 2 && req.args()[1].eq_ignore_ascii_case(b"proxy") {
                    let mut r = ReplyBuf::new(self.proto);
                    r.verbatim(self.shared.proxy_info().as_bytes());
                    return self.reply(r.freeze()).await;
                }
                self.forward(req, Some(spec), post, timing, false).await
            }
            _ => {
                let read_only = spec.has(Flags::READ) && !spec.has(Flags::WRITE);
                let post = match plan {
                    Some(plan) => Post::Transform(Box::new(plan)),
                    None => Post::None,
                };
                self.forward(req, Some(spec), post, timing, read_only).await
            }
        }
    }

    /// The common case without an `.await`: a plain command for the
    /// client's multiplexed connection, added to the batch being gathered
    /// when it fits there. `Some(req)` gives the request back for
    /// [`Session::handle`], which decides everything else (and this only
    /// takes the cases where `handle` would come to the same `gather` or
    /// cluster `route` with nothing to wait for). An async call per
    /// command built and dropped a state machine per command, about a
    /// fifth of the instructions per request at `-P 16`
    /// (docs/PERFORMANCE.md).
    fn try_plain(
        &mut self,
        req: Request,
        spec: Option<&'static CommandSpec>,
        started: Instant,
    ) -> Option<Request> {
        let Some(spec) = spec else {
            return Some(req);
        };
        let plain_route = match spec.route {
            // In cluster mode only a one-slot command; `cluster_special`
            // and tracked reads take none of these.
            Route::Key => true,
            Route::Any
            | Route::SplitBySlot
            | Route::AllPrimaries
            | Route::AllNodes
            | Route::PubSub => self.cluster.is_none(),
            Route::Local | Route::Dedicated | Route::Unsupported => false,
        };
        if !plain_route
            || self.reply_mode != ReplyMode::On
            || self.dedicated.is_some()
            || self.unbound_multi.is_some()
            || spec.has(Flags::RUNS_SCRIPT)
            || spec.name == "info"
            || self.audits_admin(Some(spec))
            || (!self.shared.transforms.is_empty()
                && req
                    .arg(0)
                    .is_some_and(|name| self.shared.transforms.concerns(name)))
            || (self.cluster.is_some() && self.info.tracking.per_read_on())
            || (self.shared.coord.is_some() && crate::coord::command_info::concerns(spec))
        {
            return Some(req);
        }
        let read_only = spec.has(Flags::READ) && !spec.has(Flags::WRITE);
        let fits = if self.cluster.is_some() {
            self.routed.as_ref().is_some_and(|b| {
                b.items.len() < self.batch_max && b.bytes + req.frame.len() <= BATCH_MAX_BYTES
            })
        } else {
            self.batch.as_ref().is_none_or(|b| {
                b.read_only == read_only
                    && b.count < self.batch_max
                    && b.frames.len() + req.frame.len() <= BATCH_MAX_BYTES
            })
        };
        if !fits {
            return Some(req);
        }
        // The policy seam, as in `handle`: a command it answers, or one the
        // tier step has work for, goes there.
        if !matches!(
            crate::policy::check(&mut self.auth, &req, Some(spec)),
            crate::policy::Step::Proceed
        ) {
            return Some(req);
        }
        if let Some(tiers) = &self.shared.tiers {
            if !crate::policy::tier_passes(tiers, &req, spec) {
                return Some(req);
            }
        }
        let timing = Timing {
            started,
            metrics: self.command_metrics(Some(spec)),
        };
        if self.cluster.is_some() {
            self.route_into(req, Some(spec), timing, read_only, None);
        } else {
            self.gather_into(req, timing, read_only, None);
        }
        None
    }

    /// `PROXY …`: strata's own administration commands (`admin::run`).
    async fn proxy(&mut self, req: Request, timing: Timing) -> Flow {
        if self.shared.audit.is_some() {
            let words: Vec<String> = req
                .args()
                .iter()
                .take(2)
                .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
                .collect();
            self.audit_admin(words.join(" "));
        }
        let cmd = match crate::admin::parse(req.args()) {
            Ok(cmd) => cmd,
            Err(text) => return self.error(&text).await,
        };
        // In a task: this client's later commands are still read
        // meanwhile, and the reply keeps its place in the order.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = self.shared.clone();
        let proto = self.proto;
        let slow = SlowWatch::start(&shared, &self.info, &req.frame, timing.started);
        tokio::spawn(async move {
            let _slow = slow; // the slow log, once the reply is made
            let transforms = shared.transforms.load_full();
            let ctx = crate::admin::Context {
                router: &shared.backend,
                cluster: shared.cluster.as_deref(),
                transforms: &transforms,
                tiers: shared.tiers.as_deref(),
                server: &shared,
            };
            let _ = tx.send(Ok(Box::pin(crate::admin::run(ctx, cmd, proto)).await));
        });
        if !self.reply_wanted() {
            return Flow::Continue;
        }
        let entry = Pending::Backend {
            reply: rx,
            post: Post::None,
            timing,
        };
        if self.queue(entry).await {
            Flow::Continue
        } else {
            Flow::Close
        }
    }

    /// Sends a request on the client's multiplexed connection (in cluster
    /// mode, on its connection to the node serving the request).
    async fn forward(
        &mut self,
        req: Request,
        spec: Option<&'static CommandSpec>,
        post: Post,
        timing: Timing,
        read_only: bool,
    ) -> Flow {
        if self.cluster.is_some() {
            match post {
                Post::None => return self.route(req, spec, timing, read_only, None).await,
                Post::Transform(plan) => {
                    return self.route(req, spec, timing, read_only, Some(plan)).await
                }
                // INFO with strata's section: one node's INFO (see `proxy_info`).
                _ => {}
            }
        }
        // Plain commands, and those whose reply only needs opening, are
        // batched; other rewrites go alone.
        let on = self.reply_mode == ReplyMode::On;
        let post = match post {
            Post::None if on => return self.gather(req, timing, read_only, None).await,
            Post::Transform(plan) if on => {
                return self.gather(req, timing, read_only, Some(plan)).await
            }
            other => other,
        };
        // Boxed: its future (the backend send's among them) would
        // otherwise be part of every plain command's `forward` future,
        // which is moved in memory once per request.
        Box::pin(self.send_alone(req, post, timing, read_only)).await
    }

    /// A request that is not batched (its reply is rewritten, or not
    /// wanted): sent alone, after what was batched before it.
    async fn send_alone(
        &mut self,
        req: Request,
        post: Post,
        timing: Timing,
        read_only: bool,
    ) -> Flow {
        if !self.flush_batch().await || !self.await_barrier().await {
            return Flow::Close;
        }
        let reply = self
            .shared
            .backend
            .send(
                self.info.id,
                self.proto,
                req.frame,
                1,
                read_only,
                self.auth.backend_user(),
            )
            .await;
        if !self.reply_wanted() {
            return Flow::Continue;
        }
        if self
            .queue(Pending::Backend {
                reply,
                post,
                timing,
            })
            .await
        {
            Flow::Continue
        } else {
            Flow::Close
        }
    }

    /// Adds a command to the batch for the backend, with the plan for
    /// opening its reply if it has one.
    async fn gather(
        &mut self,
        req: Request,
        timing: Timing,
        read_only: bool,
        plan: Option<Box<ReplyPlan>>,
    ) -> Flow {
        let fits = self.batch.as_ref().is_some_and(|b| {
            b.read_only == read_only
                && b.count < self.batch_max
                && b.frames.len() + req.frame.len() <= BATCH_MAX_BYTES
        });
        if !fits && !self.flush_batch().await {
            return Flow::Close;
        }
        self.gather_into(req, timing, read_only, plan);
        Flow::Continue
    }

    /// [`Session::gather`] once the command fits the batch (or there is none).
    fn gather_into(
        &mut self,
        req: Request,
        timing: Timing,
        read_only: bool,
        plan: Option<Box<ReplyPlan>>,
    ) {
        let read_len = self.read_len;
        let batch_max = self.batch_max;
        let batch = match &mut self.batch {
            Some(batch) => {
                batch.frames.push(&req.frame);
                batch
            }
            // A copy, if one is needed, is sized to what the read brought.
            None => self.batch.insert(Batch {
                frames: frames::BatchFrames::first(
                    &req.frame,
                    &self.chunk,
                    read_len.min(BATCH_MAX_BYTES),
                ),
                count: 0,
                read_only,
                started: timing.started,
                metrics: Vec::with_capacity(batch_max.min(16)),
                plans: Vec::new(),
            }),
        };
        if let Some(plan) = plan {
            batch.plans.push((batch.count, plan));
        }
        batch.count += 1;
        if let Some(m) = timing.metrics {
            batch.metrics.push(m);
        }
    }
}

/// True when INFO's arguments include the proxy section.
fn info_wants_proxy(args: &[Bytes]) -> bool {
    args.len() == 1
        || args[1..].iter().any(|a| {
            a.eq_ignore_ascii_case(b"proxy")
                || a.eq_ignore_ascii_case(b"all")
                || a.eq_ignore_ascii_case(b"everything")
                || a.eq_ignore_ascii_case(b"default")
        })
}

/// XREAD/XREADGROUP block only with a BLOCK option (before STREAMS).
fn has_block_option(args: &[Bytes]) -> bool {
    for a in &args[1..] {
        if a.eq_ignore_ascii_case(b"STREAMS") {
            return false;
        }
        if a.eq_ignore_ascii_case(b"BLOCK") {
            return true;
        }
    }
    false
}

/// Hashes a table entry's address: already unique, so a multiply spreads it.
#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

async fn idle_timer(secs: u64) {
    if secs == 0 {
        std::future::pending::<()>().await;
    } else {
        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    }
}
