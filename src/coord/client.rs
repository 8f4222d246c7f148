//! One connection's coordination state: the KEEPALIVE leases it holds and
//! the ones it lost. The session holds it as one field (created with the
//! client's first coordination command); dropping it, when the connection
//! ends, stops the renewals and releases every lease still held, as a
//! Postgres session lock or an etcd session ends with its connection.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use super::keys::ObjectKeys;
use super::Coord;
use crate::server::clients::ClientInfo;

/// KEEPALIVE leases one connection may hold at once (each is a renewal
/// task): past this LOCK.ACQUIRE … KEEPALIVE is refused before it takes
/// anything, so no client grows strata's memory without bound.
pub const LEASES_MAX: usize = 10_000;

/// Leases lost and remembered per connection, for `-LOCKLOST`; the oldest
/// are forgotten past this (memory stays bounded).
const LOST_MAX: usize = 1024;

/// Gives a lease back when its connection ends: `(coord, keys, token,
/// client id)`.
pub type EndFn = fn(Arc<Coord>, ObjectKeys, i64, u64) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// What identifies a lease: the primitive (`lock`), the object's name, the
/// token.
pub type LeaseId = (&'static str, Bytes, i64);

/// One KEEPALIVE lease: its renewal task and how to give it back.
#[derive(Debug)]
pub struct Lease {
    /// The object's keys.
    pub keys: ObjectKeys,
    /// The renewal task.
    pub task: tokio::task::AbortHandle,
    /// Releases it.
    pub end: EndFn,
}

/// Leases whose renewal failed, shared with the renewal tasks.
#[derive(Debug, Default)]
pub struct Lost(VecDeque<LeaseId>);

impl Lost {
    fn insert(&mut self, id: LeaseId) {
        if self.0.len() >= LOST_MAX {
            self.0.pop_front();
        }
        self.0.push_back(id);
    }

    fn take(&mut self, id: &LeaseId) -> bool {
        match self.0.iter().position(|l| l == id) {
            Some(i) => {
                self.0.remove(i);
                true
            }
            None => false,
        }
    }
}

/// A connection's coordination state (see the module docs).
#[derive(Debug)]
pub struct ClientCoord {
    coord: Arc<Coord>,
    info: Arc<ClientInfo>,
    leases: HashMap<LeaseId, Lease>,
    lost: Arc<Mutex<Lost>>,
}

impl ClientCoord {
    /// The state of the connection `info`.
    pub fn new(coord: Arc<Coord>, info: Arc<ClientInfo>) -> ClientCoord {
        ClientCoord {
            coord,
            info,
            leases: HashMap::new(),
            lost: Arc::default(),
        }
    }

    /// strata's id of the connection (its multiplexed backend connection).
    pub fn client_id(&self) -> u64 {
        self.info.id
    }

    /// The connection, weakly (for a renewal task's push).
    pub fn info(&self) -> Weak<ClientInfo> {
        Arc::downgrade(&self.info)
    }

    /// Where renewal tasks record a lost lease.
    pub fn lost_set(&self) -> Arc<Mutex<Lost>> {
        self.lost.clone()
    }

    /// Starts holding a lease (its renewal task already runs).
    pub fn hold(&mut self, id: LeaseId, lease: Lease) {
        if let Some(old) = self.leases.insert(id, lease) {
            old.task.abort();
        }
    }

    /// Stops renewing a lease (released, or renewed with another ttl);
    /// true when it was held.
    pub fn forget(&mut self, id: &LeaseId) -> bool {
        match self.leases.remove(id) {
            Some(lease) => {
                lease.task.abort();
                true
            }
            None => false,
        }
    }

    /// True (once) when this lease was lost by a failed renewal.
    pub fn take_lost(&mut self, id: &LeaseId) -> bool {
        let lost = self.lost.lock().map(|mut l| l.take(id)).unwrap_or(false);
        if lost {
            // The renewal task has ended; drop its entry.
            self.leases.remove(id);
        }
        lost
    }

    /// Leases held now.
    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }
}

/// Records a lost lease: counted, remembered for `-LOCKLOST`, and pushed
/// at once to a RESP3 client as `>3 lock-lost <name> <token>` (`push` is
/// the push's first element, e.g. `lock-lost`).
pub fn lease_lost(
    coord: &Coord,
    lost: &Mutex<Lost>,
    info: &Weak<ClientInfo>,
    push: &str,
    id: LeaseId,
) {
    super::CoordStats::add(&coord.stats().lost_leases);
    let (_, name, token) = &id;
    if let Some(info) = info.upgrade() {
        if info.resp() == 3 {
            let mut r = crate::protocol::reply::ReplyBuf::new(crate::protocol::Protocol::Resp3);
            r.raw(b">3\r\n");
            r.bulk(push.as_bytes()).bulk(name).integer(*token);
            info.tracking.push(r.freeze());
        }
    }
    tracing::info!(name = %String::from_utf8_lossy(name), token, "coord: lease lost");
    if let Ok(mut l) = lost.lock() {
        l.insert(id);
    }
}

impl Drop for ClientCoord {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let lost = self.lost.lock().map(|l| l.0.clone()).unwrap_or_default();
        for (id, lease) in self.leases.drain() {
            lease.task.abort();
            if lost.contains(&id) {
                continue;
            }
            let fut = (lease.end)(self.coord.clone(), lease.keys, id.2, self.info.id);
            runtime.spawn(fut);
        }
    }
}
