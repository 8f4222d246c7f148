//! CLIENT TRACKING in cluster mode, BCAST: one listener per primary.
//!
//! A client of strata sees one Redis owning every slot, but its keys live
//! on several primaries, and each primary only sends invalidations for the
//! keys it owns. In broadcasting mode Redis needs no record of what the
//! client read: a connection with `CLIENT TRACKING on BCAST [PREFIX …]`
//! gets every change under its prefixes on that node. So strata opens, per
//! primary, one listener (`listener.rs`) that turns BCAST tracking on for
//! its own connection, redirected to itself, and subscribes to
//! `__redis__:invalidate`: one backend connection per primary per tracking
//! client, whatever the client reads. The invalidations go to the target's
//! inbox as for a standalone redirect (RESP3 push on the client's own
//! connection without REDIRECT, `__redis__:invalidate` messages or pushes
//! to the REDIRECT target).
//!
//! The cluster view changes (a slot moves, a primary fails over or is
//! retired): a *supervisor* task, which owns the listeners, opens them
//! anew on the new primaries and then sends the target one null
//! invalidation ("everything", what tracking.c sends when it cannot be
//! precise, as on FLUSHALL), since changes made meanwhile were not seen.
//!
//! Default (non-BCAST) tracking would need the client's reads to run on
//! connections of its own, per node, and is refused in cluster mode.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use super::{encode, listener, Link};
use crate::backend::cluster::ClusterRouter;
use crate::protocol::reply;
use crate::server::clients::ClientInfo;
use crate::server::Shared;

/// What the client asked for, kept to reopen the listeners.
struct Setup {
    router: Arc<ClusterRouter>,
    target: Arc<ClientInfo>,
    /// CLIENT TRACKING on … REDIRECT (the listener's id to come).
    args: Vec<Bytes>,
    /// False when Redis would send the invalidations nowhere.
    deliver: bool,
}

/// CLIENT TRACKING in cluster mode: the reply to give. The supervisor of
/// an accepted `on BCAST` is held by the client's `ClientTracking`.
pub async fn command(
    shared: &Shared,
    router: &Arc<ClusterRouter>,
    info: &Arc<ClientInfo>,
    args: &[Bytes],
) -> Bytes {
    let redirect = match super::command::parse(args, |id| shared.clients.get(id).is_some()) {
        Ok(r) => r,
        Err(text) => return reply::error(&text),
    };
    let on = args[2].eq_ignore_ascii_case(b"on");
    if !on && !args[2].eq_ignore_ascii_case(b"off") {
        return reply::error("ERR syntax error");
    }
    if !on {
        info.tracking.set_cluster(None);
        return reply::ok();
    }
    let bcast = args[3..].iter().any(|a| a.eq_ignore_ascii_case(b"bcast"));
    if !bcast && args[3..].iter().any(|a| a.eq_ignore_ascii_case(b"prefix")) {
        return reply::error("ERR PREFIX option requires BCAST mode to be enabled");
    }
    if !bcast {
        return reply::error(
            "ERR CLIENT TRACKING without BCAST is not supported by strata in cluster mode",
        );
    }
    let mut rest: Vec<Bytes> = args.to_vec();
    let target = match redirect {
        Some((at, id)) => {
            rest.drain(at - 1..=at);
            match shared.clients.get(id) {
                Some(t) => t,
                None => {
                    return reply::error("ERR The client ID you want redirect to does not exist")
                }
            }
        }
        None => info.clone(),
    };
    rest.push(Bytes::from_static(b"REDIRECT"));
    let setup = Setup {
        router: router.clone(),
        target,
        args: rest,
        // tracking.c: without a redirect, a RESP2 client gets nothing.
        deliver: redirect.is_some() || info.resp() >= 3,
    };
    // Asked again (more prefixes, …): the old listeners go first, so Redis
    // checks the options as it would on a connection not tracking yet.
    info.tracking.set_cluster(None);
    match open_all(&setup).await {
        Ok((links, addrs)) => {
            let target_id = redirect.map(|(_, id)| id);
            let task = tokio::spawn(supervise(setup, links, addrs));
            info.tracking.set_cluster(Some(Supervisor {
                target: target_id,
                task,
            }));
            reply::ok()
        }
        Err(e) => e,
    }
}

/// The supervisor of a client's listeners; aborting it closes them.
#[derive(Debug)]
pub struct Supervisor {
    /// The REDIRECT target's strata id, if any.
    pub target: Option<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One listener per primary of the current view, and their addresses.
async fn open_all(setup: &Setup) -> Result<(Vec<Link>, BTreeSet<String>), Bytes> {
    let view = setup.router.view();
    let mut links = Vec::new();
    let mut addrs = BTreeSet::new();
    for node in view.primaries() {
        if !addrs.insert(node.addr().to_string()) {
            continue;
        }
        let (backend_id, task) =
            listener::open_with(node, setup.target.clone(), Some(&setup.args), setup.deliver)
                .await?;
        links.push(Link {
            target: setup.target.id,
            backend_id,
            task,
        });
    }
    Ok((links, addrs))
}

/// Follows the cluster view: after each topology read that changed the
/// view, or once a listener's connection is lost, the listeners are opened
/// anew on the primaries and the target gets one null invalidation.
async fn supervise(setup: Setup, mut links: Vec<Link>, mut addrs: BTreeSet<String>) {
    let mut reads = setup.router.topology_reads();
    let mut seen = setup.router.changes();
    let inbox = setup.target.tracking.inbox();
    // The last attempt to open the listeners failed.
    let mut stale = false;
    loop {
        if inbox.as_ref().is_none_or(|i| i.is_closed()) {
            return; // the target left
        }
        let lost = links.iter().any(|l| l.task.is_finished());
        let now = setup.router.changes();
        let primaries: BTreeSet<String> = setup
            .router
            .view()
            .primaries()
            .map(|n| n.addr().to_string())
            .collect();
        if stale || lost || now != seen || primaries != addrs {
            if lost {
                // A node failed: read the topology before reopening.
                setup.router.refresh_now().await;
            }
            links.clear();
            match open_all(&setup).await {
                Ok((l, a)) => {
                    stale = false;
                    links = l;
                    addrs = a;
                    seen = setup.router.changes();
                    if setup.deliver {
                        let all = encode::flush_all(setup.target.resp(), setup.target.is_pubsub());
                        if let (Some(all), Some(inbox)) = (all, inbox.as_ref()) {
                            if inbox.send(all).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Err(_) => {
                    // A node is not reachable yet: try at the next read.
                    stale = true;
                    setup.router.refresh_soon();
                    tokio::time::sleep(setup.router.request_timeout() / 4).await;
                    continue;
                }
            }
        }
        tokio::select! {
            r = reads.changed() => if r.is_err() { return },
            () = tokio::time::sleep(std::time::Duration::from_millis(500)),
                if !links.is_empty() => {}
        }
    }
}
