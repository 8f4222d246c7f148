//! Cluster mode's own series: `strata_cluster_*`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why strata sent a request again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RetryKind {
    /// `-MOVED`: the slot has a new owner.
    moved,
    /// `-ASK`: the key is being migrated.
    ask,
    /// `-TRYAGAIN`: a multi-key request during a migration.
    tryagain,
    /// `-CLUSTERDOWN`: the cluster (or the slot) is not serving.
    clusterdown,
    /// The node could not be reached; the request had not left strata.
    unreachable,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RetryLabels {
    kind: RetryKind,
}

/// Counters and gauges the cluster router updates.
#[derive(Debug)]
pub struct ClusterStats {
    retries: [Counter; 5],
    topology_changes: Counter,
    slots_unserved: Gauge,
    shards: Gauge,
}

impl ClusterStats {
    /// Registers the series in `registry` (under the `cluster` prefix).
    pub fn register(registry: &mut Registry) -> ClusterStats {
        let registry = registry.sub_registry_with_prefix("cluster");
        let family = Family::<RetryLabels, Counter>::default();
        registry.register(
            "retries",
            "Requests sent again by strata, by reason (the client saw only the final reply)",
            family.clone(),
        );
        let retries = [
            RetryKind::moved,
            RetryKind::ask,
            RetryKind::tryagain,
            RetryKind::clusterdown,
            RetryKind::unreachable,
        ]
        .map(|kind| family.get_or_create_owned(&RetryLabels { kind }));
        let topology_changes = Counter::default();
        registry.register(
            "topology_changes",
            "Slot map changes followed (failovers, slot moves, nodes added or removed)",
            topology_changes.clone(),
        );
        let slots_unserved = Gauge::default();
        registry.register(
            "slots_unserved",
            "Slots without an owner in the current slot map",
            slots_unserved.clone(),
        );
        let shards = Gauge::default();
        registry.register("shards", "Primaries owning slots", shards.clone());
        ClusterStats {
            retries,
            topology_changes,
            slots_unserved,
            shards,
        }
    }

    /// Counts one retry.
    pub fn retry(&self, kind: RetryKind) {
        self.retries[kind as usize].inc();
    }

    /// Records a new slot map.
    pub fn topology(&self, changed: bool, unserved: usize, shards: usize) {
        if changed {
            self.topology_changes.inc();
        }
        self.slots_unserved.set(unserved as i64);
        self.shards.set(shards as i64);
    }
}
