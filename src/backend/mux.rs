//! A multiplexed backend connection: many clients, one pipelined socket.
//!
//! One task owns the socket. Its writer half takes requests from a bounded
//! channel, coalesces whatever is queued into one write, and hands each
//! request's reply slot to the reader half in the same order. The reader
//! frames replies and completes the slots in FIFO order. Redis answers a
//! connection's commands in order, so FIFO matching is exact.
//!
//! The connection reconnects by itself with exponential backoff. While it is
//! down, requests fail at once with a clear error instead of waiting. A
//! request without a reply after the request timeout fails the whole
//! connection (the backend stopped answering), so nothing hangs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use tokio::sync::watch;

use super::breaker::Breaker;
use super::{BackendError, ConnSettings};
use crate::protocol::reply::{frame_len, is_push};
use crate::protocol::Protocol;
use crate::telemetry::{BackendConnMetrics, ConnState};

/// The replies to one request batch: the backend's reply frames, as sent
/// and back to back, or why there are none.
pub type MuxReply = Result<Bytes, BackendError>;

/// A batch of requests on its way to the backend: the commands one client
/// pipelined in one read. One channel message, one reply slot and one
/// wakeup per batch instead of per command.
#[derive(Debug)]
pub struct MuxRequest {
    /// The RESP frames, back to back, exactly as the client sent them.
    pub frames: Bytes,
    /// How many commands `frames` holds (and so how many reply frames are due).
    pub count: usize,
    /// Where the replies go, all together.
    pub reply: oneshot::Sender<MuxReply>,
}

/// Queued requests per connection before senders wait (backpressure).
const QUEUE_DEPTH: usize = 8192;
/// Coalesce at most this many bytes into one write.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Frames larger than this are written directly instead of copied.
const DIRECT_WRITE_BYTES: usize = 16 * 1024;

const STATE_CONNECTING: u8 = 0;
const STATE_UP: u8 = 1;
const STATE_DOWN: u8 = 2;

/// A handle to a multiplexed connection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MuxConnection {
    tx: mpsc::Sender<MuxRequest>,
    state: Arc<AtomicU8>,
}

/// What a multiplexed connection needs to start.
#[derive(Debug)]
pub struct MuxSetup {
    /// `host:port`.
    pub addr: String,
    /// The protocol this connection speaks (one set per protocol).
    pub proto: Protocol,
    /// Timeouts, backoff and credentials.
    pub settings: ConnSettings,
    /// State gauges.
    pub metrics: BackendConnMetrics,
    /// The node's breaker, told of every failure and success.
    pub breaker: Arc<Breaker>,
    /// Turns `Some(reason)` when the node is retired (failover).
    pub retired: watch::Receiver<Option<String>>,
    /// Poked on a `-READONLY` reply or a lost connection (see `Node::trouble`).
    pub trouble: Arc<tokio::sync::Notify>,
}

impl MuxConnection {
    /// Starts the connection task.
    pub fn spawn(setup: MuxSetup) -> MuxConnection {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let state = Arc::new(AtomicU8::new(STATE_CONNECTING));
        let task = MuxTask {
            addr: setup.addr,
            proto: setup.proto,
            settings: setup.settings,
            metrics: setup.metrics,
            breaker: setup.breaker,
            state: state.clone(),
            trouble: setup.trouble,
        };
        tokio::spawn(task.run(rx, setup.retired));
        MuxConnection { tx, state }
    }

    /// Queues `count` commands; the returned receiver yields their replies.
    pub async fn send(&self, frames: Bytes, count: usize) -> oneshot::Receiver<MuxReply> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(req)) = self
            .tx
            .send(MuxRequest {
                frames,
                count,
                reply,
            })
            .await
        {
            let _ = req.reply.send(Err(BackendError::Unavailable {
                addr: "backend".into(),
                reason: "connection retired".into(),
            }));
        }
        rx
    }

    /// True while the socket is connected.
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == STATE_UP
    }
}

/// A reply slot waiting for its frames.
struct Pending {
    reply: oneshot::Sender<MuxReply>,
    /// Reply frames still due for this batch.
    remaining: usize,
    deadline: Instant,
}

struct MuxTask {
    addr: String,
    proto: Protocol,
    settings: ConnSettings,
    metrics: BackendConnMetrics,
    breaker: Arc<Breaker>,
    state: Arc<AtomicU8>,
    trouble: Arc<tokio::sync::Notify>,
}

impl MuxTask {
    async fn run(
        self,
        mut rx: mpsc::Receiver<MuxRequest>,
        mut retired: watch::Receiver<Option<String>>,
    ) {
        let mut backoff = self.settings.reconnect_base;
        let mut last = ConnState::Connecting;
        self.metrics.set_state(None, ConnState::Connecting);
        loop {
            let connected = tokio::select! {
                c = self.connect() => c,
                reason = retired_reason(&mut retired) => {
                    self.retire(&mut rx, reason, last);
                    return;
                }
            };
            let reason = match connected {
                Ok((rd, wr)) => {
                    self.set_state(&mut last, ConnState::Up, STATE_UP);
                    self.breaker.on_success();
                    backoff = self.settings.reconnect_base;
                    tracing::info!(backend = %self.addr, proto = ?self.proto, "multiplexed connection up");
                    match self.serve(rd, wr, &mut rx, &mut retired).await {
                        Ok(()) => {
                            self.metrics.remove(last);
                            return; // every handle dropped: shutting down
                        }
                        Err(_) if retired.borrow().is_some() => {
                            let reason = retired.borrow().clone().unwrap_or_default();
                            self.retire(&mut rx, reason, last);
                            return;
                        }
                        Err(e) => {
                            self.breaker.on_failure();
                            self.trouble.notify_one();
                            tracing::warn!(backend = %self.addr, error = %e, "multiplexed connection lost");
                            e.to_string()
                        }
                    }
                }
                Err(e) => {
                    self.breaker.on_failure();
                    self.trouble.notify_one();
                    tracing::warn!(backend = %self.addr, error = %e, "backend connect failed");
                    e.to_string()
                }
            };
            self.set_state(&mut last, ConnState::Down, STATE_DOWN);
            // Back off; meanwhile fail queued requests at once rather than
            // leaving clients to wait for a connection that may not come.
            let until = Instant::now() + backoff;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    reason = retired_reason(&mut retired) => {
                        self.retire(&mut rx, reason, last);
                        return;
                    }
                    req = rx.recv() => match req {
                        Some(req) => {
                            let _ = req.reply.send(Err(BackendError::Unavailable {
                                addr: self.addr.clone(),
                                reason: reason.clone(),
                            }));
                        }
                        None => {
                            self.metrics.remove(last);
                            return;
                        }
                    }
                }
            }
            backoff = (backoff * 2).min(self.settings.reconnect_max);
            self.set_state(&mut last, ConnState::Connecting, STATE_CONNECTING);
        }
    }

    /// The node was retired: fail everything still queued, and stop.
    fn retire(&self, rx: &mut mpsc::Receiver<MuxRequest>, reason: String, last: ConnState) {
        rx.close();
        while let Ok(req) = rx.try_recv() {
            let _ = req.reply.send(Err(BackendError::ConnectionLost {
                addr: self.addr.clone(),
                reason: reason.clone(),
            }));
        }
        self.metrics.remove(last);
        self.state.store(STATE_DOWN, Ordering::Relaxed);
        tracing::info!(backend = %self.addr, %reason, "multiplexed connection retired");
    }

    fn set_state(&self, last: &mut ConnState, to: ConnState, code: u8) {
        self.metrics.set_state(Some(*last), to);
        *last = to;
        self.state.store(code, Ordering::Relaxed);
    }

    async fn connect(&self) -> std::io::Result<(OwnedReadHalf, OwnedWriteHalf)> {
        let mut stream = super::connect_authenticated(&self.addr, &self.settings).await?;
        if self.proto == Protocol::Resp3 {
            let mut buf = BytesMut::new();
            super::handshake::call(
                &mut stream,
                &mut buf,
                &[b"HELLO", b"3"],
                self.settings.connect_timeout,
            )
            .await?;
        }
        Ok(stream.into_split())
    }

    /// Runs one connected socket until it fails (`Err`) or every handle is
    /// dropped (`Ok`). Requests still in flight when it fails get an error.
    async fn serve(
        &self,
        rd: OwnedReadHalf,
        wr: OwnedWriteHalf,
        rx: &mut mpsc::Receiver<MuxRequest>,
        retired: &mut watch::Receiver<Option<String>>,
    ) -> Result<(), BackendError> {
        let (pending_tx, mut pending_rx) = mpsc::unbounded_channel::<Pending>();
        let mut in_flight: VecDeque<Pending> = VecDeque::new();
        let result = tokio::select! {
            r = write_loop(wr, rx, pending_tx, self.settings.request_timeout) => r.map_err(|e| self.lost(e)),
            r = read_loop(rd, &mut pending_rx, &mut in_flight, &self.addr, self.settings.request_timeout, &self.breaker, &self.trouble) => r,
            reason = retired_reason(retired) => {
                Err(BackendError::ConnectionLost { addr: self.addr.clone(), reason })
            }
        };
        let err = match result {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        pending_rx.close();
        while let Ok(p) = pending_rx.try_recv() {
            in_flight.push_back(p);
        }
        for p in in_flight {
            let _ = p.reply.send(Err(err.clone()));
        }
        Err(err)
    }

    fn lost(&self, e: std::io::Error) -> BackendError {
        BackendError::ConnectionLost {
            addr: self.addr.clone(),
            reason: e.to_string(),
        }
    }
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    rx: &mut mpsc::Receiver<MuxRequest>,
    pending_tx: mpsc::UnboundedSender<Pending>,
    timeout: std::time::Duration,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(WRITE_BATCH_BYTES);
    while let Some(first) = rx.recv().await {
        if rx.is_empty() {
            // Let the other tasks that are ready (sessions with requests
            // read) queue theirs before this write: under load one write,
            // and one read on the server's side, then carries many clients'
            // requests instead of one. Idle, nothing else is ready and this
            // costs one trip through the scheduler.
            tokio::task::yield_now().await;
        }
        let deadline = Instant::now() + timeout;
        let mut next = Some(first);
        while let Some(req) = next.take() {
            // The slot goes to the reader before the bytes go out, so a reply
            // can never arrive ahead of its slot.
            if req.count == 0 {
                let _ = req.reply.send(Ok(Bytes::new()));
                next = rx.try_recv().ok();
                continue;
            }
            if pending_tx
                .send(Pending {
                    reply: req.reply,
                    remaining: req.count,
                    deadline,
                })
                .is_err()
            {
                return Ok(());
            }
            if req.frames.len() >= DIRECT_WRITE_BYTES {
                if !buf.is_empty() {
                    wr.write_all(&buf).await?;
                    buf.clear();
                }
                wr.write_all(&req.frames).await?;
            } else {
                buf.extend_from_slice(&req.frames);
            }
            if buf.len() < WRITE_BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            wr.write_all(&buf).await?;
            buf.clear();
        }
    }
    // Every handle dropped.
    Ok(())
}

async fn read_loop(
    mut rd: OwnedReadHalf,
    pending_rx: &mut mpsc::UnboundedReceiver<Pending>,
    in_flight: &mut VecDeque<Pending>,
    addr: &str,
    timeout: std::time::Duration,
    breaker: &Breaker,
    trouble: &tokio::sync::Notify,
) -> Result<(), BackendError> {
    let lost = |reason: String| BackendError::ConnectionLost {
        addr: addr.to_string(),
        reason,
    };
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Bytes of `buf` already framed for the batch at the front of `in_flight`.
    let mut scanned = 0usize;
    loop {
        loop {
            if in_flight.is_empty() {
                match pending_rx.try_recv() {
                    Ok(p) => in_flight.push_back(p),
                    Err(_) if buf.is_empty() => break,
                    Err(_) => match frame_len(&buf) {
                        Ok(Some(len)) if is_push(&buf[..len]) => {
                            // Never subscribed on a shared connection: ignore stray pushes.
                            let _ = buf.split_to(len);
                            continue;
                        }
                        Ok(Some(_)) => {
                            return Err(lost("reply without a request (protocol desync)".into()))
                        }
                        Ok(None) => break,
                        Err(e) => return Err(lost(e.to_string())),
                    },
                }
            }
            let len = match frame_len(&buf[scanned..]) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => return Err(lost(e.to_string())),
            };
            if is_push(&buf[scanned..scanned + len]) {
                if scanned != 0 {
                    // A push inside a batch's replies cannot be cut out without copying.
                    return Err(lost("unexpected push frame on a shared connection".into()));
                }
                let _ = buf.split_to(len);
                continue;
            }
            if buf[scanned..].starts_with(b"-READONLY") {
                // This "primary" is a replica now: Sentinel mode rediscovers.
                trouble.notify_one();
            }
            scanned += len;
            let Some(front) = in_flight.front_mut() else {
                break;
            };
            front.remaining -= 1;
            if front.remaining == 0 {
                if let Some(done) = in_flight.pop_front() {
                    // The batch's replies are contiguous: hand them over in one piece.
                    let replies = buf.split_to(scanned).freeze();
                    scanned = 0;
                    let _ = done.reply.send(Ok(replies));
                    breaker.on_success();
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        let deadline = in_flight.front().map(|p| p.deadline);
        tokio::select! {
            biased;
            p = pending_rx.recv() => match p {
                Some(p) => in_flight.push_back(p),
                None => return Ok(()),
            },
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => return Err(lost("backend closed the connection".into())),
                Ok(_) => {}
                Err(e) => return Err(lost(e.to_string())),
            },
            _ = sleep_until_opt(deadline) => {
                return Err(BackendError::Timeout { addr: addr.to_string(), ms: timeout.as_millis() });
            }
        }
    }
}

/// Resolves with the reason once the node is retired (never, if the
/// sender is gone without retiring it).
pub async fn retired_reason(retired: &mut watch::Receiver<Option<String>>) -> String {
    let reason = match retired.wait_for(Option::is_some).await {
        Ok(reason) => Some(reason.clone().unwrap_or_default()),
        Err(_) => None,
    };
    match reason {
        Some(r) => r,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
