//! A reload's new `backend.cluster.seeds` (issue 18: "a new backend or
//! seed list is connected before the old one is drained").
//!
//! The seeds are where strata starts when it knows no live node. A new
//! list is first read from: a reload whose seeds answer no topology is
//! refused and nothing changes. Seeds of the cluster strata already
//! follows only replace the list (the next refresh may need them). Seeds
//! of *another* cluster (no node in common) move strata there: every
//! primary of the new map gets its connections first, then the view is
//! swapped, and the old nodes finish what was sent to them before they
//! are retired (`ClusterRouter::adopt`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::router::build_view;
use super::topology::read_topology;
use super::ClusterRouter;

impl ClusterRouter {
    /// Follows `seeds` from now on (see the module doc). `Err`: nothing
    /// changed, and why.
    pub async fn reseed(self: &Arc<Self>, seeds: &[String]) -> Result<(), String> {
        let mut configured = self.seeds.lock().await;
        let map = read_topology(seeds, &self.settings)
            .await
            .map_err(|e| format!("the new cluster seeds answer no topology: {e}"))?;
        let current = self.view();
        let known = |addr: &str| current.node(addr).is_some();
        let same_cluster = map.primaries().any(known) || map.nodes().any(|n| known(&n.addr));
        if !same_cluster {
            let next = build_view(map, None, &self.config, &self.metrics);
            let patience = Duration::from_millis(self.config.connect_timeout_ms.max(100) * 4);
            let until = tokio::time::Instant::now() + patience;
            while next.primaries().any(|n| n.connections_up() == 0) {
                if tokio::time::Instant::now() >= until {
                    for node in next.nodes() {
                        node.retire("config reload refused".into());
                    }
                    return Err(format!(
                        "the new cluster's primaries did not all answer within {} ms; the running cluster is kept",
                        patience.as_millis()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.set_healthy(next.map.is_complete());
            self.adopt(next, &current);
            tracing::info!(?seeds, "config reload: now following another cluster");
        }
        *configured = seeds.to_vec();
        Ok(())
    }
}

impl ClusterRouter {
    fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }
}
