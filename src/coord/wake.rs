//! Waiters queued inside strata, and how a release wakes them.
//!
//! * One [`Queue`] per object with local waiters (keyed by its wake
//!   channel), gone with its last waiter. Its *turnstile* is a FIFO mutex
//!   (tokio's `Mutex` is fair): only the waiter at the head talks to
//!   Redis, the others wait their turn in arrival order. So 1,000 local
//!   waiters on one lock cost, per release, the release's PUBLISH, the
//!   head's successful try and the next head's first try: O(1).
//! * A release script PUBLISHes on the object's channel. Each strata keeps
//!   ONE connection subscribed to `strata:*:wake` (PSUBSCRIBE, opened with
//!   the first waiter) on the primary (Sentinel: followed through
//!   failovers) or, in cluster mode, on the pub/sub node (`pubsub_node`):
//!   a PUBLISH in a script on any node reaches every node over the cluster
//!   bus, so one subscription per strata hears every release, across every
//!   strata sharing the backend. Plain pub/sub rather than SSUBSCRIBE: one
//!   connection whatever the number of slots and names.
//! * A message only wakes the head of the named queue ([`Notify`] stores
//!   one permit when the head is not waiting yet, so a release between a
//!   failed try and the wait is not lost). A lost message (reconnect,
//!   failover) costs at most the lock's remaining ttl: the head also
//!   wakes when the ttl it was told runs out (the fallback timer). After a
//!   reconnect every head is woken once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::backend::cluster::ClusterRouter;
use crate::backend::node::Node;
use crate::backend::router::Router;
use crate::protocol::reply;
use crate::protocol::Protocol;

/// The pattern every wake channel matches (see `keys.rs`).
const PATTERN: &[u8] = b"strata:*:wake";

/// The local waiters of one object.
#[derive(Debug, Default)]
pub struct Queue {
    /// Held by the waiter whose turn it is; fair, so FIFO.
    pub turnstile: tokio::sync::Mutex<()>,
    /// Woken by a release of the object.
    pub notify: Notify,
}

/// Every object's local waiters, and the subscription that wakes them.
#[derive(Debug)]
pub struct Hub {
    /// Each object's queue and how many waiters it has.
    queues: Mutex<HashMap<Bytes, (Arc<Queue>, usize)>>,
    waiters: AtomicUsize,
    /// `strata_coord_waiters`.
    gauge: prometheus_client::metrics::gauge::Gauge,
    max_waiters: usize,
    subscribed: AtomicBool,
    router: Arc<Router>,
    cluster: Option<Arc<ClusterRouter>>,
}

/// One waiter's place: leaving (drop) removes the queue with its last waiter.
#[derive(Debug)]
pub struct Waiter {
    hub: Arc<Hub>,
    channel: Bytes,
    /// The object's queue.
    pub queue: Arc<Queue>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.hub.waiters.fetch_sub(1, Ordering::Relaxed);
        self.hub.gauge.dec();
        if let Ok(mut queues) = self.hub.queues.lock() {
            if let Some((_, users)) = queues.get_mut(&self.channel) {
                *users -= 1;
                if *users == 0 {
                    queues.remove(&self.channel);
                }
            }
        }
    }
}

impl Hub {
    /// An empty hub; the subscription opens with the first waiter.
    pub fn new(
        max_waiters: usize,
        gauge: prometheus_client::metrics::gauge::Gauge,
        router: Arc<Router>,
        cluster: Option<Arc<ClusterRouter>>,
    ) -> Hub {
        Hub {
            queues: Mutex::new(HashMap::new()),
            waiters: AtomicUsize::new(0),
            gauge,
            max_waiters,
            subscribed: AtomicBool::new(false),
            router,
            cluster,
        }
    }

    /// Joins the queue of the object whose wake channel is `channel`.
    /// `None` when `max_waiters` wait already.
    pub fn enter(self: &Arc<Self>, channel: Bytes) -> Option<Waiter> {
        if self.waiters.fetch_add(1, Ordering::Relaxed) >= self.max_waiters {
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.gauge.inc();
        if !self.subscribed.swap(true, Ordering::Relaxed) {
            tokio::spawn(subscribe(Arc::downgrade(self)));
        }
        let queue = {
            let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            let entry = queues.entry(channel.clone()).or_default();
            entry.1 += 1;
            entry.0.clone()
        };
        Some(Waiter {
            hub: self.clone(),
            channel,
            queue,
        })
    }

    /// Waiters queued now, over every object.
    pub fn waiting(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    /// A release was published on `channel`: wake the head of its queue.
    fn wake(&self, channel: &[u8]) {
        let queue = self
            .queues
            .lock()
            .ok()
            .and_then(|q| q.get(channel).map(|e| e.0.clone()));
        if let Some(queue) = queue {
            queue.notify.notify_one();
        }
    }

    /// Wakes every head once (messages may have been missed).
    fn wake_all(&self) {
        let queues: Vec<Arc<Queue>> = match self.queues.lock() {
            Ok(q) => q.values().map(|e| e.0.clone()).collect(),
            Err(_) => return,
        };
        for q in queues {
            q.notify.notify_one();
        }
    }

    /// The node the subscription belongs on now.
    fn target(&self) -> Option<Arc<Node>> {
        match &self.cluster {
            Some(cluster) => cluster.view().pubsub_node().cloned(),
            None => Some(self.router.primary()),
        }
    }
}

/// The subscription task: subscribes on the target node, wakes queues on
/// each message, and moves when the target changes (failover, slot 0
/// moved) or the connection fails. Ends when the hub is gone.
async fn subscribe(hub: Weak<Hub>) {
    let mut check = tokio::time::interval(Duration::from_millis(500));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(node) = hub.upgrade().and_then(|h| h.target()) else {
            if hub.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut conn = match node.dedicated(Protocol::Resp2, None).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "coord: wake subscription cannot connect");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // The connection is ours for good: the pool counts it as broken
        // and forgets it.
        let Some(mut stream) = conn.stream.take() else {
            continue;
        };
        let mut buf = std::mem::take(&mut conn.buf);
        drop(conn);
        let subscribed = crate::backend::handshake::call(
            &mut stream,
            &mut buf,
            &[b"PSUBSCRIBE", PATTERN],
            node.request_timeout(),
        )
        .await;
        if subscribed.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        match hub.upgrade() {
            Some(h) => h.wake_all(),
            None => return,
        }
        loop {
            tokio::select! {
                frame = crate::backend::handshake::read_frame(&mut stream, &mut buf) => {
                    let Ok(frame) = frame else { break };
                    let Some(hub) = hub.upgrade() else { return };
                    if let Some(channel) = pmessage_channel(&frame) {
                        hub.wake(channel);
                    }
                }
                _ = check.tick() => {
                    let Some(h) = hub.upgrade() else { return };
                    let moved = h.target().is_none_or(|t| !Arc::ptr_eq(&t, &node));
                    if moved {
                        break;
                    }
                }
            }
        }
    }
}

/// The channel of a `pmessage` frame (`*4 pmessage pattern channel payload`).
fn pmessage_channel(frame: &[u8]) -> Option<&[u8]> {
    let parts = reply::aggregate_elements(frame)?;
    if parts.len() != 4 {
        return None;
    }
    let kind = reply::string_payload(&frame[parts[0].clone()])?;
    if kind != b"pmessage" {
        return None;
    }
    reply::string_payload(&frame[parts[2].clone()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pmessage_channels() {
        let f = b"*4\r\n$8\r\npmessage\r\n$13\r\nstrata:*:wake\r\n$20\r\nstrata:lock:{a}:wake\r\n$1\r\n5\r\n";
        assert_eq!(pmessage_channel(f), Some(&b"strata:lock:{a}:wake"[..]));
        assert_eq!(
            pmessage_channel(b"*3\r\n$10\r\npsubscribe\r\n$1\r\nx\r\n:1\r\n"),
            None
        );
    }
}
