//! The handles the data path keeps: per-command counters and histograms
//! (and a session's cache of them), the open-connection guard and the
//! backend connection state gauges. Looked up once, then recording is a few
//! atomic operations.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::labels::ConnState;
use super::latency::LatencyHistogram;
use super::Metrics;

/// Counter and latency histogram of one command. Cloning copies two `Arc`s.
#[derive(Clone, Debug)]
pub struct CommandMetrics {
    pub(super) calls: Counter,
    pub(super) duration: LatencyHistogram,
}

impl CommandMetrics {
    /// Counts one call that took `elapsed`.
    ///
    /// Cost: four relaxed atomic adds (the counter, and the histogram's
    /// bucket, count and sum; see [`LatencyHistogram`]) after a search of
    /// 15 integer bounds. The ignored test `record_cost` prints it.
    pub fn record(&self, elapsed: Duration) {
        self.record_n(elapsed, 1);
    }

    /// Counts `n` calls that each took `elapsed`, for the same cost as one.
    pub fn record_n(&self, elapsed: Duration, n: u64) {
        self.calls.inc_by(n);
        self.duration.observe_n(elapsed, n);
    }
}

/// Records `elapsed` for every command of a batch (one handle per command,
/// in order): each run of the same command is recorded at once, since a
/// pipeline is mostly runs of one command.
pub fn record_batch(metrics: &[Arc<CommandMetrics>], elapsed: Duration) {
    let mut rest = metrics;
    while let Some(first) = rest.first() {
        let run = rest.iter().take_while(|m| Arc::ptr_eq(m, first)).count();
        first.record_n(elapsed, run as u64);
        rest = &rest[run..];
    }
}

/// Keeps a client connection counted in `strata_client_connections`; returned
/// by [`Metrics::client_accepted`].
#[derive(Debug)]
pub struct ClientConnection {
    pub(super) open: Gauge,
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// The state gauges of one (backend, kind); returned by
/// [`Metrics::backend_connection`].
///
/// Each connection reports its own transitions, so the gauges always add up
/// to the number of connections that exist, whatever the pool does.
#[derive(Clone, Debug)]
pub struct BackendConnMetrics {
    /// Indexed by `ConnState as usize`.
    pub(super) gauges: [Gauge; ConnState::ALL.len()],
}

impl BackendConnMetrics {
    /// Moves one connection from `from` (`None`: a new connection) to `to`.
    pub fn set_state(&self, from: Option<ConnState>, to: ConnState) {
        if from == Some(to) {
            return;
        }
        if let Some(from) = from {
            self.gauges[from as usize].dec();
        }
        self.gauges[to as usize].inc();
    }

    /// Forgets one connection that was in `from` (closed for good, not just
    /// down).
    pub fn remove(&self, from: ConnState) {
        self.gauges[from as usize].dec();
    }

    /// How many connections are in `state` right now.
    pub fn count(&self, state: ConnState) -> i64 {
        self.gauges[state as usize].get()
    }
}

/// A session's own map from command name to handles, so the per-request path
/// is one hash of a short name in memory no other core touches, instead of
/// [`Metrics::command`]'s shared locks and `Arc` clones.
///
/// It grows to at most the number of distinct commands the session uses
/// (bounded by the command table, ~40 bytes per entry).
#[derive(Debug, Default)]
pub struct CommandMetricsCache {
    pub(super) entries: HashMap<&'static str, CommandMetrics, BuildHasherDefault<NameHasher>>,
}

/// FxHash-style hasher for command names. The keys are a few bytes from our
/// own static table, not client input, so SipHash's flooding resistance
/// buys nothing and its setup cost would be paid on every command.
#[derive(Debug, Default)]
pub(super) struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        for &byte in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl CommandMetricsCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The handles for `name`, fetched from `metrics` on first use.
    pub fn get(&mut self, metrics: &Metrics, name: &'static str) -> &CommandMetrics {
        self.entries
            .entry(name)
            .or_insert_with(|| metrics.command(name))
    }

    /// Records one call of `name` that took `elapsed`.
    pub fn record(&mut self, metrics: &Metrics, name: &'static str, elapsed: Duration) {
        self.get(metrics, name).record(elapsed);
    }
}
