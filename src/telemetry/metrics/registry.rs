//! [`Metrics`]: the registry, every series strata itself exports, and the
//! methods that look up handles or record process-wide events.

use std::time::{Duration, Instant};

use prometheus_client::encoding::{text, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::handles::{BackendConnMetrics, ClientConnection, CommandMetrics};
use super::labels::{
    BackendLabels, BuildLabels, CommandLabels, ConnKind, ConnState, ErrorKind, ErrorLabels,
    NodeLabels, RejectLabels, RejectReason, TlsFailure, TlsFailureLabels,
};
use super::latency::LatencyHistogram;

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

/// The constructor the histogram family uses; a plain `fn` so the family type
/// can be named in a struct field.
fn command_histogram() -> LatencyHistogram {
    LatencyHistogram::default()
}

type CommandHistograms = Family<CommandLabels, LatencyHistogram, fn() -> LatencyHistogram>;

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
    pub(super) registry: Registry,
    commands: Family<CommandLabels, Counter>,
    command_duration: CommandHistograms,
    client_connections: Gauge,
    client_accepted: Counter,
    /// Indexed by `RejectReason as usize`; created up front.
    client_rejected: [Counter; RejectReason::ALL.len()],
    /// Indexed by `TlsFailure as usize`; created up front.
    tls_failures: [Counter; TlsFailure::ALL.len()],
    backend_connections: Family<BackendLabels, Gauge>,
    /// Indexed by `ErrorKind as usize`; created up front.
    errors: [Counter; ErrorKind::ALL.len()],
    bytes_received: Counter,
    bytes_sent: Counter,
    breaker_state: Family<NodeLabels, Gauge>,
    failovers: Counter,
    last_failover_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    discovery_up: Gauge,
    /// Every command's handles by name, for `PROXY INFO commands` and
    /// `PROXY LATENCY` (prometheus-client's `Family` cannot be walked).
    /// Filled by [`Metrics::command`], which runs once per command per
    /// session, never per request.
    command_list: std::sync::Mutex<std::collections::BTreeMap<&'static str, CommandMetrics>>,
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
            Family::new_with_constructor(command_histogram as fn() -> LatencyHistogram);
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
        let tls_failed = Family::<TlsFailureLabels, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "Client TLS handshakes that failed, by reason",
            tls_failed.clone(),
        );
        let tls_failures = TlsFailure::ALL
            .map(|reason| tls_failed.get_or_create_owned(&TlsFailureLabels { reason }));

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
            tls_failures,
            backend_connections,
            errors,
            bytes_received,
            bytes_sent,
            command_list: Default::default(),
        }
    }

    /// Each command seen so far: name, calls, latency histogram (by name).
    pub fn command_stats(&self) -> Vec<(&'static str, u64, LatencyHistogram)> {
        self.command_list
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(name, h)| (*name, h.calls.get(), h.duration.clone()))
                    .collect()
            })
            .unwrap_or_default()
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
    /// (or let [`CommandMetricsCache`](super::CommandMetricsCache) do it), not
    /// per request: it takes the families' read locks, hashes the name twice
    /// and clones two `Arc`s, all on cache lines every core shares.
    #[must_use]
    pub fn command(&self, name: &'static str) -> CommandMetrics {
        let labels = CommandLabels { command: name };
        let handles = CommandMetrics {
            calls: self.commands.get_or_create_owned(&labels),
            duration: self.command_duration.get_or_create_owned(&labels),
        };
        if let Ok(mut list) = self.command_list.lock() {
            list.entry(name).or_insert_with(|| handles.clone());
        }
        handles
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

    /// Counts a client TLS handshake that failed.
    pub fn tls_handshake_failed(&self, reason: TlsFailure) {
        self.tls_failures[reason as usize].inc();
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
