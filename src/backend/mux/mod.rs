//! A multiplexed backend connection: many clients, one pipelined socket.
//!
//! Clients append their request bytes and reply slots to the connection's
//! [`outbox`] themselves, in one order. One task owns the socket: its
//! writer half swaps the queued bytes out and writes them in one `write`;
//! its reader half frames replies and completes the slots in FIFO order.
//! Redis answers a connection's commands in order, so FIFO matching is
//! exact.
//!
//! The connection reconnects by itself with exponential backoff. While it is
//! down, requests fail at once with a clear error instead of waiting. A
//! request without a reply after the request timeout fails the whole
//! connection (the backend stopped answering), so nothing hangs.

mod outbox;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::tls::{ReadHalf, WriteHalf};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
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

use outbox::{Outbox, Slot};

/// The write buffer's usual size.
const WRITE_BUF_BYTES: usize = 64 * 1024;

const STATE_CONNECTING: u8 = 0;
const STATE_UP: u8 = 1;
const STATE_DOWN: u8 = 2;

/// A handle to a multiplexed connection. Cheap to clone; the connection's
/// task stops once every handle is dropped.
#[derive(Clone)]
pub struct MuxConnection {
    outbox: Arc<Outbox>,
    state: Arc<AtomicU8>,
    _handles: Arc<Handles>,
}

impl std::fmt::Debug for MuxConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxConnection")
            .field("addr", &self.outbox.addr)
            .finish()
    }
}

/// Dropped with the last handle: tells the task to stop.
struct Handles(Arc<Outbox>);

impl Drop for Handles {
    fn drop(&mut self) {
        self.0.close();
    }
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
        let outbox = Arc::new(Outbox::new(setup.addr.clone()));
        let state = Arc::new(AtomicU8::new(STATE_CONNECTING));
        let task = MuxTask {
            addr: setup.addr,
            proto: setup.proto,
            settings: setup.settings,
            metrics: setup.metrics,
            breaker: setup.breaker,
            state: state.clone(),
            trouble: setup.trouble,
            outbox: outbox.clone(),
        };
        tokio::spawn(task.run(setup.retired));
        MuxConnection {
            _handles: Arc::new(Handles(outbox.clone())),
            outbox,
            state,
        }
    }

    /// Queues `count` commands; the returned receiver yields their replies.
    pub async fn send(&self, frames: Bytes, count: usize) -> oneshot::Receiver<MuxReply> {
        self.outbox.send(frames, count).await
    }

    /// Batches sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.outbox.in_flight.load(Ordering::Relaxed)
    }

    /// True while the socket is connected.
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == STATE_UP
    }
}

struct MuxTask {
    addr: String,
    proto: Protocol,
    settings: ConnSettings,
    metrics: BackendConnMetrics,
    breaker: Arc<Breaker>,
    state: Arc<AtomicU8>,
    trouble: Arc<tokio::sync::Notify>,
    outbox: Arc<Outbox>,
}

impl MuxTask {
    async fn run(self, mut retired: watch::Receiver<Option<String>>) {
        let mut backoff = self.settings.reconnect_base;
        let mut last = ConnState::Connecting;
        self.metrics.set_state(None, ConnState::Connecting);
        loop {
            let connected = tokio::select! {
                c = self.connect() => c,
                reason = retired_reason(&mut retired) => {
                    self.retire(reason, last);
                    return;
                }
            };
            let reason = match connected {
                Ok((rd, wr)) => {
                    self.set_state(&mut last, ConnState::Up, STATE_UP);
                    self.breaker.on_success();
                    backoff = self.settings.reconnect_base;
                    tracing::info!(backend = %self.addr, proto = ?self.proto, "multiplexed connection up");
                    match self.serve(rd, wr, &mut retired).await {
                        Ok(()) => {
                            self.metrics.remove(last);
                            return; // every handle dropped: shutting down
                        }
                        Err(_) if retired.borrow().is_some() => {
                            let reason = retired.borrow().clone().unwrap_or_default();
                            self.retire(reason, last);
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
            // Back off; meanwhile requests fail at once rather than leaving
            // clients to wait for a connection that may not come. Those
            // queued while connecting fail now.
            self.outbox
                .set_accepting(outbox::Accepting::Down(reason.clone()));
            self.outbox.fail_all(&BackendError::Unavailable {
                addr: self.addr.clone(),
                reason,
            });
            let until = Instant::now() + backoff;
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                reason = retired_reason(&mut retired) => {
                    self.retire(reason, last);
                    return;
                }
            }
            if self.outbox.is_closed() {
                self.metrics.remove(last);
                return;
            }
            backoff = (backoff * 2).min(self.settings.reconnect_max);
            self.set_state(&mut last, ConnState::Connecting, STATE_CONNECTING);
            self.outbox.set_accepting(outbox::Accepting::Yes);
        }
    }

    /// The node was retired: fail everything queued, refuse what comes,
    /// and stop.
    fn retire(&self, reason: String, last: ConnState) {
        self.outbox
            .set_accepting(outbox::Accepting::Retired(reason.clone()));
        self.outbox.fail_all(&BackendError::ConnectionLost {
            addr: self.addr.clone(),
            reason: reason.clone(),
        });
        self.metrics.remove(last);
        self.state.store(STATE_DOWN, Ordering::Relaxed);
        tracing::info!(backend = %self.addr, %reason, "multiplexed connection retired");
    }

    fn set_state(&self, last: &mut ConnState, to: ConnState, code: u8) {
        self.metrics.set_state(Some(*last), to);
        *last = to;
        self.state.store(code, Ordering::Relaxed);
    }

    async fn connect(&self) -> std::io::Result<(ReadHalf, WriteHalf)> {
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
    /// dropped (`Ok`). Requests queued or in flight when it fails get an
    /// error.
    async fn serve(
        &self,
        rd: ReadHalf,
        wr: WriteHalf,
        retired: &mut watch::Receiver<Option<String>>,
    ) -> Result<(), BackendError> {
        let mut in_flight: VecDeque<Slot> = VecDeque::new();
        let result = tokio::select! {
            r = write_loop(wr, &self.outbox) => r.map_err(|e| self.lost(e)),
            r = read_loop(rd, &self.outbox, &mut in_flight, &self.addr, self.settings.request_timeout, &self.breaker, &self.trouble) => r,
            reason = retired_reason(retired) => {
                Err(BackendError::ConnectionLost { addr: self.addr.clone(), reason })
            }
        };
        let err = match result {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        for p in in_flight {
            let _ = p.reply.send(Err(err.clone()));
        }
        self.outbox.in_flight.store(0, Ordering::Relaxed);
        self.outbox.fail_all(&err);
        Err(err)
    }

    fn lost(&self, e: std::io::Error) -> BackendError {
        BackendError::ConnectionLost {
            addr: self.addr.clone(),
            reason: e.to_string(),
        }
    }
}

/// Writes what clients queue, until every handle is dropped (`Ok`).
async fn write_loop(mut wr: WriteHalf, outbox: &Outbox) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(WRITE_BUF_BYTES);
    let mut pieces = VecDeque::new();
    while outbox.wait_bytes().await {
        if outbox.pushed() <= 1 {
            // Let the other tasks that are ready (sessions with requests
            // read) queue theirs before this write: under load one write,
            // and one read on the server's side, then carries many clients'
            // requests instead of one. Idle, nothing else is ready and this
            // costs one trip through the scheduler.
            tokio::task::yield_now().await;
        }
        outbox.take_bytes(&mut pieces, &mut buf);
        for piece in pieces.drain(..) {
            wr.write_all(&piece).await?;
        }
        if !buf.is_empty() {
            wr.write_all(&buf).await?;
        }
        // TLS: what the socket did not take yet (a no-op on plain TCP).
        wr.flush().await?;
        buf.clear();
        if buf.capacity() > 4 * WRITE_BUF_BYTES {
            // A burst grew it: do not keep that much per connection.
            buf = BytesMut::with_capacity(WRITE_BUF_BYTES);
        }
    }
    // Every handle dropped.
    Ok(())
}

async fn read_loop(
    mut rd: ReadHalf,
    outbox: &Outbox,
    in_flight: &mut VecDeque<Slot>,
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
                outbox.take_slots(in_flight, || Instant::now() + timeout);
            }
            if in_flight.is_empty() {
                if buf.is_empty() {
                    break;
                }
                match frame_len(&buf) {
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
                    outbox.in_flight.store(in_flight.len(), Ordering::Relaxed);
                    breaker.on_success();
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        // Slots queued meanwhile are taken now, so the oldest request's
        // timeout is armed before waiting.
        outbox.take_slots(in_flight, || Instant::now() + timeout);
        let deadline = in_flight.front().and_then(|p| p.deadline);
        let idle = in_flight.is_empty();
        tokio::select! {
            biased;
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => return Err(lost("backend closed the connection".into())),
                Ok(_) => {}
                Err(e) => return Err(lost(e.to_string())),
            },
            // Nothing in flight: a new request must wake this, to arm its
            // timeout (a reply to it wakes the read anyway).
            () = outbox::SlotQueued { outbox }, if idle => {}
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
