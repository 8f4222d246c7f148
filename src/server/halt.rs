//! A one-way stop signal for one client's session task: CLIENT KILL, or
//! strata shutting down.
//!
//! The session task waits for it on every read (and, for a kill, wherever
//! else it waits), so polling it again must cost next to nothing: an
//! atomic load, and the task's waker stored under a lock only when it
//! changed. A tokio `watch` or `Notify` made and dropped a waiter per read
//! instead (about 700 instructions per request at `-P 1`,
//! docs/PERFORMANCE.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// Why a session stops, in increasing order of urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum HaltReason {
    /// Not halted.
    None = 0,
    /// strata is shutting down: stop reading, finish what is owed.
    Shutdown = 1,
    /// CLIENT KILL: stop at once.
    Killed = 2,
}

/// The signal. Only the session's own task waits on it: one waker slot
/// serves all its waits, and a wait that stored the task's waker once need
/// not store it again.
#[derive(Debug, Default)]
pub struct Halt {
    reason: AtomicU8,
    /// The session task's waker, kept (not taken) when fired: the signal
    /// fires at most twice, and each of the task's waits must still find it.
    waker: Mutex<Option<Waker>>,
}

impl Halt {
    /// Raises the reason to `reason` (never lowers it) and wakes the session.
    pub fn fire(&self, reason: HaltReason) {
        self.reason.fetch_max(reason as u8, Ordering::AcqRel);
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The reason so far.
    pub fn reason(&self) -> HaltReason {
        match self.reason.load(Ordering::Acquire) {
            0 => HaltReason::None,
            1 => HaltReason::Shutdown,
            _ => HaltReason::Killed,
        }
    }

    /// Resolves once the reason is at least `at_least`.
    pub fn wait(&self, at_least: HaltReason) -> HaltWait<'_> {
        HaltWait {
            halt: self,
            at_least,
            stored: false,
        }
    }
}

/// The future of [`Halt::wait`].
#[derive(Debug)]
pub struct HaltWait<'a> {
    halt: &'a Halt,
    at_least: HaltReason,
    /// This future stored its task's waker: polled again (by the same task:
    /// only the session's own task waits), it need not take the lock, as
    /// the signal keeps what it was given. A flag, not `Waker::will_wake`:
    /// callgrind showed every poll taking the lock and cloning, so the
    /// comparison with the stored clone failed (a clone of tokio's waker
    /// can carry another copy of its vtable).
    stored: bool,
}

impl Future for HaltWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.halt.reason() >= self.at_least {
            return Poll::Ready(());
        }
        if self.stored {
            return Poll::Pending;
        }
        {
            let mut slot = self.halt.waker.lock().unwrap_or_else(|e| e.into_inner());
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        }
        self.stored = true;
        // Fired between the check and the store: seen now.
        if self.halt.reason() >= self.at_least {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kill_wakes_both_waits_and_a_shutdown_only_the_first() {
        let halt = std::sync::Arc::new(Halt::default());
        let mut shutdown = Box::pin(halt.wait(HaltReason::Shutdown));
        let mut killed = Box::pin(halt.wait(HaltReason::Killed));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(shutdown.as_mut().poll(&mut cx).is_pending());
        assert!(killed.as_mut().poll(&mut cx).is_pending());
        halt.fire(HaltReason::Shutdown);
        assert!(shutdown.as_mut().poll(&mut cx).is_ready());
        assert!(killed.as_mut().poll(&mut cx).is_pending());
        halt.fire(HaltReason::Killed);
        halt.fire(HaltReason::Shutdown); // never lowers it
        assert!(killed.as_mut().poll(&mut cx).is_ready());
        assert_eq!(halt.reason(), HaltReason::Killed);
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken() {
        let halt = std::sync::Arc::new(Halt::default());
        let h = halt.clone();
        let waiter = tokio::spawn(async move { h.wait(HaltReason::Killed).await });
        tokio::task::yield_now().await;
        halt.fire(HaltReason::Killed);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .expect("joined");
    }
}
