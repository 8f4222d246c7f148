//! The running Sentinel discovery as something a config reload can
//! replace (issue 18: "a new backend or seed list is connected before the
//! old one is drained").
//!
//! A reload that changes the sentinels, the master's name or any other
//! backend setting in sentinel mode runs a whole discovery with the new
//! settings *while the old follower keeps following*. Only when a primary
//! is confirmed and its connections are up does the old follower stop,
//! the router swap to the new nodes (the old ones finish what was sent to
//! them and are retired after the grace), and a new follower start. A
//! discovery that fails leaves everything as it was, and the reload says
//! why.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::{discover, follow, Ctx};
use crate::backend::router::Router;
use crate::config::BackendConfig;
use crate::telemetry::Metrics;

/// What strata follows in sentinel mode, and the switch that stops it.
#[derive(Debug)]
pub struct Following {
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    master: String,
    sentinels: Vec<String>,
    /// Dropping it (or setting it) stops the follower and its subscriptions.
    stop: watch::Sender<bool>,
}

impl Following {
    pub(super) fn new(ctx: &Ctx, stop: watch::Sender<bool>) -> Following {
        Following {
            current: Mutex::new(Current {
                master: ctx.master.clone(),
                sentinels: ctx.sentinels.clone(),
                stop,
            }),
        }
    }

    /// The master's name and the sentinels asked (`PROXY BACKENDS`).
    pub fn describe(&self) -> (String, Vec<String>) {
        let c = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        (c.master.clone(), c.sentinels.clone())
    }

    /// Follows `config`'s sentinels and master from now on: discovers its
    /// primary (the old follower still at work), waits for its connections,
    /// then stops the old follower and swaps `router` to the new nodes,
    /// the old ones draining for `grace`. `Err`: nothing changed.
    pub async fn restart(
        &self,
        router: &Arc<Router>,
        config: &BackendConfig,
        metrics: &Arc<Metrics>,
        grace: Duration,
    ) -> Result<(), String> {
        let found = discover(config, metrics).await.map_err(|e| e.to_string())?;
        let patience = Duration::from_millis(config.connect_timeout_ms.max(100) * 4);
        let until = tokio::time::Instant::now() + patience;
        while found.topology.primary.connections_up() == 0 {
            if tokio::time::Instant::now() >= until {
                let why = format!(
                    "primary {} named by the sentinels did not answer within {} ms; the running backend is kept",
                    found.topology.primary.addr(),
                    patience.as_millis()
                );
                for node in
                    std::iter::once(&found.topology.primary).chain(found.topology.replicas.iter())
                {
                    node.retire("config reload refused".into());
                }
                return Err(why);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current.stop.send_replace(true);
        tracing::info!(
            master = %found.ctx.master,
            primary = %found.topology.primary.addr(),
            "config reload: following the new sentinel settings"
        );
        router.swap_draining(
            found.topology,
            "config reload: sentinel settings changed",
            grace,
        );
        // A failover hold the old follower had is its own business: the
        // new primary was just confirmed.
        router.release_hold();
        router.set_discovery_ok(true);
        metrics.set_discovery_ok(true);
        let stop = follow(router, found.ctx.clone(), found.epoch, config, metrics);
        *current = Current {
            master: found.ctx.master.clone(),
            sentinels: found.ctx.sentinels.clone(),
            stop,
        };
        Ok(())
    }
}
