//! The writing half of a session: replies in request order, coalesced.
//!
//! It takes [`Pending`] entries in the order the reader queued them and
//! writes each reply as it becomes ready, batching every reply that is
//! already available into one write. While the client is on a dedicated
//! connection it forwards that connection's frames, counting the ones due
//! per command and passing pub/sub messages and MONITOR lines through as
//! they come.

mod limit;
mod resubscribe;
mod routed;

pub use limit::{ClassLimit, OutputLimits};
pub use resubscribe::{confirmation, DedicatedSwap};

use std::sync::Arc;

use crate::tls::WriteHalf;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::{mpsc, watch};

use super::clients::{ClientInfo, Departure};
use super::pending::{DedicatedReader, Expect, Pending, Post, Redirectable};
use super::queue::{self as queue, QueueRx};
use super::shard_links::{next_event, LinkFrames};
use super::Shared;
use crate::backend::cluster::redirect::{classify, Redirect};
use crate::backend::mux::retired_reason;
use crate::protocol::reply::{self, aggregate_elements, frame_len, string_payload};
use crate::protocol::ReplyBuf;
use crate::telemetry::ErrorKind;

/// Flush once this much is buffered even if more replies are ready.
const FLUSH_BYTES: usize = 64 * 1024;

/// Why the writer stopped.
enum Stop {
    /// The reader is done (client gone, QUIT, shutdown) and everything queued was written.
    Done,
    /// The client socket failed.
    ClientGone,
}

/// Runs the writer until the reader finishes or the client goes away.
pub async fn run(
    wr: WriteHalf,
    rx: QueueRx,
    shared: Arc<Shared>,
    swap: mpsc::UnboundedSender<DedicatedSwap>,
    batch_pool: Arc<crate::server::routed::BatchPool>,
    info: Arc<ClientInfo>,
) {
    // Direct replies (`server/direct.rs`) on plain TCP.
    let (wr, sink) = wr.share();
    if let Some(sink) = sink {
        rx.enable_direct(Arc::new(super::direct::DirectReplies {
            sink,
            shared: shared.clone(),
        }));
    }
    let mut w = Writer {
        wr,
        rx,
        out: BytesMut::with_capacity(16 * 1024),
        shared,
        swap: Some(swap),
        batch_pool,
        departure: info.departure(),
        inbox: info.tracking.open_inbox(),
        info,
        limit: limit::LimitWatch::default(),
    };
    let _ = w.mux_loop().await;
    w.rx.disable_direct();
    let _ = w.wr.shutdown().await;
}

struct Writer {
    wr: WriteHalf,
    rx: QueueRx,
    out: BytesMut,
    shared: Arc<Shared>,
    /// Hands the session the write half of a connection the writer took
    /// to keep a subscriber's subscriptions (`resubscribe.rs`).
    swap: Option<mpsc::UnboundedSender<DedicatedSwap>>,
    /// Where written cluster batches go back to the session (`routed.rs`).
    batch_pool: Arc<crate::server::routed::BatchPool>,
    /// Whether the client is still there (see [`Departure`]).
    departure: watch::Receiver<Departure>,
    /// The client, whose dedicated connection is forgotten (for CLIENT
    /// UNBLOCK) before it goes back to the pool.
    info: Arc<ClientInfo>,
    /// Invalidations redirected to this client by another one's CLIENT
    /// TRACKING (`server/tracking/`): whole frames, written between
    /// replies whenever the writer would otherwise wait.
    inbox: mpsc::Receiver<Bytes>,
    /// The client's pending output against its class's output-buffer
    /// limit (`limit.rs`).
    limit: limit::LimitWatch,
}

/// A reply slot dropped without an answer: the backend connection it
/// waited on was lost.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Unanswered;

/// A reply slot's outcome if it has one yet: its reply, or [`Unanswered`]
/// when it was dropped unanswered (a retired node's queue) before the
/// writer came to it. `None`: still pending. After a `Some`, the receiver
/// is spent and must not be awaited (tokio panics: "called after
/// complete").
fn reply_if_ready(
    reply: &mut tokio::sync::oneshot::Receiver<crate::backend::mux::MuxReply>,
) -> Option<Result<crate::backend::mux::MuxReply, Unanswered>> {
    match reply.try_recv() {
        Ok(r) => Some(Ok(r)),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Closed) => Some(Err(Unanswered)),
    }
}

impl Writer {
    async fn flush(&mut self) -> Result<(), Stop> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.shared.metrics.bytes_out(self.out.len() as u64);
        let normal = self.shared.server.load().client_output_buffer_limit.normal;
        if !normal.is_unlimited() {
            return self.flush_limited(normal).await;
        }
        self.info.set_output_pending(self.out.len());
        let r = crate::tls::write_flush(&mut self.wr, &self.out).await;
        self.info.set_output_pending(0);
        self.out.clear();
        r.map_err(|_| Stop::ClientGone)
    }

    /// [`Writer::flush`] under a `normal` output-buffer limit: what is
    /// still unwritten is held against it while the client does not read.
    #[cold]
    async fn flush_limited(&mut self, limit: ClassLimit) -> Result<(), Stop> {
        while !self.out.is_empty() || self.wr.has_unsent() {
            self.check_limit(&limit, "normal")?;
            let soft = self.limit.soft_deadline(&limit);
            tokio::select! {
                biased;
                r = write_some(&mut self.wr, &self.out) => {
                    let n = r.map_err(|_| Stop::ClientGone)?;
                    self.out.advance(n);
                }
                () = sleep_until_opt(soft.map(tokio::time::Instant::from_std)) => {}
            }
        }
        self.out.clear();
        Ok(())
    }

    /// Closes the client (Redis: "scheduled to be closed ASAP for
    /// overcoming of output buffer limits") when what strata holds for it
    /// breaks its class's limit.
    fn check_limit(&mut self, limit: &ClassLimit, class: &'static str) -> Result<(), Stop> {
        let pending = self.out.len();
        if !self
            .limit
            .exceeded(limit, pending, std::time::Instant::now())
        {
            return Ok(());
        }
        self.shared.metrics.error(ErrorKind::OutputBufferLimit);
        tracing::warn!(
            client = self.info.id,
            addr = %self.info.addr,
            class,
            pending,
            "client closed for overcoming of output buffer limits"
        );
        Err(Stop::ClientGone)
    }

    /// The next entry: without waiting if one is queued, else after
    /// flushing what is buffered.
    async fn next(&mut self) -> Option<Pending> {
        // One relaxed load for a client no redirect names: the inbox is
        // read only once one does (`Pending::Wake` rouses a writer parked
        // below). Boxed, so the hot path's future stays as small as before.
        if self.info.tracking.is_target() {
            return Box::pin(self.next_or_invalidations()).await;
        }
        match self.rx.try_recv() {
            Ok(p) => Some(p),
            Err(queue::TryRecvError::Empty) => {
                if self.flush().await.is_err() {
                    return None;
                }
                // Everything before is written: replies may go direct.
                let p = self.rx.recv_direct().await?;
                Some(p)
            }
            Err(queue::TryRecvError::Disconnected) => None,
        }
    }

    /// [`Writer::next`] for a redirect target: invalidations from the
    /// inbox are written whenever they come, between replies.
    async fn next_or_invalidations(&mut self) -> Option<Pending> {
        // A client that never waits still gets its invalidations.
        while let Ok(push) = self.inbox.try_recv() {
            self.out.extend_from_slice(&push);
        }
        if let Ok(p) = self.rx.try_recv() {
            return Some(p);
        }
        loop {
            if self.flush().await.is_err() {
                return None;
            }
            tokio::select! {
                biased;
                p = self.rx.recv() => return p,
                Some(push) = self.inbox.recv() => self.out.extend_from_slice(&push),
            }
        }
    }

    /// A reply slot's value: at once if it is there, else after flushing
    /// what is buffered (so the client is not kept waiting meanwhile).
    async fn await_reply(
        &mut self,
        reply: &mut tokio::sync::oneshot::Receiver<crate::backend::mux::MuxReply>,
    ) -> Result<Result<crate::backend::mux::MuxReply, Unanswered>, Stop> {
        if let Some(ready) = reply_if_ready(reply) {
            return Ok(ready);
        }
        // Redirected invalidations wait for this reply: a multiplexed
        // reply is a backend round trip away, and the hot path is spared a
        // second wait.
        self.flush().await?;
        Ok(reply.await.map_err(|_| Unanswered))
    }

    async fn mux_loop(&mut self) -> Result<Stop, Stop> {
        while let Some(item) = self.next().await {
            match item {
                Pending::Ready(bytes) => self.out.extend_from_slice(&bytes),
                Pending::Backend {
                    mut reply,
                    post,
                    timing,
                } => {
                    let result = self.await_reply(&mut reply).await?;
                    timing.record();
                    match result {
                        Ok(Ok(frame)) => self.write_reply(frame, post),
                        Ok(Err(e)) => {
                            self.shared.metrics.error(e.kind());
                            self.out.extend_from_slice(&e.to_reply());
                        }
                        Err(_) => {
                            self.shared.metrics.error(ErrorKind::Internal);
                            self.out.extend_from_slice(&reply::error(
                                "ERR backend connection closed before replying",
                            ));
                        }
                    }
                }
                Pending::Batch {
                    mut reply,
                    count,
                    started,
                    sent,
                    metrics,
                    plans,
                } => {
                    let result = self.await_reply(&mut reply).await?;
                    let elapsed = started.elapsed();
                    crate::telemetry::record_batch(&metrics, elapsed);
                    if elapsed >= self.shared.slowlog.threshold() {
                        self.slow(started, sent.0, &sent.1, elapsed);
                    }
                    match result {
                        Ok(Ok(frames)) if plans.is_empty() => self.out.extend_from_slice(&frames),
                        Ok(Ok(frames)) => self.write_batch_with_plans(frames, count, &plans),
                        Ok(Err(e)) => {
                            self.shared.metrics.error(e.kind());
                            let text = e.to_reply();
                            for _ in 0..count {
                                self.out.extend_from_slice(&text);
                            }
                        }
                        Err(_) => {
                            self.shared.metrics.error(ErrorKind::Internal);
                            let text =
                                reply::error("ERR backend connection closed before replying");
                            for _ in 0..count {
                                self.out.extend_from_slice(&text);
                            }
                        }
                    }
                }
                Pending::Routed(batch) => self.write_routed(batch).await?,
                Pending::EnterDedicated(rd) => self.dedicated_loop(rd).await?,
                Pending::Barrier(done) => drop(done.send(())),
                Pending::Close => {
                    self.flush().await?;
                    return Ok(Stop::Done);
                }
                // Only meaningful in dedicated mode; the reader never sends
                // them otherwise. Ignoring keeps the queue moving.
                Pending::Expect(_) | Pending::LeaveDedicated(_) | Pending::Wake => {}
            }
            if self.out.len() >= FLUSH_BYTES {
                self.flush().await?;
            }
        }
        self.flush().await?;
        Ok(Stop::Done)
    }

    /// A reply batch over `PROXY SLOWLOG`'s threshold: its requests
    /// `frames`, handed to the backend connection at `sent_at`.
    #[cold]
    pub(super) fn slow(
        &self,
        started: std::time::Instant,
        sent_at: std::time::Instant,
        frames: &Bytes,
        elapsed: std::time::Duration,
    ) {
        use crate::admin::slowlog::{Client, Measured};
        let name = self.info.name();
        self.shared.slowlog.record(
            Measured {
                frames,
                started,
                sent: sent_at,
                elapsed,
            },
            Client {
                addr: &self.info.addr,
                name: name.as_ref(),
            },
            &self.shared.transforms.load(),
        );
    }

    fn write_reply(&mut self, frame: Bytes, post: Post) {
        match post {
            Post::None => self.out.extend_from_slice(&frame),
            Post::Drop => {}
            Post::Tracking(hook) => {
                let frame = self.info.tracking.after_reply(hook, frame);
                self.out.extend_from_slice(&frame);
            }
            Post::Replace(bytes) => {
                if reply::is_error(&frame) {
                    self.out.extend_from_slice(&frame);
                } else {
                    self.out.extend_from_slice(&bytes);
                }
            }
            Post::Transform(plan) => {
                let frame = self.shared.transforms.load().apply_reply(&plan, frame);
                self.out.extend_from_slice(&frame);
            }
            Post::TransformExec(plans) => {
                let frame = self
                    .shared
                    .transforms
                    .load()
                    .apply_exec_reply(&plans, frame);
                self.out.extend_from_slice(&frame);
            }
            Post::AppendProxyInfo(proto) => match string_payload(&frame) {
                Some(text) => {
                    let mut full = text.to_vec();
                    if !full.ends_with(b"\r\n") && !full.is_empty() {
                        full.extend_from_slice(b"\r\n");
                    }
                    if !full.is_empty() {
                        full.extend_from_slice(b"\r\n");
                    }
                    full.extend_from_slice(self.shared.proxy_info().as_bytes());
                    let mut r = ReplyBuf::new(proto);
                    r.verbatim(&full);
                    self.out.extend_from_slice(&r.freeze());
                }
                None => self.out.extend_from_slice(&frame),
            },
        }
    }

    /// A batch's replies (back to back, one per command) where some commands
    /// have a transform plan: those replies are opened, the rest copied.
    fn write_batch_with_plans(
        &mut self,
        frames: Bytes,
        count: usize,
        plans: &[(usize, Box<crate::transform::ReplyPlan>)],
    ) {
        let mut pos = 0;
        let mut plans = plans.iter().peekable();
        for i in 0..count {
            let len = match frames.get(pos..).map(frame_len) {
                Some(Ok(Some(len))) => len,
                _ => {
                    // Cannot happen: the connection framed these replies.
                    // Never pass on what could not be opened.
                    self.shared.metrics.error(ErrorKind::Internal);
                    let text = reply::error("ERR strata: malformed backend reply");
                    for _ in i..count {
                        self.out.extend_from_slice(&text);
                    }
                    return;
                }
            };
            let frame = frames.slice(pos..pos + len);
            pos += len;
            match plans.next_if(|(at, _)| *at == i) {
                Some((_, plan)) => {
                    let opened = self.shared.transforms.load().apply_reply(plan, frame);
                    self.out.extend_from_slice(&opened);
                }
                None => self.out.extend_from_slice(&frame),
            }
        }
    }

    /// Forwards a dedicated connection's frames until the reader gives it
    /// back (`LeaveDedicated`), or it fails.
    async fn dedicated_loop(&mut self, mut rd: DedicatedReader) -> Result<(), Stop> {
        let mut due: std::collections::VecDeque<Expect> = std::collections::VecDeque::new();
        let mut monitor = false;
        let mut subs = resubscribe::Subscriptions::default();
        let mut addr = rd.addr.clone();
        let mut retired = rd.retired.clone();
        let mut topology = self.shared.cluster.as_ref().map(|c| c.topology_reads());
        // Cluster mode: shard channels on other nodes (`shard_links.rs`).
        let mut links = LinkFrames::default();
        let pubsub_limit = self.shared.server.load().client_output_buffer_limit.pubsub;
        loop {
            // A subscriber under a pubsub limit is not waited for: its
            // messages are read on and held (up to the limit) while it does
            // not read, and written as its socket takes them.
            let buffering = !monitor && subs.any() && !pubsub_limit.is_unlimited();
            // Forward every complete frame already buffered.
            loop {
                let (frame, from_link) = match links.pending.pop_front() {
                    Some(frame) => (frame, true),
                    None => match frame_len(&rd.buf) {
                        Ok(Some(len)) => (rd.buf.split_to(len).freeze(), false),
                        Ok(None) => break,
                        Err(_) => {
                            return self
                                .dedicated_failed(&addr, &mut due, "malformed reply from backend")
                                .await
                        }
                    },
                };
                if is_out_of_band(&frame, monitor, from_link || subs.any()) {
                    // A redir-broken notice names strata's id for the target.
                    let frame = self.info.tracking.redir_broken(frame);
                    self.out.extend_from_slice(&frame);
                    continue;
                }
                let shard_unsubscribe = is_slot_moved(&frame);
                if shard_unsubscribe
                    && due.is_empty()
                    && self.info.shard_unsubscribes_due() == 0
                    && from_link
                {
                    // A link's channel moved with its slot: the client
                    // hears it as from Redis Cluster.
                    links.observe(&frame);
                    let frame = links.with_total(frame, subs.shard_len(), true);
                    self.out.extend_from_slice(&frame);
                    continue;
                }
                if shard_unsubscribe && due.is_empty() && self.info.shard_unsubscribes_due() == 0 {
                    // Not the answer to a SUNSUBSCRIBE of the client's (its
                    // entry may still be in the queue): the shard channels'
                    // slot moved. Follow it.
                    if self.resubscribe(&mut rd, &subs).await {
                        addr = rd.addr.clone();
                        retired = rd.retired.clone();
                        continue;
                    }
                    return self
                        .dedicated_failed(
                            &addr,
                            &mut due,
                            "shard channels moved; resubscribing failed",
                        )
                        .await;
                }
                // The reader queues each Expect before it writes the command,
                // so the entry for this reply is in the queue: take entries
                // (writing local replies queued before it) until it is.
                while due.is_empty() {
                    match self.rx.recv().await {
                        Some(Pending::Expect(e)) => due.push_back(e),
                        Some(Pending::Ready(bytes)) => self.out.extend_from_slice(&bytes),
                        Some(Pending::Barrier(done)) => drop(done.send(())),
                        Some(Pending::Wake) => {}
                        Some(Pending::Close) | None => {
                            self.flush().await?;
                            return Err(Stop::Done);
                        }
                        Some(_) => {
                            return self
                                .dedicated_failed(&addr, &mut due, "unexpected reply from backend")
                                .await;
                        }
                    }
                }
                let Some(front) = due.front_mut() else {
                    continue;
                };
                if shard_unsubscribe {
                    self.info.shard_unsubscribe_answered();
                }
                let frame = match front.redirect.take() {
                    Some(r) if classify(&frame) != Redirect::Other => {
                        self.follow_script(&r, &addr, rd.proto, rd.user.as_deref(), frame)
                            .await?
                    }
                    _ => frame,
                };
                if from_link {
                    links.observe(&frame);
                } else {
                    subs.observe(&frame);
                }
                let frame = links.with_total(frame, subs.shard_len(), from_link);
                if front.frames == 1 && front.post != Post::None {
                    let post = std::mem::replace(&mut front.post, Post::None);
                    self.write_reply(frame, post);
                } else {
                    self.out.extend_from_slice(&frame);
                }
                front.frames -= 1;
                if front.frames == 0 {
                    if let Some(done) = due.pop_front() {
                        done.timing.record();
                        if done.monitor {
                            monitor = true;
                        }
                    }
                }
            }
            if buffering {
                self.check_limit(&pubsub_limit, "pubsub")?;
            } else if self.out.len() >= FLUSH_BYTES || (due.is_empty() && self.rx.is_empty()) {
                self.flush().await?;
            }
            let soft = buffering
                .then(|| self.limit.soft_deadline(&pubsub_limit))
                .flatten()
                .map(tokio::time::Instant::from_std);
            if rd.buf.capacity() - rd.buf.len() < 4096 {
                rd.buf.reserve(16 * 1024);
            }
            if let Some(front) = due.front_mut() {
                // Replies are due: read (no new entries until they are in).
                // The oldest entry's clock starts when it becomes the oldest.
                if front.deadline.is_none() {
                    front.deadline = front.timeout.map(|t| tokio::time::Instant::now() + t);
                }
                let deadline = front.deadline;
                if !buffering && !self.out.is_empty() {
                    self.flush().await?;
                }
                tokio::select! {
                    r = write_some(&mut self.wr, &self.out), if buffering && (!self.out.is_empty() || self.wr.has_unsent()) => {
                        self.wrote(r)?;
                    }
                    () = sleep_until_opt(soft), if soft.is_some() => {}
                    // A blocking command (no deadline) whose client left:
                    // stop, and the connection, still blocked in Redis, is
                    // closed (not pooled), so Redis unblocks it without
                    // popping an element for nobody.
                    () = hung_up(&mut self.departure), if deadline.is_none() => {
                        return Err(Stop::ClientGone);
                    }
                    r = rd.rd.read_buf(&mut rd.buf) => match r {
                        Ok(0) | Err(_) => return self.dedicated_failed(&addr, &mut due, "backend closed the connection").await,
                        Ok(_) => {}
                    },
                    _ = sleep_until_opt(deadline) => {
                        if rd.unbounded_at.load(std::sync::atomic::Ordering::Relaxed) > front.seq {
                            // May be held behind a later script or blocking
                            // command (see `unbounded_at`): wait as a direct
                            // client would.
                            front.timeout = None;
                            front.deadline = None;
                            continue;
                        }
                        self.shared.metrics.error(ErrorKind::BackendTimeout);
                        return self.dedicated_failed(&addr, &mut due, "backend timeout").await;
                    }
                    reason = retired_reason(&mut retired) => {
                        return self.dedicated_failed(&addr, &mut due, &reason).await;
                    }
                    // Read even before a redirect names this client: a
                    // `Pending::Wake` is not read while replies are due
                    // (a BLPOP may block for long).
                    Some(push) = self.inbox.recv() => self.out.extend_from_slice(&push),
                    event = next_event(&mut rd.links) => match event {
                        Ok(frame) => links.pending.push_back(frame),
                        Err(reason) => return self.dedicated_failed(&addr, &mut due, &reason).await,
                    },
                }
                continue;
            }
            // Nothing due: take the next entry, and forward pub/sub messages meanwhile.
            tokio::select! {
                biased;
                r = write_some(&mut self.wr, &self.out), if buffering && (!self.out.is_empty() || self.wr.has_unsent()) => {
                    self.wrote(r)?;
                }
                () = sleep_until_opt(soft), if soft.is_some() => {}
                item = self.rx.recv() => match item {
                    None => return Err(Stop::Done),
                    Some(Pending::Expect(e)) => due.push_back(e),
                    Some(Pending::Ready(bytes)) => self.out.extend_from_slice(&bytes),
                    Some(Pending::Barrier(done)) => drop(done.send(())),
                    Some(Pending::LeaveDedicated(ret)) => {
                        let super::pending::DedicatedReturn {
                            wr,
                            mut conn,
                            links,
                            reset,
                        } = *ret;
                        // Their readers stop with the receiver, then the
                        // links close.
                        drop(rd.links.take());
                        drop(links);
                        self.info.forget_dedicated_on(conn.backend_id);
                        match rd.rd.reunite(wr) {
                            Ok(stream) => {
                                conn.stream = Some(stream);
                                conn.buf = rd.buf;
                                if reset {
                                    self.shared.backend.release(conn);
                                } else {
                                    drop(conn); // back to the pool as it is
                                }
                            }
                            Err(_) => drop(conn),
                        }
                        return Ok(());
                    }
                    Some(Pending::Close) => {
                        self.flush().await?;
                        return Err(Stop::Done);
                    }
                    Some(Pending::Backend { reply, post, timing }) => {
                        // Not sent while dedicated; serve it anyway, in order.
                        timing.record();
                        match reply.await {
                            Ok(Ok(frame)) => self.write_reply(frame, post),
                            Ok(Err(e)) => self.out.extend_from_slice(&e.to_reply()),
                            Err(_) => self.out.extend_from_slice(&reply::error("ERR backend connection closed before replying")),
                        }
                    }
                    Some(Pending::EnterDedicated(_))
                    | Some(Pending::Wake)
                    | Some(Pending::Batch { .. })
                    | Some(Pending::Routed(_)) => {}
                },
                Some(push) = self.inbox.recv(), if self.info.tracking.is_target() => {
                    self.out.extend_from_slice(&push);
                }
                r = rd.rd.read_buf(&mut rd.buf) => match r {
                    Ok(0) | Err(_) => {
                        if !monitor && subs.any() && self.resubscribe(&mut rd, &subs).await {
                            addr = rd.addr.clone();
                            retired = rd.retired.clone();
                            continue;
                        }
                        return self.dedicated_failed(&addr, &mut due, "backend closed the connection").await;
                    }
                    Ok(_) => {}
                },
                reason = retired_reason(&mut retired) => {
                    if !monitor && subs.any() && self.resubscribe(&mut rd, &subs).await {
                        addr = rd.addr.clone();
                        retired = rd.retired.clone();
                        continue;
                    }
                    return self.dedicated_failed(&addr, &mut due, &reason).await;
                }
                // Slot 0 moved: subscribers follow strata's pub/sub node,
                // where PUBLISH now goes.
                () = resubscribe::pubsub_node_moved(self.shared.cluster.as_deref(), &mut topology, &addr),
                    if !monitor && subs.on_pubsub_node() => {
                    if self.resubscribe(&mut rd, &subs).await {
                        addr = rd.addr.clone();
                        retired = rd.retired.clone();
                        continue;
                    }
                    return self.dedicated_failed(&addr, &mut due, "pub/sub node moved; resubscribing failed").await;
                }
                event = next_event(&mut rd.links) => match event {
                    Ok(frame) => links.pending.push_back(frame),
                    Err(reason) => return self.dedicated_failed(&addr, &mut due, &reason).await,
                },
            }
        }
    }

    /// Bytes the client's socket took from the front of `out`.
    fn wrote(&mut self, r: std::io::Result<usize>) -> Result<(), Stop> {
        let n = r.map_err(|_| Stop::ClientGone)?;
        self.shared.metrics.bytes_out(n as u64);
        self.out.advance(n);
        Ok(())
    }

    /// Cluster mode: a script call's reply on the client's own connection
    /// is a redirect (its slot moves): followed as on the routed path, to
    /// the new owner's shared connection, once what is written so far has
    /// gone out.
    async fn follow_script(
        &mut self,
        r: &Redirectable,
        addr: &str,
        proto: crate::protocol::Protocol,
        user: Option<&crate::backend::users::Credentials>,
        frame: Bytes,
    ) -> Result<Bytes, Stop> {
        let Some(cluster) = self.shared.cluster.clone() else {
            return Ok(frame);
        };
        self.flush().await?;
        let resend = crate::backend::cluster::Resend {
            client_id: self.info.id,
            proto,
            request: &r.request,
            slot: r.slot,
            read_only: r.read_only,
            user,
        };
        Ok(cluster.follow(resend, addr.to_string(), Ok(frame)).await)
    }

    /// The dedicated connection failed: every reply still due gets an error,
    /// and the client is disconnected, since its server-side state (MULTI,
    /// subscriptions, …) is gone and cannot be rebuilt silently.
    async fn dedicated_failed(
        &mut self,
        addr: &str,
        due: &mut std::collections::VecDeque<Expect>,
        why: &str,
    ) -> Result<(), Stop> {
        self.info.set_dedicated_on(None);
        self.shared.metrics.error(ErrorKind::BackendClosed);
        let text = format!("ERR backend connection lost: {addr} ({why})");
        for e in due.drain(..) {
            for _ in 0..e.frames {
                self.out.extend_from_slice(&reply::error(&text));
            }
        }
        self.flush().await?;
        Err(Stop::Done)
    }
}

/// An unsolicited `sunsubscribe`: Redis Cluster drops a client's shard
/// channels when their slot moves to another node.
/// A `sunsubscribe` confirmation (asked for, or sent unasked by Redis when
/// a shard channel's slot moved). Runs on every reply frame of a dedicated
/// connection, so a prefix check rules out the rest without parsing.
fn is_slot_moved(frame: &[u8]) -> bool {
    let kind = frame.get(2..).unwrap_or_default();
    matches!(frame.first(), Some(b'*' | b'>'))
        && kind.starts_with(b"\r\n$12\r\nsunsubscribe\r\n")
        && matches!(
            resubscribe::confirmation(frame),
            Some((b"sunsubscribe", _, _))
        )
}

/// True for frames that answer no command: pub/sub messages, tracking
/// invalidations and redir-broken notices, and MONITOR output.
fn is_out_of_band(frame: &[u8], monitor: bool, subscribed: bool) -> bool {
    match frame.first() {
        Some(b'>') => {
            let kind = aggregate_elements(frame)
                .and_then(|el| el.first().cloned())
                .and_then(|r| string_payload(&frame[r]).map(|s| s.to_vec()));
            matches!(
                kind.as_deref(),
                Some(b"message")
                    | Some(b"pmessage")
                    | Some(b"smessage")
                    | Some(b"invalidate")
                    | Some(b"tracking-redir-broken")
            )
        }
        Some(b'*') if subscribed => {
            let kind = aggregate_elements(frame)
                .and_then(|el| el.first().cloned())
                .and_then(|r| string_payload(&frame[r]).map(|s| s.to_vec()));
            matches!(
                kind.as_deref(),
                Some(b"message") | Some(b"pmessage") | Some(b"smessage")
            )
        }
        Some(b'+') if monitor => frame.get(1).is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// Resolves once the client has closed its side (or was killed).
async fn hung_up(departure: &mut watch::Receiver<Departure>) {
    if departure
        .wait_for(|d| *d != Departure::Present)
        .await
        .is_err()
    {
        std::future::pending::<()>().await;
    }
}

/// Writes what the socket takes of `out`, waiting until it takes some;
/// over TLS, what an earlier write left encrypted but unsent goes first
/// (`out` may then be empty: `Ok(0)` once that is sent). Cancel-safe: a
/// write the stream accepts completes in the same poll, so bytes are
/// never taken and then forgotten.
async fn write_some(wr: &mut WriteHalf, out: &[u8]) -> std::io::Result<usize> {
    use std::pin::Pin;
    use std::task::{ready, Poll};
    use tokio::io::AsyncWrite;
    std::future::poll_fn(|cx| {
        ready!(Pin::new(&mut *wr).poll_flush(cx))?;
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        Poll::Ready(match ready!(Pin::new(&mut *wr).poll_write(cx, out)) {
            Ok(0) => Err(std::io::ErrorKind::WriteZero.into()),
            r => r,
        })
    })
    .await
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot dropped unanswered before the writer reached it is an
    /// error reply, not a second wait on a spent receiver (which panicked
    /// the writer and closed the client's connection).
    #[test]
    fn a_slot_dropped_unanswered_is_ready_as_unanswered() {
        let (tx, mut rx) = tokio::sync::oneshot::channel::<crate::backend::mux::MuxReply>();
        assert!(reply_if_ready(&mut rx).is_none());
        drop(tx);
        assert_eq!(
            reply_if_ready(&mut rx).map(|r| r.err()),
            Some(Some(Unanswered))
        );

        let (tx, mut rx) = tokio::sync::oneshot::channel::<crate::backend::mux::MuxReply>();
        assert!(tx.send(Ok(Bytes::from_static(b"+OK\r\n"))).is_ok());
        let ready = reply_if_ready(&mut rx).map(|r| r.ok().and_then(Result::ok));
        assert_eq!(ready, Some(Some(Bytes::from_static(b"+OK\r\n"))));
    }

    #[test]
    fn sunsubscribe_confirmations_are_recognised() {
        assert!(is_slot_moved(
            b"*3\r\n$12\r\nsunsubscribe\r\n$2\r\ns1\r\n:0\r\n"
        ));
        assert!(is_slot_moved(
            b">3\r\n$12\r\nsunsubscribe\r\n$2\r\ns1\r\n:0\r\n"
        ));
        assert!(!is_slot_moved(
            b"*3\r\n$11\r\nunsubscribe\r\n$2\r\ns1\r\n:0\r\n"
        ));
        assert!(!is_slot_moved(
            b"*3\r\n$10\r\nssubscribe\r\n$2\r\ns1\r\n:1\r\n"
        ));
        assert!(!is_slot_moved(b"$12\r\nsunsubscribe\r\n"));
        assert!(!is_slot_moved(b"+OK\r\n"));
        assert!(!is_slot_moved(b""));
    }

    #[test]
    fn out_of_band_frames() {
        assert!(is_out_of_band(
            b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n",
            false,
            false
        ));
        assert!(!is_out_of_band(
            b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
            false,
            true
        ));
        assert!(is_out_of_band(
            b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n",
            false,
            true
        ));
        // A BLPOP reply on a key named "message" is a reply, not a message.
        assert!(!is_out_of_band(
            b"*2\r\n$7\r\nmessage\r\n$1\r\nx\r\n",
            false,
            false
        ));
        assert!(is_out_of_band(
            b"+1700000000.1 [0 127.0.0.1:1] \"get\"\r\n",
            true,
            false
        ));
        assert!(!is_out_of_band(b"+OK\r\n", true, false));
    }
}
