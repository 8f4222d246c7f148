//! The registry of connected clients, for CLIENT LIST/INFO/ID/KILL and INFO.
//!
//! The registry lock is taken on connect, disconnect, CLIENT LIST and
//! CLIENT KILL only; the per-command path touches just the client's own
//! atomics.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::watch;

use crate::backend::node::Node;

/// How a client's connection is ending, for the two tasks that serve it.
///
/// The reader sees the client leave; the writer may be waiting on a
/// blocking command's dedicated connection and must learn it too, or that
/// connection stays blocked in Redis (and would pop an element nobody
/// reads) until the command's own timeout, which may be never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// Connected.
    Present,
    /// The client closed its side, or its socket failed. Redis drops such
    /// a client at once; strata still writes replies that are coming, but
    /// gives up a blocking command's wait.
    HungUp,
    /// CLIENT KILL: the connection is closed now and nothing more is written.
    Killed,
}

/// What `CLIENT KILL`'s filters select (every filter given must match).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KillFilter {
    /// `ADDR ip:port` (or the old form's only argument).
    pub addr: Option<String>,
    /// `LADDR ip:port`.
    pub laddr: Option<String>,
    /// `ID n`.
    pub id: Option<u64>,
    /// `TYPE`: `Some(true)` pubsub, `Some(false)` normal; `None` any.
    /// master/replica select nobody (strata's clients are never replicas),
    /// so they are [`KillFilter::nobody`].
    pub pubsub: Option<bool>,
    /// `TYPE master|replica|slave`.
    pub nobody: bool,
    /// `SKIPME yes` (the default in the filter form): the caller is spared.
    pub skip_me: bool,
    /// `USER name`: clients logged in as that ACL user.
    pub user: Option<Bytes>,
}

/// What CLIENT LIST shows about one client.
#[derive(Debug)]
pub struct ClientInfo {
    /// strata's own client id (not the backend's).
    pub id: u64,
    /// The client's address.
    pub addr: SocketAddr,
    /// strata's address the client connected to.
    pub laddr: SocketAddr,
    created: Instant,
    name: Mutex<Option<Bytes>>,
    last_active_ms: AtomicU64,
    db: AtomicI64,
    resp: AtomicU8,
    subscriptions: AtomicUsize,
    pattern_subscriptions: AtomicUsize,
    shard_subscriptions: AtomicUsize,
    in_multi: AtomicU8,
    last_command: Mutex<&'static str>,
    /// The ACL user the client is logged in as (CLIENT LIST's `user=`,
    /// CLIENT KILL USER).
    user: Mutex<Bytes>,
    departure: watch::Sender<Departure>,
    /// Stops the session task: CLIENT KILL, shutdown (see `halt.rs`).
    pub halt: super::halt::Halt,
    /// The node and backend connection id of the dedicated connection the
    /// client holds, for CLIENT UNBLOCK.
    dedicated_on: Mutex<Option<(Arc<Node>, i64)>>,
    /// SUNSUBSCRIBE confirmations the client asked for and the writer has
    /// not yet seen: tells them from the ones Redis sends unasked when a
    /// shard channel's slot moves.
    shard_unsubscribes_due: AtomicUsize,
    /// CLIENT TRACKING's redirects: to this client, and from it.
    pub tracking: super::tracking::ClientTracking,
    /// The client's reply queue, for `PROXY CLIENTS`' in-flight count.
    queue: Mutex<Option<super::queue::WeakQueueTx>>,
    /// Reply bytes the writer is handing to the socket (0 between
    /// writes): what strata holds for a client that does not read.
    output_pending: AtomicUsize,
}

impl ClientInfo {
    /// Follows how the connection is ending (see [`Departure`]).
    pub fn departure(&self) -> watch::Receiver<Departure> {
        self.departure.subscribe()
    }

    /// The client closed its side of the connection (or it failed).
    pub fn hang_up(&self) {
        self.departure.send_if_modified(|d| {
            let changed = *d == Departure::Present;
            if changed {
                *d = Departure::HungUp;
            }
            changed
        });
    }

    /// CLIENT KILL: the tasks serving this client stop at once.
    pub fn kill(&self) {
        self.departure.send_replace(Departure::Killed);
        self.halt.fire(super::halt::HaltReason::Killed);
    }

    /// Records the dedicated connection the client holds (`None`: it gave
    /// it back). Cleared before the connection returns to the pool, so a
    /// CLIENT UNBLOCK can never reach the connection's next borrower.
    pub fn set_dedicated_on(&self, on: Option<(Arc<Node>, i64)>) {
        if let Ok(mut slot) = self.dedicated_on.lock() {
            *slot = on;
        }
    }

    /// Forgets the dedicated connection with this backend id, if it is the
    /// one recorded: the client may already hold a newer one (it borrowed
    /// again before the writer gave the old one back).
    pub fn forget_dedicated_on(&self, backend_id: Option<i64>) {
        if let Ok(mut slot) = self.dedicated_on.lock() {
            if slot.as_ref().map(|(_, id)| *id) == backend_id {
                *slot = None;
            }
        }
    }

    /// The dedicated connection the client holds: its node and the
    /// backend's id for it.
    pub fn dedicated_on(&self) -> Option<(Arc<Node>, i64)> {
        self.dedicated_on.lock().ok().and_then(|d| d.clone())
    }

    /// The session is about to send a SUNSUBSCRIBE that Redis confirms
    /// with `frames` frames.
    pub fn expect_shard_unsubscribes(&self, frames: usize) {
        self.shard_unsubscribes_due
            .fetch_add(frames, Ordering::Relaxed);
    }

    /// The writer matched one SUNSUBSCRIBE confirmation to its command.
    pub fn shard_unsubscribe_answered(&self) {
        let _ =
            self.shard_unsubscribes_due
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// SUNSUBSCRIBE confirmations asked for and not yet seen.
    pub fn shard_unsubscribes_due(&self) -> usize {
        self.shard_unsubscribes_due.load(Ordering::Relaxed)
    }

    /// Records the client's reply queue (once, when its session starts).
    pub fn set_queue(&self, queue: super::queue::WeakQueueTx) {
        if let Ok(mut slot) = self.queue.lock() {
            *slot = Some(queue);
        }
    }

    /// Commands queued for the writer and not yet taken.
    pub fn inflight(&self) -> usize {
        self.queue
            .lock()
            .ok()
            .and_then(|q| q.as_ref().map(|q| q.inflight()))
            .unwrap_or(0)
    }

    /// The writer is writing `bytes` to the socket (0: done).
    #[inline]
    pub fn set_output_pending(&self, bytes: usize) {
        self.output_pending.store(bytes, Ordering::Relaxed);
    }

    /// Reply bytes strata holds for the client, being written.
    pub fn output_pending(&self) -> usize {
        self.output_pending.load(Ordering::Relaxed)
    }

    /// `PROXY CLIENTS`' line: CLIENT LIST's, then strata's own fields.
    pub fn proxy_line(&self, epoch: Instant) -> String {
        let dedicated = self.dedicated_on().map_or_else(
            || "no".to_string(),
            |(node, id)| format!("{}#{id}", node.addr()),
        );
        format!(
            "{} dedicated={} inflight={} obuf={}",
            self.line(epoch),
            dedicated,
            self.inflight(),
            self.output_pending(),
        )
    }

    /// True while subscribed to anything (CLIENT LIST's `flags=P`, and
    /// Redis's `pubsub` client type).
    pub fn is_pubsub(&self) -> bool {
        self.subscriptions.load(Ordering::Relaxed)
            + self.pattern_subscriptions.load(Ordering::Relaxed)
            + self.shard_subscriptions.load(Ordering::Relaxed)
            > 0
    }

    /// True when every filter of `f` matches this client.
    fn matches(&self, f: &KillFilter) -> bool {
        !f.nobody
            && f.id.is_none_or(|id| id == self.id)
            && f.addr.as_deref().is_none_or(|a| a == self.addr.to_string())
            && f.laddr
                .as_deref()
                .is_none_or(|a| a == self.laddr.to_string())
            && f.pubsub.is_none_or(|p| p == self.is_pubsub())
            && f.user.as_ref().is_none_or(|u| *u == self.user())
    }

    /// The ACL user the client is logged in as.
    pub fn user(&self) -> Bytes {
        self.user.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// Records the ACL user the client is now logged in as.
    pub fn set_user(&self, user: Bytes) {
        if let Ok(mut slot) = self.user.lock() {
            *slot = user;
        }
    }

    /// The name set by CLIENT SETNAME or HELLO SETNAME.
    pub fn name(&self) -> Option<Bytes> {
        self.name.lock().ok().and_then(|n| n.clone())
    }

    /// Sets (or clears, with `None`) the name.
    pub fn set_name(&self, name: Option<Bytes>) {
        if let Ok(mut slot) = self.name.lock() {
            *slot = name;
        }
    }

    /// Marks the client active now, running `command`.
    pub fn touch(&self, epoch: Instant, now: Instant, command: &'static str) {
        self.last_active_ms.store(
            now.saturating_duration_since(epoch).as_millis() as u64,
            Ordering::Relaxed,
        );
        if let Ok(mut slot) = self.last_command.lock() {
            *slot = command;
        }
    }

    /// Records the selected database.
    pub fn set_db(&self, db: i64) {
        self.db.store(db, Ordering::Relaxed);
    }

    /// Records the protocol version (2 or 3).
    pub fn set_resp(&self, version: u8) {
        self.resp.store(version, Ordering::Relaxed);
    }

    /// The protocol version (2 or 3).
    pub fn resp(&self) -> u8 {
        self.resp.load(Ordering::Relaxed)
    }

    /// Records subscription counts and MULTI state.
    pub fn set_pubsub(&self, channels: usize, patterns: usize, shard: usize, in_multi: bool) {
        self.subscriptions.store(channels, Ordering::Relaxed);
        self.pattern_subscriptions
            .store(patterns, Ordering::Relaxed);
        self.shard_subscriptions.store(shard, Ordering::Relaxed);
        self.in_multi.store(u8::from(in_multi), Ordering::Relaxed);
    }

    /// One CLIENT LIST line (without the trailing newline), with Redis's field names.
    pub fn line(&self, epoch: Instant) -> String {
        let name = self
            .name()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .unwrap_or_default();
        let now_ms = epoch.elapsed().as_millis() as u64;
        let idle = now_ms.saturating_sub(self.last_active_ms.load(Ordering::Relaxed)) / 1000;
        let sub = self.subscriptions.load(Ordering::Relaxed);
        let psub = self.pattern_subscriptions.load(Ordering::Relaxed);
        let ssub = self.shard_subscriptions.load(Ordering::Relaxed);
        let flags = if self.is_pubsub() {
            "P"
        } else if self.in_multi.load(Ordering::Relaxed) == 1 {
            "x"
        } else {
            "N"
        };
        let cmd = self.last_command.lock().map(|c| *c).unwrap_or("NULL");
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi={} \
             qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r \
             cmd={} user={} redir={} resp={}",
            self.id,
            self.addr,
            self.laddr,
            name,
            self.created.elapsed().as_secs(),
            idle,
            flags,
            self.db.load(Ordering::Relaxed),
            sub,
            psub,
            ssub,
            if self.in_multi.load(Ordering::Relaxed) == 1 { 0 } else { -1 },
            cmd,
            String::from_utf8_lossy(&self.user()),
            self.tracking.redirect_id().map_or(-1, |id| id as i64),
            self.resp.load(Ordering::Relaxed),
        )
    }
}

/// All connected clients.
#[derive(Debug)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    epoch: Instant,
    /// The ACL user a new client is (strata's own backend user).
    default_user: Bytes,
    /// Connected clients per client IP address, for
    /// `server.max_clients_per_address`.
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

impl Default for ClientRegistry {
    fn default() -> Self {
        ClientRegistry::with_default_user(Bytes::from_static(b"default"))
    }
}

impl ClientRegistry {
    /// A registry whose new clients are the ACL user `default_user`.
    pub fn with_default_user(default_user: Bytes) -> ClientRegistry {
        ClientRegistry {
            next_id: AtomicU64::new(1),
            clients: Mutex::new(BTreeMap::new()),
            epoch: Instant::now(),
            default_user,
            per_address: Mutex::new(HashMap::new()),
        }
    }

    /// Registers a new client and gives it an id.
    pub fn register(&self, addr: SocketAddr, laddr: SocketAddr) -> Arc<ClientInfo> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(ClientInfo {
            id,
            addr,
            laddr,
            created: Instant::now(),
            name: Mutex::new(None),
            last_active_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            db: AtomicI64::new(0),
            resp: AtomicU8::new(2),
            subscriptions: AtomicUsize::new(0),
            pattern_subscriptions: AtomicUsize::new(0),
            shard_subscriptions: AtomicUsize::new(0),
            in_multi: AtomicU8::new(0),
            last_command: Mutex::new("NULL"),
            user: Mutex::new(self.default_user.clone()),
            departure: watch::Sender::new(Departure::Present),
            halt: Default::default(),
            dedicated_on: Mutex::new(None),
            shard_unsubscribes_due: AtomicUsize::new(0),
            tracking: Default::default(),
            queue: Mutex::new(None),
            output_pending: AtomicUsize::new(0),
        });
        if let Ok(mut map) = self.clients.lock() {
            map.insert(id, info.clone());
        }
        if let Ok(mut counts) = self.per_address.lock() {
            *counts.entry(addr.ip()).or_default() += 1;
        }
        info
    }

    /// Clients connected from `ip`.
    pub fn from_address(&self, ip: IpAddr) -> usize {
        self.per_address
            .lock()
            .map(|counts| counts.get(&ip).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Removes a client that disconnected.
    pub fn unregister(&self, id: u64) {
        let removed = self.clients.lock().ok().and_then(|mut map| map.remove(&id));
        let (Some(info), Ok(mut counts)) = (removed, self.per_address.lock()) else {
            return;
        };
        let ip = info.addr.ip();
        if let Some(n) = counts.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                // Bounded by the clients connected, not by every address
                // ever seen.
                counts.remove(&ip);
            }
        }
    }

    /// Number of connected clients.
    pub fn len(&self) -> usize {
        self.clients.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no client is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The clock CLIENT LIST's idle times are measured against.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// CLIENT KILL: kills every other client `filter` selects. Returns how
    /// many matched, counting the caller when it matched (it is then to
    /// close itself once its reply is written, as Redis does) and whether
    /// it did.
    pub fn kill(&self, filter: &KillFilter, me: u64) -> (usize, bool) {
        let mut count = 0;
        let mut kill_me = false;
        for c in self.snapshot() {
            if !c.matches(filter) || (filter.skip_me && c.id == me) {
                continue;
            }
            count += 1;
            if c.id == me {
                kill_me = true;
            } else {
                c.kill();
                // Gone at once, as Redis frees a killed client at once: a
                // CLIENT LIST or KILL right after must not count it while
                // its tasks wind down.
                self.unregister(c.id);
            }
        }
        (count, kill_me)
    }

    /// The client with this id, if connected.
    pub fn get(&self, id: u64) -> Option<Arc<ClientInfo>> {
        self.clients.lock().ok().and_then(|m| m.get(&id).cloned())
    }

    /// A snapshot of the clients, by id.
    pub fn snapshot(&self) -> Vec<Arc<ClientInfo>> {
        self.clients
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;
    use crate::telemetry::Metrics;

    fn registry_with_one() -> (ClientRegistry, Arc<ClientInfo>) {
        let registry = ClientRegistry::default();
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let laddr: SocketAddr = "127.0.0.1:6379".parse().unwrap();
        let info = registry.register(addr, laddr);
        (registry, info)
    }

    /// The writer gives a connection back after the client borrowed a
    /// newer one: the newer one stays recorded for CLIENT UNBLOCK.
    #[tokio::test]
    async fn forgetting_a_returned_connection_keeps_a_newer_one() {
        let (_registry, info) = registry_with_one();
        let node = Node::start(
            "127.0.0.1:1",
            &BackendConfig::default(),
            &Arc::new(Metrics::new()),
        );
        let id_of = |info: &ClientInfo| info.dedicated_on().map(|(_, id)| id);
        info.set_dedicated_on(Some((node.clone(), 7)));
        info.forget_dedicated_on(Some(5));
        assert_eq!(id_of(&info), Some(7));
        info.forget_dedicated_on(Some(7));
        assert_eq!(id_of(&info), None);
        info.set_dedicated_on(Some((node.clone(), 7)));
        info.set_dedicated_on(Some((node, 8)));
        info.forget_dedicated_on(Some(7));
        assert_eq!(id_of(&info), Some(8));
        info.forget_dedicated_on(None);
        assert_eq!(id_of(&info), Some(8));
    }

    #[test]
    fn kill_filters_select_and_skip_the_caller() {
        let (registry, me) = registry_with_one();
        let other = registry.register(
            "127.0.0.1:5001".parse().unwrap(),
            "127.0.0.1:6379".parse().unwrap(),
        );
        let mut gone = other.departure();
        // By default the caller is spared.
        let all = KillFilter {
            skip_me: true,
            ..KillFilter::default()
        };
        assert_eq!(registry.kill(&all, me.id), (1, false));
        assert_eq!(*gone.borrow_and_update(), Departure::Killed);
        assert_eq!(*me.departure().borrow(), Departure::Present);
        // Without SKIPME the caller matches too; it is not killed here but
        // told to close itself after its reply.
        let by_addr = KillFilter {
            addr: Some("127.0.0.1:5000".into()),
            ..KillFilter::default()
        };
        assert_eq!(registry.kill(&by_addr, me.id), (1, true));
        assert_eq!(*me.departure().borrow(), Departure::Present);
        let replicas = KillFilter {
            nobody: true,
            ..KillFilter::default()
        };
        assert_eq!(registry.kill(&replicas, me.id), (0, false));
        // A hang-up does not turn a kill back.
        other.hang_up();
        assert_eq!(*other.departure().borrow(), Departure::Killed);
    }
}
