//! Sentinel mode: find the current primary of a named master through Redis
//! Sentinel, and follow it across failovers without the application
//! noticing more than a pause.
//!
//! * **Discovery.** Every sentinel is asked, in parallel,
//!   `SENTINEL GET-MASTER-ADDR-BY-NAME`, the master's `config-epoch`
//!   (`SENTINEL MASTER`) and `SENTINEL REPLICAS`. The answer with the
//!   highest epoch is the newest configuration ([`view::decide`]); a
//!   sentinel that has not yet heard of the last failover cannot pull strata
//!   back. A named primary gets traffic only once its own `ROLE` says
//!   `master`.
//! * **Following.** One subscription per sentinel listens for the failover
//!   events ([`view::CHANNELS`]); polling every `poll_interval_ms` is the
//!   fallback, and so is any sign of trouble on the current primary (a
//!   `-READONLY` reply or a lost connection, signalled by its
//!   [`Node::trouble`]). When a sentinel starts a failover (`+try-failover`)
//!   requests are held ([`Router::hold`]) instead of reaching a primary that
//!   is about to be demoted; when the promoted replica is confirmed
//!   (`+promoted-slave`, `+switch-master`, or a poll), the router swaps to it
//!   and the held requests go there. Requests still in flight on the old
//!   primary fail with `ERR backend connection lost: <old> (failover: …)`.
//! * **Replicas** for reads come from `SENTINEL REPLICAS`, minus those down,
//!   disconnected, with their master link not ok, not connected to the
//!   primary or too far behind it ([`view::usable_replicas`]). Nodes of
//!   replicas that stay are kept, so a refresh never churns connections.
//! * **No sentinel reachable**: strata keeps serving the primary it knows;
//!   `/health/ready` says discovery is degraded.
//!
//! All of this is control plane: it runs on connections of its own
//! ([`control`]), never on the data path's.

pub mod control;
mod following;
pub mod view;

pub use following::Following;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::control::{ControlConn, Credentials, Value};
use self::view::{Decision, Event, ReplicaInfo, Role, View};
use super::node::Node;
use super::router::{Router, Topology};
use super::ConnSettings;
use crate::config::{BackendConfig, ReadFrom};
use crate::telemetry::Metrics;

/// Why sentinel mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    /// No sentinel named a primary that confirmed its role in time.
    #[error("sentinel discovery of master '{master}' failed after {waited_ms} ms: {reason}")]
    Discovery {
        /// The master name.
        master: String,
        /// How long strata tried.
        waited_ms: u64,
        /// The last reason.
        reason: String,
    },
}

/// What the discovery tasks share.
#[derive(Debug)]
struct Ctx {
    sentinels: Vec<String>,
    master: String,
    /// For the sentinels.
    creds: Credentials,
    /// For the Redis servers (ROLE).
    settings: ConnSettings,
    /// Bounds every control-plane exchange.
    timeout: Duration,
}

/// One discovery round: every sentinel's answer, and ROLE of every server
/// that matters (the current primary and each one a sentinel named).
#[derive(Debug, Default)]
struct Round {
    /// The primary strata was using when the round started.
    current: String,
    views: Vec<View>,
    errors: Vec<(String, String)>,
    roles: HashMap<String, Option<Role>>,
}

/// Messages into the follower.
#[derive(Debug)]
enum Msg {
    Event {
        sentinel: String,
        channel: String,
        event: Event,
        at: Instant,
    },
    /// A subscription (re)connected: events may have been missed.
    Subscribed(String),
    Round(Round),
}

/// Discovers the primary, builds the router and starts following.
/// Waits up to `backend.sentinel.discovery_timeout_ms` for a primary that
/// confirms its role. The [`Following`] handle lets a config reload point
/// the router at other sentinels or another master ([`Following::restart`]).
pub async fn start(
    config: &BackendConfig,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<Router>, Arc<Following>), SentinelError> {
    let found = discover(config, metrics).await?;
    let router = Arc::new(Router::new("sentinel", found.topology, config));
    metrics.set_discovery_ok(true);
    let stop = follow(&router, found.ctx.clone(), found.epoch, config, metrics);
    let following = Following::new(&found.ctx, stop);
    Ok((router, Arc::new(following)))
}

/// What a discovery found: the confirmed primary's nodes (and replicas
/// for reads), at which epoch, and the context to follow it with.
struct Found {
    ctx: Arc<Ctx>,
    topology: Topology,
    epoch: u64,
}

/// Asks the sentinels until one names a primary whose ROLE confirms it (or
/// `discovery_timeout_ms` passes), and starts that primary's node.
async fn discover(config: &BackendConfig, metrics: &Arc<Metrics>) -> Result<Found, SentinelError> {
    let sc = &config.sentinel;
    let ctx = Arc::new(Ctx {
        sentinels: sc.sentinels.clone(),
        master: sc.master_name.clone(),
        creds: Credentials {
            username: sc.username.clone(),
            password: sc.resolved_password(),
            tls: config.tls.sentinel.clone(),
        },
        settings: ConnSettings::from_config(config),
        timeout: Duration::from_millis(config.connect_timeout_ms.min(config.request_timeout_ms)),
    });
    let started = Instant::now();
    let deadline = started + Duration::from_millis(sc.discovery_timeout_ms);
    let retry = Duration::from_millis(sc.poll_interval_ms.clamp(10, 500));
    let (primary, epoch, round) = loop {
        let round = gather(&ctx, None).await;
        let reason = match view::decide(&round.views, "", None) {
            Decision::Switch { to, epoch } | Decision::SwitchIfCurrentLost { to, epoch } => {
                match view::confirm_switch(round.roles.get(&to).and_then(Option::as_ref)) {
                    Ok(()) => break (to, epoch, round),
                    Err(why) => format!("the sentinels name {to}, but {why}"),
                }
            }
            Decision::Stay { .. } | Decision::Unknown => describe_failure(&ctx.master, &round),
        };
        if Instant::now() + retry > deadline {
            return Err(SentinelError::Discovery {
                master: ctx.master.clone(),
                waited_ms: started.elapsed().as_millis() as u64,
                reason,
            });
        }
        tracing::warn!(master = %ctx.master, %reason, "sentinel discovery: no primary yet; retrying");
        tokio::time::sleep(retry).await;
    };
    tracing::info!(master = %ctx.master, %primary, epoch, "sentinel discovery: primary confirmed");

    let primary_node = Node::start(&primary, config, metrics);
    let mut replicas = Vec::new();
    if config.read_from != ReadFrom::Primary {
        let role = round.roles.get(&primary).and_then(Option::as_ref);
        let (usable, skipped) = view::usable_replicas(
            best_replicas(&round.views, &primary),
            &primary,
            role,
            sc.max_replica_lag_bytes,
        );
        log_skipped(&skipped);
        replicas = usable
            .iter()
            .map(|a| Node::start(a, config, metrics))
            .collect();
    }
    Ok(Found {
        ctx,
        topology: Topology {
            primary: primary_node,
            replicas,
        },
        epoch,
    })
}

/// Starts the follower of `router` (and one subscription per sentinel);
/// they stop when the returned sender is dropped or set.
fn follow(
    router: &Arc<Router>,
    ctx: Arc<Ctx>,
    epoch: u64,
    config: &BackendConfig,
    metrics: &Arc<Metrics>,
) -> watch::Sender<bool> {
    let (stop_tx, stop) = watch::channel(false);
    let (tx, rx) = mpsc::channel(1024);
    for sentinel in &ctx.sentinels {
        tokio::spawn(subscribe(sentinel.clone(), ctx.clone(), tx.clone()));
    }
    let follower = Follower {
        ctx,
        router: Arc::downgrade(router),
        config: config.clone(),
        metrics: metrics.clone(),
        epoch: Some(epoch),
        holds: HashSet::new(),
        hold_until: None,
        trouble_since: None,
        refreshing: false,
        refresh_pending: false,
        last_refresh: Instant::now(),
        discovery_ok: true,
        skipped: Vec::new(),
        probing: None,
        stop,
    };
    tokio::spawn(follower.run(tx, rx));
    stop_tx
}

/// Explains a round that named no usable primary.
fn describe_failure(master: &str, round: &Round) -> String {
    if round.views.is_empty() {
        let errors: Vec<String> = round
            .errors
            .iter()
            .map(|(s, e)| format!("{s}: {e}"))
            .collect();
        format!("no sentinel answered ({})", errors.join("; "))
    } else {
        format!("no sentinel knows a master named '{master}'")
    }
}

/// The replicas as the newest configuration lists them (preferring a
/// sentinel that names `primary`).
fn best_replicas<'a>(views: &'a [View], primary: &str) -> &'a [ReplicaInfo] {
    let best = views
        .iter()
        .filter(|v| v.master.is_some())
        .map(|v| v.epoch)
        .max();
    views
        .iter()
        .filter(|v| Some(v.epoch) == best)
        .max_by_key(|v| v.master.as_deref() == Some(primary))
        .map(|v| v.replicas.as_slice())
        .unwrap_or(&[])
}

fn log_skipped(skipped: &[(String, String)]) {
    for (addr, why) in skipped {
        tracing::info!(replica = %addr, reason = %why, "replica gets no reads");
    }
}

/// Asks every sentinel at once, then ROLE of every server that matters.
async fn gather(ctx: &Arc<Ctx>, current: Option<&str>) -> Round {
    let mut set = JoinSet::new();
    for sentinel in &ctx.sentinels {
        let ctx = ctx.clone();
        let sentinel = sentinel.clone();
        set.spawn(async move {
            let answer = query_sentinel(&ctx, &sentinel).await;
            (sentinel, answer)
        });
    }
    let mut round = Round {
        current: current.unwrap_or_default().to_string(),
        ..Round::default()
    };
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((_, Ok(view))) => round.views.push(view),
            Ok((sentinel, Err(e))) => round.errors.push((sentinel, e.to_string())),
            Err(e) => round.errors.push(("?".into(), e.to_string())),
        }
    }
    // Keep the configured order, so ties are broken the same way each time.
    round
        .views
        .sort_by_key(|v| ctx.sentinels.iter().position(|s| *s == v.sentinel));
    let mut addrs: Vec<String> = round
        .views
        .iter()
        .filter_map(|v| v.master.clone())
        .collect();
    if let Some(c) = current {
        addrs.push(c.to_string());
    }
    addrs.sort();
    addrs.dedup();
    let mut set = JoinSet::new();
    for addr in addrs {
        let ctx = ctx.clone();
        set.spawn(async move {
            let role = role_of(&ctx, &addr).await;
            (addr, role)
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Ok((addr, role)) = joined {
            round.roles.insert(addr, role);
        }
    }
    round
}

/// One sentinel's view of the master.
async fn query_sentinel(ctx: &Ctx, sentinel: &str) -> std::io::Result<View> {
    let mut conn = ControlConn::connect(sentinel, &ctx.creds, ctx.timeout).await?;
    let name = ctx.master.as_bytes();
    let addr = conn
        .call(&[b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", name])
        .await?;
    let master = match addr.as_array() {
        Some([host, port]) => match (host.as_str(), port.as_int()) {
            (Some(h), Some(p)) => Some(view::join_addr(&h, p)),
            _ => None,
        },
        _ => None,
    };
    if master.is_none() {
        return Ok(View {
            sentinel: sentinel.to_string(),
            master: None,
            epoch: 0,
            replicas: Vec::new(),
        });
    }
    let info = conn.call(&[b"SENTINEL", b"MASTER", name]).await?;
    let epoch = info
        .as_fields()
        .and_then(|f| f.into_iter().find(|(k, _)| k == "config-epoch"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let replicas = conn.call(&[b"SENTINEL", b"REPLICAS", name]).await?;
    let replicas = replicas
        .as_array()
        .map(|items| items.iter().filter_map(ReplicaInfo::parse).collect())
        .unwrap_or_default();
    Ok(View {
        sentinel: sentinel.to_string(),
        master,
        epoch,
        replicas,
    })
}

/// `ROLE` of a Redis server (None: it did not answer).
async fn role_of(ctx: &Ctx, addr: &str) -> Option<Role> {
    let stream = match super::connect_authenticated(addr, &ctx.settings).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%addr, error = %e, "ROLE: cannot connect");
            return None;
        }
    };
    let mut conn = ControlConn::from_stream(stream, ctx.timeout);
    match conn.call(&[b"ROLE"]).await {
        Ok(v) => Role::parse(&v),
        Err(e) => {
            tracing::debug!(%addr, error = %e, "ROLE failed");
            None
        }
    }
}

/// Asks `addr` for its ROLE every few milliseconds until it reports itself
/// a primary (true), the router's primary is already `addr` or gone, or
/// `until` passes (false). Sentinel itself only looks once a second.
async fn wait_promoted(ctx: &Ctx, router: &Weak<Router>, addr: &str, until: Instant) -> bool {
    let mut conn: Option<ControlConn> = None;
    while Instant::now() < until {
        match router.upgrade() {
            Some(r) if r.primary().addr() != addr => {}
            _ => return false,
        }
        if conn.is_none() {
            conn = super::connect_authenticated(addr, &ctx.settings)
                .await
                .ok()
                .map(|s| ControlConn::from_stream(s, ctx.timeout));
        }
        if let Some(c) = conn.as_mut() {
            match c.call(&[b"ROLE"]).await {
                Ok(v) if Role::parse(&v).is_some_and(|r| r.is_master()) => return true,
                Ok(_) => {}
                // The promotion kills the replica's client connections.
                Err(_) => conn = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Keeps one subscription to `sentinel` alive, forwarding its events.
async fn subscribe(sentinel: String, ctx: Arc<Ctx>, tx: mpsc::Sender<Msg>) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        if tx.is_closed() {
            return;
        }
        let mut subscribed = false;
        match subscription(&sentinel, &ctx, &tx, &mut warned, &mut subscribed).await {
            Ok(()) => return,
            Err(e) => {
                if subscribed {
                    backoff = Duration::from_millis(100);
                }
                if !warned {
                    tracing::warn!(%sentinel, error = %e, "sentinel subscription down; retrying");
                    warned = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One subscribed connection, until it fails (`Err`) or the follower is
/// gone (`Ok`). Sets `subscribed` once the sentinel confirmed, and clears
/// `warned` (logging the recovery).
async fn subscription(
    sentinel: &str,
    ctx: &Ctx,
    tx: &mpsc::Sender<Msg>,
    warned: &mut bool,
    subscribed: &mut bool,
) -> std::io::Result<()> {
    let mut conn = ControlConn::connect(sentinel, &ctx.creds, ctx.timeout).await?;
    let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    args.extend(view::CHANNELS.iter().map(|c| c.as_bytes()));
    conn.send(&args).await?;
    // The confirmations (one per channel) prove the sentinel is there.
    for _ in 0..view::CHANNELS.len() {
        tokio::time::timeout(ctx.timeout, conn.next())
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no SUBSCRIBE confirmation")
            })??;
    }
    *subscribed = true;
    if std::mem::take(warned) {
        tracing::info!(%sentinel, "sentinel subscription restored");
    } else {
        tracing::debug!(%sentinel, "subscribed to sentinel events");
    }
    if tx
        .send(Msg::Subscribed(sentinel.to_string()))
        .await
        .is_err()
    {
        return Ok(());
    }
    // A silent sentinel (host gone, process stopped) is noticed by PING.
    let idle = Duration::from_secs(3).max(ctx.timeout * 2);
    let mut pinged = false;
    loop {
        let frame = match tokio::time::timeout(idle, conn.next()).await {
            Ok(frame) => frame?,
            Err(_) if pinged => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "sentinel stopped answering",
                ));
            }
            Err(_) => {
                if tx.is_closed() {
                    return Ok(());
                }
                conn.send(&[b"PING"]).await?;
                pinged = true;
                continue;
            }
        };
        pinged = false;
        let Some(items) = frame.as_array() else {
            continue;
        };
        let (Some(kind), Some(channel), Some(payload)) = (
            items.first().and_then(Value::as_str),
            items.get(1).and_then(Value::as_str),
            items.get(2).and_then(Value::as_str),
        ) else {
            continue;
        };
        if kind != "message" {
            continue;
        }
        let Some(event) = view::parse_event(&channel, &payload, &ctx.master) else {
            continue;
        };
        tracing::debug!(%sentinel, %channel, %payload, "sentinel event");
        let msg = Msg::Event {
            sentinel: sentinel.to_string(),
            channel,
            event,
            at: Instant::now(),
        };
        if tx.send(msg).await.is_err() {
            return Ok(());
        }
    }
}

/// Least time between two refreshes that trouble or events trigger.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);

/// The task that follows the master: owns the decisions, swaps the router.
struct Follower {
    ctx: Arc<Ctx>,
    router: Weak<Router>,
    config: BackendConfig,
    metrics: Arc<Metrics>,
    /// The config epoch at which the current primary was last confirmed
    /// (None: adopted from an event; the next round tells).
    epoch: Option<u64>,
    /// Sentinels that started a failover not yet over.
    holds: HashSet<String>,
    hold_until: Option<Instant>,
    /// The first sign of trouble with the current primary (start of the
    /// failover's duration).
    trouble_since: Option<Instant>,
    refreshing: bool,
    refresh_pending: bool,
    last_refresh: Instant,
    discovery_ok: bool,
    /// Replicas skipped last time, to log changes only.
    skipped: Vec<(String, String)>,
    /// The replica being promoted whose ROLE a probe is watching.
    probing: Option<String>,
    /// Set (or dropped) when a reload replaces this follower.
    stop: watch::Receiver<bool>,
}

impl Follower {
    async fn run(mut self, tx: mpsc::Sender<Msg>, mut rx: mpsc::Receiver<Msg>) {
        let mut poll =
            tokio::time::interval(Duration::from_millis(self.config.sentinel.poll_interval_ms));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await; // the first tick is immediate; startup just did a round
        loop {
            let Some(router) = self.router.upgrade() else {
                return;
            };
            let primary = router.primary();
            drop(router);
            let trouble = primary.trouble().clone();
            let soon = self.last_refresh + MIN_REFRESH_GAP;
            let mut stop = self.stop.clone();
            tokio::select! {
                // A reload started another follower: this one's rx goes
                // with it, so its subscriptions end too.
                _ = stop.changed() => return,
                _ = poll.tick() => {
                    self.settle(&primary);
                    self.refresh(&tx, &primary);
                }
                msg = rx.recv() => match msg {
                    Some(Msg::Round(round)) => self.on_round(round),
                    Some(Msg::Subscribed(sentinel)) => {
                        tracing::debug!(%sentinel, "sentinel subscription up; refreshing in case events were missed");
                        self.refresh(&tx, &primary);
                    }
                    Some(Msg::Event { sentinel, channel, event, at }) => {
                        self.on_event(&sentinel, &channel, event, at, &tx).await;
                    }
                    None => return,
                },
                _ = trouble.notified() => {
                    if self.trouble_since.is_none() {
                        tracing::debug!(primary = %primary.addr(), "trouble on the primary; asking the sentinels");
                    }
                    self.trouble_since.get_or_insert_with(Instant::now);
                    self.refresh(&tx, &primary);
                }
                _ = tokio::time::sleep_until(soon), if self.refresh_pending && !self.refreshing => {
                    self.refresh(&tx, &primary);
                }
                _ = sleep_until_opt(self.hold_until) => {
                    tracing::warn!(
                        held_ms = self.config.sentinel.failover_hold_ms,
                        "failover not confirmed in time; releasing held requests to the primary strata knows"
                    );
                    self.release_hold();
                }
            }
        }
    }

    /// Forgets an old sign of trouble once the primary is healthy again.
    fn settle(&mut self, primary: &Node) {
        if self.trouble_since.is_some()
            && self.holds.is_empty()
            && primary.is_healthy()
            && primary.connections_up() == primary.connections_total()
        {
            self.trouble_since = None;
        }
    }

    /// Starts a discovery round in the background (at most one at a time,
    /// and not more often than [`MIN_REFRESH_GAP`]).
    fn refresh(&mut self, tx: &mpsc::Sender<Msg>, primary: &Node) {
        if self.refreshing || self.last_refresh.elapsed() < MIN_REFRESH_GAP {
            self.refresh_pending = true;
            return;
        }
        self.refreshing = true;
        self.refresh_pending = false;
        self.last_refresh = Instant::now();
        let ctx = self.ctx.clone();
        let tx = tx.clone();
        let current = primary.addr().to_string();
        tokio::spawn(async move {
            let round = gather(&ctx, Some(&current)).await;
            let _ = tx.send(Msg::Round(round)).await;
        });
    }

    fn on_round(&mut self, round: Round) {
        self.refreshing = false;
        let Some(router) = self.router.upgrade() else {
            return;
        };
        let known = round.views.iter().any(|v| v.master.is_some());
        if known != self.discovery_ok {
            if known {
                tracing::info!(master = %self.ctx.master, "sentinel discovery recovered");
            } else {
                tracing::warn!(
                    master = %self.ctx.master,
                    reason = %describe_failure(&self.ctx.master, &round),
                    primary = %router.primary().addr(),
                    "sentinel discovery degraded; serving the primary strata knows"
                );
            }
            self.discovery_ok = known;
            router.set_discovery_ok(known);
            self.metrics.set_discovery_ok(known);
        }
        if !known {
            return;
        }
        let current = router.primary().addr().to_string();
        if current != round.current {
            // A switch happened while the round was out: its answers are
            // about the previous primary. Ask again.
            self.refresh_pending = true;
            return;
        }
        let role = |addr: &str| round.roles.get(addr).and_then(Option::as_ref);
        match view::decide(&round.views, &current, self.epoch) {
            Decision::Stay { epoch } => {
                self.epoch = Some(self.epoch.map_or(epoch, |e| e.max(epoch)))
            }
            Decision::Switch { to, epoch } => match view::confirm_switch(role(&to)) {
                Ok(()) => {
                    let cause =
                        format!("the sentinels' newest configuration (epoch {epoch}) names it");
                    self.switch_to(&router, &to, &cause, Instant::now());
                    self.epoch = Some(epoch);
                }
                Err(why) => {
                    tracing::warn!(candidate = %to, epoch, %why, "not switching yet: the new primary is not confirmed")
                }
            },
            Decision::SwitchIfCurrentLost { to, epoch } => {
                let current_ok = role(&current).is_some_and(Role::is_master);
                if !current_ok && view::confirm_switch(role(&to)).is_ok() {
                    let cause =
                        format!("{current} is no longer a primary and a sentinel names {to}");
                    self.switch_to(&router, &to, &cause, Instant::now());
                    self.epoch = Some(epoch);
                }
            }
            Decision::Unknown => {}
        }
        let primary = router.primary().addr().to_string();
        if self.config.read_from != ReadFrom::Primary {
            // ROLE of the primary is in the round unless it just changed to
            // an address no sentinel named; then only the flags count.
            let (usable, skipped) = view::usable_replicas(
                best_replicas(&round.views, &primary),
                &primary,
                role(&primary),
                self.config.sentinel.max_replica_lag_bytes,
            );
            if skipped != self.skipped {
                log_skipped(&skipped);
                self.skipped = skipped;
            }
            self.apply_replicas(&router, usable);
        }
    }

    async fn on_event(
        &mut self,
        sentinel: &str,
        channel: &str,
        event: Event,
        at: Instant,
        tx: &mpsc::Sender<Msg>,
    ) {
        let Some(router) = self.router.upgrade() else {
            return;
        };
        match event {
            Event::SwitchMaster { to } | Event::Promoted { addr: to } => {
                if router.primary().addr() == to {
                    return;
                }
                match view::confirm_switch(role_of(&self.ctx, &to).await.as_ref()) {
                    Ok(()) => {
                        let cause = format!("{channel} from sentinel {sentinel}");
                        self.switch_to(&router, &to, &cause, at);
                        // The epoch is learnt from the round switch_to starts.
                        self.epoch = None;
                    }
                    Err(why) => {
                        tracing::warn!(%sentinel, %channel, candidate = %to, %why, "ignoring a switch to a server that is not a primary (stale event?)");
                        let primary = router.primary();
                        self.refresh(tx, &primary);
                    }
                }
            }
            Event::PromotionSent { addr } => {
                self.trouble_since.get_or_insert(at);
                if router.primary().addr() == addr || self.probing.as_deref() == Some(addr.as_str())
                {
                    return;
                }
                self.probing = Some(addr.clone());
                let ctx = self.ctx.clone();
                let tx = tx.clone();
                let weak = self.router.clone();
                let until = Instant::now()
                    + Duration::from_millis(self.config.sentinel.failover_hold_ms.max(1_000));
                let (sentinel, channel) = (sentinel.to_string(), channel.to_string());
                tokio::spawn(async move {
                    if wait_promoted(&ctx, &weak, &addr, until).await {
                        let msg = Msg::Event {
                            sentinel,
                            channel: format!("{channel} (then ROLE)"),
                            event: Event::Promoted { addr },
                            at: Instant::now(),
                        };
                        let _ = tx.send(msg).await;
                    }
                });
            }
            Event::FailoverStarted => {
                self.trouble_since.get_or_insert(at);
                if self.config.sentinel.failover_hold_ms == 0 {
                    return;
                }
                if self.holds.insert(sentinel.to_string()) && self.hold_until.is_none() {
                    tracing::warn!(%sentinel, primary = %router.primary().addr(), "sentinel started a failover; holding requests until the new primary is confirmed");
                    self.hold_until =
                        Some(at + Duration::from_millis(self.config.sentinel.failover_hold_ms));
                    router.hold();
                }
            }
            Event::FailoverOver => {
                if self.holds.remove(sentinel) && self.holds.is_empty() {
                    tracing::info!(%sentinel, %channel, "failover over without a switch; releasing held requests");
                    self.release_hold();
                }
                let primary = router.primary();
                self.refresh(tx, &primary);
            }
            Event::ReplicasChanged => {
                let primary = router.primary();
                self.refresh(tx, &primary);
            }
        }
    }

    fn release_hold(&mut self) {
        self.probing = None;
        self.holds.clear();
        self.hold_until = None;
        if let Some(router) = self.router.upgrade() {
            router.release_hold();
        }
    }

    /// Moves the router to the new primary `to` (whose ROLE was confirmed).
    fn switch_to(&mut self, router: &Arc<Router>, to: &str, cause: &str, signal: Instant) {
        let topology = router.topology();
        let old = topology.primary.addr().to_string();
        if old == to {
            return;
        }
        let started = self.trouble_since.take().map_or(signal, |t| t.min(signal));
        // Always a fresh node: the promotion (REPLICAOF NO ONE + CLIENT
        // KILL) has just cut the connections a replica node had there.
        let node = Node::start(to, &self.config, &self.metrics);
        let replicas = topology
            .replicas
            .iter()
            .filter(|n| n.addr() != to)
            .cloned()
            .collect();
        router.swap(
            Topology {
                primary: node.clone(),
                replicas,
            },
            &format!("failover: primary moved to {to}"),
        );
        // Same address as the new primary, so swap kept it: retire it here.
        if let Some(stale) = topology.replicas.iter().find(|n| n.addr() == to) {
            stale.retire(format!("failover: {to} is the primary now"));
        }
        self.release_hold();
        tracing::warn!(from = %old, %to, %cause, "following failover: primary moved");
        let router = self.router.clone();
        let metrics = self.metrics.clone();
        let patience = Duration::from_millis(self.config.connect_timeout_ms * 2);
        tokio::spawn(async move {
            let until = Instant::now() + patience;
            while node.connections_up() == 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let took = started.elapsed();
            if let Some(router) = router.upgrade() {
                router.record_failover(took);
            }
            metrics.failover_followed(took);
            tracing::info!(primary = %node.addr(), took_ms = took.as_millis() as u64, "failover followed: new primary serving");
        });
        // Learn the new epoch and replicas soon (not at once: the new
        // primary's replicas are being reconfigured right now).
        self.refresh_pending = true;
    }

    /// Replaces the replica set when it changed, keeping the nodes of the
    /// replicas that stay.
    fn apply_replicas(&self, router: &Router, usable: Vec<String>) {
        let topology = router.topology();
        let now: Vec<&str> = topology.replicas.iter().map(|n| n.addr()).collect();
        if now == usable.iter().map(String::as_str).collect::<Vec<_>>() {
            return;
        }
        let replicas: Vec<Arc<Node>> = usable
            .iter()
            .map(|addr| {
                topology
                    .replicas
                    .iter()
                    .find(|n| n.addr() == addr)
                    .cloned()
                    .unwrap_or_else(|| Node::start(addr, &self.config, &self.metrics))
            })
            .collect();
        tracing::info!(replicas = ?usable, "replica set changed");
        router.swap(
            Topology {
                primary: topology.primary.clone(),
                replicas,
            },
            "replica left the topology",
        );
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
