//! The listener: a backend connection that receives a redirect's
//! invalidations and hands them to the target client's writer.
//!
//! It is a fresh connection from the node's dedicated pool, taken out of
//! the pool for good (the pool slot is freed at once): RESP2, its
//! `CLIENT ID` learned on connect, subscribed to `__redis__:invalidate` so
//! that Redis sends it invalidations as pub/sub messages. It lives until
//! the target leaves (its inbox closes, or it hangs up or is killed), the
//! tracking client drops the redirect (the task is aborted), or the
//! connection fails. Closing it is what makes Redis report the redirect
//! broken to the tracking client, exactly as for a direct client.
//!
//! Memory is bounded: the inbox holds [`super::INBOX_FRAMES`] frames.
//! When it is full (the target reads slower than keys change), frames are
//! dropped and, once there is room, one "invalidate everything" frame
//! goes instead, as Redis itself flushes clients when it cannot be precise.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::encode;
use crate::backend::node::Node;
use crate::backend::{handshake, BackendError};
use crate::protocol::reply::{self, frame_len};
use crate::protocol::Protocol;
use crate::server::clients::{ClientInfo, Departure};

/// Opens a listener on `node` for `target`: its backend id, and its task.
pub async fn open(
    node: &Arc<Node>,
    target: Arc<ClientInfo>,
) -> Result<(i64, tokio::task::JoinHandle<()>), Bytes> {
    open_with(node, target, None, true).await
}

/// Opens a listener as [`open`] does; with `tracking` (CLIENT TRACKING's
/// arguments, `REDIRECT` last, its id still to come), the listener first
/// turns tracking on for its own connection, redirected to itself: cluster
/// mode's BCAST tracking (`cluster.rs`). `deliver` false: Redis would send
/// the frames nowhere (a RESP2 client tracking without a redirect), so
/// they are read and dropped.
pub async fn open_with(
    node: &Arc<Node>,
    target: Arc<ClientInfo>,
    tracking: Option<&[Bytes]>,
    deliver: bool,
) -> Result<(i64, tokio::task::JoinHandle<()>), Bytes> {
    let Some(inbox) = target.tracking.inbox() else {
        return Err(reply::error(
            "ERR The client ID you want redirect to does not exist",
        ));
    };
    let unavailable = |reason: String| {
        BackendError::Unavailable {
            addr: node.addr().to_string(),
            reason,
        }
        .to_reply()
    };
    let mut conn = node
        .dedicated(Protocol::Resp2, None)
        .await
        .map_err(|e| e.to_reply())?;
    let backend_id = conn
        .backend_id
        .ok_or_else(|| unavailable("the backend did not give the listener's CLIENT ID".into()))?;
    // Out of the pool for good: with no stream, bb8 drops the handle as
    // broken and the slot is free for other clients.
    let mut stream = conn
        .stream
        .take()
        .ok_or_else(|| unavailable("connection broken".into()))?;
    let mut buf = std::mem::take(&mut conn.buf);
    drop(conn);
    if let Some(args) = tracking {
        let id = backend_id.to_string();
        let mut full: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        full.push(id.as_bytes());
        handshake::call(&mut stream, &mut buf, &full, node.request_timeout())
            .await
            .map_err(|e| match e.kind() {
                // Redis refused the options (a prefix overlap, …): its text.
                std::io::ErrorKind::Other => reply::error(&e.to_string()),
                _ => unavailable(e.to_string()),
            })?;
    }
    handshake::call(
        &mut stream,
        &mut buf,
        &[b"SUBSCRIBE", b"__redis__:invalidate"],
        node.request_timeout(),
    )
    .await
    .map_err(|e| unavailable(e.to_string()))?;
    if deliver {
        target.tracking.mark_target();
    }
    Ok((
        backend_id,
        tokio::spawn(run(stream, buf, target, inbox, deliver)),
    ))
}

/// Forwards invalidations until the target or the connection goes away.
async fn run(
    mut stream: crate::tls::Stream,
    mut buf: BytesMut,
    target: Arc<ClientInfo>,
    inbox: mpsc::Sender<Bytes>,
    deliver: bool,
) {
    let mut departure = target.departure();
    // Frames were dropped: a flush-all is owed once there is room.
    let mut lost = false;
    loop {
        loop {
            let len = match frame_len(&buf) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(_) => return,
            };
            let frame = buf.split_to(len);
            if lost || !deliver {
                continue; // the flush-all owed covers it
            }
            let Some(out) = encode::for_target(&frame, target.resp(), target.is_pubsub()) else {
                continue;
            };
            match inbox.try_send(out) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => lost = true,
                Err(TrySendError::Closed(_)) => return,
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        tokio::select! {
            r = stream.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            permit = inbox.reserve(), if lost => match permit {
                Ok(permit) => {
                    if let Some(all) = encode::flush_all(target.resp(), target.is_pubsub()) {
                        permit.send(all);
                    }
                    lost = false;
                }
                Err(_) => return,
            },
            () = inbox.closed() => return,
            _ = departure.wait_for(|d| *d != Departure::Present) => return,
        }
    }
}
