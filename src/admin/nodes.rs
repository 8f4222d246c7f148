//! The Redis side of the `PROXY TIER …` and `PROXY CHECKPOINT …` commands:
//! dedicated connections borrowed from the pool (so the shared, multiplexed
//! connections never wait behind a long admin command), one per primary,
//! opened on first use and given back when the command ends.
//!
//! Standalone and Sentinel: the primary. Cluster: every primary for a
//! SCAN, and a key's slot owner for commands about one key (a command
//! whose slot moved meanwhile gets Redis's MOVED as its reply, which the
//! caller reports; admin commands do not follow redirects).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use crate::backend::cluster::ClusterRouter;
use crate::backend::dedicated::Dedicated;
use crate::backend::handshake::read_frame;
use crate::backend::node::Node;
use crate::backend::router::Router;
use crate::protocol::reply::{aggregate_elements, is_error, string_payload};
use crate::protocol::request::encode_command;
use crate::protocol::Protocol;

/// One borrowed connection to one node, RESP2.
struct NodeConn {
    node: Arc<Node>,
    conn: Option<Dedicated>,
    timeout: Duration,
}

impl NodeConn {
    async fn open(node: Arc<Node>) -> Result<NodeConn, String> {
        let conn = node
            .dedicated(Protocol::Resp2, None)
            .await
            .map_err(|e| format!("ERR backend unavailable: {e}"))?;
        let timeout = node.request_timeout();
        Ok(NodeConn {
            node,
            conn: Some(conn),
            timeout,
        })
    }

    /// Sends every command in one write and reads one reply per command.
    /// A failure leaves the connection closed (a reply may be half read).
    async fn pipeline(&mut self, commands: &[Vec<Bytes>]) -> Result<Vec<Bytes>, String> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let addr = self.node.addr().to_string();
        let Some(conn) = self.conn.as_mut() else {
            return Err(format!("ERR backend {addr}: connection broken"));
        };
        let mut out = BytesMut::new();
        for c in commands {
            out.extend_from_slice(&encode_command(c));
        }
        let Some(mut stream) = conn.stream.take() else {
            return Err(format!("ERR backend {addr}: connection broken"));
        };
        let buf = &mut conn.buf;
        let exchange = async {
            stream.write_all(&out).await?;
            stream.flush().await?;
            let mut replies = Vec::with_capacity(commands.len());
            while replies.len() < commands.len() {
                replies.push(read_frame(&mut stream, buf).await?);
            }
            Ok::<_, std::io::Error>(replies)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(replies)) => {
                conn.stream = Some(stream);
                Ok(replies)
            }
            Ok(Err(e)) => Err(format!("ERR backend {addr}: {e}")),
            Err(_) => Err(format!(
                "ERR backend {addr}: no reply within the request timeout"
            )),
        }
    }
}

impl Drop for NodeConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if conn.stream.is_some() {
                self.node.release(conn);
            }
        }
    }
}

/// The primaries an admin command talks to, with a connection to each,
/// opened on first use.
pub struct Nodes<'a> {
    router: &'a Router,
    cluster: Option<&'a ClusterRouter>,
    open: Vec<NodeConn>,
}

impl<'a> Nodes<'a> {
    /// No connection is opened yet.
    pub fn new(router: &'a Router, cluster: Option<&'a ClusterRouter>) -> Nodes<'a> {
        Nodes {
            router,
            cluster,
            open: Vec::new(),
        }
    }

    /// The tier's way to Redis on the multiplexed connections, as
    /// `client_id` (for the tier's scripts: `PROXY TIER SPILL`).
    pub fn link(&self, client_id: u64) -> crate::tier::RedisLink<'a> {
        crate::tier::RedisLink {
            router: self.router,
            cluster: self.cluster,
            client_id,
            proto: Protocol::Resp2,
            user: None,
        }
    }

    /// Every primary (one in standalone and Sentinel mode).
    pub fn primaries(&self) -> Vec<Arc<Node>> {
        match self.cluster {
            None => vec![self.router.primary()],
            Some(cluster) => {
                let view = cluster.view();
                (0..view.map.shards().len())
                    .filter_map(|i| view.primary_of_shard(i).cloned())
                    .collect()
            }
        }
    }

    /// The primary that owns `key`.
    fn node_of(&self, key: &[u8]) -> Result<Arc<Node>, String> {
        match self.cluster {
            None => Ok(self.router.primary()),
            Some(cluster) => {
                let slot = crate::command::slot::hash_slot(key);
                cluster
                    .view()
                    .primary(slot)
                    .cloned()
                    .ok_or_else(|| format!("CLUSTERDOWN Hash slot {slot} not served"))
            }
        }
    }

    async fn conn(&mut self, node: &Arc<Node>) -> Result<&mut NodeConn, String> {
        let at = match self.open.iter().position(|c| Arc::ptr_eq(&c.node, node)) {
            Some(at) => at,
            None => {
                self.open.push(NodeConn::open(node.clone()).await?);
                self.open.len() - 1
            }
        };
        Ok(&mut self.open[at])
    }

    /// Pipelines `commands` on `node`.
    pub async fn on(
        &mut self,
        node: &Arc<Node>,
        commands: &[Vec<Bytes>],
    ) -> Result<Vec<Bytes>, String> {
        self.conn(node).await?.pipeline(commands).await
    }

    /// Commands each about one key: grouped by the key's primary, each
    /// group pipelined; one reply per command, in order. Error replies are
    /// frames like any other.
    pub async fn by_key(&mut self, commands: &[(Bytes, Vec<Bytes>)]) -> Result<Vec<Bytes>, String> {
        let mut groups: Vec<(Arc<Node>, Vec<usize>)> = Vec::new();
        for (i, (key, _)) in commands.iter().enumerate() {
            let node = self.node_of(key)?;
            match groups.iter_mut().find(|(n, _)| Arc::ptr_eq(n, &node)) {
                Some((_, members)) => members.push(i),
                None => groups.push((node, vec![i])),
            }
        }
        let mut out = vec![Bytes::new(); commands.len()];
        for (node, members) in groups {
            let batch: Vec<Vec<Bytes>> = members.iter().map(|&i| commands[i].1.clone()).collect();
            let replies = self.on(&node, &batch).await?;
            for (i, r) in members.into_iter().zip(replies) {
                out[i] = r;
            }
        }
        Ok(out)
    }

    /// One `SCAN cursor MATCH pattern COUNT count` on `node`: the next
    /// cursor (0 at the end) and the keys.
    pub async fn scan(
        &mut self,
        node: &Arc<Node>,
        cursor: u64,
        pattern: &Bytes,
        count: usize,
    ) -> Result<(u64, Vec<Bytes>), String> {
        let command = vec![
            Bytes::from_static(b"SCAN"),
            Bytes::from(cursor.to_string()),
            Bytes::from_static(b"MATCH"),
            pattern.clone(),
            Bytes::from_static(b"COUNT"),
            Bytes::from(count.to_string()),
        ];
        let frame = self.on(node, &[command]).await?.pop().unwrap_or_default();
        if is_error(&frame) {
            return Err(error_text(&frame));
        }
        let bad = || "ERR unexpected SCAN reply from redis".to_string();
        let elems = aggregate_elements(&frame)
            .filter(|e| e.len() == 2)
            .ok_or_else(bad)?;
        let next = string_payload(&frame[elems[0].clone()])
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u64>().ok())
            .ok_or_else(bad)?;
        let list = frame.slice(elems[1].clone());
        let keys = aggregate_elements(&list)
            .ok_or_else(bad)?
            .into_iter()
            .filter_map(|r| crate::tier::redis::bulk(&list.slice(r)))
            .collect();
        Ok((next, keys))
    }
}

/// The text of an error frame, without its `-` and line end.
pub fn error_text(frame: &[u8]) -> String {
    crate::tier::redis::error_text(frame).unwrap_or_default()
}
