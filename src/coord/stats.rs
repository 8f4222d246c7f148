//! The coordination series, `strata_coord_*`, labelled by backend: plain
//! prometheus-client counters (a relaxed atomic add on the command path)
//! and the wait histogram, registered once in the telemetry registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Buckets of the wait histogram, in seconds: waits last from a release's
/// round trip to the WAIT timeout.
pub const WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// The counters of one backend (only `redis` today).
#[derive(Debug)]
pub struct CoordStats {
    /// Locks taken (LOCK.ACQUIRE answered with a token).
    pub acquisitions: Counter,
    /// Locks given back (LOCK.RELEASE, and KEEPALIVE leases at disconnect).
    pub releases: Counter,
    /// LOCK.EXTEND and KEEPALIVE renewals that succeeded.
    pub extensions: Counter,
    /// LOCK.ACQUIRE … WAIT answered nil: the wait ran out.
    pub timeouts: Counter,
    /// LOCK.ACQUIRE without WAIT answered nil: someone held it.
    pub busy: Counter,
    /// KEEPALIVE leases lost (a renewal found the lock gone or taken).
    pub lost_leases: Counter,
    /// RELEASE/EXTEND refused because the token does not hold the lock.
    pub fencing_rejections: Counter,
    /// Acquisitions a replica acknowledged (`WAIT 1`, see `ack.rs`).
    pub replica_acks: Counter,
    /// Acquisitions on a primary with replicas that no replica
    /// acknowledged in time (or that ran without the wait: no pooled
    /// connection free, a redirect).
    pub replica_acks_missing: Counter,
    /// How long LOCK.ACQUIRE … WAIT waited (whether it got the lock or not).
    pub waits: Histogram,
    /// Waiters queued in this strata now (`wake.rs`).
    pub waiting: Gauge,
    /// The other primitives' series (semaphores, latches, barriers,
    /// leader election, versioned writes).
    pub primitives: PrimitiveStats,
}

impl Default for CoordStats {
    fn default() -> Self {
        CoordStats {
            acquisitions: Counter::default(),
            releases: Counter::default(),
            extensions: Counter::default(),
            timeouts: Counter::default(),
            busy: Counter::default(),
            lost_leases: Counter::default(),
            fencing_rejections: Counter::default(),
            replica_acks: Counter::default(),
            replica_acks_missing: Counter::default(),
            waits: Histogram::new(WAIT_BUCKETS),
            waiting: Gauge::default(),
            primitives: PrimitiveStats::default(),
        }
    }
}

impl CoordStats {
    /// Adds one to `counter`.
    pub fn add(counter: &Counter) {
        counter.inc();
    }

    /// Registers the series as `strata_coord_*{backend="<backend>"}`.
    pub fn register(&self, registry: &mut Registry, backend: &'static str) {
        let r = registry
            .sub_registry_with_prefix("coord")
            .sub_registry_with_label(("backend".into(), backend.into()));
        let counters: [(&str, &str, &Counter); 9] = [
            (
                "replica_acks",
                "Acquisitions a replica acknowledged (WAIT 1)",
                &self.replica_acks,
            ),
            (
                "replica_acks_missing",
                "Acquisitions on a primary with replicas that no replica acknowledged",
                &self.replica_acks_missing,
            ),
            ("acquisitions", "Locks taken", &self.acquisitions),
            (
                "releases",
                "Locks released, by command or at disconnect",
                &self.releases,
            ),
            (
                "extensions",
                "LOCK.EXTEND and KEEPALIVE renewals that succeeded",
                &self.extensions,
            ),
            (
                "timeouts",
                "LOCK.ACQUIRE … WAIT answered nil",
                &self.timeouts,
            ),
            ("busy", "LOCK.ACQUIRE without WAIT answered nil", &self.busy),
            (
                "lost_leases",
                "KEEPALIVE leases lost by a failed renewal",
                &self.lost_leases,
            ),
            (
                "fencing_rejections",
                "RELEASE/EXTEND refused: the token does not hold the lock",
                &self.fencing_rejections,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "waiters",
            "LOCK.ACQUIRE … WAIT callers queued in this strata now",
            self.waiting.clone(),
        );
        r.register(
            "wait_seconds",
            "How long LOCK.ACQUIRE … WAIT waited",
            self.waits.clone(),
        );
        self.primitives.register(r);
    }
}

/// A primitive's event: `(primitive, event)` labels.
type EventLabels = [(&'static str, &'static str); 2];
/// A primitive: the `primitive` label.
type PrimitiveLabel = [(&'static str, &'static str); 1];

fn wait_histogram() -> Histogram {
    Histogram::new(WAIT_BUCKETS)
}

/// The series of the primitives other than locks, one family each,
/// labelled by primitive (`sem`, `latch`, `barrier`, `leader`, `vset`):
/// `strata_coord_primitive_events_total{primitive, event}` and
/// `strata_coord_primitive_wait_seconds{primitive}`. The events are the
/// lock's counters' counterparts: `acquired`, `released`, `renewed`,
/// `timeout`, `busy`, `lost`, `rejected` (a fencing or version check
/// refused), and the primitive's own (`countdown`, `tripped`, `conflict`,
/// `written`).
#[derive(Debug)]
pub struct PrimitiveStats {
    events: prometheus_client::metrics::family::Family<EventLabels, Counter>,
    waits: prometheus_client::metrics::family::Family<PrimitiveLabel, Histogram, fn() -> Histogram>,
}

impl Default for PrimitiveStats {
    fn default() -> Self {
        PrimitiveStats {
            events: prometheus_client::metrics::family::Family::default(),
            waits: prometheus_client::metrics::family::Family::new_with_constructor(
                wait_histogram as fn() -> Histogram,
            ),
        }
    }
}

impl PrimitiveStats {
    /// Counts one `event` of `primitive`.
    pub fn count(&self, primitive: &'static str, event: &'static str) {
        self.events
            .get_or_create(&[("primitive", primitive), ("event", event)])
            .inc();
    }

    /// The wait histogram of `primitive` (a handle: observe on it).
    pub fn waits(&self, primitive: &'static str) -> Histogram {
        self.waits
            .get_or_create(&[("primitive", primitive)])
            .clone()
    }

    /// Registers the families in the coordination sub-registry.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "primitive_events",
            "Semaphore, latch, barrier, leader and versioned-write events",
            self.events.clone(),
        );
        r.register(
            "primitive_wait_seconds",
            "How long SEM.ACQUIRE/LATCH.WAIT/BARRIER.WAIT/LEADER.CAMPAIGN/LEADER.WATCH waited",
            self.waits.clone(),
        );
    }
}
