//! Postgres tiers (issue 14): keys that live in Redis *and* Postgres, per
//! key pattern (`[[tier]]` rules, `config.rs`).
//!
//! # Layout
//!
//! * [`config`]: `[postgres]` and `[[tier]]`, validated with the rule named.
//! * [`rules`]: the rules compiled (Redis globs, first match wins).
//! * [`store`]: the schema (migrations/) and the statements: versioned
//!   batch upserts, deletes with tombstones, fetches that never return an
//!   expired row, sweeps.
//! * [`plan`]: what a command on a mirrored key needs ([`Plan`]): nothing,
//!   a re-warm before it runs (reads), to be run by the tier (writes), or
//!   a refusal.
//! * [`readthrough`]: re-warming missing keys from Postgres, once per key
//!   however many clients miss it at once.
//! * [`mirror`]: write-through: Postgres commits first, then Redis applies,
//!   then the client is answered.
//! * [`ha`]: replicas: which host is the primary now (found by probing,
//!   so a promoted replica is followed), and which replica a read may use.
//! * [`committer`]: group commit of concurrent writers' rows.
//! * [`locks`]: per-key locks that order one strata's changes to a key.
//! * [`redis`]: the tier's commands to Redis, on the client's connection.
//! * [`rename`]: RENAME, RENAMENX and COPY of mirrored keys.
//! * [`args`]: SET/EXPIRE arguments read as Redis reads them.
//! * [`stats`]: counters, exported as `strata_tier_*`.
//! * [`behind`]: `write = "behind"`: capture into a Redis outbox stream,
//!   drained into Postgres by every strata through a consumer group.
//! * [`spill`]: `policy = "spill"`: large or cold keys moved to Postgres
//!   behind a stub, restored on first touch; the background scanner.
//! * [`walk`]: the live rows matching a glob, a batch at a time (admin).
//!
//! The session reaches all of it through one seam, `policy::tier`, and only
//! when `[[tier]]` rules exist (`Shared::tiers` is `None` otherwise: one
//! branch per command). See docs/TIERS.md for the guarantees.

pub mod args;
pub mod behind;
pub mod committer;
pub mod config;
pub mod ha;
pub mod locks;
pub mod mirror;
pub mod plan;
pub mod readthrough;
pub mod redis;
pub mod rename;
pub mod rules;
pub mod spill;
pub mod stats;
pub mod store;
pub mod walk;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use config::{PostgresConfig, TierRuleConfig};
pub use plan::{Plan, Write};
pub use redis::RedisLink;
pub use rules::TierRules;
pub use stats::TierStats;
pub use store::{ReplicaOptions, Store, StoreError, StoreOptions};

/// The tiers: rules, the Postgres store and the shared state of the
/// mirror (locks, counters). One per strata, shared by every session.
#[derive(Debug)]
pub struct Tiers {
    /// Swapped whole by a reload (`reload_rules`).
    rules: arc_swap::ArcSwap<TierRules>,
    /// The rules' first-byte bitmap, read first on the data path.
    gate: rules::Gate,
    store: Store,
    /// Write-through puts, grouped across concurrent writers.
    committer: committer::Committer,
    locks: locks::KeyLocks,
    stats: Arc<TierStats>,
    /// Set once the migrations have run (at startup, or by the first
    /// command after Postgres came back).
    schema_ready: AtomicBool,
    /// One migration attempt at a time.
    migrating: tokio::sync::Mutex<()>,
    /// Write-behind's outbox and drain, when a rule asks for it.
    behind: Option<Arc<behind::Behind>>,
    /// Spill's scripts and counters, when a rule spills.
    spill: Option<Arc<spill::Spill>>,
    /// Cluster mode (set at start): a command the spill step runs itself
    /// must then name keys of one slot.
    cluster: AtomicBool,
    /// `[postgres] statement_timeout_ms` (the drain's transactions).
    statement_timeout: Duration,
    /// `[postgres] ready_needs_postgres`.
    ready_needs_postgres: bool,
}

impl Tiers {
    /// Builds the tiers from validated config. `None` when no `[[tier]]`
    /// rule exists (the data path then pays one branch). Connects lazily:
    /// strata starts while Postgres is down.
    pub fn from_config(
        postgres: Option<&PostgresConfig>,
        rules: &[TierRuleConfig],
    ) -> Result<Option<Arc<Tiers>>, String> {
        if rules.is_empty() {
            return Ok(None);
        }
        let pg = postgres.ok_or("[[tier]] rules need a [postgres] section")?;
        let store = Store::connect_with_replicas(&store_options(pg)?, &replica_options(pg))?;
        let stats = Arc::new(TierStats::default());
        let committer = committer::Committer::start(store.clone(), pg.pool_size as usize);
        let rules = TierRules::new(rules)?;
        let behind = rules
            .any_behind()
            .then(|| behind::Behind::new(&pg.write_behind));
        let spill = rules
            .any_spill()
            .then(|| Arc::new(spill::Spill::new(&pg.spill)));
        let gate = rules::Gate::default();
        gate.set(&rules);
        Ok(Some(Arc::new(Tiers {
            rules: arc_swap::ArcSwap::from_pointee(rules),
            gate,
            behind,
            spill,
            cluster: AtomicBool::new(false),
            statement_timeout: Duration::from_millis(pg.statement_timeout_ms),
            ready_needs_postgres: pg.ready_needs_postgres,
            store,
            committer,
            locks: locks::KeyLocks::default(),
            stats,
            schema_ready: AtomicBool::new(false),
            migrating: tokio::sync::Mutex::new(()),
        })))
    }

    /// The rules in force (a reload may swap them: hold the guard for the
    /// length of one operation).
    pub fn rules(&self) -> arc_swap::Guard<Arc<TierRules>> {
        self.rules.load()
    }

    /// Checks that `configs` can replace the rules without a restart: the
    /// background machinery they need is running (write-behind's drain,
    /// spill's scanner are started once, with the first such rule).
    pub fn check_rules(&self, configs: &[TierRuleConfig]) -> Result<TierRules, String> {
        if configs.is_empty() {
            return Err("removing every [[tier]] rule needs a restart".into());
        }
        let next = TierRules::new(configs)?;
        if next.any_behind() && self.behind.is_none() {
            return Err(
                "the first write = \"behind\" rule needs a restart (its drain starts at startup)"
                    .into(),
            );
        }
        if next.any_spill() && self.spill.is_none() {
            return Err(
                "the first policy = \"spill\" rule needs a restart (its scanner starts at startup)"
                    .into(),
            );
        }
        Ok(next)
    }

    /// Puts rules checked by [`Tiers::check_rules`] in force: commands
    /// planned from now on see them; connections are not touched. The
    /// gate is widened first, so no key either rule set names is turned
    /// away while they change places.
    pub fn swap_rules(&self, next: TierRules) {
        self.gate.widen(&next);
        self.rules.store(Arc::new(next));
        self.gate.set(&self.rules.load());
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Takes the per-key locks the mirror and read-through take (byte
    /// order), for admin commands that write keys (`PROXY TIER WARM`).
    pub async fn lock_keys(&self, keys: &[bytes::Bytes]) -> Vec<locks::KeyGuard<'_>> {
        self.locks.lock_all(keys).await
    }

    /// The counters (shared with the metrics collector).
    pub fn stats(&self) -> &Arc<TierStats> {
        &self.stats
    }

    /// Write-behind's state (its series are registered from it).
    pub fn behind(&self) -> Option<&Arc<behind::Behind>> {
        self.behind.as_ref()
    }

    /// Starts write-behind's drain on the backend (when a rule is
    /// write-behind). In cluster mode each slot has its own outbox
    /// (`behind/outbox.rs`).
    pub fn start_drain(
        self: &Arc<Self>,
        router: Arc<crate::backend::router::Router>,
        cluster: Option<Arc<crate::backend::cluster::ClusterRouter>>,
    ) -> Result<(), String> {
        let Some(b) = &self.behind else {
            return Ok(());
        };
        if cluster.is_some() && b.config().outbox_key.contains(['{', '}']) {
            return Err(
                "postgres.write_behind.outbox_key: in cluster mode it must not contain '{' or '}' (strata adds a hash tag per slot)".into(),
            );
        }
        behind::drain::start(
            b.clone(),
            Arc::downgrade(self),
            router,
            cluster,
            self.statement_timeout,
        );
        Ok(())
    }

    /// Spill's state, when a rule spills.
    pub fn spill(&self) -> Option<&Arc<spill::Spill>> {
        self.spill.as_ref()
    }

    /// Starts spill's background scanner (when a rule spills): it SCANs
    /// every primary, so it takes the cluster router in cluster mode.
    pub fn start_spill(
        self: &Arc<Self>,
        router: Arc<crate::backend::router::Router>,
        cluster: Option<Arc<crate::backend::cluster::ClusterRouter>>,
    ) {
        self.cluster.store(cluster.is_some(), Ordering::Relaxed);
        if let Some(s) = &self.spill {
            spill::scanner::start(Arc::downgrade(self), router, cluster, s.config().clone());
        }
    }

    /// Runs the migrations unless they ran already.
    pub async fn ensure_schema(&self) -> Result<(), StoreError> {
        if self.schema_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = self.migrating.lock().await;
        if self.schema_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.store.migrate().await {
            Ok(()) => {
                self.schema_ready.store(true, Ordering::Release);
                self.postgres_answered(true);
                Ok(())
            }
            Err(e) => {
                self.postgres_answered(false);
                Err(StoreError::Unavailable(e))
            }
        }
    }

    /// Whether the last statement (or the background probe) reached Postgres.
    pub fn postgres_up(&self) -> bool {
        self.stats.postgres_up.load(Ordering::Relaxed) == 1
    }

    /// Whether an unreachable Postgres makes strata not ready (503) rather
    /// than degraded (`[postgres] ready_needs_postgres`).
    pub fn ready_needs_postgres(&self) -> bool {
        self.ready_needs_postgres
    }

    /// Records whether the last statement reached Postgres.
    fn postgres_answered(&self, up: bool) {
        self.stats
            .postgres_up
            .store(u64::from(up), Ordering::Relaxed);
    }

    /// Startup: migrate (retrying in the background while Postgres is
    /// unreachable), then sweep expired rows and old tombstones every
    /// `sweep_interval_ms` until the tiers are dropped.
    pub fn start_background(self: &Arc<Self>, pg: &PostgresConfig) {
        let weak = Arc::downgrade(self);
        let interval = Duration::from_millis(pg.sweep_interval_ms);
        let batch = pg.sweep_batch;
        let retention = Duration::from_secs(pg.tombstone_retention_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut logged_down = false;
            loop {
                tick.tick().await;
                let Some(tiers) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = tiers.ensure_schema().await {
                    if !logged_down {
                        tracing::warn!(error = %e, "tier: postgres unreachable; retrying");
                        logged_down = true;
                    }
                    continue;
                }
                if logged_down {
                    tracing::info!("tier: postgres reachable, schema ready");
                    logged_down = false;
                }
                tiers.sweep(batch, retention).await;
            }
        });
    }

    /// Deletes expired rows (batch after batch while full ones come back)
    /// and tombstones past their retention.
    async fn sweep(&self, batch: i64, retention: Duration) {
        for _ in 0..100 {
            // Also the probe behind `postgres_up` (readiness, the gauge).
            match self.store.sweep_expired(batch).await {
                Ok(n) => {
                    self.postgres_answered(true);
                    self.stats
                        .swept
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    if (n as i64) < batch {
                        break;
                    }
                }
                Err(e) => {
                    if !matches!(e, StoreError::Rejected(_)) {
                        self.postgres_answered(false);
                    }
                    tracing::debug!(error = %e, "tier: sweep failed");
                    return;
                }
            }
        }
        if let Err(e) = self.store.sweep_tombstones(retention, batch).await {
            tracing::debug!(error = %e, "tier: tombstone sweep failed");
        }
    }
}

/// The store's options from `[postgres]`.
pub fn store_options(pg: &PostgresConfig) -> Result<StoreOptions, String> {
    Ok(StoreOptions {
        url: pg.resolved_url()?,
        pool_size: pg.pool_size,
        connect_timeout: Duration::from_millis(pg.connect_timeout_ms),
        statement_timeout: Duration::from_millis(pg.statement_timeout_ms),
    })
}

/// The replicas and read routing from `[postgres]`.
pub fn replica_options(pg: &PostgresConfig) -> store::ReplicaOptions {
    store::ReplicaOptions {
        urls: pg.replicas.clone(),
        read_from: pg.read_from,
        max_lag_ms: pg.max_replica_lag_ms,
        probe_interval: Duration::from_millis(pg.probe_interval_ms),
    }
}

/// `strata migrate`: applies the schema and returns.
pub async fn migrate(pg: &PostgresConfig) -> Result<(), String> {
    let store = Store::connect(&store_options(pg)?)?;
    store.migrate().await
}

/// Milliseconds since the Unix epoch (strata's clock: relative TTLs are
/// turned into absolute times once, and both tiers get the same time).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The Redis type a TYPE reply (or a stored type name) names, as the
/// `type` column holds it; `None` for anything else (`none`, a module
/// type, a malformed name).
pub fn redis_type(name: Option<&[u8]>) -> Option<&'static str> {
    Some(match name? {
        b"string" => "string",
        b"hash" => "hash",
        b"list" => "list",
        b"set" => "set",
        b"zset" => "zset",
        b"stream" => "stream",
        _ => return None,
    })
}
