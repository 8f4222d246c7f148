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
    /// Direct replies (see [`QueueRx::enable_direct`]): the entry whose
    /// reply a backend connection's task writes straight to the client,
    /// with the commands it stands for. Taken before `entries`.
    armed: Option<(Pending, usize)>,
    /// That task is handling the armed entry now: the writer waits, since
    /// that reply goes out before anything queued behind it.
    direct_busy: bool,
    /// The writer is parked in [`QueueRx::recv_direct`], everything before
    /// written: an entry pushed now may be armed instead of waking it.
    direct_ok: bool,
    /// The waker that runs the direct path ([`DirectWake`]), while on.
    direct: Option<Waker>,
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
            if state.direct_ok
                && state.entries.is_empty()
                && state.armed.is_none()
                && !state.direct_busy
                && entry.direct_candidate()
            {
                // Parked with everything written: the reply goes straight
                // to the client from the task that reads it.
                if let Some(direct) = state.direct.clone() {
                    if entry.park_writer_on_reply(&direct) {
                        state.inflight += this.commands;
                        state.armed = Some((entry, this.commands));
                        return Poll::Ready(true);
                    }
                }
            }
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
    let (entry, commands) = match state.armed.take() {
        Some(armed) => armed,
        None => state.entries.pop_front()?,
    };
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
            if state.direct_busy {
                return Err(TryRecvError::Empty);
            }
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
        Recv {
            rx: self,
            direct: false,
        }
    }

    /// [`QueueRx::recv`] for a writer that has written everything before:
    /// while it is parked here, a reply batch pushed may be armed for the
    /// direct path (see [`QueueRx::enable_direct`]) instead of waking it.
    pub fn recv_direct(&mut self) -> Recv<'_> {
        Recv {
            rx: self,
            direct: true,
        }
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        let state = self.inner.lock();
        state.entries.is_empty() && state.armed.is_none() && !state.direct_busy
    }

    /// Turns direct replies on: while the writer is parked in
    /// [`QueueRx::recv_direct`] on an empty queue, a plain reply batch
    /// pushed is not handed to it but armed, and its reply slot wakes
    /// `handler` instead, in the backend connection's task that filled
    /// it. The handler writes the reply to the client there and then (at
    /// `-P 1` the writer task is then not woken at all: one task hand-off
    /// per request fewer), or gives the entry back to the writer, ahead
    /// of everything queued after it.
    pub fn enable_direct(&self, handler: Arc<dyn DirectHandler>) {
        let waker = Waker::from(Arc::new(DirectWake {
            queue: Arc::downgrade(&self.inner),
            handler,
        }));
        self.inner.lock().direct = Some(waker);
    }

    /// Turns direct replies off (the writer is about to stop).
    pub fn disable_direct(&self) {
        let waker = {
            let mut state = self.inner.lock();
            state.direct_ok = false;
            state.direct.take()
        };
        drop(waker);
    }
}

/// What the direct path made of an armed entry.
#[derive(Debug)]
pub enum Direct {
    /// The reply went to the client whole: the entry is done.
    Written,
    /// For the writer, ahead of everything queued (what the client socket
    /// did not take, an error, a reply for the slow log).
    Back(Pending),
    /// Woken before the reply came (never by tokio's oneshot, but wakers
    /// may be woken spuriously): armed again.
    NotYet(Pending),
}

/// Writes armed entries' replies (`server/direct.rs`).
pub trait DirectHandler: std::marker::Send + Sync + std::fmt::Debug + 'static {
    /// Handles the armed entry whose reply slot was just filled.
    fn handle(&self, entry: Pending) -> Direct;
}

/// The waker an armed entry's reply slot holds.
#[derive(Debug)]
struct DirectWake {
    queue: Weak<Inner>,
    handler: Arc<dyn DirectHandler>,
}

impl std::task::Wake for DirectWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Some(inner) = self.queue.upgrade() else {
            return;
        };
        let (entry, commands) = {
            let mut state = inner.lock();
            match state.armed.take() {
                Some(armed) if !state.rx_gone => {
                    state.direct_busy = true;
                    armed
                }
                // Taken by the writer (or the writer is gone): the writer
                // polls the reply itself.
                _ => return,
            }
        };
        let outcome = self.handler.handle(entry);
        let (writer, room) = {
            let mut state = inner.lock();
            state.direct_busy = false;
            let mut room = None;
            match outcome {
                Direct::Written => {
                    state.inflight -= commands;
                    if commands > 0 {
                        room = state.room_waker.take();
                    }
                }
                Direct::Back(entry) => state.entries.push_front((entry, commands)),
                Direct::NotYet(entry) => state.armed = Some((entry, commands)),
            }
            // The writer, if it came while this ran and parked behind it.
            let writer = if !state.entries.is_empty() || state.tx_gone {
                state.rx_waker.take()
            } else {
                None
            };
            (writer, room)
        };
        for w in [writer, room].into_iter().flatten() {
            w.wake();
        }
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
            state.direct_ok = false;
            if let Some(armed) = state.armed.take() {
                state.entries.push_front(armed);
            }
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
    /// Parked, the writer may have entries armed (`recv_direct`).
    direct: bool,
}

impl Future for Recv<'_> {
    type Output = Option<Pending>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Pending>> {
        let (entry, waker) = {
            let mut state = self.rx.inner.lock();
            let taken = if state.direct_busy {
                None
            } else {
                pop(&mut state)
            };
            match taken {
                Some(taken) => {
                    state.direct_ok = false;
                    taken
                }
                None if state.tx_gone && !state.direct_busy => {
                    state.direct_ok = false;
                    return Poll::Ready(None);
                }
                None => {
                    state.direct_ok = self.direct && state.direct.is_some();
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

    fn batch(reply: tokio::sync::oneshot::Receiver<crate::backend::mux::MuxReply>) -> Pending {
        Pending::Batch {
            reply,
            count: 1,
            started: std::time::Instant::now(),
            sent: (std::time::Instant::now(), bytes::Bytes::new()),
            metrics: Vec::new(),
            plans: Vec::new(),
        }
    }

    /// A direct handler that writes into a buffer, or gives every entry
    /// back (`back`).
    #[derive(Debug, Default)]
    struct Sink {
        written: Mutex<Vec<u8>>,
        back: bool,
    }

    impl DirectHandler for Sink {
        fn handle(&self, mut entry: Pending) -> Direct {
            let Pending::Batch { reply, .. } = &mut entry else {
                return Direct::Back(entry);
            };
            match reply.try_recv() {
                Ok(Ok(frames)) if !self.back => {
                    self.written
                        .lock()
                        .expect("sink")
                        .extend_from_slice(&frames);
                    Direct::Written
                }
                Ok(Ok(frames)) => Direct::Back(Pending::Ready(frames)),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => Direct::NotYet(entry),
                _ => Direct::Back(entry),
            }
        }
    }

    #[tokio::test]
    async fn a_direct_reply_is_written_without_waking_the_writer_and_gives_its_room_back() {
        use std::sync::atomic::Ordering::SeqCst;
        let (tx, mut rx) = channel(1);
        let sink = Arc::new(Sink::default());
        rx.enable_direct(sink.clone());
        let counter = Arc::new(Counter(Default::default()));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        for round in 0..3u8 {
            assert!(Pin::new(&mut rx.recv_direct()).poll(&mut cx).is_pending());
            let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
            // The bound is 1: this fits only if the last round gave its room back.
            assert!(futures_poll(&mut tx.send(batch(reply_rx), 1)).is_ready());
            let _ = reply_tx.send(Ok(bytes::Bytes::from(vec![b'a' + round])));
        }
        assert_eq!(&sink.written.lock().expect("sink")[..], b"abc");
        assert_eq!(counter.0.load(SeqCst), 0, "the writer never woke");
        assert!(rx.is_empty());
        drop(tx);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn an_entry_given_back_comes_before_what_was_queued_behind_it() {
        let (tx, mut rx) = channel(8);
        rx.enable_direct(Arc::new(Sink {
            back: true,
            ..Sink::default()
        }));
        assert!(futures_poll(&mut rx.recv_direct()).is_pending());
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        assert!(tx.send(batch(reply_rx), 1).await);
        assert!(tx.send(ready(9), 1).await);
        let _ = reply_tx.send(Ok(bytes::Bytes::from_static(b"r")));
        assert_eq!(rx.try_recv().map(byte), Ok(b'r'));
        assert_eq!(rx.try_recv().map(byte), Ok(9));
    }

    #[tokio::test]
    async fn a_writer_woken_first_takes_the_armed_entry_before_later_ones() {
        let (tx, mut rx) = channel(8);
        let sink = Arc::new(Sink::default());
        rx.enable_direct(sink.clone());
        assert!(futures_poll(&mut rx.recv_direct()).is_pending());
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        assert!(tx.send(batch(reply_rx), 1).await);
        assert!(tx.send(ready(9), 1).await);
        // The writer, woken by the second entry, takes the first one back.
        let Ok(Pending::Batch { mut reply, .. }) = rx.try_recv() else {
            panic!("the armed batch first");
        };
        let _ = reply_tx.send(Ok(bytes::Bytes::from_static(b"r")));
        assert!(
            sink.written.lock().expect("sink").is_empty(),
            "not written twice"
        );
        assert_eq!(&reply.try_recv().expect("answered").expect("ok")[..], b"r");
        assert_eq!(rx.try_recv().map(byte), Ok(9));
    }

    #[tokio::test]
    async fn nothing_is_armed_for_a_writer_parked_in_plain_recv() {
        let (tx, mut rx) = channel(8);
        let sink = Arc::new(Sink::default());
        rx.enable_direct(sink.clone());
        assert!(futures_poll(&mut rx.recv()).is_pending());
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        assert!(tx.send(batch(reply_rx), 1).await);
        let _ = reply_tx.send(Ok(bytes::Bytes::from_static(b"r")));
        assert!(sink.written.lock().expect("sink").is_empty());
        assert!(matches!(rx.try_recv(), Ok(Pending::Batch { .. })));
    }

    /// Polls once with a no-op waker.
    fn futures_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(f).poll(&mut cx)
    }
}
