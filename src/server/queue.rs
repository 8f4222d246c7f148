//! A client's reply queue: the session's reader pushes one [`Pending`]
//! entry per request (or batch), in request order; the writer takes them.
//!
//! Bounded in *commands*, not entries (a batch holds many): the reader
//! waits for room before it pushes, the room comes back as the writer
//! takes entries, so at most `max_inflight_per_client` commands wait per
//! client and a client that pipelines faster than its replies drain stops
//! being read (backpressure to its TCP window, and no one else's).
//!
//! It replaces a tokio `mpsc` channel and a `Semaphore`, which are built
//! for many senders on many threads: a push and a pop there cost several
//! atomic read-modify-writes, a block list and a waiter list each. Here one
//! session pushes and one writer pops, so one uncontended mutex per push
//! and per pop does it, and a side is woken only when it is parked: the
//! writer when an entry comes, the reader when room comes back or the
//! writer is gone. At `-P 1` this took about a sixth of strata's
//! instructions per request (docs/PERFORMANCE.md).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use super::pending::Pending;

/// The session's side: pushes entries.
#[derive(Debug)]
pub struct QueueTx {
    inner: Arc<Inner>,
}

/// A handle that does not keep the queue open: `Pending::Wake` from a
/// CLIENT TRACKING redirect's listener.
#[derive(Debug, Clone)]
pub struct WeakQueueTx {
    inner: Weak<Inner>,
}

/// The writer's side: takes entries.
#[derive(Debug)]
pub struct QueueRx {
    inner: Arc<Inner>,
}

/// Why [`QueueRx::try_recv`] gave nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing queued yet.
    Empty,
    /// Nothing queued, and the session is gone: nothing will come.
    Disconnected,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// `State::rx_gone`, readable without the lock (see [`Closed`]).
    rx_gone: std::sync::atomic::AtomicBool,
    /// Most commands in flight (see the module doc).
    max: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Entries, each with the number of commands it stands for.
    entries: VecDeque<(Pending, usize)>,
    /// Commands pushed and not yet taken.
    inflight: usize,
    /// The writer, parked for an entry.
    rx_waker: Option<Waker>,
    /// The reader, parked for room.
    room_waker: Option<Waker>,
    /// The reader, parked until the writer is gone.
    closed_waker: Option<Waker>,
    rx_gone: bool,
    tx_gone: bool,
}

/// A new queue holding at most `max` commands in flight.
pub fn channel(max: usize) -> (QueueTx, QueueRx) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State::default()),
        rx_gone: Default::default(),
        max: max.max(1),
    });
    (
        QueueTx {
            inner: inner.clone(),
        },
        QueueRx { inner },
    )
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the queue's state whole
        // (every update is a push, a pop or a flag): keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Stores the task's waker in `slot`, cloning only when it changed.
fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

impl QueueTx {
    /// Pushes `entry`, standing for `commands` commands, once they fit in
    /// the bound (an entry always fits in an empty queue). False when the
    /// writer is gone: the entry is dropped.
    pub fn send(&self, entry: Pending, commands: usize) -> Send<'_> {
        Send {
            inner: &self.inner,
            entry: Some(entry),
            commands,
        }
    }

    /// Waits until `commands` more fit, without pushing anything: the
    /// session takes room before it sends a batch to the backend, so a
    /// client over its bound waits here and not at the backend. Only this
    /// sender uses room, so it is still there for the `send` that follows.
    pub fn wait_room(&self, commands: usize) -> Send<'_> {
        Send {
            inner: &self.inner,
            entry: None,
            commands,
        }
    }

    /// Resolves once the writer is gone. Holds the queue, not the sender:
    /// it does not keep the writer waiting for more.
    pub fn closed(&self) -> Closed {
        Closed {
            inner: self.inner.clone(),
            stored: false,
        }
    }

    /// A handle for pushing `Pending::Wake` without keeping the queue open.
    pub fn downgrade(&self) -> WeakQueueTx {
        WeakQueueTx {
            inner: Arc::downgrade(&self.inner),
        }
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.inner.lock();
            state.tx_gone = true;
            state.rx_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl WeakQueueTx {
    /// Commands queued and not yet taken by the writer (`PROXY CLIENTS`'
    /// in-flight count); 0 once the queue is gone. Takes the queue's lock:
    /// for admin reads, not the data path.
    pub fn inflight(&self) -> usize {
        self.inner
            .upgrade()
            .map_or(0, |inner| inner.lock().inflight)
    }

    /// Pushes an entry that counts no command, without waiting; false if
    /// the session or the writer is gone.
    pub fn try_send(&self, entry: Pending) -> bool {
        let Some(inner) = self.inner.upgrade() else {
            return false;
        };
        let waker = {
            let mut state = inner.lock();
            if state.rx_gone || state.tx_gone {
                return false;
            }
            state.entries.push_back((entry, 0));
            state.rx_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }
}

/// The future of [`QueueTx::send`].
#[derive(Debug)]
pub struct Send<'a> {
    inner: &'a Inner,
    entry: Option<Pending>,
    commands: usize,
}

impl Future for Send<'_> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = &mut *self;
        let waker = {
            let mut state = this.inner.lock();
            if state.rx_gone {
                drop(state);
                this.entry = None;
                return Poll::Ready(false);
            }
            if state.inflight > 0 && state.inflight + this.commands > this.inner.max {
                park(&mut state.room_waker, cx);
                return Poll::Pending;
            }
            let Some(mut entry) = this.entry.take() else {
                return Poll::Ready(true); // `wait_room`: there is room
            };
            let waker = match state.rx_waker.take() {
                // Parked on an empty queue: woken by the reply instead.
                Some(w) if state.entries.is_empty() && entry.park_writer_on_reply(&w) => None,
                other => other,
            };
            state.inflight += this.commands;
            state.entries.push_back((entry, this.commands));
            waker
        };
        if let Some(w) = waker {
            w.wake();
        }
        Poll::Ready(true)
    }
}

/// The future of [`QueueTx::closed`].
#[derive(Debug)]
pub struct Closed {
    inner: Arc<Inner>,
    /// The waker is stored: the session polls this on every read, and the
    /// slot is only emptied when the writer goes, so polled again by the
    /// same task it need not take the lock (a flag: see `halt.rs` on why
    /// not `Waker::will_wake`).
    stored: bool,
}

impl Future for Closed {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        use std::sync::atomic::Ordering;
        if self.inner.rx_gone.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if self.stored {
            return Poll::Pending;
        }
        let mut state = self.inner.lock();
        if state.rx_gone {
            return Poll::Ready(());
        }
        park(&mut state.closed_waker, cx);
        drop(state);
        self.stored = true;
        Poll::Pending
    }
}

/// Takes the front entry, giving back its room; the reader's waker if it
/// waits for that room.
fn pop(state: &mut State) -> Option<(Pending, Option<Waker>)> {
    let (entry, commands) = state.entries.pop_front()?;
    state.inflight -= commands;
    let waker = if commands > 0 {
        state.room_waker.take()
    } else {
        None
    };
    Some((entry, waker))
}

impl QueueRx {
    /// The next entry if one is queued.
    pub fn try_recv(&mut self) -> Result<Pending, TryRecvError> {
        let (entry, waker) = {
            let mut state = self.inner.lock();
            match pop(&mut state) {
                Some(taken) => taken,
                None if state.tx_gone => return Err(TryRecvError::Disconnected),
                None => return Err(TryRecvError::Empty),
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(entry)
    }

    /// The next entry, waiting for one; `None` once the session is gone
    /// and everything it queued was taken.
    pub fn recv(&mut self) -> Recv<'_> {
        Recv { rx: self }
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().entries.is_empty()
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        let (entries, room, closed) = {
            let mut state = self.inner.lock();
            state.rx_gone = true;
            self.inner
                .rx_gone
                .store(true, std::sync::atomic::Ordering::Release);
            state.inflight = 0;
            (
                std::mem::take(&mut state.entries),
                state.room_waker.take(),
                state.closed_waker.take(),
            )
        };
        // Entries may hold connections whose drop does work: not under the lock.
        drop(entries);
        for w in [room, closed].into_iter().flatten() {
            w.wake();
        }
    }
}

/// The future of [`QueueRx::recv`].
#[derive(Debug)]
pub struct Recv<'a> {
    rx: &'a mut QueueRx,
}

impl Future for Recv<'_> {
    type Output = Option<Pending>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Pending>> {
        let (entry, waker) = {
            let mut state = self.rx.inner.lock();
            match pop(&mut state) {
                Some(taken) => taken,
                None if state.tx_gone => return Poll::Ready(None),
                None => {
                    park(&mut state.rx_waker, cx);
                    return Poll::Pending;
                }
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        Poll::Ready(Some(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(n: u8) -> Pending {
        Pending::Ready(bytes::Bytes::from(vec![n]))
    }

    fn byte(p: Pending) -> u8 {
        match p {
            Pending::Ready(b) => b[0],
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn entries_come_out_in_order_and_end_after_the_sender() {
        let (tx, mut rx) = channel(8);
        assert!(tx.send(ready(1), 1).await);
        assert!(tx.send(ready(2), 3).await);
        assert_eq!(rx.try_recv().map(byte), Ok(1));
        drop(tx);
        assert_eq!(rx.recv().await.map(byte), Some(2));
        assert!(rx.recv().await.is_none());
        assert_eq!(rx.try_recv().err(), Some(TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn a_sender_over_the_bound_waits_until_the_writer_takes() {
        let (tx, mut rx) = channel(4);
        assert!(tx.send(ready(1), 3).await);
        let mut second = Box::pin(tx.send(ready(2), 2));
        assert!(futures_poll(&mut second).is_pending(), "5 commands > 4");
        assert_eq!(rx.try_recv().map(byte), Ok(1));
        assert!(second.await);
        assert_eq!(rx.try_recv().map(byte), Ok(2));
    }

    #[tokio::test]
    async fn an_entry_larger_than_the_bound_fits_an_empty_queue() {
        let (tx, mut rx) = channel(2);
        assert!(tx.send(ready(1), 5).await);
        assert_eq!(rx.try_recv().map(byte), Ok(1));
    }

    #[tokio::test]
    async fn the_writer_gone_fails_sends_and_resolves_closed() {
        let (tx, rx) = channel(1);
        assert!(tx.send(ready(1), 1).await);
        let mut waiting = Box::pin(tx.send(ready(2), 1));
        assert!(futures_poll(&mut waiting).is_pending());
        let closed = tx.closed();
        drop(rx);
        assert!(!waiting.await);
        closed.await;
        assert!(!tx.send(ready(3), 1).await);
    }

    #[tokio::test]
    async fn a_weak_sender_neither_counts_nor_keeps_the_queue_open() {
        let (tx, mut rx) = channel(1);
        let weak = tx.downgrade();
        assert!(tx.send(ready(1), 1).await);
        assert!(weak.try_send(Pending::Wake), "counts no command");
        drop(tx);
        assert!(!weak.try_send(Pending::Wake));
        assert_eq!(rx.recv().await.map(byte), Some(1));
        assert!(matches!(rx.recv().await, Some(Pending::Wake)));
        assert!(rx.recv().await.is_none());
    }

    /// Counts its wakeups.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_parked_writer_is_woken_by_the_reply_not_by_its_entry() {
        use std::sync::atomic::Ordering::SeqCst;
        let (tx, mut rx) = channel(8);
        let counter = Arc::new(Counter(Default::default()));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        // The writer parks on the empty queue.
        assert!(Pin::new(&mut rx.recv()).poll(&mut cx).is_pending());
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let batch = Pending::Batch {
            reply: reply_rx,
            count: 1,
            started: std::time::Instant::now(),
            sent: (std::time::Instant::now(), bytes::Bytes::new()),
            metrics: Vec::new(),
            plans: Vec::new(),
        };
        assert!(tx.send(batch, 1).await);
        assert_eq!(counter.0.load(SeqCst), 0, "not woken for a reply still due");
        // A later entry waits behind it: no wakeup either.
        assert!(tx.send(ready(7), 1).await);
        assert_eq!(counter.0.load(SeqCst), 0);
        let _ = reply_tx.send(Ok(bytes::Bytes::from_static(b"+OK\r\n")));
        assert_eq!(counter.0.load(SeqCst), 1, "woken by the reply");
        let Some(Pending::Batch { mut reply, .. }) = rx.try_recv().ok() else {
            panic!("the batch first");
        };
        let got = reply.try_recv().expect("answered").expect("ok");
        assert_eq!(&got[..], b"+OK\r\n");
        assert_eq!(rx.try_recv().map(byte), Ok(7));

        // A reply already there: the writer is woken at once.
        assert!(Pin::new(&mut rx.recv()).poll(&mut cx).is_pending());
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let _ = reply_tx.send(Ok(bytes::Bytes::new()));
        let answered = Pending::Backend {
            reply: reply_rx,
            post: crate::server::pending::Post::None,
            timing: crate::server::pending::Timing {
                started: std::time::Instant::now(),
                metrics: None,
            },
        };
        assert!(tx.send(answered, 1).await);
        assert_eq!(counter.0.load(SeqCst), 2);
    }

    /// Polls once with a no-op waker.
    fn futures_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(f).poll(&mut cx)
    }
}
