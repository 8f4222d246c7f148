//! `PROXY DRAIN` / `PROXY UNDRAIN`: what SIGTERM does to the listener and
//! to readiness, without exiting and without halting the clients.
//!
//! While draining, the accept loop (`server/listener.rs`) closes each new
//! connection as it accepts it, and `/health/ready` answers 503, so a load
//! balancer or Kubernetes takes strata out of rotation; the clients
//! already connected are served until they leave. UNDRAIN undoes both.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The shared draining flag (cloning shares it).
#[derive(Debug, Clone, Default)]
pub struct Drain(Arc<AtomicBool>);

impl Drain {
    /// True while draining.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Starts (`true`) or ends draining; returns whether it changed.
    pub fn set(&self, on: bool) -> bool {
        self.0.swap(on, Ordering::Relaxed) != on
    }
}
