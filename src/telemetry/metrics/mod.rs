//! The process-wide metrics registry and the typed handles the data path uses.
//!
//! There is one [`Metrics`] per process. `app` creates it at startup, lets the
//! modules that own extra series register them through [`Metrics::registry_mut`],
//! and then shares it as `Arc<Metrics>`; there is no global registry, so tests
//! can build as many independent ones as they like.
//!
//! Label sets are typed structs and enums rather than string pairs, so a label
//! can't be misspelt at one call site, and a label value is never formatted on the
//! hot path. Handles are looked up when a session, a backend connection or a
//! command first shows up, and kept: after that, recording is a couple of
//! atomic operations (see [`CommandMetrics::record`] for the measured cost).
//!
//! Series (as they appear in the OpenMetrics text; counters get the `_total`
//! suffix from the encoder):
//!
//! | series | type | labels |
//! |---|---|---|
//! | `strata_commands_total` | counter | `command` |
//! | `strata_command_duration_seconds` | histogram | `command` |
//! | `strata_client_connections` | gauge | |
//! | `strata_client_connections_accepted_total` | counter | |
//! | `strata_client_connections_rejected_total` | counter | `reason` |
//! | `strata_backend_connections` | gauge | `backend`, `kind`, `state` |
//! | `strata_errors_total` | counter | `kind` |
//! | `strata_client_bytes_received_total` | counter | |
//! | `strata_client_bytes_sent_total` | counter | |
//! | `strata_build_info` | info | `version` |
//! | `strata_uptime_seconds` | gauge | |
//! | `strata_backend_breaker_state` | gauge (0 closed, 1 open, 2 half-open) | `backend` |
//! | `strata_failovers_total` | counter | |
//! | `strata_last_failover_duration_seconds` | gauge | |
//! | `strata_discovery_up` | gauge (1 ok, 0 degraded) | |
//! | `strata_transform_*` | counters, one gauge | value transforms, see `TransformCollector` |

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{
    text, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the command latency buckets, in seconds: 50µs to 2.5s in a
/// 1-2.5-5 progression (roughly ×2 per bucket).
///
/// 50µs is about the fastest a proxied round trip on loopback can be, so
/// anything below it would be an always-empty bucket; above 2.5s a command is
/// "stuck" and the `+Inf` bucket plus `_sum` says enough. The decimal bounds
/// keep `le` labels readable (`0.0025`, not `0.0025600000000000004`), and 15
/// buckets keep each command's histogram at 18 lines of exposition.
pub const COMMAND_DURATION_BUCKETS: [f64; 15] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// Why an error reply or a failed operation happened, as counted in
/// `strata_errors_total{kind=…}`.
///
/// The set is closed so that every series exists (at zero) from startup: an
/// alert on `rate(strata_errors_total{kind="backend_timeout"}[5m])` then works
/// before the first timeout ever happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A client sent bytes that are not valid RESP, or broke a protocol limit.
    Protocol,
    /// A backend did not answer in time.
    BackendTimeout,
    /// No backend could be reached (connection refused, no primary known, …).
    BackendUnavailable,
    /// A backend closed the connection while requests were in flight.
    BackendClosed,
    /// The client asked for something strata refuses to proxy.
    Unsupported,
    /// A client was turned away because `maxclients` was reached.
    MaxClients,
    /// A bug or an unexpected condition inside strata.
    Internal,
}

impl ErrorKind {
    /// Every kind, in discriminant order (`ALL[k as usize] == k`).
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Protocol,
        ErrorKind::BackendTimeout,
        ErrorKind::BackendUnavailable,
        ErrorKind::BackendClosed,
        ErrorKind::Unsupported,
        ErrorKind::MaxClients,
        ErrorKind::Internal,
    ];

    /// The label value: snake_case, stable, part of the metrics contract.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Protocol => "protocol",
            ErrorKind::BackendTimeout => "backend_timeout",
            ErrorKind::BackendUnavailable => "backend_unavailable",
            ErrorKind::BackendClosed => "backend_closed",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::MaxClients => "max_clients",
            ErrorKind::Internal => "internal",
        }
    }
}

impl EncodeLabelValue for ErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Why a client connection was refused at accept time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The configured `maxclients` was reached.
    MaxClients,
}

impl RejectReason {
    /// Every reason, in discriminant order (`ALL[r as usize] == r`).
    pub const ALL: [RejectReason; 1] = [RejectReason::MaxClients];

    /// The label value; `maxclients` matches the Redis configuration name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::MaxClients => "maxclients",
        }
    }
}

impl EncodeLabelValue for RejectReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// How a backend connection is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnKind {
    /// Shared by many clients, requests pipelined.
    Multiplexed,
    /// Owned by one client in a stateful mode (MULTI, blocking, pub/sub, …).
    Dedicated,
}

impl ConnKind {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnKind::Multiplexed => "multiplexed",
            ConnKind::Dedicated => "dedicated",
        }
    }
}

impl EncodeLabelValue for ConnKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Where a backend connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// Connected and usable.
    Up,
    /// Being (re)established: TCP connect, AUTH, HELLO, SELECT.
    Connecting,
    /// Lost and waiting for the next reconnect attempt.
    Down,
}

impl ConnState {
    /// Every state, in discriminant order (`ALL[s as usize] == s`).
    pub const ALL: [ConnState; 3] = [ConnState::Up, ConnState::Connecting, ConnState::Down];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnState::Up => "up",
            ConnState::Connecting => "connecting",
            ConnState::Down => "down",
        }
    }
}

impl EncodeLabelValue for ConnState {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// `command` label. `&'static str` on purpose: names come from the static
/// command table, so a client sending random command names cannot create
/// unbounded series (callers map unknown commands to one fixed name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CommandLabels {
    command: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RejectLabels {
    reason: RejectReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    kind: ErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
    kind: ConnKind,
    state: ConnState,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NodeLabels {
    backend: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The constructor the histogram family uses; a plain `fn` so the family type
/// can be named in a struct field.
fn command_histogram() -> Histogram {
    Histogram::new(COMMAND_DURATION_BUCKETS)
}

type CommandHistograms = Family<CommandLabels, Histogram, fn() -> Histogram>;

/// Seconds since [`Metrics::new`], computed when scraped so nothing has to
/// tick it.
#[derive(Debug)]
struct Uptime(Instant);

impl EncodeMetric for Uptime {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.0.elapsed().as_secs_f64())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// All of strata's own metrics plus the registry they are exported from.
///
/// Create once with [`Metrics::new`], add other modules' series with
/// [`Metrics::registry_mut`] while still the only owner, then share as
/// `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    commands: Family<CommandLabels, Counter>,
    command_duration: CommandHistograms,
    client_connections: Gauge,
    client_accepted: Counter,
    /// Indexed by `RejectReason as usize`; created up front.
    client_rejected: [Counter; RejectReason::ALL.len()],
    backend_connections: Family<BackendLabels, Gauge>,
    /// Indexed by `ErrorKind as usize`; created up front.
    errors: [Counter; ErrorKind::ALL.len()],
    bytes_received: Counter,
    bytes_sent: Counter,
    breaker_state: Family<NodeLabels, Gauge>,
    failovers: Counter,
    last_failover_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    discovery_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Builds the registry (prefix `strata`) with every series strata itself
    /// exports. Label sets that are known up front (error kinds, reject
    /// reasons) are created here, so they are exported as zero before the
    /// first event and recording them never takes the family's lock.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("strata");

        let commands = Family::<CommandLabels, Counter>::default();
        registry.register(
            "commands",
            "Commands handled, by command name (subcommands as container|sub)",
            commands.clone(),
        );
        let command_duration: CommandHistograms =
            Family::new_with_constructor(command_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "command_duration",
            "Time from a complete request frame to its reply being queued for the client",
            Unit::Seconds,
            command_duration.clone(),
        );

        let client_connections = Gauge::default();
        registry.register(
            "client_connections",
            "Client connections currently open",
            client_connections.clone(),
        );
        let client_accepted = Counter::default();
        registry.register(
            "client_connections_accepted",
            "Client connections accepted",
            client_accepted.clone(),
        );
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "client_connections_rejected",
            "Client connections refused at accept time, by reason",
            rejected.clone(),
        );
        let client_rejected =
            RejectReason::ALL.map(|reason| rejected.get_or_create_owned(&RejectLabels { reason }));

        let backend_connections = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_connections",
            "Backend connections, by backend address, kind and state",
            backend_connections.clone(),
        );

        let error_family = Family::<ErrorLabels, Counter>::default();
        registry.register("errors", "Errors, by kind", error_family.clone());
        let errors =
            ErrorKind::ALL.map(|kind| error_family.get_or_create_owned(&ErrorLabels { kind }));

        let bytes_received = Counter::default();
        registry.register(
            "client_bytes_received",
            "Bytes read from client connections",
            bytes_received.clone(),
        );
        let bytes_sent = Counter::default();
        registry.register(
            "client_bytes_sent",
            "Bytes written to client connections",
            bytes_sent.clone(),
        );

        registry.register(
            "build",
            "strata build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        registry.register_with_unit(
            "uptime",
            "Time since the process started",
            Unit::Seconds,
            Uptime(Instant::now()),
        );

        let breaker_state = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "backend_breaker_state",
            "Circuit breaker state per backend node: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );
        let failovers = Counter::default();
        registry.register(
            "failovers",
            "Failovers followed (the primary moved and strata moved with it)",
            failovers.clone(),
        );
        let last_failover_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "last_failover_duration",
            "Duration of the last failover followed, from the first sign of it to the new primary serving",
            Unit::Seconds,
            last_failover_seconds.clone(),
        );
        let discovery_up = Gauge::default();
        discovery_up.set(1);
        registry.register(
            "discovery_up",
            "1 while service discovery (Sentinel) answers, 0 while strata serves the last primary it knew",
            discovery_up.clone(),
        );

        Metrics {
            registry,
            breaker_state,
            failovers,
            last_failover_seconds,
            discovery_up,
            commands,
            command_duration,
            client_connections,
            client_accepted,
            client_rejected,
            backend_connections,
            errors,
            bytes_received,
            bytes_sent,
        }
    }

    /// The registry, for modules that export their own series (cluster,
    /// sentinel, transforms). Use it at startup, before the `Metrics` is put in
    /// an `Arc`; a module usually takes a sub-registry,
    /// `registry_mut().sub_registry_with_prefix("cluster")`, so its series are
    /// named `strata_cluster_*`, and keeps the handles it registered.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The handles for one command. Call this once per command per session
    /// (or let [`CommandMetricsCache`] do it), not per request: it takes the
    /// families' read locks, hashes the name twice and clones two `Arc`s, all
    /// on cache lines every core shares.
    #[must_use]
    pub fn command(&self, name: &'static str) -> CommandMetrics {
        let labels = CommandLabels { command: name };
        CommandMetrics {
            calls: self.commands.get_or_create_owned(&labels),
            duration: self.command_duration.get_or_create_owned(&labels),
        }
    }

    /// Counts an accepted client connection and returns a guard that keeps it
    /// in `strata_client_connections` until dropped, so the gauge stays right
    /// however the session ends (error, panic, shutdown).
    #[must_use = "the connection is counted as open only while the guard lives"]
    pub fn client_accepted(&self) -> ClientConnection {
        self.client_accepted.inc();
        self.client_connections.inc();
        ClientConnection {
            open: self.client_connections.clone(),
        }
    }

    /// Counts a client connection refused at accept time. This does not count
    /// an error too; the caller decides whether the refusal also produced an
    /// error reply worth counting under [`ErrorKind::MaxClients`].
    pub fn client_rejected(&self, reason: RejectReason) {
        self.client_rejected[reason as usize].inc();
    }

    /// The state gauges for one backend address and connection kind. Call it
    /// when a pool or dedicated connection for that backend is created; the
    /// returned handles are cheap to clone into each connection.
    #[must_use]
    pub fn backend_connection(&self, backend: &str, kind: ConnKind) -> BackendConnMetrics {
        let gauges = ConnState::ALL.map(|state| {
            self.backend_connections
                .get_or_create_owned(&BackendLabels {
                    backend: backend.to_owned(),
                    kind,
                    state,
                })
        });
        BackendConnMetrics { gauges }
    }

    /// Stops exporting the connection gauges of a backend that left the
    /// topology (a replaced cluster node), so node churn does not grow the
    /// exposition forever. Handles still held keep working but are no longer
    /// exported; call it only once no connection to `backend` remains.
    pub fn remove_backend(&self, backend: &str) {
        for kind in [ConnKind::Multiplexed, ConnKind::Dedicated] {
            for state in ConnState::ALL {
                self.backend_connections.remove(&BackendLabels {
                    backend: backend.to_owned(),
                    kind,
                    state,
                });
            }
        }
    }

    /// Sets a node's breaker state gauge (0 closed, 1 open, 2 half-open).
    pub fn set_breaker_state(&self, backend: &str, state: i64) {
        self.breaker_state
            .get_or_create(&NodeLabels {
                backend: backend.to_owned(),
            })
            .set(state);
    }

    /// Stops exporting the breaker state of a node that left the topology.
    pub fn remove_breaker_state(&self, backend: &str) {
        self.breaker_state.remove(&NodeLabels {
            backend: backend.to_owned(),
        });
    }

    /// Counts a failover followed and records how long it took.
    pub fn failover_followed(&self, took: Duration) {
        self.failovers.inc();
        self.last_failover_seconds.set(took.as_secs_f64());
    }

    /// Marks service discovery as answering or not.
    pub fn set_discovery_ok(&self, ok: bool) {
        self.discovery_up.set(i64::from(ok));
    }

    /// Counts one error. Every kind's counter exists from startup, so this is
    /// one atomic add.
    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].inc();
    }

    /// Counts bytes read from clients.
    pub fn bytes_in(&self, n: u64) {
        self.bytes_received.inc_by(n);
    }

    /// Counts bytes written to clients.
    pub fn bytes_out(&self, n: u64) {
        self.bytes_sent.inc_by(n);
    }

    /// The whole registry in the OpenMetrics text format, ending in `# EOF`.
    ///
    /// Encoding into a `String` fails only if a registered metric's own encode
    /// fails, which strata's never do; a module's custom metric might. When
    /// that happens this logs the error and returns an empty but valid
    /// exposition; use [`Metrics::try_encode`] to handle the failure instead
    /// (the HTTP endpoint answers 500 then).
    #[must_use]
    pub fn encode(&self) -> String {
        match self.try_encode() {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(%error, "encoding metrics failed");
                String::from("# EOF\n")
            }
        }
    }

    /// Like [`Metrics::encode`], but reports an encoding failure.
    pub fn try_encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Counter and latency histogram of one command. Cloning copies two `Arc`s.
#[derive(Clone, Debug)]
pub struct CommandMetrics {
    calls: Counter,
    duration: Histogram,
}

impl CommandMetrics {
    /// Counts one call that took `elapsed`.
    ///
    /// Cost: one atomic add for the counter plus the histogram's observe,
    /// which in prometheus-client 0.25 takes a (parking_lot) mutex for a
    /// search of 16 bounds. The ignored test `record_cost` prints it; on a
    /// busy 2-core VM, release build, it gave (ranges over three runs):
    /// this method 12-17 ns, [`CommandMetricsCache::record`] 40-75 ns,
    /// [`Metrics::command`] + record 145-235 ns, `error` + `bytes_in` ~9 ns;
    /// two threads recording the same command through their caches 75-95 ns
    /// each, the shared cache lines being the cost. Small next to a proxied
    /// round trip (tens of µs); if a profile ever says otherwise, shard per
    /// worker thread rather than drop the histogram.
    pub fn record(&self, elapsed: Duration) {
        self.calls.inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// Keeps a client connection counted in `strata_client_connections`; returned
/// by [`Metrics::client_accepted`].
#[derive(Debug)]
pub struct ClientConnection {
    open: Gauge,
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
    gauges: [Gauge; ConnState::ALL.len()],
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
    entries: HashMap<&'static str, CommandMetrics, BuildHasherDefault<NameHasher>>,
}

/// FxHash-style hasher for command names. The keys are a few bytes from our
/// own static table, not client input, so SipHash's flooding resistance
/// buys nothing and its setup cost would be paid on every command.
#[derive(Debug, Default)]
struct NameHasher(u64);

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

/// `kind` label of `strata_transform_failures_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransformFailureLabels {
    kind: &'static str,
}

/// `op` label of the transform byte counters: `seal` (a client's value
/// written under a rule) or `open` (a stored value read back).
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransformOpLabels {
    op: &'static str,
}

/// Exports the value-transform counters (`src/transform/stats.rs`, plain
/// atomics updated on the data path) when scraped, so recording them costs
/// the data path nothing beyond those atomics.
///
/// | series | type | labels |
/// |---|---|---|
/// | `strata_transform_values_total` | counter | `op` (seal, open) |
/// | `strata_transform_plain_bytes_total` | counter | `op`: bytes as the client sees them (before sealing, after opening) |
/// | `strata_transform_stored_bytes_total` | counter | `op`: bytes as Redis stores them |
/// | `strata_transform_compression_ratio` | gauge | written plain bytes / stored bytes (1 before any write) |
/// | `strata_transform_encryptions_total` | counter | |
/// | `strata_transform_plain_values_total` | counter | values without an envelope read under an encrypting rule |
/// | `strata_transform_refused_commands_total` | counter | |
/// | `strata_transform_failures_total` | counter | `kind` (auth_failed, unknown_key_id, …) |
#[derive(Debug)]
struct TransformCollector(std::sync::Arc<crate::transform::TransformStats>);

impl prometheus_client::collector::Collector for TransformCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let s = self.0.snapshot();
        let by_op = |encoder: &mut prometheus_client::encoding::DescriptorEncoder,
                     name: &str,
                     help: &str,
                     seal: u64,
                     open: u64|
         -> Result<(), std::fmt::Error> {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (op, v) in [("seal", seal), ("open", open)] {
                ConstCounter::new(v).encode(m.encode_family(&TransformOpLabels { op })?)?;
            }
            Ok(())
        };
        by_op(
            &mut encoder,
            "transform_values",
            "Values transformed: sealed on write, opened on read",
            s.sealed_values,
            s.opened_values,
        )?;
        by_op(
            &mut encoder,
            "transform_plain_bytes",
            "Value bytes as the client sees them: before sealing, after opening",
            s.sealed_bytes_in,
            s.opened_bytes_out,
        )?;
        by_op(
            &mut encoder,
            "transform_stored_bytes",
            "Value bytes as Redis stores them: after sealing, before opening",
            s.sealed_bytes_out,
            s.opened_bytes_in,
        )?;
        let ratio = if s.sealed_bytes_out == 0 {
            1.0
        } else {
            s.sealed_bytes_in as f64 / s.sealed_bytes_out as f64
        };
        let gauge = ConstGauge::new(ratio);
        gauge.encode(encoder.encode_descriptor(
            "transform_compression_ratio",
            "Bytes written by clients under transform rules per byte stored (above 1: compression saves space)",
            None,
            gauge.metric_type(),
        )?)?;
        for (name, help, v) in [
            (
                "transform_encryptions",
                "Values encrypted (rotate keys well before 2^32 per key)",
                s.encryptions,
            ),
            (
                "transform_plain_values",
                "Values without an envelope read under an encrypting rule (left for PROXY REWRAP)",
                s.plain_values,
            ),
            (
                "transform_refused_commands",
                "Commands refused because they would break on a transformed key",
                s.refused_commands,
            ),
        ] {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let mut m = encoder.encode_descriptor(
            "transform_failures",
            "Values that could not be transformed, by kind",
            None,
            MetricType::Counter,
        )?;
        for kind in crate::transform::FailureKind::ALL {
            let labels = TransformFailureLabels {
                kind: kind.as_str(),
            };
            ConstCounter::new(s.failures(kind)).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Exports the value-transform counters (see `TransformCollector` for
    /// the series). Call it once at startup, before sharing the `Metrics`.
    pub fn register_transform_stats(
        &mut self,
        stats: std::sync::Arc<crate::transform::TransformStats>,
    ) {
        self.registry
            .register_collector(Box::new(TransformCollector(stats)));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The line of `text` that starts with `prefix`, for asserting values.
    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
    }

    #[test]
    fn enum_tables_match_discriminants() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i);
        }
        for (i, state) in ConnState::ALL.iter().enumerate() {
            assert_eq!(*state as usize, i);
        }
        for (i, reason) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
    }

    #[test]
    fn fresh_registry_exports_zeroes_build_info_and_eof() {
        let text = Metrics::new().encode();
        assert_eq!(
            line(&text, "strata_build_info"),
            format!(
                "strata_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(line(&text, "strata_uptime_seconds ").starts_with("strata_uptime_seconds "));
        assert_eq!(
            line(&text, "strata_client_connections "),
            "strata_client_connections 0"
        );
        assert_eq!(
            line(&text, "strata_client_connections_rejected_total"),
            "strata_client_connections_rejected_total{reason=\"maxclients\"} 0"
        );
        for kind in ErrorKind::ALL {
            let series = format!("strata_errors_total{{kind=\"{}\"}}", kind.as_str());
            assert_eq!(line(&text, &series), format!("{series} 0"));
        }
        // No command has run, so no per-command series exist yet.
        assert!(!text.contains("strata_commands_total{"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn command_counts_and_latency() {
        let metrics = Metrics::new();
        let get = metrics.command("get");
        get.record(Duration::from_micros(30));
        get.record(Duration::from_millis(3));
        metrics
            .command("client|setname")
            .record(Duration::from_secs(10));

        let text = metrics.encode();
        assert_eq!(
            line(&text, "strata_commands_total{command=\"get\"}"),
            "strata_commands_total{command=\"get\"} 2"
        );
        assert_eq!(
            line(&text, "strata_commands_total{command=\"client|setname\"}"),
            "strata_commands_total{command=\"client|setname\"} 1"
        );
        assert_eq!(
            line(
                &text,
                "strata_command_duration_seconds_count{command=\"get\"}"
            ),
            "strata_command_duration_seconds_count{command=\"get\"} 2"
        );
        // 30µs lands in the first bucket, 3ms in the 5ms one.
        assert_eq!(
            line(
                &text,
                "strata_command_duration_seconds_bucket{le=\"0.00005\",command=\"get\"}"
            ),
            "strata_command_duration_seconds_bucket{le=\"0.00005\",command=\"get\"} 1"
        );
        assert_eq!(
            line(
                &text,
                "strata_command_duration_seconds_bucket{le=\"0.0025\",command=\"get\"}"
            ),
            "strata_command_duration_seconds_bucket{le=\"0.0025\",command=\"get\"} 1"
        );
        assert_eq!(
            line(
                &text,
                "strata_command_duration_seconds_bucket{le=\"0.005\",command=\"get\"}"
            ),
            "strata_command_duration_seconds_bucket{le=\"0.005\",command=\"get\"} 2"
        );
        // 10s is beyond the last bound: only +Inf has it.
        assert_eq!(
            line(
                &text,
                "strata_command_duration_seconds_bucket{le=\"2.5\",command=\"client|setname\"}"
            ),
            "strata_command_duration_seconds_bucket{le=\"2.5\",command=\"client|setname\"} 0"
        );
        assert_eq!(
            line(
                &text,
                "strata_command_duration_seconds_bucket{le=\"+Inf\",command=\"client|setname\"}"
            ),
            "strata_command_duration_seconds_bucket{le=\"+Inf\",command=\"client|setname\"} 1"
        );
        assert!(text.contains("# UNIT strata_command_duration_seconds seconds"));
    }

    #[test]
    fn cache_returns_the_shared_handles() {
        let metrics = Metrics::new();
        let mut cache = CommandMetricsCache::new();
        let mut other_session = CommandMetricsCache::new();
        cache.record(&metrics, "set", Duration::from_micros(100));
        cache.record(&metrics, "set", Duration::from_micros(100));
        other_session.record(&metrics, "set", Duration::from_micros(100));
        assert_eq!(cache.entries.len(), 1);
        let text = metrics.encode();
        assert_eq!(
            line(&text, "strata_commands_total{command=\"set\"}"),
            "strata_commands_total{command=\"set\"} 3"
        );
    }

    #[test]
    fn client_connections_follow_guards() {
        let metrics = Metrics::new();
        let a = metrics.client_accepted();
        let b = metrics.client_accepted();
        drop(a);
        metrics.client_rejected(RejectReason::MaxClients);
        let text = metrics.encode();
        assert_eq!(
            line(&text, "strata_client_connections "),
            "strata_client_connections 1"
        );
        assert_eq!(
            line(&text, "strata_client_connections_accepted_total"),
            "strata_client_connections_accepted_total 2"
        );
        assert_eq!(
            line(&text, "strata_client_connections_rejected_total"),
            "strata_client_connections_rejected_total{reason=\"maxclients\"} 1"
        );
        drop(b);
        let text = metrics.encode();
        assert_eq!(
            line(&text, "strata_client_connections "),
            "strata_client_connections 0"
        );
    }

    #[test]
    fn backend_connections_move_between_states() {
        let metrics = Metrics::new();
        let pool = metrics.backend_connection("127.0.0.1:7000", ConnKind::Multiplexed);
        let conn_pool = pool.clone();
        conn_pool.set_state(None, ConnState::Connecting);
        conn_pool.set_state(Some(ConnState::Connecting), ConnState::Up);
        pool.set_state(None, ConnState::Connecting);
        pool.set_state(Some(ConnState::Connecting), ConnState::Down);
        pool.set_state(Some(ConnState::Down), ConnState::Down);
        assert_eq!(pool.count(ConnState::Up), 1);
        assert_eq!(pool.count(ConnState::Down), 1);
        assert_eq!(pool.count(ConnState::Connecting), 0);

        // A second handle for the same backend shares the gauges.
        let again = metrics.backend_connection("127.0.0.1:7000", ConnKind::Multiplexed);
        assert_eq!(again.count(ConnState::Up), 1);

        let text = metrics.encode();
        let up = "strata_backend_connections{backend=\"127.0.0.1:7000\",kind=\"multiplexed\",state=\"up\"}";
        let down = "strata_backend_connections{backend=\"127.0.0.1:7000\",kind=\"multiplexed\",state=\"down\"}";
        assert_eq!(line(&text, up), format!("{up} 1"));
        assert_eq!(line(&text, down), format!("{down} 1"));

        pool.remove(ConnState::Down);
        conn_pool.remove(ConnState::Up);
        metrics.remove_backend("127.0.0.1:7000");
        assert!(!metrics.encode().contains("127.0.0.1:7000"));
    }

    #[test]
    fn errors_and_bytes() {
        let metrics = Metrics::new();
        metrics.error(ErrorKind::BackendTimeout);
        metrics.error(ErrorKind::BackendTimeout);
        metrics.error(ErrorKind::Protocol);
        metrics.bytes_in(100);
        metrics.bytes_in(23);
        metrics.bytes_out(7);
        let text = metrics.encode();
        assert_eq!(
            line(&text, "strata_errors_total{kind=\"backend_timeout\"}"),
            "strata_errors_total{kind=\"backend_timeout\"} 2"
        );
        assert_eq!(
            line(&text, "strata_errors_total{kind=\"protocol\"}"),
            "strata_errors_total{kind=\"protocol\"} 1"
        );
        assert_eq!(
            line(&text, "strata_errors_total{kind=\"internal\"}"),
            "strata_errors_total{kind=\"internal\"} 0"
        );
        assert_eq!(
            line(&text, "strata_client_bytes_received_total"),
            "strata_client_bytes_received_total 123"
        );
        assert_eq!(
            line(&text, "strata_client_bytes_sent_total"),
            "strata_client_bytes_sent_total 7"
        );
    }

    #[test]
    fn breaker_failover_and_discovery_series() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        assert!(text.contains("strata_failovers_total 0\n"), "{text}");
        assert!(text.contains("strata_discovery_up 1\n"), "{text}");
        metrics.set_breaker_state("10.0.0.1:6379", 1);
        metrics.failover_followed(Duration::from_millis(1500));
        metrics.set_discovery_ok(false);
        let text = metrics.encode();
        for expected in [
            "strata_backend_breaker_state{backend=\"10.0.0.1:6379\"} 1\n",
            "strata_failovers_total 1\n",
            "strata_last_failover_duration_seconds 1.5\n",
            "strata_discovery_up 0\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        metrics.remove_breaker_state("10.0.0.1:6379");
        assert!(!metrics.encode().contains("breaker_state{"));
    }

    #[test]
    fn other_modules_register_under_the_prefix() {
        let mut metrics = Metrics::new();
        let redirects = Counter::<u64>::default();
        metrics
            .registry_mut()
            .sub_registry_with_prefix("cluster")
            .register(
                "redirects",
                "MOVED and ASK replies followed",
                redirects.clone(),
            );
        redirects.inc_by(4);
        let text = metrics.encode();
        assert_eq!(
            line(&text, "strata_cluster_redirects_total"),
            "strata_cluster_redirects_total 4"
        );
    }

    /// Prints what recording costs; speed is reported, never asserted.
    /// `cargo test --release --lib record_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement, not a check"]
    fn record_cost() {
        use std::hint::black_box;
        use std::sync::Arc;

        const N: u32 = 2_000_000;
        let metrics = Arc::new(Metrics::new());
        let per_op = |start: Instant| start.elapsed().as_nanos() as f64 / f64::from(N);

        let handle = metrics.command("get");
        let start = Instant::now();
        for i in 0..N {
            handle.record(black_box(Duration::from_nanos(u64::from(i % 5_000_000))));
        }
        println!(
            "CommandMetrics::record, one thread:    {:>6.1} ns",
            per_op(start)
        );

        let mut cache = CommandMetricsCache::new();
        let start = Instant::now();
        for i in 0..N {
            cache.record(
                &metrics,
                black_box("get"),
                black_box(Duration::from_nanos(u64::from(i % 5_000_000))),
            );
        }
        println!(
            "CommandMetricsCache::record, one thread: {:>6.1} ns",
            per_op(start)
        );

        let start = Instant::now();
        for i in 0..N {
            metrics
                .command(black_box("get"))
                .record(black_box(Duration::from_nanos(u64::from(i % 5_000_000))));
        }
        println!(
            "Metrics::command + record, one thread: {:>6.1} ns",
            per_op(start)
        );

        let start = Instant::now();
        for _ in 0..N {
            metrics.error(black_box(ErrorKind::Protocol));
            metrics.bytes_in(black_box(64));
        }
        println!(
            "error + bytes_in, one thread:          {:>6.1} ns",
            per_op(start)
        );

        let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
        let run = |via_command: bool| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    let metrics = Arc::clone(&metrics);
                    scope.spawn(move || {
                        let mut cache = CommandMetricsCache::new();
                        for i in 0..N / 4 {
                            let d = Duration::from_nanos(u64::from(i % 5_000_000));
                            if via_command {
                                metrics.command(black_box("get")).record(d);
                            } else {
                                cache.record(&metrics, black_box("get"), d);
                            }
                        }
                    });
                }
            });
            start.elapsed().as_nanos() as f64 / f64::from(N / 4)
        };
        println!(
            "{threads} threads, same command, cache:          {:>6.1} ns per op per thread",
            run(false)
        );
        println!(
            "{threads} threads, same command, Metrics::command: {:>6.1} ns per op per thread",
            run(true)
        );
    }

    #[test]
    fn transform_counters_are_exported_at_scrape_time() {
        let stats = std::sync::Arc::new(crate::transform::TransformStats::new());
        let mut metrics = Metrics::new();
        metrics.register_transform_stats(stats.clone());
        let text = metrics.encode();
        assert_eq!(
            line(&text, "strata_transform_values_total{op=\"seal\"}"),
            "strata_transform_values_total{op=\"seal\"} 0"
        );
        assert_eq!(
            line(&text, "strata_transform_compression_ratio"),
            "strata_transform_compression_ratio 1.0"
        );
        for kind in crate::transform::FailureKind::ALL {
            let prefix = format!(
                "strata_transform_failures_total{{kind=\"{}\"}}",
                kind.as_str()
            );
            assert_eq!(line(&text, &prefix), format!("{prefix} 0"));
        }
        // Counters move as the transform layer records (through a real seal).
        let t = crate::transform::Transforms::from_config(
            &crate::transform::TransformConfig::parse(
                "[[transform]]\npattern = \"c:*\"\ncompress = \"lz4\"\nmin_size = 1\n",
            )
            .unwrap(),
            1 << 20,
            stats,
        )
        .unwrap();
        let value = bytes::Bytes::from(vec![b'a'; 1000]);
        t.prepare(&[
            bytes::Bytes::from_static(b"SET"),
            bytes::Bytes::from_static(b"c:1"),
            value,
        ])
        .unwrap();
        let text = metrics.encode();
        assert_eq!(
            line(&text, "strata_transform_plain_bytes_total{op=\"seal\"}"),
            "strata_transform_plain_bytes_total{op=\"seal\"} 1000"
        );
        let ratio: f64 = line(&text, "strata_transform_compression_ratio ")
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(ratio > 10.0, "{ratio}");
    }
}
