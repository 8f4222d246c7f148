//! KEEPALIVE for the primitives after locks (semaphore permits, leader
//! terms): the same contract as a KEEPALIVE lock (`lock.rs`, `client.rs`),
//! with the renewal script and its arguments given by the primitive.
//! Renewed every ttl/3 while the connection lives; given back when it
//! ends (the `end` function of the lease); lost when a renewal finds it
//! gone or taken, or when no renewal got through for a whole ttl.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::client::{lease_lost, ClientCoord, EndFn, Lease, LeaseId, Lost};
use super::exec;
use super::keys::ObjectKeys;
use super::Coord;
use crate::protocol::reply;
use crate::server::clients::ClientInfo;
use crate::tier::behind::script::Script;

/// How one primitive renews its leases.
#[derive(Debug)]
pub struct Renewal {
    /// The primitive (the metrics' `primitive` label).
    pub primitive: &'static str,
    /// The push a RESP3 client gets when the lease is lost (`permit-lost`).
    pub push: &'static str,
    /// The renewal script: answers 1 while the lease holds.
    pub script: &'static Script,
    /// Its keys (parts of the object's keys).
    pub parts: &'static [&'static str],
    /// Gives the lease back when the connection ends.
    pub end: EndFn,
}

/// Starts renewing the lease `id` (`argv`: the renewal script's arguments)
/// and hands it to the connection's state.
pub fn keep(
    coord: &Arc<Coord>,
    client: &mut ClientCoord,
    renewal: &'static Renewal,
    keys: ObjectKeys,
    id: LeaseId,
    ttl: i64,
    argv: Vec<Bytes>,
) {
    let task = tokio::spawn(renew(
        coord.clone(),
        renewal,
        keys.clone(),
        id.clone(),
        ttl,
        argv,
        client.client_id(),
        client.info(),
        client.lost_set(),
    ));
    client.hold(
        id,
        Lease {
            keys,
            task: task.abort_handle(),
            end: renewal.end,
        },
    );
}

#[allow(clippy::too_many_arguments)]
async fn renew(
    coord: Arc<Coord>,
    renewal: &'static Renewal,
    keys: ObjectKeys,
    id: LeaseId,
    ttl: i64,
    argv: Vec<Bytes>,
    client_id: u64,
    info: Weak<ClientInfo>,
    lost: Arc<Mutex<Lost>>,
) {
    let period = Duration::from_millis((ttl / 3).max(1) as u64);
    let mut renewed = Instant::now();
    let stats = &coord.stats().primitives;
    loop {
        tokio::time::sleep(period).await;
        let link = coord.link(client_id);
        let outcome = exec::run(renewal.script, &link, &keys, renewal.parts, &argv).await;
        match outcome.as_ref().map(|f| reply::integer_payload(f)) {
            Ok(Some(1)) => {
                renewed = Instant::now();
                stats.count(renewal.primitive, "renewed");
            }
            Ok(_) => break,
            Err(_) if renewed.elapsed() >= Duration::from_millis(ttl as u64) => break,
            Err(text) => {
                tracing::warn!(error = %text, primitive = renewal.primitive,
                    "coord: KEEPALIVE renewal failed; retrying");
            }
        }
    }
    stats.count(renewal.primitive, "lost");
    lease_lost(&coord, &lost, &info, renewal.push, id);
}
