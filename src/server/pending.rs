//! What the session's reader hands its writer, in request order.

use std::sync::Arc;
use std::time::Instant;

use crate::tls::{ReadHalf, WriteHalf};
use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::backend::dedicated::Dedicated;
use crate::backend::mux::MuxReply;
use crate::protocol::Protocol;
use crate::telemetry::CommandMetrics;
use crate::transform::ReplyPlan;

/// One entry of a client's reply queue. The queue is a bounded channel, so
/// a client with too many requests in flight stops being read
/// (backpressure to its TCP window).
#[derive(Debug)]
pub enum Pending {
    /// A reply strata made itself.
    Ready(Bytes),
    /// A single command's reply coming from a multiplexed connection.
    Backend {
        /// The reply slot.
        reply: oneshot::Receiver<MuxReply>,
        /// Rewrite applied to the reply before it is written.
        post: Post,
        /// For the latency histogram.
        timing: Timing,
    },
    /// The replies to a batch of pipelined commands, back to back.
    Batch {
        /// The replies' slot.
        reply: oneshot::Receiver<MuxReply>,
        /// How many commands (an error is written once per command).
        count: usize,
        /// When the first command was parsed.
        started: Instant,
        /// When the batch was handed to the backend connection, and its
        /// bytes (a reference, not a copy): read back only for a reply
        /// slow enough for `PROXY SLOWLOG`.
        sent: (Instant, Bytes),
        /// Each command's metric handles, recorded when the replies are written.
        metrics: Vec<Arc<CommandMetrics>>,
        /// Transform plans of the commands whose replies hold transformed
        /// values, by position in the batch, ascending; usually empty.
        plans: Vec<(usize, Box<ReplyPlan>)>,
    },
    /// Cluster mode: a read's commands routed by slot (see `routed.rs`).
    Routed(Box<super::routed::RoutedBatch>),
    /// From here on, replies come from this dedicated connection.
    EnterDedicated(DedicatedReader),
    /// `frames` reply frames are due on the dedicated connection for one command.
    Expect(Expect),
    /// The client left every server-side state: give the connection back
    /// once every reply due on it has been written.
    LeaveDedicated(Box<DedicatedReturn>),
    /// Fired once every reply queued before it has come back, so every
    /// command before it has run. The session waits for it before it
    /// sends on another backend connection than the one it used last
    /// (multiplexed ↔ dedicated): Redis orders commands per connection
    /// only, and the client's pipeline must run in its order.
    Barrier(oneshot::Sender<()>),
    /// Write everything before this, then close the connection.
    Close,
    /// Nothing to write: the client was just named as a CLIENT TRACKING
    /// redirect target, and the writer, parked on this queue alone, is to
    /// start reading its inbox too (see `server/tracking/`). Counts no
    /// command.
    Wake,
}

impl Pending {
    /// A reply batch whose frames go to the client as they come (no
    /// transform to open): the direct path's kind (`server/direct.rs`).
    pub fn direct_candidate(&self) -> bool {
        matches!(self, Pending::Batch { plans, .. } if plans.is_empty())
    }

    /// The writer is parked on an empty queue and this entry arrives: if
    /// it is a reply still on its way from a multiplexed connection, the
    /// writer's waker goes to that reply slot instead of being woken now
    /// (it could do nothing but park again on the slot). True when done:
    /// the reply's arrival wakes the writer, one wakeup per request
    /// instead of two. Entries queued behind it wait for it anyway.
    pub fn park_writer_on_reply(&mut self, writer: &std::task::Waker) -> bool {
        use std::future::Future;
        let reply = match self {
            Pending::Backend { reply, .. } | Pending::Batch { reply, .. } => reply,
            // Cluster: the first node's replies are awaited first.
            Pending::Routed(batch) => match batch.groups.first_mut().and_then(|g| g.reply.as_mut())
            {
                Some(reply) => reply,
                None => return false,
            },
            _ => return false,
        };
        if !reply.is_empty() {
            return false; // already answered (or dropped): wake the writer
        }
        let mut cx = std::task::Context::from_waker(writer);
        match std::pin::Pin::new(&mut *reply).poll(&mut cx) {
            std::task::Poll::Pending => true,
            // Answered between the check and the poll: the value is taken
            // out of the slot, so it goes back in a fresh one.
            std::task::Poll::Ready(result) => {
                let (tx, rx) = oneshot::channel();
                if let Ok(value) = result {
                    let _ = tx.send(value);
                }
                *reply = rx;
                false
            }
        }
    }
}

/// Per-command timing, recorded when the reply is written.
#[derive(Debug)]
pub struct Timing {
    /// When the request was parsed.
    pub started: Instant,
    /// Where to record it.
    pub metrics: Option<Arc<CommandMetrics>>,
}

impl Timing {
    /// Records the elapsed time.
    pub fn record(&self) {
        if let Some(m) = &self.metrics {
            m.record(self.started.elapsed());
        }
    }
}

/// Reply rewrites done by the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Post {
    /// Pass the backend's reply through unchanged.
    None,
    /// INFO: append strata's `# Proxy` section, in the client's protocol.
    AppendProxyInfo(Protocol),
    /// Write this instead of the backend's reply (HELLO on a dedicated
    /// connection: the backend switches protocol, the client sees strata's
    /// own HELLO reply).
    Replace(Bytes),
    /// Open the transformed values in the reply (`[[transform]]` rules).
    Transform(Box<ReplyPlan>),
    /// EXEC: open the values in each queued command's reply element; one
    /// entry per queued command, in order.
    TransformExec(Vec<Option<ReplyPlan>>),
    /// CLIENT TRACKING, GETREDIR, TRACKINGINFO: the redirect changes once
    /// Redis accepts it, and the listener's id reads as strata's target id.
    Tracking(crate::server::tracking::Hook),
    /// Write nothing: the client was already answered (cluster mode's
    /// MULTI, replayed on the node the transaction binds to).
    Drop,
}

/// Reply frames due on the dedicated connection for one command.
#[derive(Debug)]
pub struct Expect {
    /// How many frames (pub/sub messages and MONITOR lines do not count).
    pub frames: usize,
    /// Fail if they have not all come this long after the command before
    /// it was answered; `None` for blocking commands and scripts. Counted
    /// from then, not from when it was queued: a command pipelined behind
    /// a blocking one or a long script is sent, and run, only after it.
    pub timeout: Option<std::time::Duration>,
    /// Set by the writer from `timeout` once this entry is the oldest due.
    pub deadline: Option<tokio::time::Instant>,
    /// Its place among the commands sent on this connection (see
    /// [`DedicatedReader::unbounded_at`]).
    pub seq: u64,
    /// The command was MONITOR: afterwards, status lines are monitor output.
    pub monitor: bool,
    /// Rewrite applied to the reply (single-frame replies only).
    pub post: Post,
    /// For the latency histogram.
    pub timing: Timing,
    /// Cluster mode, a script call: how to follow a redirect in its reply.
    pub redirect: Option<Box<Redirectable>>,
    /// The slow log's watch: records the command when the writer drops
    /// this entry, after its last reply frame (`admin/slow_watch.rs`).
    pub slow: crate::admin::slow_watch::SlowWatch,
}

/// Cluster mode: a script call sent on the client's own connection (see
/// `session/scripts.rs`), kept so that a MOVED, ASK or TRYAGAIN in its
/// reply is followed as the routed path follows it, not handed to a client
/// that sees strata as one node owning every slot.
#[derive(Debug)]
pub struct Redirectable {
    /// The request, as sent.
    pub request: Bytes,
    /// The slot of its keys (`None`: keyless).
    pub slot: Option<u16>,
    /// A read-only script (`_RO`): safe to send again after a lost connection.
    pub read_only: bool,
}

/// The read side of a dedicated connection, owned by the writer.
#[derive(Debug)]
pub struct DedicatedReader {
    /// The socket's read half.
    pub rd: ReadHalf,
    /// Bytes read but not framed yet.
    pub buf: BytesMut,
    /// The node's address, for error texts.
    pub addr: String,
    /// Fires when the node is retired (failover): the client's server-side
    /// state is then gone.
    pub retired: tokio::sync::watch::Receiver<Option<String>>,
    /// The client's protocol, for a replacement connection.
    pub proto: Protocol,
    /// The client, for logs.
    pub client_id: u64,
    /// Cluster mode: frames of the client's shard-channel links
    /// (`server/shard_links.rs`).
    pub links: Option<tokio::sync::mpsc::Receiver<super::shard_links::LinkEvent>>,
    /// The `seq` of the last command sent without a timeout (a script, a
    /// blocking command). Redis writes the replies to one read's commands
    /// only once it has run them all, so a reply whose deadline passes
    /// while such a command follows it may be held behind that command,
    /// as long as it runs: the deadline then does not apply.
    pub unbounded_at: Arc<std::sync::atomic::AtomicU64>,
    /// The ACL user the client logged in as (a replacement connection is
    /// that user's too); `None`: strata's own.
    pub user: Option<std::sync::Arc<crate::backend::users::Credentials>>,
}

/// What it takes to give a dedicated connection back to the pool.
#[derive(Debug)]
pub struct DedicatedReturn {
    /// The socket's write half, to reunite with the read half.
    pub wr: WriteHalf,
    /// The pool handle (its stream is `None` while split).
    pub conn: Dedicated,
    /// Cluster mode: the shard-channel links, closed once the writer has
    /// read what was due on them.
    pub links: Vec<super::shard_links::Link>,
    /// RESET before the pool takes it back; `false` when nothing stateful
    /// was sent (a RESP2 run of script calls).
    pub reset: bool,
}
