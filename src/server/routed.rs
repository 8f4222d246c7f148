//! Cluster mode: one client read's commands, routed by slot.
//!
//! The session ([`session`](super::session)) plans each command with the
//! command table (`backend::cluster::split`) and appends its request, or
//! its per-slot parts, to the group of the node that serves it: one
//! message per node per read, so a pipeline costs one channel send and one
//! reply slot per node, not per command. It keeps one [`Item`] per client
//! command, in request order, naming which sub-replies answer it.
//!
//! The writer then takes the groups' replies, follows any redirect
//! (`ClusterRouter::follow`), merges split and fan-out replies, and writes
//! one reply per item in order. Retries happen where the reply is awaited,
//! so replies never reorder.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::backend::cluster::redirect::{classify, Redirect};
use crate::backend::cluster::scan::Position;
use crate::backend::cluster::{ClusterView, Split};
use crate::backend::mux::MuxReply;
use crate::backend::node::Node;
use crate::backend::BackendError;
use crate::command::Merge;
use crate::protocol::reply::frame_len;
use crate::protocol::Protocol;
use crate::telemetry::CommandMetrics;
use crate::transform::ReplyPlan;

/// The commands of one read, grouped per node.
#[derive(Debug)]
pub struct RoutedBatch {
    /// The view the commands were planned with (SCAN cursors use its map).
    pub view: Arc<ClusterView>,
    /// The client, whose mux connection to each node keeps its order.
    pub client_id: u64,
    /// The protocol the requests were sent in (retries use the same).
    pub proto: Protocol,
    /// The ACL user the client logged in as (`None`: strata's own); its
    /// requests, retries included, go on that user's connections.
    pub user: Option<Arc<crate::backend::users::Credentials>>,
    /// One per node that gets requests.
    pub groups: Vec<NodeGroup>,
    /// Every request, with the index of its group, in the order added:
    /// the groups' bytes are laid out from these once, when the batch is
    /// sent ([`RoutedBatch::group_frames`]).
    pub requests: Vec<(usize, Bytes)>,
    /// One per client command, in request order.
    pub items: Vec<Item>,
    /// Bytes of requests gathered, to bound the batch.
    pub bytes: usize,
    /// When the first command was parsed.
    pub started: Instant,
    /// When the groups were handed to their nodes' connections (for
    /// `PROXY SLOWLOG`'s split).
    pub sent_at: Instant,
    /// Each command's metric handles.
    pub metrics: Vec<Arc<CommandMetrics>>,
    /// Transform plans by item index, ascending.
    pub plans: Vec<(usize, Box<ReplyPlan>)>,
}

/// The requests for one node, pipelined as one message.
#[derive(Debug)]
pub struct NodeGroup {
    /// The node.
    pub node: Arc<Node>,
    /// Bytes of its requests.
    pub len: usize,
    /// How many.
    pub count: usize,
    /// The replies, once sent.
    pub reply: Option<oneshot::Receiver<MuxReply>>,
    /// The requests as sent (for retries), once sent.
    pub sent: Bytes,
}

/// One request sent to a node: which group carries it, and where in the
/// group's bytes it is (kept for a redirect or a retry without holding a
/// reference to the client's read buffer).
#[derive(Debug)]
pub struct Sub {
    /// Index into [`RoutedBatch::groups`].
    pub group: usize,
    /// Offset of the request in the group's frames.
    pub start: usize,
    /// Length of the request.
    pub len: usize,
    /// The slot it was routed by (`None`: keyless or fan-out).
    pub slot: Option<u16>,
    /// A read-only command: safe to send again after a lost connection.
    pub read_only: bool,
}

/// How one client command is answered.
#[derive(Debug)]
pub enum Item {
    /// By one request's reply, as is.
    One(Sub),
    /// By the parts of a split command, merged.
    Split(Box<Split>, Vec<Sub>),
    /// By the same request on several nodes, merged.
    Fanout(Merge, Vec<Sub>),
    /// By one node's SCAN step, its cursor re-encoded.
    Scan(Position, Sub),
    /// INFO from every primary, merged (`cluster::info`), with strata's
    /// `# Proxy` section when `proxy` is set.
    Info {
        /// One per primary, in shard order.
        subs: Vec<Sub>,
        /// The client's protocol (the reply is a verbatim string in RESP3).
        proto: Protocol,
        /// Append strata's own section.
        proxy: bool,
    },
    /// By a reply strata made (CROSSSLOT, an unserved slot, …).
    Ready(Bytes),
    /// The command runs but its reply is not written (CLIENT REPLY OFF/SKIP).
    Silent(Box<Item>),
}

/// Emptied batches, kept for the session's next reads: the writer gives
/// each one back once its replies are written, and the session takes it
/// for its next read, so a pipelined read in cluster mode does not
/// allocate the batch and its vectors anew. One per client: the session
/// and its writer are the only users, so the lock is never contended.
#[derive(Debug, Default)]
#[allow(
    clippy::vec_box,
    reason = "the box is what travels to the writer (`Pending::Routed`); keeping it saves its allocation too"
)]
pub struct BatchPool(std::sync::Mutex<Vec<Box<RoutedBatch>>>);

/// Emptied batches a pool keeps (a client has a few reads in flight).
const POOL_MAX: usize = 4;

/// The view a kept batch holds until it is taken again.
static NO_VIEW: std::sync::OnceLock<Arc<ClusterView>> = std::sync::OnceLock::new();

impl BatchPool {
    /// An empty batch over `view`: a kept one when there is one.
    pub fn take(
        &self,
        view: Arc<ClusterView>,
        client_id: u64,
        proto: Protocol,
        started: Instant,
    ) -> Box<RoutedBatch> {
        let kept = self.0.lock().ok().and_then(|mut kept| kept.pop());
        match kept {
            Some(mut batch) => {
                batch.view = view;
                batch.client_id = client_id;
                batch.proto = proto;
                batch.started = started;
                batch.user = None;
                batch
            }
            None => Box::new(RoutedBatch::new(view, client_id, proto, started)),
        }
    }

    /// Keeps `batch`, emptied (its vectors keep their capacity), unless
    /// enough are kept already. It lets go of its view, so an idle
    /// client's pool does not keep an old topology and its nodes alive.
    pub fn give(&self, mut batch: Box<RoutedBatch>) {
        batch.view = NO_VIEW
            .get_or_init(|| Arc::new(ClusterView::empty()))
            .clone();
        batch.groups.clear();
        batch.requests.clear();
        batch.items.clear();
        batch.metrics.clear();
        batch.plans.clear();
        batch.bytes = 0;
        if let Ok(mut kept) = self.0.lock() {
            if kept.len() < POOL_MAX {
                kept.push(batch);
            }
        }
    }
}

impl RoutedBatch {
    /// An empty batch over `view`.
    pub fn new(
        view: Arc<ClusterView>,
        client_id: u64,
        proto: Protocol,
        started: Instant,
    ) -> RoutedBatch {
        RoutedBatch {
            view,
            client_id,
            proto,
            user: None,
            groups: Vec::with_capacity(4),
            requests: Vec::with_capacity(16),
            items: Vec::with_capacity(16),
            bytes: 0,
            started,
            sent_at: started,
            metrics: Vec::with_capacity(16),
            plans: Vec::new(),
        }
    }

    /// Appends `request` to `node`'s group and returns its [`Sub`].
    pub fn add(
        &mut self,
        node: &Arc<Node>,
        request: &Bytes,
        slot: Option<u16>,
        read_only: bool,
    ) -> Sub {
        let to = GroupsOf {
            groups: &mut self.groups,
            requests: &mut self.requests,
            bytes: &mut self.bytes,
        };
        add_to(to, node, request, slot, read_only)
    }

    /// Lays out every group's requests back to back in one buffer (one
    /// allocation for the batch, not one per node) and returns each
    /// group's bytes, in group order. The request list is emptied, so the
    /// client's read is not held while the replies are awaited.
    pub fn group_frames(&mut self) -> Vec<Bytes> {
        let mut buf = BytesMut::with_capacity(self.bytes);
        let mut out = Vec::with_capacity(self.groups.len());
        for group in 0..self.groups.len() {
            for (g, request) in &self.requests {
                if *g == group {
                    buf.extend_from_slice(request);
                }
            }
            out.push(buf.split().freeze());
        }
        self.requests.clear();
        out
    }
}

/// The parts of a [`RoutedBatch`] that [`add_to`] appends to, so a caller
/// can hold the batch's view at the same time.
pub struct GroupsOf<'a> {
    /// [`RoutedBatch::groups`].
    pub groups: &'a mut Vec<NodeGroup>,
    /// [`RoutedBatch::requests`].
    pub requests: &'a mut Vec<(usize, Bytes)>,
    /// [`RoutedBatch::bytes`].
    pub bytes: &'a mut usize,
}

/// [`RoutedBatch::add`] on the batch's fields. The request is kept by
/// reference (a slice of the client's read, or a split part) until the
/// batch is sent.
pub fn add_to(
    to: GroupsOf<'_>,
    node: &Arc<Node>,
    request: &Bytes,
    slot: Option<u16>,
    read_only: bool,
) -> Sub {
    let GroupsOf {
        groups,
        requests,
        bytes,
    } = to;
    let group = match groups.iter().position(|g| Arc::ptr_eq(&g.node, node)) {
        Some(i) => i,
        None => {
            groups.push(NodeGroup {
                node: node.clone(),
                len: 0,
                count: 0,
                reply: None,
                sent: Bytes::new(),
            });
            groups.len() - 1
        }
    };
    let g = &mut groups[group];
    let start = g.len;
    g.len += request.len();
    g.count += 1;
    requests.push((group, request.clone()));
    *bytes += request.len();
    Sub {
        group,
        start,
        len: request.len(),
        slot,
        read_only,
    }
}

/// A group's replies, taken one frame at a time in request order.
#[derive(Debug)]
pub struct GroupReplies {
    /// The node (its address is where redirects are relative to).
    pub node: Arc<Node>,
    /// The requests as sent.
    pub sent: Bytes,
    frames: Result<Bytes, BackendError>,
    pos: usize,
}

impl GroupReplies {
    /// Wraps a group's reply.
    pub fn new(node: Arc<Node>, sent: Bytes, frames: MuxReply) -> GroupReplies {
        GroupReplies {
            node,
            sent,
            frames,
            pos: 0,
        }
    }

    /// The request `sub` stands for, as sent.
    pub fn request(&self, sub: &Sub) -> Bytes {
        self.sent
            .get(sub.start..sub.start + sub.len)
            .map_or_else(Bytes::new, |r| self.sent.slice_ref(r))
    }

    /// The next reply when it can go to the client as it is: the group's
    /// replies arrived, the frame is whole, and it is not a redirect or a
    /// retry. Otherwise `None`, and nothing is consumed: [`next_reply`]
    /// then takes the reply the slow way.
    ///
    /// [`next_reply`]: GroupReplies::next_reply
    pub fn next_plain(&mut self) -> Option<&[u8]> {
        let frames = self.frames.as_ref().ok()?;
        let rest = frames.get(self.pos..)?;
        let len = frame_len(rest).ok()??;
        let frame = rest.get(..len)?;
        if classify(frame) != Redirect::Other {
            return None;
        }
        self.pos += len;
        Some(frame)
    }

    /// The next reply of the group, or the group's error.
    pub fn next_reply(&mut self) -> MuxReply {
        let frames = match &self.frames {
            Ok(f) => f,
            Err(e) => return Err(e.clone()),
        };
        match frames.get(self.pos..).map(frame_len) {
            Some(Ok(Some(len))) => {
                let frame = frames.slice(self.pos..self.pos + len);
                self.pos += len;
                Ok(frame)
            }
            // Cannot happen: the connection framed exactly these replies.
            _ => Err(BackendError::ConnectionLost {
                addr: self.node.addr().to_string(),
                reason: "malformed or missing reply frame".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_gives_back_emptied_batches_and_keeps_a_few() {
        let pool = BatchPool::default();
        let view = Arc::new(ClusterView::empty());
        let started = Instant::now();
        let mut batch = pool.take(view.clone(), 1, Protocol::Resp2, started);
        batch
            .items
            .push(Item::Ready(Bytes::from_static(b"+OK\r\n")));
        batch
            .requests
            .push((0, Bytes::from_static(b"*1\r\n$4\r\nPING\r\n")));
        batch.bytes = 14;
        let items_at = batch.items.as_ptr();
        pool.give(batch);

        // The same batch, emptied, its vectors' room kept, for the new client state.
        let again = pool.take(view.clone(), 2, Protocol::Resp3, started);
        assert_eq!(again.items.as_ptr(), items_at);
        assert!(Arc::ptr_eq(&again.view, &view));
        assert!(again.items.is_empty() && again.requests.is_empty() && again.groups.is_empty());
        assert!(again.metrics.is_empty() && again.plans.is_empty());
        assert_eq!(
            (again.bytes, again.client_id, again.proto),
            (0, 2, Protocol::Resp3)
        );

        // No more than POOL_MAX are kept.
        let taken: Vec<_> = (0..POOL_MAX + 2)
            .map(|_| pool.take(view.clone(), 1, Protocol::Resp2, started))
            .collect();
        for batch in taken {
            pool.give(batch);
        }
        pool.give(again);
        assert_eq!(pool.0.lock().map(|kept| kept.len()).unwrap_or(0), POOL_MAX);
        // Kept batches do not hold the views they were used with.
        assert_eq!(Arc::strong_count(&view), 1);
    }
}
