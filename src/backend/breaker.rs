//! A per-node circuit breaker: closed, open or half-open.
//!
//! While a node keeps failing (connects refused, requests timing out or
//! connections lost), sending it more work only makes clients wait for
//! errors. After `failure_threshold` consecutive failures the breaker opens
//! and requests fail at once with `ERR backend unavailable: <node> (circuit
//! open)`. After `open_ms` it lets probes through (half-open); after
//! `success_threshold` consecutive successes it closes again, and one
//! failure while half-open re-opens it.
//!
//! The hot path is one relaxed atomic load while closed.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

pub use crate::config::BreakerConfig;

/// The breaker's state, as metrics export it (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows.
    Closed = 0,
    /// Requests fail fast.
    Open = 1,
    /// Probes flow; the next outcomes decide.
    HalfOpen = 2,
}

/// One node's breaker.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: AtomicU8,
    failures: AtomicU32,
    successes: AtomicU32,
    /// When the breaker opened, in ms since `epoch`.
    opened_at_ms: AtomicU64,
    epoch: Instant,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            state: AtomicU8::new(BreakerState::Closed as u8),
            failures: AtomicU32::new(0),
            successes: AtomicU32::new(0),
            opened_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// The current state (open turns half-open once `open_ms` has passed).
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Relaxed) {
            0 => BreakerState::Closed,
            1 => {
                let opened = self.opened_at_ms.load(Ordering::Relaxed);
                if self.now_ms().saturating_sub(opened) >= self.config.open_ms {
                    let _ = self.state.compare_exchange(
                        BreakerState::Open as u8,
                        BreakerState::HalfOpen as u8,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    self.successes.store(0, Ordering::Relaxed);
                    BreakerState::HalfOpen
                } else {
                    BreakerState::Open
                }
            }
            _ => BreakerState::HalfOpen,
        }
    }

    /// True when a request may be sent.
    pub fn allow(&self) -> bool {
        self.state.load(Ordering::Relaxed) == BreakerState::Closed as u8
            || self.state() != BreakerState::Open
    }

    /// Records a success (a reply, or a connection made).
    pub fn on_success(&self) {
        match self.state.load(Ordering::Relaxed) {
            // Closed: only write when there is something to reset, so the
            // common case stays a read of a shared cache line.
            0 if self.failures.load(Ordering::Relaxed) != 0 => {
                self.failures.store(0, Ordering::Relaxed)
            }
            2 if self.successes.fetch_add(1, Ordering::Relaxed) + 1
                >= self.config.success_threshold =>
            {
                self.state
                    .store(BreakerState::Closed as u8, Ordering::Relaxed);
                self.failures.store(0, Ordering::Relaxed);
                tracing::info!("circuit closed");
            }
            _ => {}
        }
    }

    /// Records a failure (refused connect, lost connection, timeout).
    pub fn on_failure(&self) {
        match self.state() {
            BreakerState::Closed => {
                if self.failures.fetch_add(1, Ordering::Relaxed) + 1
                    >= self.config.failure_threshold
                {
                    self.open();
                }
            }
            BreakerState::HalfOpen => self.open(),
            BreakerState::Open => {}
        }
    }

    fn open(&self) {
        self.opened_at_ms.store(self.now_ms(), Ordering::Relaxed);
        self.state
            .store(BreakerState::Open as u8, Ordering::Relaxed);
        tracing::warn!("circuit opened");
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_ms: u64) -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: 3,
            success_threshold: 2,
            open_ms,
        })
    }

    #[test]
    fn opens_after_threshold_and_recovers() {
        let b = breaker(0);
        b.on_failure();
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure();
        // open_ms = 0: immediately half-open on the next look.
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.allow());
        b.on_success();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn stays_open_until_open_time() {
        let b = breaker(60_000);
        for _ in 0..3 {
            b.on_failure();
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
        b.on_success();
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn success_resets_failure_count() {
        let b = breaker(60_000);
        b.on_failure();
        b.on_failure();
        b.on_success();
        b.on_failure();
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_failure_reopens() {
        let b = breaker(0);
        for _ in 0..3 {
            b.on_failure();
        }
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.on_failure();
        assert_eq!(b.state.load(Ordering::Relaxed), BreakerState::Open as u8);
    }
}
