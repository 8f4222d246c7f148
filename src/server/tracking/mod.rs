//! CLIENT TRACKING … REDIRECT <id>, where `<id>` is a strata client id.
//!
//! Redis sends a tracking client's invalidations to the client it
//! redirects to, which must be a connection *of Redis's*. A strata client
//! has no backend connection of its own to name (it shares a multiplexed
//! one, or borrows dedicated ones), so for each redirect strata opens a
//! *listener* on the tracking connection's node: a RESP2 connection
//! subscribed to `__redis__:invalidate` (`listener.rs`). The REDIRECT
//! argument is rewritten to the listener's backend id, and the listener
//! hands each invalidation to the target client's writer, encoded as Redis
//! would encode it for that client now (`encode.rs`). When the target
//! leaves, the listener closes, so Redis itself finds the redirect broken
//! and tells the tracking client (`tracking-redir-broken`), as it would
//! directly. Ids in replies (GETREDIR, TRACKINGINFO, redir-broken) are
//! turned back into strata's.
//!
//! * [`ClientTracking`]: the per-client state, held by the client registry
//!   (where one client finds another): the client's *inbox* for
//!   invalidations redirected to it, and its own redirect, if it tracks.
//! * `command.rs`: CLIENT TRACKING's arguments, read as Redis reads them.
//! * `listener.rs`: the listener task and its bounded delivery.
//! * `encode.rs`: frames in and out, and the id translations.

pub mod cluster;
mod command;
mod encode;
mod listener;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

pub use command::prepare;

/// How many invalidation frames wait for one client's writer. Past that
/// the listener drops them and, once there is room again, sends one
/// "invalidate everything" frame (a null, as Redis sends on FLUSHALL):
/// memory stays bounded and the client's cache stays correct.
pub const INBOX_FRAMES: usize = 128;

/// One client's tracking state (see the module docs).
#[derive(Debug, Default)]
pub struct ClientTracking {
    /// Where invalidations redirected to this client go: its writer's
    /// inbox. Set when the writer starts.
    inbox: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// Some redirect named this client: its writer waits on the inbox too.
    /// Until then the writer's waits cost one relaxed load for this
    /// feature, and the inbox is not polled.
    target: AtomicBool,
    /// The writer's queue, to wake it when `target` turns true while it
    /// waits on the queue alone (weak: it does not keep the writer alive).
    wake: Mutex<Option<crate::server::queue::WeakQueueTx>>,
    /// This client's redirect, once Redis accepted it.
    link: Mutex<Option<Arc<Link>>>,
    /// Cluster mode's BCAST tracking: the listeners' supervisor.
    cluster: Mutex<Option<cluster::Supervisor>>,
    /// `cluster` holds default tracking's connections.
    per_read_on: AtomicBool,
}

/// A tracking client's redirect: the target and the listener serving it.
/// Dropping it stops the listener, which closes its connection.
#[derive(Debug)]
pub struct Link {
    /// The target's strata client id.
    target: u64,
    /// The listener's backend client id (what Redis knows as the redirect).
    backend_id: i64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the writer does with the reply to a command that concerns
/// tracking (carried as `Post::Tracking`).
#[derive(Debug, Clone)]
pub struct Hook {
    action: Action,
    /// CLIENT REPLY OFF/SKIP: act on the reply, write nothing.
    pub silent: bool,
}

#[derive(Debug, Clone)]
enum Action {
    /// CLIENT TRACKING: once Redis says OK, this is the client's redirect
    /// (`None`: no redirect any more). On an error, nothing changes.
    Switch(Option<Arc<Link>>),
    /// GETREDIR, TRACKINGINFO: the listener's id becomes the target's.
    Translate,
}

impl PartialEq for Hook {
    fn eq(&self, other: &Hook) -> bool {
        self.silent == other.silent
            && match (&self.action, &other.action) {
                (Action::Translate, Action::Translate) => true,
                (Action::Switch(a), Action::Switch(b)) => match (a, b) {
                    (None, None) => true,
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    _ => false,
                },
                _ => false,
            }
    }
}

impl Eq for Hook {}

impl Hook {
    /// GETREDIR / TRACKINGINFO.
    pub fn translate() -> Hook {
        Hook {
            action: Action::Translate,
            silent: false,
        }
    }
}

impl ClientTracking {
    /// Opens the client's inbox; the writer reads it for as long as it
    /// runs, and the listeners serving this client stop once it is gone.
    pub fn open_inbox(&self) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(INBOX_FRAMES);
        if let Ok(mut slot) = self.inbox.lock() {
            *slot = Some(tx);
        }
        rx
    }

    /// The writer's queue, for [`ClientTracking::mark_target`].
    pub fn set_wake(&self, queue: crate::server::queue::WeakQueueTx) {
        if let Ok(mut slot) = self.wake.lock() {
            *slot = Some(queue);
        }
    }

    /// True once a redirect named this client (see `target`).
    pub fn is_target(&self) -> bool {
        self.target.load(Ordering::Relaxed)
    }

    /// A redirect names this client: its writer starts reading the inbox,
    /// woken by an entry on its queue if it was waiting there. A full
    /// queue needs no entry: the writer is busy and looks again.
    fn mark_target(&self) {
        if self.target.swap(true, Ordering::Relaxed) {
            return;
        }
        let queue = self.wake.lock().ok().and_then(|w| w.clone());
        if let Some(queue) = queue {
            queue.try_send(crate::server::pending::Pending::Wake);
        }
    }

    /// Queues an out-of-band frame (already encoded for this client) for
    /// its writer, as redirected invalidations are: another feature's push
    /// (coord's `lock-lost`). False when the inbox is full or closed.
    pub fn push(&self, frame: Bytes) -> bool {
        let Some(inbox) = self.inbox() else {
            return false;
        };
        self.mark_target();
        inbox.try_send(frame).is_ok()
    }

    fn inbox(&self) -> Option<mpsc::Sender<Bytes>> {
        self.inbox.lock().ok().and_then(|i| i.clone())
    }

    fn link(&self) -> Option<Arc<Link>> {
        self.link.lock().ok().and_then(|l| l.clone())
    }

    /// The strata id this client's invalidations are redirected to (CLIENT
    /// LIST's `redir`), while Redis has the redirect.
    pub fn redirect_id(&self) -> Option<u64> {
        self.link().map(|link| link.target).or_else(|| {
            self.cluster
                .lock()
                .ok()
                .and_then(|c| c.as_ref().and_then(|s| s.target))
        })
    }

    /// True while default tracking in cluster mode is on: one relaxed load
    /// (the plain-command fast path asks on every command).
    #[inline]
    pub fn per_read_on(&self) -> bool {
        self.per_read_on.load(Ordering::Relaxed)
    }

    /// Cluster mode, default tracking: the connections the client's reads
    /// run on. One relaxed load while the client does not track.
    pub fn per_read(&self) -> Option<Arc<cluster::PerRead>> {
        if !self.per_read_on.load(Ordering::Relaxed) {
            return None;
        }
        self.cluster
            .lock()
            .ok()
            .and_then(|c| c.as_ref().and_then(|s| s.per_read.clone()))
    }

    /// Cluster mode: the client's listeners (`None`: tracking off).
    fn set_cluster(&self, next: Option<cluster::Supervisor>) {
        self.per_read_on.store(
            next.as_ref().is_some_and(|s| s.per_read.is_some()),
            Ordering::Relaxed,
        );
        let old = self
            .cluster
            .lock()
            .ok()
            .and_then(|mut c| std::mem::replace(&mut *c, next));
        drop(old);
    }

    /// Forgets the client's redirect and stops its listener (the client
    /// left, or RESET turned tracking off).
    pub fn clear(&self) {
        let old = self.link.lock().ok().and_then(|mut l| l.take());
        drop(old);
        self.set_cluster(None);
    }

    /// The writer's part: the reply to a tracking command, as the client
    /// is to see it (empty when silenced).
    pub fn after_reply(&self, hook: Hook, frame: Bytes) -> Bytes {
        let frame = match hook.action {
            Action::Switch(next) => {
                if !crate::protocol::reply::is_error(&frame) {
                    let old = self
                        .link
                        .lock()
                        .ok()
                        .and_then(|mut l| std::mem::replace(&mut *l, next));
                    drop(old);
                }
                frame
            }
            Action::Translate => match self.link() {
                Some(link) => encode::translate_reply(&frame, link.backend_id, link.target),
                None => frame,
            },
        };
        if hook.silent {
            Bytes::new()
        } else {
            frame
        }
    }

    /// An out-of-band frame on this client's own connection: a
    /// `tracking-redir-broken` push gets strata's id for the target that
    /// went away; anything else is returned as it is (a prefix check).
    pub fn redir_broken(&self, frame: Bytes) -> Bytes {
        if !encode::is_redir_broken(&frame) {
            return frame;
        }
        match self.link() {
            Some(link) => encode::translate_redir_broken(&frame, link.backend_id, link.target),
            None => frame,
        }
    }
}
