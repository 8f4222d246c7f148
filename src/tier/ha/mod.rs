//! Postgres high availability for the tiers: the configured hosts (the
//! `url`, then `replicas`), which of them is the primary now, and which
//! replica a tier read may use.
//!
//! # Why it works this way
//!
//! * **One pool per host.** Every host gets its own lazy pool, so a switch
//!   of primary is an index change: no pool is rebuilt on the write path,
//!   and a write after the switch finds connections to the new primary.
//! * **The primary is found, not configured.** A background probe
//!   ([`probe`]) asks every host `pg_is_in_recovery()` every
//!   `probe_interval_ms` (and at once when a write fails). The current
//!   primary stays as long as it answers as one; when it stops (down, or
//!   demoted), the first host in configured order that answers as a
//!   primary becomes it. Until one does, writes fail with
//!   `-ERR tier unavailable: …` (write-through) or wait in the outbox
//!   (write-behind, which retries). Nothing to restart.
//! * **Reads within a staleness bound.** A replica is read only when its
//!   replay lag, plus the time since that lag was measured, is within
//!   `max_replica_lag_ms`: what it lacks was committed at most that long
//!   ago. Otherwise reads go to the primary.
//! * **Split brain.** If the old primary comes back as a primary too (not
//!   demoted), strata keeps the one it follows now; it never switches back
//!   on its own while the current one answers.

pub mod config;
pub mod probe;

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;

pub use config::ReadFrom;

/// What a probe found a host to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not probed yet.
    Unknown,
    /// Did not answer the probe.
    Down,
    /// `pg_is_in_recovery()` false: takes writes.
    Primary,
    /// In recovery: a standby replaying the primary's WAL.
    Replica,
}

impl Role {
    fn from_u8(v: u8) -> Role {
        match v {
            1 => Role::Down,
            2 => Role::Primary,
            3 => Role::Replica,
            _ => Role::Unknown,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Role::Unknown => 0,
            Role::Down => 1,
            Role::Primary => 2,
            Role::Replica => 3,
        }
    }

    /// The name `PROXY TIER STATS` and the metrics show.
    pub fn name(self) -> &'static str {
        match self {
            Role::Unknown => "unknown",
            Role::Down => "down",
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// Lag of a host not known to be a readable replica.
const NO_LAG: u64 = u64::MAX;

/// One configured Postgres host.
#[derive(Debug)]
pub struct Host {
    /// `host:port` (never the password): logs, STATS, metrics.
    pub name: String,
    /// Its pool (lazy: connects on first use).
    pub pool: PgPool,
    role: AtomicU8,
    /// Replay lag in ms at the last probe ([`NO_LAG`] unless a replica).
    lag_ms: AtomicU64,
    /// When the lag was measured, ms since [`Hosts::epoch`].
    measured_ms: AtomicU64,
}

impl Host {
    /// The role the last probe found.
    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Relaxed))
    }

    /// Replay lag at the last probe, ms (`None` unless a replica answered).
    pub fn lag_ms(&self) -> Option<u64> {
        match self.lag_ms.load(Ordering::Relaxed) {
            NO_LAG => None,
            v => Some(v),
        }
    }
}

/// The hosts and the choices made from the last probe.
#[derive(Debug)]
pub struct Hosts {
    hosts: Vec<Host>,
    primary: AtomicUsize,
    read_from: ReadFrom,
    max_lag_ms: u64,
    /// Round-robin turn for `read_from = "replica"`.
    turn: AtomicUsize,
    /// Wakes the probe early (a write failed: maybe a failover).
    wake: tokio::sync::Notify,
    epoch: Instant,
    /// Times the primary changed.
    failovers: AtomicU64,
}

impl Hosts {
    /// Hosts from their names and pools; the first is the primary until a
    /// probe says otherwise.
    pub fn new(pools: Vec<(String, PgPool)>, read_from: ReadFrom, max_lag_ms: u64) -> Hosts {
        Hosts {
            hosts: pools
                .into_iter()
                .map(|(name, pool)| Host {
                    name,
                    pool,
                    role: AtomicU8::new(Role::Unknown.to_u8()),
                    lag_ms: AtomicU64::new(NO_LAG),
                    measured_ms: AtomicU64::new(0),
                })
                .collect(),
            primary: AtomicUsize::new(0),
            read_from,
            max_lag_ms,
            turn: AtomicUsize::new(0),
            wake: tokio::sync::Notify::new(),
            epoch: Instant::now(),
            failovers: AtomicU64::new(0),
        }
    }

    /// Every host, configured order.
    pub fn all(&self) -> &[Host] {
        &self.hosts
    }

    /// The index of the host writes go to.
    pub fn primary_index(&self) -> usize {
        self.primary.load(Ordering::Acquire)
    }

    /// The pool writes go to.
    pub fn primary(&self) -> &PgPool {
        &self.hosts[self.primary_index()].pool
    }

    /// How many times the primary changed since start.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// The replica a tier read may use now, if any (`None`: the primary).
    pub fn reader(&self) -> Option<&Host> {
        if self.read_from == ReadFrom::Primary || self.hosts.len() < 2 {
            return None;
        }
        let now = self.now_ms();
        let primary = self.primary_index();
        let lags: Vec<Option<u64>> = self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                if i == primary || h.role() != Role::Replica {
                    return None;
                }
                let lag = h.lag_ms()?;
                let age = now.saturating_sub(h.measured_ms.load(Ordering::Relaxed));
                Some(lag.saturating_add(age))
            })
            .collect();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        pick(self.read_from, self.max_lag_ms, &lags, turn).map(|i| &self.hosts[i])
    }

    /// Asks the probe to run now (a write failed; the primary may have
    /// changed).
    pub fn suspect(&self) {
        self.wake.notify_one();
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a probe round: each host's role and (replicas) lag, then
    /// the primary. Returns the new primary's index if it changed.
    fn record(&self, found: &[(Role, Option<u64>)]) -> Option<usize> {
        let now = self.now_ms();
        for (h, (role, lag)) in self.hosts.iter().zip(found) {
            h.role.store(role.to_u8(), Ordering::Relaxed);
            h.lag_ms.store(lag.unwrap_or(NO_LAG), Ordering::Relaxed);
            h.measured_ms.store(now, Ordering::Relaxed);
        }
        let current = self.primary_index();
        let next = choose_primary(current, found.iter().map(|(r, _)| *r));
        if next != current {
            self.primary.store(next, Ordering::Release);
            self.failovers.fetch_add(1, Ordering::Relaxed);
            return Some(next);
        }
        None
    }

    /// Sleeps until the next probe is due or a write asks for one.
    async fn wait(&self, interval: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = self.wake.notified() => {}
        }
    }
}

/// The primary after a probe round: the current one while it answers as
/// a primary; else the first host that does; else the current one (writes
/// fail until a primary appears).
fn choose_primary(current: usize, roles: impl Iterator<Item = Role>) -> usize {
    let roles: Vec<Role> = roles.collect();
    if roles.get(current) == Some(&Role::Primary) {
        return current;
    }
    roles
        .iter()
        .position(|r| *r == Role::Primary)
        .unwrap_or(current)
}

/// Which replica to read from, given each host's staleness bound now
/// (`None`: not a readable replica): `replica` takes the eligible ones in
/// turn, `least-lag` the least stale.
fn pick(read_from: ReadFrom, max_lag_ms: u64, lags: &[Option<u64>], turn: usize) -> Option<usize> {
    let eligible: Vec<(usize, u64)> = lags
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.filter(|l| *l <= max_lag_ms).map(|l| (i, l)))
        .collect();
    if eligible.is_empty() {
        return None;
    }
    match read_from {
        ReadFrom::Primary => None,
        ReadFrom::Replica => Some(eligible[turn % eligible.len()].0),
        ReadFrom::LeastLag => eligible.iter().min_by_key(|(_, l)| *l).map(|(i, _)| *i),
    }
}

/// `host:port` of a URL, without user or password (for logs).
pub fn host_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_stays_while_it_answers_then_moves_to_the_first_that_does() {
        use Role::*;
        assert_eq!(choose_primary(0, [Primary, Replica].into_iter()), 0);
        assert_eq!(choose_primary(0, [Down, Replica].into_iter()), 0);
        assert_eq!(choose_primary(0, [Down, Primary].into_iter()), 1);
        // The old primary back, not demoted: the one followed now stays.
        assert_eq!(choose_primary(1, [Primary, Primary].into_iter()), 1);
        assert_eq!(choose_primary(1, [Primary, Down, Primary].into_iter()), 0);
    }

    #[test]
    fn reads_go_to_replicas_within_the_bound() {
        let lags = [None, Some(50), Some(10), Some(5_000)];
        assert_eq!(pick(ReadFrom::Primary, 100, &lags, 0), None);
        assert_eq!(pick(ReadFrom::LeastLag, 100, &lags, 0), Some(2));
        assert_eq!(pick(ReadFrom::Replica, 100, &lags, 0), Some(1));
        assert_eq!(pick(ReadFrom::Replica, 100, &lags, 1), Some(2));
        assert_eq!(pick(ReadFrom::Replica, 100, &lags, 2), Some(1));
        assert_eq!(pick(ReadFrom::Replica, 1, &lags, 0), None);
        assert_eq!(pick(ReadFrom::LeastLag, 10_000, &lags, 0), Some(2));
    }

    #[test]
    fn host_names_hide_credentials() {
        assert_eq!(host_name("postgres://u:secret@db:5432/app?x=1"), "db:5432");
        assert_eq!(host_name("postgresql://db/app"), "db");
    }
}
