//! What strata tells operators about itself: Prometheus metrics and health
//! probes.
//!
//! A sidecar is judged by whether it adds latency, drops connections or hides
//! backend failures, and none of that is visible from the application's Redis
//! client. So the proxy counts what passes through it ([`Metrics`]) and serves
//! the counts, plus liveness and readiness for the orchestrator, on a separate
//! HTTP port ([`http::serve`]).
//!
//! The registry is an ordinary value created at startup and passed down as
//! `Arc<Metrics>`, never a global: the data path gets handles when a session
//! or backend connection is created and only does atomic updates per command,
//! and tests build their own registries side by side.
//!
//! This module depends on nothing else in the crate; the server, backend and
//! admin modules depend on it.

pub mod http;
mod log;
pub mod metrics;

pub use http::{serve, HttpState, Readiness};
pub use log::{reload_log_level, set_log_reloader};
pub use metrics::{
    record_batch, BackendConnMetrics, ClientConnection, CommandMetrics, CommandMetricsCache,
    ConnKind, ConnState, ErrorKind, Metrics, RejectReason, TlsFailure,
};
