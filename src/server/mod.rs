//! The client side: listener, sessions, reply ordering, shutdown.
//!
//! * [`listener`]: accepts, enforces maxclients, drains on shutdown.
//! * [`session`]: reads and dispatches one client's requests.
//! * [`writer`]: writes that client's replies in request order.
//! * [`direct`]: a plain reply written by the backend connection's task
//!   that read it, while the writer is idle (one task hand-off fewer).
//! * [`local`]: the commands strata answers itself.
//! * [`conn_state`]: server-side state held on a dedicated connection.
//! * [`clients`]: the registry behind CLIENT LIST and INFO.
//! * [`routed`]: cluster mode's per-node batches and per-command items.
//! * [`tracking`]: CLIENT TRACKING … REDIRECT to a strata client.
//! * [`shard_links`]: cluster mode, one client's shard channels on several nodes.

pub mod clients;
pub mod conn_state;
pub mod direct;
pub mod halt;
pub mod listener;
pub mod local;
pub mod pending;
pub mod queue;
pub mod routed;
pub mod session;
pub mod shard_links;
pub mod tracking;
pub mod writer;

use std::sync::Arc;
use std::time::Instant;

use crate::backend::router::Router;
use crate::config::ServerConfig;
use crate::protocol::RequestParser;
use crate::telemetry::Metrics;

/// What every session shares, built once at startup.
#[derive(Debug)]
pub struct Shared {
    /// The `[server]` settings; swapped whole by a reload
    /// (`app/reload.rs`). Read where a setting is used, so a reload
    /// reaches new clients (the in-flight bound, the idle timeout) and
    /// every client's next flush (output-buffer limits).
    pub server: arc_swap::ArcSwap<ServerConfig>,
    /// The backend.
    pub backend: Arc<Router>,
    /// Metrics registry handles.
    pub metrics: Arc<Metrics>,
    /// Connected clients.
    pub clients: clients::ClientRegistry,
    /// The request parser, configured with proto-max-bulk-len.
    pub parser: RequestParser,
    /// When strata started.
    pub started: Instant,
    /// Value transform rules and keys (`[[transform]]`); empty when none
    /// are configured, which the session checks once per command.
    pub transforms: crate::transform::LiveTransforms,
    /// The cluster router, in cluster mode (`backend.mode = "cluster"`):
    /// ordinary commands are then routed by slot instead of `backend`.
    pub cluster: Option<Arc<crate::backend::cluster::ClusterRouter>>,
    /// How clients log in (`auth/`): AUTH checked against the backend,
    /// whether a login is required.
    pub auth: crate::auth::AuthPolicy,
    /// Postgres tiers (`[[tier]]` rules); `None` when there is no rule,
    /// which the session checks once per command.
    pub tiers: Option<Arc<crate::tier::Tiers>>,
    /// The coordination commands (`coord/`); `None` when `[coord]` turns
    /// them off, which the session checks once per unknown command.
    pub coord: Option<Arc<crate::coord::Coord>>,
    /// The audit log (`[audit]`); `None` when it is off.
    pub audit: crate::auth::audit::SharedAudit,
    /// Hot reload, for `PROXY RELOAD` and `PROXY CONFIG`.
    pub reloader: Arc<crate::app::reload::Reloader>,
    /// `PROXY SLOWLOG` (`admin/slowlog.rs`), recorded by the writer.
    pub slowlog: crate::admin::slowlog::Slowlog,
    /// `PROXY DRAIN`: the listener closes new clients, readiness fails.
    pub drain: crate::admin::drain::Drain,
    /// Sentinel mode: what strata follows (the master's name and the
    /// sentinels, for `PROXY TOPOLOGY`), and what a reload restarts;
    /// `None` in other modes.
    pub sentinel: Option<Arc<crate::backend::sentinel::Following>>,
}

impl Shared {
    /// INFO's `# Proxy` section.
    pub fn proxy_info(&self) -> String {
        let backend = self.backend.primary();
        let (failovers, last_failover_ms) = self.backend.failover_stats();
        let replicas = self.backend.topology().replicas.len();
        let text = format!(
            "# Proxy\r\nproxy_name:strata\r\nproxy_version:{}\r\nuptime_in_seconds:{}\r\nconnected_clients:{}\r\n\
             maxclients:{}\r\nbackend_mode:{}\r\nbackend_address:{}\r\nbackend_state:{}\r\n\
             backend_connections_up:{}\r\nbackend_connections_total:{}\r\nbackend_replicas:{}\r\n\
             discovery_state:{}\r\nfailovers:{}\r\nlast_failover_ms:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            self.started.elapsed().as_secs(),
            self.clients.len(),
            self.server.load().maxclients,
            self.backend.mode(),
            backend.addr(),
            if backend.is_healthy() { "up" } else { "down" },
            backend.connections_up(),
            backend.connections_total(),
            replicas,
            if self.backend.discovery_ok() { "ok" } else { "degraded" },
            failovers,
            last_failover_ms,
        );
        let Some(cluster) = &self.cluster else {
            return text;
        };
        let view = cluster.view();
        let down = view.nodes().filter(|n| !n.is_healthy()).count();
        format!(
            "{text}cluster_state:{}\r\ncluster_shards:{}\r\ncluster_nodes:{}\r\ncluster_nodes_down:{}\r\n\
             cluster_slots_unserved:{}\r\ncluster_topology_changes:{}\r\n",
            if cluster.is_healthy() { "ok" } else { "fail" },
            view.map.shards().len(),
            view.nodes().count(),
            down,
            view.map.unassigned(),
            cluster.changes(),
        )
    }
}
