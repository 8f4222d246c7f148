//! Cluster mode: one client's shard channels on several nodes.
//!
//! Redis Cluster keeps a shard channel's subscribers on the primary of the
//! channel's slot, and refuses an SSUBSCRIBE whose channels span slots
//! (CROSSSLOT), but one connection may SSUBSCRIBE, command by command, to
//! channels of many slots. A client of strata sees one Redis owning every
//! slot, so it may do the same while its channels live on several nodes.
//!
//! The client's dedicated connection (the *main* one) keeps the shard
//! channels of the slot it is pinned to, as before. A shard channel of
//! another slot goes on a *link*: a dedicated connection to that slot's
//! primary, one per node, opened on first use and held until the client
//! leaves dedicated mode. [`ShardLinks`] is the session's side (the links'
//! write halves, where each channel lives); each link's read half is read
//! by a small task ([`spawn_reader`]) that hands its frames to the
//! client's writer over one channel per dedicated session ([`LinkEvent`]).
//!
//! Order: the session sends on one connection at a time and waits (a
//! `Pending::Barrier`) for every reply due before it switches, so replies
//! stay in request order while messages flow from every node. Counts:
//! each node counts only its own shard channels, so the writer rewrites the
//! count of every `ssubscribe`/`sunsubscribe` confirmation to the client's
//! total ([`with_count`]), as one Redis would answer. A link that fails
//! ends the client's session with an error, as any dedicated connection's
//! loss does; the main connection's shard channels are still followed
//! through failovers and slot moves (`writer/resubscribe.rs`).

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::tls::{ReadHalf, WriteHalf};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::backend::dedicated::Dedicated;
use crate::protocol::reply::frame_len;
use crate::server::writer::confirmation;

/// A frame read on a link, or why the link failed.
pub type LinkEvent = Result<Bytes, String>;

/// Frames a link's reader hands over before it waits for the writer:
/// while the client does not read, the links stop being read too, and
/// Redis applies its own pub/sub output limit, as for a direct client.
const LINK_QUEUE: usize = 256;

/// One link: a dedicated connection to a node other than the main one's
/// (or to the same node, for a slot other than the pinned one).
#[derive(Debug)]
pub struct Link {
    /// The node's address.
    pub addr: String,
    /// The socket's write half (its read half is with the reader task).
    pub wr: WriteHalf,
    /// The pool handle; the link is closed, not pooled, when dropped.
    pub conn: Dedicated,
}

/// The session's side of its links (see the module docs).
#[derive(Debug, Default)]
pub struct ShardLinks {
    /// Where the link reader tasks send frames; set while dedicated in
    /// cluster mode.
    events: Option<mpsc::Sender<LinkEvent>>,
    /// The open links.
    pub links: Vec<Link>,
    /// The link each shard channel on a link lives on (channels not here
    /// are on the main connection).
    pub channels: HashMap<Bytes, usize>,
    /// Where the last command went: `None` for the main connection.
    pub last: Option<usize>,
    /// The link to the pub/sub node that holds the client's
    /// SUBSCRIBE/PSUBSCRIBE subscriptions, when the main connection is on
    /// another node (its first subscription was a shard channel).
    pub plain: Option<usize>,
    /// The main connection's node.
    pub main_addr: String,
}

impl ShardLinks {
    /// A dedicated session begins on `main_addr`: returns the receiver the
    /// writer reads link frames from.
    pub fn begin(&mut self, main_addr: String) -> mpsc::Receiver<LinkEvent> {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        *self = ShardLinks {
            events: Some(tx),
            main_addr,
            ..ShardLinks::default()
        };
        rx
    }

    /// The dedicated session ends: the links, to close once the writer
    /// has read what is due on them.
    pub fn end(&mut self) -> Vec<Link> {
        let links = std::mem::take(&mut self.links);
        *self = ShardLinks::default();
        links
    }

    /// The link to `addr`, if one is open.
    pub fn find(&self, addr: &str) -> Option<usize> {
        self.links.iter().position(|l| l.addr == addr)
    }

    /// Adds a link whose read half `rd` (with `buf`, bytes already read)
    /// a new task reads; returns its index.
    pub fn add(
        &mut self,
        addr: String,
        rd: ReadHalf,
        buf: BytesMut,
        wr: WriteHalf,
        conn: Dedicated,
    ) -> usize {
        if let Some(events) = &self.events {
            spawn_reader(rd, buf, events.clone(), addr.clone());
        }
        self.links.push(Link { addr, wr, conn });
        self.links.len() - 1
    }
}

/// Reads a link's frames and hands them to the writer, until the link
/// closes (reported, unless the writer is gone) or the writer drops its
/// receiver.
pub fn spawn_reader(
    mut rd: ReadHalf,
    mut buf: BytesMut,
    events: mpsc::Sender<LinkEvent>,
    addr: String,
) {
    tokio::spawn(async move {
        loop {
            loop {
                match frame_len(&buf) {
                    Ok(Some(len)) => {
                        if events.send(Ok(buf.split_to(len).freeze())).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        let _ = events
                            .send(Err(format!("{addr}: malformed reply from backend")))
                            .await;
                        return;
                    }
                }
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 * 1024);
            }
            tokio::select! {
                r = rd.read_buf(&mut buf) => match r {
                    Ok(0) | Err(_) => {
                        let _ = events
                            .send(Err(format!("{addr}: backend closed the connection")))
                            .await;
                        return;
                    }
                    Ok(_) => {}
                },
                () = events.closed() => return,
            }
        }
    });
}

/// The writer's side: link frames not yet forwarded, and the shard
/// channels the links confirmed.
#[derive(Debug, Default)]
pub struct LinkFrames {
    /// Frames read on links, in arrival order.
    pub pending: VecDeque<Bytes>,
    /// Shard channels confirmed on links.
    channels: BTreeSet<Bytes>,
}

impl LinkFrames {
    /// Follows a confirmation read on a link.
    pub fn observe(&mut self, frame: &[u8]) {
        match confirmation(frame) {
            Some((b"ssubscribe", channel, _)) => drop(self.channels.insert(channel)),
            Some((b"sunsubscribe", channel, _)) => drop(self.channels.remove(&channel)),
            _ => {}
        }
    }

    /// A shard (un)subscribe confirmation from any connection, with the
    /// count one Redis would give: the main connection's `main` shard
    /// channels plus the links'. Other frames, and every frame while no
    /// link holds a channel (`from_link` false), pass unchanged.
    pub fn with_total(&self, frame: Bytes, main: usize, from_link: bool) -> Bytes {
        if self.channels.is_empty() && !from_link {
            return frame;
        }
        let Some((kind, channel, count)) = confirmation(&frame) else {
            return frame;
        };
        let total = (main + self.channels.len()) as i64;
        if !matches!(kind, b"ssubscribe" | b"sunsubscribe") || count == total || channel.is_empty()
        {
            return frame;
        }
        with_count(&frame, kind, &channel, total)
    }
}

/// The next link event; pending forever without links.
pub async fn next_event(links: &mut Option<mpsc::Receiver<LinkEvent>>) -> LinkEvent {
    match links.as_mut() {
        Some(rx) => match rx.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// A `[kind, channel, count]` confirmation with its count replaced by
/// `count`, in the same aggregate type (`*` in RESP2, `>` in RESP3).
pub fn with_count(frame: &[u8], kind: &[u8], channel: &[u8], count: i64) -> Bytes {
    let mut out = BytesMut::with_capacity(frame.len() + 8);
    out.put_u8(frame.first().copied().unwrap_or(b'*'));
    out.put_slice(b"3\r\n");
    for part in [kind, channel] {
        out.put_u8(b'$');
        out.put_slice(itoa::Buffer::new().format(part.len()).as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(part);
        out.put_slice(b"\r\n");
    }
    out.put_u8(b':');
    out.put_slice(itoa::Buffer::new().format(count).as_bytes());
    out.put_slice(b"\r\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_rewritten_in_the_frames_type() {
        assert_eq!(
            &with_count(
                b"*3\r\n$10\r\nssubscribe\r\n$1\r\nb\r\n:1\r\n",
                b"ssubscribe",
                b"b",
                2
            )[..],
            b"*3\r\n$10\r\nssubscribe\r\n$1\r\nb\r\n:2\r\n"
        );
        assert_eq!(
            &with_count(
                b">3\r\n$12\r\nsunsubscribe\r\n$1\r\nb\r\n:0\r\n",
                b"sunsubscribe",
                b"b",
                4
            )[..],
            b">3\r\n$12\r\nsunsubscribe\r\n$1\r\nb\r\n:4\r\n"
        );
    }
}
