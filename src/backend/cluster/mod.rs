//! Redis Cluster: the pure pieces the cluster router is built from.
//!
//! Everything here is a function of bytes and snapshots, so each piece is
//! tested on its own against replies captured from a real cluster; the
//! session wiring (which node gets which bytes, retries) sits on top.
//!
//! * [`slots`]: [`SlotMap`], an immutable snapshot of who owns each of the
//!   16384 slots (primary and replicas), parsed from `CLUSTER SHARDS`
//!   (Redis 7) or `CLUSTER SLOTS`, RESP2 or RESP3.
//! * [`redirect`]: a backend reply classified once into an action (MOVED,
//!   ASK, TRYAGAIN, CLUSTERDOWN, or nothing to do), the redirect target
//!   checked against the known nodes, the hop cap.
//! * [`split`]: a command planned by the command table's `Route` (one slot,
//!   split per slot, every primary), CROSSSLOT as Redis Cluster words it,
//!   and the sub-replies merged back by the table's `Merge`.
//! * [`scan`]: SCAN across primaries with one opaque cursor.
//! * [`topology`]: reading the slot map from seed nodes, and the replies
//!   strata gives cluster-aware clients (one node owning every slot).
//!
//! Frames stay bytes: requests are built as RESP frames, replies are read
//! as byte ranges of the frame the backend sent, never decoded into values.
//!
//! # Wiring (for the cluster router; not done yet)
//!
//! * **Per batch**: load the `SlotMap` snapshot once, [`plan`] each command.
//!   `Plan::Slot` goes unchanged to the slot's node (the client's pinned
//!   mux connection to that node keeps its per-node FIFO); `Plan::Split`
//!   and fan-outs become one pending entry that gathers its sub-replies and
//!   merges them ([`Split::merge`], [`split::merge_fanout`],
//!   [`scan::client_reply`]); `CrossSlot` is answered at once. Requests
//!   for one node are handed to it as one message per batch.
//! * **Order**: the client's pending queue keeps one entry per command in
//!   request order, whatever the number of nodes behind it; the writer
//!   awaits entries in order, so gathers and retries never reorder replies.
//! * **Redirects**: where the reply is awaited, keep the request bytes
//!   (a `Bytes` clone) and [`classify`] the reply (one byte for non-errors).
//!   MOVED: poke the topology refresh, [`redirect::check_target`] (after one
//!   refresh if unknown), [`redirect::Hops::follow`], resend to the target.
//!   ASK: `ASKING` + request as one unit on one connection of the target.
//!   TRYAGAIN/CLUSTERDOWN: [`redirect::retry_backoff`] up to the configured
//!   limit, then a clear error. Retries of one connection's replies are
//!   issued in reply order, so commands on one slot stay in order.

pub mod info;
pub mod redirect;
mod reseed;
mod resp;
mod router;
pub mod scan;
pub mod slots;
pub mod split;
pub mod stats;
pub mod topology;

pub use redirect::{classify, Redirect};
pub use router::{slot_unserved, ClusterRouter, ClusterView, Resend};
pub use slots::{Health, Node, Shard, SlotMap, TopologyError};
pub use split::{plan, Plan, Split};
