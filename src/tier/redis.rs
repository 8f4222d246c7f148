//! The tier's side of Redis: the commands a mirrored write or a re-warm
//! sends, on the client's own multiplexed connection (its own protocol and
//! ACL user), so they run after everything the client sent before, as the
//! client's command would have.
//!
//! Standalone and Sentinel: one pipelined message to the primary. Cluster:
//! one pipelined message per primary (the commands grouped by their key's
//! slot owner, all groups sent before any reply is awaited), and a
//! MOVED/ASK/TRYAGAIN reply followed by the cluster router for that command
//! as for any routed command.

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
            Some(cluster) => self.call_cluster_many(cluster, commands).await,
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

    /// Cluster mode: the commands grouped by their key's primary, each
    /// group pipelined as one message, every group sent before any reply
    /// is awaited. A reply that is a redirect (MOVED, ASK, TRYAGAIN, …) is
    /// followed for that command alone; a group that could not be sent at
    /// all is sent again command by command (with the router's retries).
    async fn call_cluster_many(
        &self,
        cluster: &ClusterRouter,
        commands: &[(Bytes, Vec<Bytes>)],
    ) -> Result<Vec<Bytes>, String> {
        let view = cluster.view();
        let mut groups: Vec<(std::sync::Arc<crate::backend::node::Node>, Vec<usize>)> = Vec::new();
        for (i, (key, _)) in commands.iter().enumerate() {
            let slot = crate::command::slot::hash_slot(key);
            let Some(node) = view.primary(slot) else {
                return Err(format!("CLUSTERDOWN hash slot {slot} is not served"));
            };
            match groups
                .iter_mut()
                .find(|(n, _)| std::sync::Arc::ptr_eq(n, node))
            {
                Some((_, members)) => members.push(i),
                None => groups.push((node.clone(), vec![i])),
            }
        }
        drop(view);
        let mut sent = Vec::with_capacity(groups.len());
        for (node, members) in &groups {
            let mut frames = BytesMut::new();
            for &i in members {
                frames.extend_from_slice(&encode_command(&commands[i].1));
            }
            sent.push(
                node.send(
                    self.client_id,
                    self.proto,
                    frames.freeze(),
                    members.len(),
                    self.user,
                )
                .await,
            );
        }
        let mut out = vec![Bytes::new(); commands.len()];
        for ((node, members), rx) in groups.iter().zip(sent) {
            let bytes = match rx.await {
                Ok(Ok(bytes)) => bytes,
                // Never sent: each command again, through the router's retries.
                Ok(Err(crate::backend::BackendError::Unavailable { .. })) => {
                    for &i in members {
                        let (key, command) = &commands[i];
                        out[i] = self.call_cluster(cluster, key, command).await?;
                    }
                    continue;
                }
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("backend connection closed before replying".into()),
            };
            for (&i, frame) in members.iter().zip(split_frames(&bytes, members.len())?) {
                out[i] = if matches!(
                    crate::backend::cluster::classify(&frame),
                    crate::backend::cluster::Redirect::Other
                ) {
                    frame
                } else {
                    let (key, command) = &commands[i];
                    let request = encode_command(command);
                    let resend = Resend {
                        client_id: self.client_id,
                        proto: self.proto,
                        request: &request,
                        slot: Some(crate::command::slot::hash_slot(key)),
                        read_only: false,
                        user: self.user,
                    };
                    cluster
                        .follow(resend, node.addr().to_string(), Ok(frame))
                        .await
                };
            }
        }
        Ok(out)
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
