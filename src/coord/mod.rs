//! Coordination commands (issue 15): fenced locks today; semaphores,
//! barriers, latches, leader election and versioned writes grow here, one
//! file per primitive.
//!
//! # Layout
//!
//! * `config`: `[coord]` (on by default, no section needed).
//! * `registry`: the commands strata answers itself, as data (name, arity,
//!   flags, key position, docs, handler). A new primitive adds a file with
//!   its `SPECS` and one line in [`registry::SPECS`]; COMMAND, COMMAND
//!   INFO/COUNT/DOCS/LIST/GETKEYS list it from there (`command_info`).
//! * `keys`: one object's keys, all in the slot of its name.
//! * `args`: argument parsing with Redis's error texts.
//! * `wake`: waiters queued in strata, FIFO per object, woken through one
//!   pub/sub subscription per strata, with a fallback timer.
//! * `client`: a connection's state (KEEPALIVE leases, leases it lost),
//!   held by the session as one field and released when it ends.
//! * `lock`: LOCK.ACQUIRE/RELEASE/EXTEND/INFO (scripts `lua/coord_lock_*`).
//! * `stats`: counters and the wait histogram (`strata_coord_*`).
//!
//! # Data path
//!
//! `policy::coord` (the seam) turns a command strata's table does not
//! know, or a COMMAND introspection call, into a [`Plan`];
//! `server/session/coord.rs` runs it inline, like a blocking command: the
//! client's later commands wait, other clients do not. Scripts run through
//! the tier's machinery (`tier::redis::RedisLink` on the client's own
//! multiplexed connection, `tier::behind::script::Script`: SCRIPT LOAD once,
//! EVALSHA, loaded again on NOSCRIPT on whichever node answers it).

pub mod ack;
pub mod args;
pub mod client;
pub mod command_info;
pub mod config;
pub mod keys;
pub mod lock;
pub mod registry;
pub mod stats;
pub mod wake;
// Semaphores, latches, barriers, leader election, versioned writes.
pub mod barrier;
pub mod exec;
pub mod latch;
pub mod leader;
pub mod lease;
pub mod sem;
pub mod vset;

use std::sync::Arc;

use bytes::Bytes;

use crate::backend::cluster::ClusterRouter;
use crate::backend::router::Router;
use crate::protocol::Protocol;
use crate::tier::RedisLink;

pub use client::ClientCoord;
pub use config::CoordConfig;
pub use registry::Spec;
pub use stats::CoordStats;

/// What the policy step found for one command.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// One of strata's coordination commands.
    Run(&'static Spec),
    /// COMMAND introspection: Redis's answer with strata's commands added.
    Command(command_info::Kind),
}

/// The coordination service, shared by every session (`Shared::coord`).
#[derive(Debug)]
pub struct Coord {
    config: CoordConfig,
    router: Arc<Router>,
    cluster: Option<Arc<ClusterRouter>>,
    stats: Arc<CoordStats>,
    wake: Arc<wake::Hub>,
    replicas: ack::Replicas,
}

impl Coord {
    /// The service, or `None` when `[coord] enabled = false`.
    pub fn new(
        config: &CoordConfig,
        stats: Arc<CoordStats>,
        router: Arc<Router>,
        cluster: Option<Arc<ClusterRouter>>,
    ) -> Option<Arc<Coord>> {
        if !config.enabled {
            return None;
        }
        let wake = Arc::new(wake::Hub::new(
            config.max_waiters,
            stats.waiting.clone(),
            router.clone(),
            cluster.clone(),
        ));
        Some(Arc::new(Coord {
            config: config.clone(),
            router,
            cluster,
            stats,
            wake,
            replicas: ack::Replicas::default(),
        }))
    }

    /// The settings.
    pub fn config(&self) -> &CoordConfig {
        &self.config
    }

    /// The counters (exported by `telemetry/metrics/coord.rs`).
    pub fn stats(&self) -> &Arc<CoordStats> {
        &self.stats
    }

    /// The waiters' queues.
    pub fn wake(&self) -> &Arc<wake::Hub> {
        &self.wake
    }

    /// The primary serving `key`, when an acquisition there should wait for
    /// a replica's acknowledgement on a connection of its own (`ack.rs`):
    /// acknowledgements on, and the primary not known to be without
    /// replicas. A primary whose pool has no connection free is left to
    /// the shared path (counted as unacknowledged).
    pub fn acked_primary(&self, key: &[u8]) -> Option<Arc<crate::backend::node::Node>> {
        if self.config.replica_ack_timeout_ms == 0 {
            return None;
        }
        let node = match &self.cluster {
            Some(cluster) => cluster
                .view()
                .primary(crate::command::slot::hash_slot(key))?
                .clone(),
            None => self.router.primary(),
        };
        match self.replicas.known(&node) {
            Some(0) => None,
            _ if !node.dedicated_available() => {
                CoordStats::add(&self.stats.replica_acks_missing);
                None
            }
            _ => Some(node),
        }
    }

    /// Each primary's replica count (`ack.rs`).
    pub fn replicas(&self) -> &ack::Replicas {
        &self.replicas
    }

    /// strata's own way to Redis for `client_id`'s coordination calls: the
    /// client's multiplexed connection (so they follow what it sent
    /// before), RESP2 and strata's own user whatever the client speaks, so
    /// the scripts' replies read the same everywhere.
    pub fn link(&self, client_id: u64) -> RedisLink<'_> {
        RedisLink {
            router: &self.router,
            cluster: self.cluster.as_deref(),
            client_id,
            proto: Protocol::Resp2,
            user: None,
        }
    }

    /// Runs one coordination command for a client and returns the reply,
    /// in the client's protocol.
    pub async fn run(
        self: &Arc<Self>,
        spec: &'static Spec,
        args: &[Bytes],
        client: &mut ClientCoord,
        proto: Protocol,
    ) -> Bytes {
        if !spec.arity_ok(args.len()) {
            return crate::protocol::reply::error(&args::wrong_arity(spec.name));
        }
        let call = registry::Call {
            coord: self,
            client,
            args,
            proto,
        };
        (spec.run)(call).await
    }
}
