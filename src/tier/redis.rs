//! The tier's side of Redis: the commands a mirrored write or a re-warm
//! sends, on the client's own multiplexed connection (its own protocol and
//! ACL user), so they run after everything the client sent before, as the
//! client's command would have.
//!
//! Standalone and Sentinel: one pipelined message to the primary. Cluster:
//! each command to its key's primary, with MOVED/ASK/TRYAGAIN followed by
//! the cluster router as for any routed command.

use bytes::{Bytes, BytesMut};

use crate::backend::cluster::{ClusterRouter, Resend};
use crate::backend::mux::MuxReply;
use crate::backend::router::Router;
use crate::backend::users::Credentials;
use crate::protocol::reply;
use crate::protocol::request::encode_command;
use crate::protocol::Protocol;

/// Who the tier's Redis commands are sent as, and where.
#[derive(Debug, Clone, Copy)]
pub struct RedisLink<'a> {
    /// Standalone/Sentinel routing (in cluster mode, unused).
    pub router: &'a Router,
    /// Cluster mode's router.
    pub cluster: Option<&'a ClusterRouter>,
    /// The client on whose connection the commands go.
    pub client_id: u64,
    /// The client's protocol (its connection set).
    pub proto: Protocol,
    /// The client's ACL user (`None`: strata's own).
    pub user: Option<&'a Credentials>,
}

impl RedisLink<'_> {
    /// Sends commands, each about one key (`(key, command)`), and returns
    /// one reply frame per command, in order. `Err`: Redis could not be
    /// reached or answered nothing usable (whether a write ran is unknown).
    /// Error replies are frames like any other: the caller decides.
    pub async fn call(&self, commands: &[(Bytes, Vec<Bytes>)]) -> Result<Vec<Bytes>, String> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        match self.cluster {
            None => self.call_standalone(commands).await,
            Some(cluster) => {
                let mut out = Vec::with_capacity(commands.len());
                for (key, command) in commands {
                    out.push(self.call_cluster(cluster, key, command).await?);
                }
                Ok(out)
            }
        }
    }

    /// One command (`key` routes it in cluster mode).
    pub async fn call_one(&self, key: &Bytes, command: Vec<Bytes>) -> Result<Bytes, String> {
        let mut replies = self.call(&[(key.clone(), command)]).await?;
        replies.pop().ok_or_else(|| "no reply".to_string())
    }

    async fn call_standalone(
        &self,
        commands: &[(Bytes, Vec<Bytes>)],
    ) -> Result<Vec<Bytes>, String> {
        let mut frames = BytesMut::new();
        for (_, c) in commands {
            frames.extend_from_slice(&encode_command(c));
        }
        let rx = self
            .router
            .send(
                self.client_id,
                self.proto,
                frames.freeze(),
                commands.len(),
                false,
                self.user,
            )
            .await;
        let bytes = received(rx.await)?;
        split_frames(&bytes, commands.len())
    }

    async fn call_cluster(
        &self,
        cluster: &ClusterRouter,
        key: &Bytes,
        command: &[Bytes],
    ) -> Result<Bytes, String> {
        let slot = crate::command::slot::hash_slot(key);
        let view = cluster.view();
        let Some(node) = view.primary(slot).cloned() else {
            return Err(format!("CLUSTERDOWN hash slot {slot} is not served"));
        };
        drop(view);
        let request = encode_command(command);
        let rx = node
            .send(self.client_id, self.proto, request.clone(), 1, self.user)
            .await;
        let first: MuxReply = rx.await.unwrap_or_else(|_| {
            Err(crate::backend::BackendError::ConnectionLost {
                addr: node.addr().to_string(),
                reason: "connection closed before replying".into(),
            })
        });
        let resend = Resend {
            client_id: self.client_id,
            proto: self.proto,
            request: &request,
            slot: Some(slot),
            read_only: false,
            user: self.user,
        };
        let frame = cluster.follow(resend, node.addr().to_string(), first).await;
        Ok(frame)
    }
}

fn received(r: Result<MuxReply, tokio::sync::oneshot::error::RecvError>) -> Result<Bytes, String> {
    match r {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("backend connection closed before replying".into()),
    }
}

/// `count` complete frames, back to back.
fn split_frames(bytes: &Bytes, count: usize) -> Result<Vec<Bytes>, String> {
    let mut out = Vec::with_capacity(count);
    let mut at = 0;
    while out.len() < count {
        match reply::frame_len(&bytes[at..]) {
            Ok(Some(len)) => {
                out.push(bytes.slice(at..at + len));
                at += len;
            }
            _ => return Err("malformed reply from redis".into()),
        }
    }
    Ok(out)
}

/// True for a null reply (RESP2 `$-1`/`*-1`, RESP3 `_`).
pub fn is_nil(frame: &[u8]) -> bool {
    frame.starts_with(b"$-1\r\n") || frame.starts_with(b"*-1\r\n") || frame.starts_with(b"_\r\n")
}

/// The integer of a `:` reply.
pub fn int(frame: &[u8]) -> Option<i64> {
    reply::integer_payload(frame)
}

/// The text of an error reply, for messages.
pub fn error_text(frame: &[u8]) -> Option<String> {
    if !reply::is_error(frame) {
        return None;
    }
    let text = match frame.first() {
        // RESP3 blob error: `!len\r\ntext\r\n`.
        Some(b'!') => frame
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&frame[1..], |i| &frame[i + 1..]),
        _ => &frame[1..],
    };
    Some(String::from_utf8_lossy(text).trim_end().to_string())
}

/// A bulk string's bytes (as a slice of the frame).
pub fn bulk(frame: &Bytes) -> Option<Bytes> {
    if frame.first() != Some(&b'$') {
        return None;
    }
    reply::string_payload(frame).map(|p| frame.slice_ref(p))
}

/// `&'static str` as an argument.
pub fn arg(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// An integer as an argument.
pub fn num(n: i64) -> Bytes {
    Bytes::from(n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_read() {
        let b = Bytes::from_static(b"$3\r\nabc\r\n:5\r\n$-1\r\n_\r\n-ERR x\r\n");
        let f = split_frames(&b, 5).expect("frames");
        assert_eq!(bulk(&f[0]).as_deref(), Some(&b"abc"[..]));
        assert_eq!(int(&f[1]), Some(5));
        assert!(is_nil(&f[2]) && is_nil(&f[3]));
        assert_eq!(error_text(&f[4]).as_deref(), Some("ERR x"));
        assert!(split_frames(&b, 6).is_err());
    }
}
