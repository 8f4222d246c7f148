//! Backend connections per ACL user, beside a node's own.
//!
//! A client that authenticated (AUTH or HELLO … AUTH, checked against the
//! backend's own ACL) as a user other than strata's runs its commands on
//! connections authenticated as that user, so NOPERM, ACL WHOAMI and
//! every other ACL effect are the backend's own. Such a set (one
//! multiplexed connection set per protocol and a dedicated pool, as the
//! node's own) is made the first time a client needs it and closed once
//! no command has used it for [`USER_IDLE`]. At most [`MAX_USERS`] sets
//! live per node: beyond that, the least recently used set idle for longer
//! than [`EVICTABLE_AFTER`] makes room, else the client is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::breaker::Breaker;
use super::dedicated::{self, DedicatedPool};
use super::mux::{MuxConnection, MuxSetup};
use super::{BackendError, ConnSettings};
use crate::protocol::Protocol;
use crate::telemetry::{ConnKind, Metrics};

/// Most per-user connection sets one node keeps.
pub const MAX_USERS: usize = 64;
/// A set no command used for this long is closed.
pub const USER_IDLE: Duration = Duration::from_secs(60);
/// A set unused for this long may be closed to make room for another
/// user (longer than any request may be in flight on it).
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(10);

/// An ACL user and the password the client proved it with. The password
/// is kept because the user's connections are opened lazily and reopened
/// after a failure; it is never logged (`Debug` leaves it out).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The ACL user name.
    pub name: Bytes,
    /// The password the backend accepted for it.
    pub password: Bytes,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("name", &String::from_utf8_lossy(&self.name))
            .finish_non_exhaustive()
    }
}

/// One user's connections to one node.
#[derive(Debug)]
struct UserSet {
    resp2: Vec<MuxConnection>,
    resp3: Vec<MuxConnection>,
    pool: DedicatedPool,
    /// Milliseconds since the node's epoch, at the last use.
    last_used: AtomicU64,
}

/// What a node needs to open a user's connections.
#[derive(Debug)]
pub struct UserSpawner {
    /// The node's address.
    pub addr: String,
    /// The node's own settings; credentials are replaced per user.
    pub settings: ConnSettings,
    /// Multiplexed connections per protocol.
    pub connections: usize,
    /// The dedicated pool's size per user.
    pub pool_size: u32,
    /// Metrics registry (connection gauges).
    pub metrics: Arc<Metrics>,
    /// The node's breaker settings: each user's connections count their
    /// failures on a breaker of their own, so one user's connections
    /// failing (its password changed, the user deleted) do not open the
    /// node's circuit for everyone.
    pub breaker: crate::config::BreakerConfig,
    /// The node's retirement signal.
    pub retired: watch::Receiver<Option<String>>,
    /// The node's trouble notifier.
    pub trouble: Arc<tokio::sync::Notify>,
}

/// The per-user connection sets of one node.
#[derive(Debug)]
pub struct UserConns {
    spawner: UserSpawner,
    /// Keyed by user name and password: a user may have several
    /// passwords, and a set logs in (and reconnects) with the one its
    /// clients gave.
    sets: Mutex<HashMap<(Bytes, Bytes), Arc<UserSet>>>,
    epoch: Instant,
}

impl UserConns {
    /// No sets yet; they are made on first use.
    pub fn new(spawner: UserSpawner) -> UserConns {
        UserConns {
            spawner,
            sets: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The user's set, made if needed (and room is left).
    fn get(&self, user: &Credentials) -> Result<Arc<UserSet>, BackendError> {
        self.get_at(user, self.now_ms())
    }

    /// [`UserConns::get`] at `now` (ms since the node's epoch).
    fn get_at(&self, user: &Credentials, now: u64) -> Result<Arc<UserSet>, BackendError> {
        let mut sets = self.sets.lock().map_err(|_| self.full())?;
        let key = (user.name.clone(), user.password.clone());
        if let Some(set) = sets.get(&key) {
            set.last_used.store(now, Ordering::Relaxed);
            return Ok(set.clone());
        }
        if sets.len() >= MAX_USERS {
            // Used before this (none, in the node's first seconds).
            let evictable = now.checked_sub(EVICTABLE_AFTER.as_millis() as u64);
            let oldest = sets
                .iter()
                .map(|(name, set)| (set.last_used.load(Ordering::Relaxed), name))
                .filter(|(used, _)| evictable.is_some_and(|e| *used < e))
                .min()
                .map(|(_, name)| name.clone());
            match oldest {
                Some(name) => sets.remove(&name),
                None => return Err(self.full()),
            };
        }
        let set = Arc::new(self.spawn(user, now));
        sets.insert(key, set.clone());
        Ok(set)
    }

    fn full(&self) -> BackendError {
        BackendError::Unavailable {
            addr: self.spawner.addr.clone(),
            reason: format!("connections for {MAX_USERS} ACL users already open"),
        }
    }

    fn spawn(&self, user: &Credentials, now: u64) -> UserSet {
        let s = &self.spawner;
        let mut settings = s.settings.clone();
        settings.username = Some(String::from_utf8_lossy(&user.name).into_owned());
        settings.password = Some(String::from_utf8_lossy(&user.password).into_owned());
        let breaker = Arc::new(Breaker::new(s.breaker.clone()));
        let set = |proto: Protocol| -> Vec<MuxConnection> {
            (0..s.connections)
                .map(|_| {
                    MuxConnection::spawn(MuxSetup {
                        addr: s.addr.clone(),
                        proto,
                        settings: settings.clone(),
                        metrics: s.metrics.backend_connection(&s.addr, ConnKind::Multiplexed),
                        breaker: breaker.clone(),
                        retired: s.retired.clone(),
                        trouble: s.trouble.clone(),
                    })
                })
                .collect()
        };
        UserSet {
            resp2: set(Protocol::Resp2),
            resp3: set(Protocol::Resp3),
            pool: dedicated::pool(s.addr.clone(), s.pool_size, settings.clone()),
            last_used: AtomicU64::new(now),
        }
    }

    /// Makes sure the user's set exists (or can): AUTH fails with the
    /// error when it cannot, rather than every later command.
    pub fn ensure(&self, user: &Credentials) -> Result<(), BackendError> {
        self.get(user).map(|_| ())
    }

    /// The user's multiplexed connection for this client.
    pub fn mux(
        &self,
        user: &Credentials,
        client_id: u64,
        proto: Protocol,
    ) -> Result<MuxConnection, BackendError> {
        let set = self.get(user)?;
        let conns = match proto {
            Protocol::Resp2 => &set.resp2,
            Protocol::Resp3 => &set.resp3,
        };
        Ok(conns[(client_id as usize) % conns.len()].clone())
    }

    /// The user's dedicated pool.
    pub fn pool(&self, user: &Credentials) -> Result<DedicatedPool, BackendError> {
        Ok(self.get(user)?.pool.clone())
    }

    /// Closes the sets no command used for [`USER_IDLE`]: their
    /// connections end once the last handle is dropped.
    pub fn close_idle(&self) {
        self.close_idle_at(self.now_ms());
    }

    /// [`UserConns::close_idle`] at `now` (ms since the node's epoch).
    fn close_idle_at(&self, now: u64) {
        let Some(idle_before) = now.checked_sub(USER_IDLE.as_millis() as u64) else {
            return; // the node is younger than that
        };
        if let Ok(mut sets) = self.sets.lock() {
            sets.retain(|_, set| set.last_used.load(Ordering::Relaxed) >= idle_before);
        }
    }

    /// How many user sets are open.
    pub fn len(&self) -> usize {
        self.sets.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// True when no user set is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Closes idle user sets every few seconds, until the node is retired
/// or dropped.
pub async fn idle_loop(
    users: std::sync::Weak<UserConns>,
    mut retired: watch::Receiver<Option<String>>,
) {
    let mut ticker = tokio::time::interval(USER_IDLE / 6);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = retired.changed() => return,
        }
        let Some(users) = users.upgrade() else {
            return;
        };
        users.close_idle();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn user(i: usize) -> Credentials {
        Credentials {
            name: Bytes::from(format!("user{i}")),
            password: Bytes::from_static(b"pw"),
        }
    }

    /// At most MAX_USERS sets; a user already open is still served when
    /// the node is full, and a new one is refused while all are in use.
    #[tokio::test]
    async fn sets_are_bounded_and_made_once_per_user() {
        let config = crate::config::BackendConfig::default();
        let (_retire, retired) = watch::channel(None);
        let users = UserConns::new(UserSpawner {
            addr: "127.0.0.1:1".into(),
            settings: ConnSettings::from_config(&config),
            connections: 1,
            pool_size: 1,
            metrics: Arc::new(Metrics::new()),
            breaker: config.breaker.clone(),
            retired,
            trouble: Arc::new(tokio::sync::Notify::new()),
        });
        for i in 0..MAX_USERS {
            users.ensure(&user(i)).unwrap();
        }
        users.ensure(&user(0)).unwrap();
        assert_eq!(users.len(), MAX_USERS);
        let refused = users.ensure(&user(MAX_USERS)).unwrap_err().to_string();
        assert!(refused.contains("64 ACL users"), "{refused}");
        // Recently used sets are not idle.
        users.close_idle();
        assert_eq!(users.len(), MAX_USERS);
        // 11 s later, user 0 used again: a new user takes the place of the
        // least recently used of the others.
        let later = EVICTABLE_AFTER.as_millis() as u64 + 1_000;
        users.get_at(&user(0), later).unwrap();
        users.get_at(&user(MAX_USERS), later).unwrap();
        assert_eq!(users.len(), MAX_USERS);
        let names: Vec<Bytes> = users
            .sets
            .lock()
            .unwrap()
            .keys()
            .map(|(name, _)| name.clone())
            .collect();
        assert!(names.contains(&user(0).name) && names.contains(&user(MAX_USERS).name));
        // A minute after their last use, sets are closed.
        users.close_idle_at(later + USER_IDLE.as_millis() as u64 - 1);
        assert_eq!(users.len(), 2);
        users.close_idle_at(later + USER_IDLE.as_millis() as u64 + 1);
        assert!(users.is_empty());
    }
}
