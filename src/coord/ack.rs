//! A replica's acknowledgement of an acquisition (`WAIT 1`), so that a
//! failover to that replica keeps the token counter.
//!
//! WAIT waits for the writes of the connection it runs on, and blocks that
//! connection meanwhile, so it cannot run on the shared multiplexed one:
//! an acquisition whose primary has replicas borrows a dedicated
//! connection of the primary's pool, runs the acquire script (EVALSHA,
//! SCRIPT LOAD on NOSCRIPT) and then `WAIT 1 <coord.replica_ack_timeout_ms>`
//! on it, and gives it back. Whether a primary has replicas is asked with
//! ROLE on that connection, at most once a second per primary; a primary
//! without replicas is served on the shared connection with no WAIT.
//! When the primary's pool has no connection free, the acquisition runs
//! on the shared connection without the wait (counted as unacknowledged).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::handshake;
use crate::backend::node::Node;
use crate::protocol::reply;
use crate::protocol::request::encode_command;
use crate::protocol::Protocol;
use crate::tier::behind::script::Script;

/// How long a primary's replica count is trusted.
const ROLE_FRESH: Duration = Duration::from_secs(1);

/// Each primary's replica count, as ROLE last said.
#[derive(Debug, Default)]
pub struct Replicas {
    by_addr: Mutex<HashMap<String, (usize, Instant)>>,
}

impl Replicas {
    /// The replica count of `node`, when known and fresh.
    pub fn known(&self, node: &Node) -> Option<usize> {
        let map = self.by_addr.lock().ok()?;
        let (n, at) = map.get(node.addr())?;
        (at.elapsed() < ROLE_FRESH).then_some(*n)
    }

    fn set(&self, node: &Node, n: usize) {
        if let Ok(mut map) = self.by_addr.lock() {
            // Bounded by the nodes strata knows; forget stale entries anyway.
            if map.len() > 1024 {
                map.clear();
            }
            map.insert(node.addr().to_string(), (n, Instant::now()));
        }
    }
}

/// What [`run_acked`] did.
#[derive(Debug)]
pub struct Acked {
    /// The script's reply frame (an error reply included).
    pub reply: Bytes,
    /// `Some(acks)` when WAIT ran: replicas that acknowledged.
    pub acks: Option<i64>,
}

/// Runs `script` on a dedicated connection of `node` and, when the node
/// has replicas and `wait_after(reply)` says so, `WAIT 1 ack_ms` after it.
/// `Ok(None)`: ROLE found no replica (run it on the shared path instead).
pub async fn run_acked(
    node: &Arc<Node>,
    replicas: &Replicas,
    script: &Script,
    keys: &[Bytes],
    argv: &[Bytes],
    ack_ms: u64,
    wait_after: impl Fn(&Bytes) -> bool,
) -> Result<Option<Acked>, String> {
    let mut conn = node
        .dedicated(Protocol::Resp2, None)
        .await
        .map_err(|e| e.to_string())?;
    let timeout = node.request_timeout();
    let outcome = async {
        let crate::backend::dedicated::DedicatedConn { stream, buf, .. } = &mut *conn;
        let stream = stream.as_mut().ok_or("connection broken")?;
        if replicas.known(node).is_none() {
            let role = handshake::call(stream, buf, &[b"ROLE"], timeout)
                .await
                .map_err(|e| e.to_string())?;
            replicas.set(node, replica_count(&role));
        }
        if replicas.known(node) == Some(0) {
            return Ok(None);
        }
        let mut reply = None;
        for _ in 0..2 {
            let sha = match script.sha() {
                Some(sha) => sha,
                None => {
                    let load = [&b"SCRIPT"[..], b"LOAD", script.text()];
                    let sha = handshake::call(stream, buf, &load, timeout)
                        .await
                        .map_err(|e| e.to_string())?;
                    let sha = reply::string_payload(&sha)
                        .map(Bytes::copy_from_slice)
                        .ok_or("SCRIPT LOAD failed")?;
                    script.remember(sha.clone());
                    sha
                }
            };
            let mut cmd = vec![
                Bytes::from_static(b"EVALSHA"),
                sha,
                Bytes::from(keys.len().to_string()),
            ];
            cmd.extend_from_slice(keys);
            cmd.extend_from_slice(argv);
            match handshake::call_frame(stream, buf, &encode_command(&cmd), timeout).await {
                Ok(frame) => {
                    reply = Some(frame);
                    break;
                }
                Err(e) if e.to_string().starts_with("NOSCRIPT") => script.forget(),
                // Redis's error reply, as a frame for the caller.
                Err(e) if e.kind() == std::io::ErrorKind::Other => {
                    reply = Some(reply::error(&e.to_string()));
                    break;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        let reply = reply.ok_or("NOSCRIPT after SCRIPT LOAD")?;
        let mut acks = None;
        if wait_after(&reply) {
            let ms = ack_ms.to_string();
            let wait = [&b"WAIT"[..], b"1", ms.as_bytes()];
            let frame =
                handshake::call(stream, buf, &wait, timeout + Duration::from_millis(ack_ms))
                    .await
                    .map_err(|e| e.to_string())?;
            acks = reply::integer_payload(&frame);
        }
        Ok(Some(Acked { reply, acks }))
    }
    .await;
    match &outcome {
        Ok(_) => node.release(conn),
        // The connection's state is unknown: closed, not pooled.
        Err(_) => conn.stream = None,
    }
    outcome
}

/// The number of replicas in a ROLE reply of a primary
/// (`*3 master <offset> *<n> …`); 0 for anything else.
fn replica_count(role: &[u8]) -> usize {
    let Some(parts) = reply::aggregate_elements(role) else {
        return 0;
    };
    if parts.len() != 3 || reply::string_payload(&role[parts[0].clone()]) != Some(b"master") {
        return 0;
    }
    reply::aggregate_elements(&role[parts[2].clone()]).map_or(0, |r| r.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_replicas_in_role() {
        let two = b"*3\r\n$6\r\nmaster\r\n:100\r\n*2\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n$3\r\n100\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6381\r\n$2\r\n99\r\n";
        assert_eq!(replica_count(two), 2);
        assert_eq!(replica_count(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"), 0);
        assert_eq!(
            replica_count(b"*5\r\n$5\r\nslave\r\n$1\r\nh\r\n:1\r\n$9\r\nconnected\r\n:1\r\n"),
            0
        );
    }
}
