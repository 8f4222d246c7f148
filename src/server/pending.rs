//! What the session's reader hands its writer, in request order.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
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
    /// Write nothing: the client was already answered (cluster mode's
    /// MULTI, replayed on the node the transaction binds to).
    Drop,
}

/// Reply frames due on the dedicated connection for one command.
#[derive(Debug)]
pub struct Expect {
    /// How many frames (pub/sub messages and MONITOR lines do not count).
    pub frames: usize,
    /// Fail if they have not all come by then; `None` for blocking commands.
    pub deadline: Option<tokio::time::Instant>,
    /// The command was MONITOR: afterwards, status lines are monitor output.
    pub monitor: bool,
    /// Rewrite applied to the reply (single-frame replies only).
    pub post: Post,
    /// For the latency histogram.
    pub timing: Timing,
}

/// The read side of a dedicated connection, owned by the writer.
#[derive(Debug)]
pub struct DedicatedReader {
    /// The socket's read half.
    pub rd: OwnedReadHalf,
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
    /// The ACL user the client logged in as (a replacement connection is
    /// that user's too); `None`: strata's own.
    pub user: Option<std::sync::Arc<crate::backend::users::Credentials>>,
}

/// What it takes to give a dedicated connection back to the pool.
#[derive(Debug)]
pub struct DedicatedReturn {
    /// The socket's write half, to reunite with the read half.
    pub wr: OwnedWriteHalf,
    /// The pool handle (its stream is `None` while split).
    pub conn: Dedicated,
}
