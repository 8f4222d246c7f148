//! What clients hand a multiplexed connection: request bytes to write and
//! reply slots to fill, in one order, behind one lock.
//!
//! A session appends its batch's bytes here itself, and pushes its reply
//! slot with them, under the same lock: the order of the bytes is the
//! order of the slots, so FIFO matching of replies is exact. The
//! connection's task swaps the bytes out (double buffering: no allocation
//! in the steady state) and writes them; its reader takes the slots as it
//! frames replies. Before this, a request was a channel message that the
//! task copied into its write buffer, and each batch's slot a second
//! channel message from the task's writer half to its reader half: two
//! many-sender channels per request batch, where one uncontended lock does
//! (docs/PERFORMANCE.md).
//!
//! Frames of [`DIRECT_WRITE_BYTES`] or more are kept as they are (a
//! reference, not a copy) and written in their place in the order.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::MuxReply;
use crate::backend::BackendError;

/// Frames this large are queued by reference instead of copied.
pub(super) const DIRECT_WRITE_BYTES: usize = 16 * 1024;
/// Bytes queued (not yet written) before senders wait: the backend is
/// slower than its clients. Each client is bounded on its own too
/// (`max_inflight_per_client`); this bounds the connection.
const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;

/// A reply slot waiting for its frames.
pub(super) struct Slot {
    pub reply: oneshot::Sender<MuxReply>,
    /// Reply frames still due for this batch.
    pub remaining: usize,
    /// Set by the reader when it takes the slot (see `take_slots`).
    pub deadline: Option<Instant>,
}

/// Whether requests are taken, and if not, what a sender is told.
#[derive(Debug, Clone)]
pub(super) enum Accepting {
    /// Connected, or connecting: requests queue.
    Yes,
    /// Down between attempts: `Unavailable` at once.
    Down(String),
    /// Retired (failover): `ConnectionLost` at once.
    Retired(String),
}

struct Queue {
    /// Whole large frames, and the small bytes before them, in order;
    /// `tail` (the newest small bytes) goes after all of them.
    pieces: VecDeque<Bytes>,
    tail: BytesMut,
    queued_bytes: usize,
    /// Batches pushed since the writer last took the bytes.
    pushed: usize,
    slots: VecDeque<Slot>,
    /// The connection task's writer, parked for bytes.
    writer: Option<Waker>,
    /// The connection task's reader, parked with nothing in flight: a new
    /// slot must wake it, so it arms that slot's timeout.
    reader: Option<Waker>,
    /// Every handle dropped: the task is to stop.
    closed: bool,
    room_waiters: usize,
    accepting: Accepting,
}

/// The shared part of a multiplexed connection.
pub(super) struct Outbox {
    queue: Mutex<Queue>,
    /// Senders waiting for room (rare: see [`MAX_QUEUED_BYTES`]).
    room: tokio::sync::Notify,
    pub addr: String,
    /// Batches taken by the reader and not yet answered (`PROXY BACKENDS`):
    /// a plain store by the reader when its queue changes, read rarely.
    pub in_flight: std::sync::atomic::AtomicUsize,
}

impl Outbox {
    pub fn new(addr: String) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue {
                pieces: VecDeque::new(),
                tail: BytesMut::new(),
                queued_bytes: 0,
                pushed: 0,
                slots: VecDeque::new(),
                writer: None,
                reader: None,
                closed: false,
                room_waiters: 0,
                accepting: Accepting::Yes,
            }),
            room: tokio::sync::Notify::new(),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            addr,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every update under the lock leaves the queue whole: go on after
        // a panic elsewhere.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `count` commands (`frames`, back to back); the receiver
    /// yields their replies, all together.
    pub async fn send(&self, frames: Bytes, count: usize) -> oneshot::Receiver<MuxReply> {
        let (reply, rx) = oneshot::channel();
        if count == 0 {
            let _ = reply.send(Ok(Bytes::new()));
            return rx;
        }
        let mut slot = Some(reply);
        if self.try_push(&frames, count, &mut slot).is_ok() {
            return rx;
        }
        // Over the bound (rare): wait for the writer to take the bytes,
        // registered before looking again so no wakeup is missed.
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push(&frames, count, &mut slot) {
                Ok(()) => return rx,
                Err(()) => room.await,
            }
        }
    }

    /// Pushes the frames and their slot unless the queue is over its
    /// bound (`Err`: wait for room); answers at once when not accepting.
    fn try_push(
        &self,
        frames: &Bytes,
        count: usize,
        slot: &mut Option<oneshot::Sender<MuxReply>>,
    ) -> Result<(), ()> {
        let (writer, reader) = {
            let mut q = self.lock();
            let refused = match &q.accepting {
                Accepting::Yes => None,
                Accepting::Down(reason) => Some(BackendError::Unavailable {
                    addr: self.addr.clone(),
                    reason: reason.clone(),
                }),
                Accepting::Retired(reason) => Some(BackendError::ConnectionLost {
                    addr: self.addr.clone(),
                    reason: reason.clone(),
                }),
            };
            if let Some(e) = refused {
                drop(q);
                if let Some(reply) = slot.take() {
                    let _ = reply.send(Err(e));
                }
                return Ok(());
            }
            if q.queued_bytes > 0 && q.queued_bytes + frames.len() > MAX_QUEUED_BYTES {
                q.room_waiters += 1;
                return Err(());
            }
            let Some(reply) = slot.take() else {
                return Ok(());
            };
            if frames.len() >= DIRECT_WRITE_BYTES {
                if !q.tail.is_empty() {
                    let small = q.tail.split().freeze();
                    q.pieces.push_back(small);
                }
                q.pieces.push_back(frames.clone());
            } else {
                q.tail.extend_from_slice(frames);
            }
            q.queued_bytes += frames.len();
            q.pushed += 1;
            q.slots.push_back(Slot {
                reply,
                remaining: count,
                deadline: None,
            });
            (q.writer.take(), q.reader.take())
        };
        // One task holds both: waking it once is enough.
        if let Some(w) = writer.or(reader) {
            w.wake();
        }
        Ok(())
    }

    /// Sets what senders are told (see [`Accepting`]).
    pub fn set_accepting(&self, to: Accepting) {
        self.lock().accepting = to;
    }

    /// Every handle is gone: the task stops once it sees it.
    pub fn close(&self) {
        let writer = {
            let mut q = self.lock();
            q.closed = true;
            q.writer.take()
        };
        if let Some(w) = writer {
            w.wake();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Fails every queued request and every slot with `err` (the
    /// connection was lost, or requests came while it was not accepting).
    pub fn fail_all(&self, err: &BackendError) {
        let slots = {
            let mut q = self.lock();
            q.pieces.clear();
            q.tail.clear();
            q.queued_bytes = 0;
            q.pushed = 0;
            std::mem::take(&mut q.slots)
        };
        self.room.notify_waiters();
        for s in slots {
            let _ = s.reply.send(Err(err.clone()));
        }
    }

    /// Waits until there are bytes to write (true) or every handle is
    /// gone (false).
    pub fn wait_bytes(&self) -> WaitBytes<'_> {
        WaitBytes { outbox: self }
    }

    /// Batches pushed since the bytes were last taken.
    pub fn pushed(&self) -> usize {
        self.lock().pushed
    }

    /// Swaps the queued bytes out: `pieces` gets the large frames (and
    /// the small bytes before them), `buf` (empty, with its capacity) the
    /// newest small bytes, written after the pieces.
    pub fn take_bytes(&self, pieces: &mut VecDeque<Bytes>, buf: &mut BytesMut) {
        let mut q = self.lock();
        std::mem::swap(&mut q.pieces, pieces);
        std::mem::swap(&mut q.tail, buf);
        q.queued_bytes = 0;
        q.pushed = 0;
        let waiters = std::mem::take(&mut q.room_waiters);
        drop(q);
        if waiters > 0 {
            self.room.notify_waiters();
        }
    }

    /// Moves the slots pushed so far to the reader's `in_flight`, each
    /// with the timeout `deadline` gives (one clock read per call, not
    /// per slot).
    pub fn take_slots(&self, in_flight: &mut VecDeque<Slot>, deadline: impl Fn() -> Instant) {
        let mut q = self.lock();
        if q.slots.is_empty() {
            return;
        }
        let at = deadline();
        for mut s in q.slots.drain(..) {
            s.deadline = Some(at);
            in_flight.push_back(s);
        }
        self.in_flight
            .store(in_flight.len(), std::sync::atomic::Ordering::Relaxed);
    }
}

/// The future of [`Outbox::wait_bytes`].
pub(super) struct WaitBytes<'a> {
    outbox: &'a Outbox,
}

impl Future for WaitBytes<'_> {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut q = self.outbox.lock();
        if q.queued_bytes > 0 {
            return Poll::Ready(true);
        }
        if q.closed {
            return Poll::Ready(false);
        }
        if !q.writer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            q.writer = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Resolves once a slot is queued: polled by the reader while nothing is
/// in flight, so it learns of the slot (and arms its timeout) before any
/// reply could come.
pub(super) struct SlotQueued<'a> {
    pub outbox: &'a Outbox,
}

impl Future for SlotQueued<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.outbox.lock();
        if !q.slots.is_empty() {
            return Poll::Ready(());
        }
        if !q.reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            q.reader = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(outbox: &Outbox) -> Vec<u8> {
        let mut pieces = VecDeque::new();
        let mut buf = BytesMut::new();
        outbox.take_bytes(&mut pieces, &mut buf);
        let mut all: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        all.extend_from_slice(&buf);
        all
    }

    #[tokio::test]
    async fn bytes_keep_their_order_small_and_large_and_slots_follow_it() {
        let outbox = Outbox::new("test:1".into());
        let big = Bytes::from(vec![b'B'; DIRECT_WRITE_BYTES]);
        let _a = outbox.send(Bytes::from_static(b"a1"), 1).await;
        let _b = outbox.send(big.clone(), 1).await;
        let _c = outbox.send(Bytes::from_static(b"c3"), 2).await;
        assert_eq!(outbox.pushed(), 3);
        let mut want = b"a1".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"c3");
        assert_eq!(taken(&outbox), want);
        assert_eq!(outbox.pushed(), 0);
        let mut in_flight = VecDeque::new();
        outbox.take_slots(&mut in_flight, Instant::now);
        let due: Vec<usize> = in_flight.iter().map(|s| s.remaining).collect();
        assert_eq!(due, [1, 1, 2]);
        assert!(in_flight.iter().all(|s| s.deadline.is_some()));
    }

    #[tokio::test]
    async fn a_batch_of_no_commands_is_answered_at_once() {
        let outbox = Outbox::new("test:1".into());
        let rx = outbox.send(Bytes::new(), 0).await;
        assert_eq!(rx.await.expect("answered").expect("ok"), Bytes::new());
        assert!(taken(&outbox).is_empty());
    }

    #[tokio::test]
    async fn down_refuses_at_once_and_a_loss_fails_everything_queued() {
        let outbox = Outbox::new("test:1".into());
        let queued = outbox.send(Bytes::from_static(b"x"), 1).await;
        outbox.fail_all(&BackendError::ConnectionLost {
            addr: "test:1".into(),
            reason: "gone".into(),
        });
        let err = queued.await.expect("answered").expect_err("failed");
        assert!(err.to_string().contains("gone"), "{err}");
        assert!(taken(&outbox).is_empty(), "unsent bytes are dropped");

        outbox.set_accepting(Accepting::Down("refused".into()));
        let refused = outbox.send(Bytes::from_static(b"y"), 1).await;
        let err = refused.await.expect("answered").expect_err("refused");
        assert!(err.to_string().contains("refused"), "{err}");
        assert!(taken(&outbox).is_empty(), "nothing queued while down");
    }

    #[tokio::test]
    async fn a_sender_over_the_bound_waits_until_the_bytes_are_taken() {
        let outbox = std::sync::Arc::new(Outbox::new("test:1".into()));
        let big = Bytes::from(vec![b'x'; MAX_QUEUED_BYTES]);
        let _first = outbox.send(big.clone(), 1).await;
        let o = outbox.clone();
        // Only the send is awaited (its receiver, the reply, never comes here).
        let mut second = tokio::spawn(async move {
            let _reply = o.send(Bytes::from_static(b"y"), 1).await;
        });
        let waited = tokio::time::timeout(std::time::Duration::from_millis(100), &mut second).await;
        assert!(waited.is_err(), "queued past the bound");
        assert_eq!(taken(&outbox).len(), MAX_QUEUED_BYTES);
        tokio::time::timeout(std::time::Duration::from_secs(10), second)
            .await
            .expect("room came back")
            .expect("joined");
        assert_eq!(taken(&outbox), b"y");
    }

    #[tokio::test]
    async fn the_writer_stops_once_every_handle_is_gone() {
        let outbox = Outbox::new("test:1".into());
        outbox.close();
        assert!(!outbox.wait_bytes().await);
    }
}
