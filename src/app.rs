//! Wiring and shutdown: the only module that sees every other one.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::cluster::stats::ClusterStats;
use crate::backend::cluster::ClusterRouter;
use crate::backend::router::Router;
use crate::config::{BackendMode, Config};
use crate::protocol::RequestParser;
use crate::server::{self, Shared};
use crate::telemetry::{self, Metrics, Readiness};
use crate::transform::{TransformStats, Transforms};

pub mod reload;

/// A running strata: its bound addresses and the handle to stop it.
#[derive(Debug)]
pub struct Running {
    /// Where clients connect (the real port when the config said 0): the
    /// plain listener, or the TLS one when `tls.plain = false`.
    pub addr: SocketAddr,
    /// Where TLS clients connect, when `tls.listen` is set.
    pub tls_addr: Option<SocketAddr>,
    /// Where /metrics and /health/* are served, when enabled.
    pub http_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    listener: JoinHandle<()>,
    /// Hot reload (SIGHUP, `PROXY RELOAD`, `PROXY CONFIG SET`).
    pub reloader: Arc<reload::Reloader>,
}

impl Running {
    /// Stops accepting, lets sessions finish their in-flight replies within
    /// the grace period, and returns when done.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.listener.await;
    }

    /// Waits until the listener finishes (after a shutdown).
    pub async fn wait(self) {
        let _ = self.listener.await;
    }

    /// Signals shutdown without waiting.
    pub fn trigger_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// Starts strata: binds the listeners, connects the backend, and serves.
/// Must run inside a tokio runtime.
pub async fn start(config: Config) -> std::io::Result<Running> {
    // Boxed: the startup future is large, and callers hold it inline.
    Box::pin(start_from(config, reload::Origin::default())).await
}

/// [`start`] for a config read from `origin` (a file, and the command
/// line's settings): what a reload reads again.
pub async fn start_from(mut config: Config, origin: reload::Origin) -> std::io::Result<Running> {
    // TLS files are read here: a missing or malformed certificate or key
    // stops startup.
    config.backend.tls =
        crate::tls::BackendConnectors::from_config(&config.tls).map_err(std::io::Error::other)?;
    let acceptor = config
        .tls
        .listen
        .map(|_| crate::tls::Acceptor::from_config(&config.tls))
        .transpose()
        .map_err(std::io::Error::other)?;
    // Keys are read here: a missing or malformed key stops startup.
    let transform_stats = Arc::new(TransformStats::new());
    let transforms = Transforms::from_config(
        &config.transform_config(),
        config.server.proto_max_bulk_len,
        transform_stats.clone(),
    )
    .map_err(std::io::Error::other)?;
    let mut metrics = Metrics::new();
    metrics.register_transform_stats(transform_stats);
    // Postgres tiers: the pool connects lazily and the schema is applied
    // in the background until Postgres answers, so strata serves the keys
    // no rule names while Postgres is down.
    let tiers = crate::tier::Tiers::from_config(config.postgres.as_ref(), &config.tier)
        .map_err(std::io::Error::other)?;
    if let (Some(tiers), Some(pg)) = (&tiers, &config.postgres) {
        metrics.register_tier_stats(tiers.stats().clone(), tiers.store().clone());
        if let Some(behind) = tiers.behind() {
            behind.stats().register(metrics.registry_mut());
        }
        if let Some(spill) = tiers.spill() {
            spill.stats().register(metrics.registry_mut());
        }
        tiers.start_background(pg);
    }
    let audit = if config.audit.enabled {
        let audit = crate::auth::audit::Audit::start(
            &config.audit,
            metrics.registry_mut(),
            config.postgres.as_ref(),
        )
        .map_err(std::io::Error::other)?;
        Some(Arc::new(audit))
    } else {
        None
    };
    let reloader = Arc::new(reload::Reloader::new(
        origin,
        &config,
        metrics.registry_mut(),
    ));
    let cluster_stats = (config.backend.mode == BackendMode::Cluster)
        .then(|| ClusterStats::register(metrics.registry_mut()));
    let coord_stats = Arc::new(crate::coord::CoordStats::default());
    if config.coord.enabled {
        coord_stats.register(metrics.registry_mut(), "redis");
    }
    let metrics = Arc::new(metrics);
    let mut cluster = None;
    let mut sentinel = None;
    let backend = match config.backend.mode {
        BackendMode::Standalone => Router::standalone(&config.backend, &metrics),
        BackendMode::Sentinel => {
            let (router, following) = crate::backend::sentinel::start(&config.backend, &metrics)
                .await
                .map_err(std::io::Error::other)?;
            sentinel = Some(following);
            router
        }
        BackendMode::Cluster => {
            let stats = cluster_stats
                .ok_or_else(|| std::io::Error::other("cluster stats not registered"))?;
            let router = ClusterRouter::start(&config.backend, &metrics, stats)
                .await
                .map_err(std::io::Error::other)?;
            let first = router.view().primaries().next().cloned().ok_or_else(|| {
                std::io::Error::other("cluster discovery: no primary serves any slot")
            })?;
            cluster = Some(router);
            // The plain router stays for what is not slot-routed (INFO's
            // backend fields, dedicated connections' release, …).
            Arc::new(Router::new(
                "cluster",
                crate::backend::router::Topology {
                    primary: first,
                    replicas: Vec::new(),
                },
                &config.backend,
            ))
        }
    };
    if let Some(tiers) = &tiers {
        // Write-behind's drain shares the backend's connections.
        tiers
            .start_drain(backend.clone(), cluster.clone())
            .map_err(std::io::Error::other)?;
        tiers.start_spill(backend.clone(), cluster.clone());
    }
    let coord =
        crate::coord::Coord::new(&config.coord, coord_stats, backend.clone(), cluster.clone());
    if let Some(audit) = &audit {
        tokio::spawn(audit_failovers(Arc::downgrade(&backend), audit.clone()));
    }
    tokio::spawn(export_backend_metrics(
        Arc::downgrade(&backend),
        cluster.as_ref().map(Arc::downgrade),
        metrics.clone(),
    ));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let drain = crate::admin::drain::Drain::default();

    let http_addr = if config.telemetry.listen.is_empty() {
        None
    } else {
        let listener = TcpListener::bind(&config.telemetry.listen).await?;
        let addr = listener.local_addr()?;
        let ready_backend = backend.clone();
        let ready_cluster = cluster.clone();
        let ready_tiers = tiers.clone();
        let ready_drain = drain.clone();
        let state = Arc::new(telemetry::HttpState {
            metrics: metrics.clone(),
            ready: Box::new(move || {
                if ready_drain.is_on() {
                    return Readiness::NotReady("draining (PROXY DRAIN)\n".to_string());
                }
                let backend = if let Some(cluster) = &ready_cluster {
                    cluster_readiness(cluster)
                } else {
                    let primary = ready_backend.primary();
                    if !primary.is_healthy() {
                        Readiness::NotReady(format!(
                            "primary {} not answering PING\n",
                            primary.addr()
                        ))
                    } else if ready_backend.discovery_ok() {
                        Readiness::Ready
                    } else {
                        Readiness::Degraded(format!(
                            "discovery: no sentinel answers; serving the last known primary {}",
                            primary.addr()
                        ))
                    }
                };
                tier_readiness(backend, ready_tiers.as_deref())
            }),
        });
        let mut rx = shutdown_rx.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = telemetry::serve(listener, state, stop).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
        Some(addr)
    };

    let listeners = bind(&config, acceptor.clone()).await?;
    let tls_addr = match &listeners.tls {
        Some((l, _)) => Some(l.local_addr()?),
        None => None,
    };
    let addr = match (&listeners.plain, tls_addr) {
        (Some(l), _) => l.local_addr()?,
        (None, Some(a)) => a,
        (None, None) => return Err(std::io::Error::other("no listener configured")),
    };
    tracing::info!(%addr, tls = ?tls_addr, mode = backend.mode(), backend = %backend.primary().addr(), "strata listening");
    if let Some(a) = &acceptor {
        reloader.attach_tls(a.clone());
    }
    spawn_tls_reload(&config, acceptor, shutdown_rx.clone());
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let auth = crate::auth::AuthPolicy::with_auth(&config.backend, &config.auth);
    let slowlog = crate::admin::slowlog::Slowlog::new(
        config.server.slowlog_log_slower_than_us,
        config.server.slowlog_max_len,
    );
    let shared = Arc::new(Shared {
        parser: RequestParser::new(config.server.proto_max_bulk_len),
        server: arc_swap::ArcSwap::from_pointee(config.server),
        backend,
        metrics,
        clients: server::clients::ClientRegistry::with_default_user(auth.own_user.clone()),
        started: Instant::now(),
        transforms: crate::transform::LiveTransforms::new(transforms),
        cluster,
        auth,
        tiers,
        coord,
        audit,
        reloader: reloader.clone(),
        slowlog,
        drain,
        sentinel,
    });
    reloader.attach(&shared);
    let listener = tokio::spawn(server::listener::run(listeners, shared, shutdown_rx, grace));
    Ok(Running {
        addr,
        tls_addr,
        http_addr,
        shutdown: shutdown_tx,
        listener,
        reloader,
    })
}

/// Records each change of the backend's primary (a Sentinel failover
/// followed) in the audit log. A watcher, not a hook in the Sentinel
/// follower: the backend knows nothing of the audit log.
async fn audit_failovers(backend: std::sync::Weak<Router>, audit: Arc<crate::auth::audit::Audit>) {
    let mut primary = match backend.upgrade() {
        Some(b) => b.primary().addr().to_string(),
        None => return,
    };
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let Some(b) = backend.upgrade() else {
            return;
        };
        let now = b.primary().addr().to_string();
        if now != primary {
            audit.record(crate::auth::audit::Event::Failover {
                from: std::mem::replace(&mut primary, now.clone()),
                to: now,
            });
        }
    }
}

/// Binds the plain listener (unless `tls.plain = false`) and the TLS one.
async fn bind(
    config: &Config,
    acceptor: Option<Arc<crate::tls::Acceptor>>,
) -> std::io::Result<server::listener::Listeners> {
    let plain = if config.tls.plain {
        Some(TcpListener::bind(config.server.listen).await?)
    } else {
        None
    };
    let tls = match (config.tls.listen, acceptor) {
        (Some(addr), Some(acceptor)) => Some((TcpListener::bind(addr).await?, acceptor)),
        _ => None,
    };
    Ok(server::listener::Listeners { plain, tls })
}

/// Re-reads the TLS files (both sides) every `tls.reload_interval_ms` and
/// on SIGHUP, until shutdown.
fn spawn_tls_reload(
    config: &Config,
    acceptor: Option<Arc<crate::tls::Acceptor>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut items: Vec<Arc<dyn crate::tls::reload::Reload>> = Vec::new();
    if let Some(a) = acceptor {
        items.push(a);
    }
    let connectors = &config.backend.tls;
    for c in [&connectors.data, &connectors.sentinel]
        .into_iter()
        .flatten()
    {
        items.push(c.clone());
    }
    let interval = Duration::from_millis(config.tls.reload_interval_ms);
    crate::tls::reload::spawn(items, interval, async move {
        let _ = shutdown.wait_for(|v| *v).await;
    });
}

/// A tier whose Postgres does not answer degrades readiness (200, with the
/// reason): keys no rule names are still served, and resident mirrored
/// keys are still read, but mirrored writes fail. With `[postgres]
/// ready_needs_postgres = true` it makes strata not ready (503) instead.
fn tier_readiness(backend: Readiness, tiers: Option<&crate::tier::Tiers>) -> Readiness {
    const WHY: &str = "tier: postgres unreachable; writes to mirrored keys fail";
    match (backend, tiers) {
        (Readiness::Ready | Readiness::Degraded(_), Some(t))
            if !t.postgres_up() && t.ready_needs_postgres() =>
        {
            Readiness::NotReady(format!("{WHY}\n"))
        }
        (Readiness::Ready, Some(t)) if !t.postgres_up() => Readiness::Degraded(WHY.to_string()),
        (other, _) => other,
    }
}

/// Cluster mode: ready while every slot has an owner whose primary answers PING.
fn cluster_readiness(cluster: &ClusterRouter) -> Readiness {
    let view = cluster.view();
    if let Some(down) = view.primaries().find(|n| !n.is_healthy()) {
        return Readiness::NotReady(format!(
            "cluster primary {} not answering PING\n",
            down.addr()
        ));
    }
    if !cluster.is_healthy() {
        return Readiness::Degraded(format!(
            "cluster: {} slots without an owner, or the last topology read failed\n",
            view.map.unassigned()
        ));
    }
    Readiness::Ready
}

/// Keeps `strata_backend_breaker_state` in step with every node of the
/// topology, in cluster mode of the slot map (and drops the series of nodes
/// that left it), until the router is gone.
async fn export_backend_metrics(
    router: Weak<Router>,
    cluster: Option<Weak<ClusterRouter>>,
    metrics: Arc<Metrics>,
) {
    let mut exported: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(router) = router.upgrade() else {
            return;
        };
        let topology = router.topology();
        let mut nodes: Vec<Arc<crate::backend::node::Node>> =
            std::iter::once(topology.primary.clone())
                .chain(topology.replicas.iter().cloned())
                .collect();
        // Cluster mode: every node of the slot map.
        if let Some(cluster) = cluster.as_ref().and_then(Weak::upgrade) {
            nodes = cluster.view().nodes().cloned().collect();
        }
        let mut now = Vec::with_capacity(nodes.len());
        for node in &nodes {
            metrics.set_breaker_state(node.addr(), node.breaker().state() as i64);
            now.push(node.addr().to_string());
        }
        for gone in exported.iter().filter(|a| !now.contains(a)) {
            metrics.remove_breaker_state(gone);
        }
        exported = now;
    }
}
