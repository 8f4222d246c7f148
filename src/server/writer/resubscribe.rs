//! Subscriptions that outlive their backend connection.
//!
//! A client that is only subscribed (no command awaiting a reply, no
//! MONITOR) holds nothing on its connection but the subscriptions
//! themselves. When that connection is lost, its node retired by a
//! failover, or its shard channels moved away with their slot (Redis then
//! sends an unsolicited `sunsubscribe`), the writer takes a connection to
//! the node that now serves them, subscribes again to what the backend
//! had confirmed, drops the confirmations (the client saw them once), and
//! hands the new write half to the session. The client sees no error;
//! messages published while no connection was subscribed are lost, as
//! they are in Redis pub/sub for any disconnected subscriber.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::Writer;
use crate::backend::dedicated::Dedicated;
use crate::backend::handshake::read_frame;
use crate::backend::node::Node;
use crate::command::slot::hash_slot;
use crate::protocol::reply::{aggregate_elements, integer_payload, string_payload};
use crate::protocol::request::encode_command;
use crate::server::pending::DedicatedReader;

/// How long the writer keeps trying to subscribe again (a cluster
/// failover takes about `cluster-node-timeout` plus an election).
const RESUBSCRIBE_WINDOW: Duration = Duration::from_secs(15);
/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// A new dedicated connection's write side, for the session.
#[derive(Debug)]
pub struct DedicatedSwap {
    /// The new socket's write half.
    pub wr: crate::tls::WriteHalf,
    /// Its pool handle.
    pub conn: Dedicated,
    /// The node it is connected to.
    pub addr: String,
}

/// What the backend confirmed the client is subscribed to.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    shard: BTreeSet<Bytes>,
}

/// A (un)subscribe confirmation: `[kind, channel, count]`.
pub fn confirmation(frame: &[u8]) -> Option<(&[u8], Bytes, i64)> {
    let el = aggregate_elements(frame)?;
    if el.len() != 3 {
        return None;
    }
    let kind = string_payload(&frame[el[0].clone()])?;
    let channel = string_payload(&frame[el[1].clone()]).unwrap_or_default();
    let count = integer_payload(&frame[el[2].clone()])?;
    Some((kind, Bytes::copy_from_slice(channel), count))
}

/// Resolves once strata's pub/sub node (`ClusterView::pubsub_node`) is no
/// longer `addr`: slot 0 moved to another primary (resharding; a
/// failover retires the node, which the writer notices by itself). Never
/// resolves outside cluster mode.
pub(super) async fn pubsub_node_moved(
    cluster: Option<&crate::backend::cluster::ClusterRouter>,
    reads: &mut Option<tokio::sync::watch::Receiver<u64>>,
    addr: &str,
) {
    let (Some(cluster), Some(reads)) = (cluster, reads.as_mut()) else {
        return std::future::pending().await;
    };
    loop {
        if reads.changed().await.is_err() {
            return std::future::pending().await;
        }
        let view = cluster.view();
        if view.pubsub_node().is_some_and(|n| n.addr() != addr) {
            return;
        }
    }
}

impl Subscriptions {
    /// True while subscribed to channels or patterns and to no shard
    /// channel: such a subscriber lives on strata's pub/sub node.
    pub(super) fn on_pubsub_node(&self) -> bool {
        self.shard.is_empty() && !(self.channels.is_empty() && self.patterns.is_empty())
    }

    /// The shard channels confirmed on this connection.
    pub(super) fn shard_len(&self) -> usize {
        self.shard.len()
    }

    /// True while subscribed to anything.
    pub(super) fn any(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty())
    }

    /// Follows one confirmation frame.
    pub(super) fn observe(&mut self, frame: &[u8]) {
        let Some((kind, channel, count)) = confirmation(frame) else {
            return;
        };
        match kind {
            b"subscribe" => drop(self.channels.insert(channel)),
            b"psubscribe" => drop(self.patterns.insert(channel)),
            b"ssubscribe" => drop(self.shard.insert(channel)),
            b"unsubscribe" if count == 0 && channel.is_empty() => self.channels.clear(),
            b"unsubscribe" => drop(self.channels.remove(&channel)),
            b"punsubscribe" if count == 0 && channel.is_empty() => self.patterns.clear(),
            b"punsubscribe" => drop(self.patterns.remove(&channel)),
            b"sunsubscribe" if count == 0 && channel.is_empty() => self.shard.clear(),
            b"sunsubscribe" => drop(self.shard.remove(&channel)),
            _ => {}
        }
    }

    /// The commands that subscribe again, and how many confirmations they bring.
    fn commands(&self) -> (BytesMut, usize) {
        let mut out = BytesMut::new();
        let mut n = 0;
        for (verb, set) in [
            (&b"SUBSCRIBE"[..], &self.channels),
            (b"PSUBSCRIBE", &self.patterns),
            (b"SSUBSCRIBE", &self.shard),
        ] {
            if set.is_empty() {
                continue;
            }
            let mut args = vec![Bytes::from_static(verb)];
            args.extend(set.iter().cloned());
            out.extend_from_slice(&encode_command(&args));
            n += set.len();
        }
        (out, n)
    }
}

impl Writer {
    /// Subscribes again on a fresh connection (see the module docs).
    /// False when no node took the subscriptions within the window.
    pub(super) async fn resubscribe(
        &mut self,
        rd: &mut DedicatedReader,
        subs: &Subscriptions,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + RESUBSCRIBE_WINDOW;
        let mut first = true;
        while tokio::time::Instant::now() < deadline {
            if !first {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            first = false;
            let Some(node) = self.subscription_node(subs).await else {
                continue;
            };
            match self.subscribe_on(&node, rd, subs).await {
                Ok(()) => {
                    tracing::info!(client = rd.client_id, backend = %rd.addr, "subscriptions moved to a new connection");
                    return true;
                }
                Err(e) => {
                    tracing::debug!(backend = %node.addr(), error = %e, "resubscribe failed; retrying");
                }
            }
        }
        false
    }

    /// The node that serves the subscriptions now: the owner of the shard
    /// channels' slot, else (cluster) strata's pub/sub node, where PUBLISH
    /// goes, else the primary.
    async fn subscription_node(&self, subs: &Subscriptions) -> Option<std::sync::Arc<Node>> {
        let Some(cluster) = self.shared.cluster.as_ref() else {
            return Some(self.shared.backend.primary());
        };
        cluster.refresh_now().await;
        let view = cluster.view();
        match subs.shard.iter().next() {
            Some(channel) => view.primary(hash_slot(channel)).cloned(),
            None => view.pubsub_node().cloned(),
        }
    }

    async fn subscribe_on(
        &mut self,
        node: &Node,
        rd: &mut DedicatedReader,
        subs: &Subscriptions,
    ) -> std::io::Result<()> {
        let mut conn = node
            .dedicated(rd.proto, rd.user.as_deref())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut stream = conn
            .stream
            .take()
            .ok_or_else(|| std::io::Error::other("connection broken"))?;
        let mut buf = std::mem::take(&mut conn.buf);
        let (commands, mut due) = subs.commands();
        let timeout = node.request_timeout();
        tokio::time::timeout(timeout, async {
            stream.write_all(&commands).await?;
            stream.flush().await?;
            while due > 0 {
                let frame = read_frame(&mut stream, &mut buf).await?;
                match confirmation(&frame) {
                    Some((kind, _, _)) if kind.ends_with(b"subscribe") => due -= 1,
                    // A message on a channel already subscribed again.
                    _ => self.out.extend_from_slice(&frame),
                }
            }
            Ok::<(), std::io::Error>(())
        })
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no confirmation"))??;
        let (new_rd, wr) = stream.into_split();
        rd.rd = new_rd;
        rd.buf = buf;
        rd.addr = node.addr().to_string();
        rd.retired = node.retired();
        if let Some(swap) = &self.swap {
            let addr = node.addr().to_string();
            let _ = swap.send(DedicatedSwap { wr, conn, addr });
        }
        Ok(())
    }
}
