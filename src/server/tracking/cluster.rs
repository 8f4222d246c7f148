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
//! Default (non-BCAST) tracking: see [`PerRead`].

use crate::backend::users::Credentials;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::{encode, listener, Link};
use crate::backend::cluster::ClusterRouter;
use crate::backend::node::Node;
use crate::backend::{handshake, BackendError};
use crate::protocol::{reply, Protocol};
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
    // Asked again: the old state goes first, so Redis checks the options
    // as it would on a connection not tracking yet.
    info.tracking.set_cluster(None);
    if !bcast {
        return per_read(router, info, target, rest, redirect.map(|(_, id)| id)).await;
    }
    rest.push(Bytes::from_static(b"REDIRECT"));
    let setup = Setup {
        router: router.clone(),
        target,
        args: rest,
        // tracking.c: without a redirect, a RESP2 client gets nothing.
        deliver: redirect.is_some() || info.resp() >= 3,
    };
    match open_all(&setup).await {
        Ok((links, addrs)) => {
            let target_id = redirect.map(|(_, id)| id);
            let task = tokio::spawn(supervise(setup, links, addrs));
            info.tracking.set_cluster(Some(Supervisor {
                target: target_id,
                per_read: None,
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
    /// Default mode's connections (`None` in BCAST mode).
    pub per_read: Option<Arc<PerRead>>,
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

/// Default (non-BCAST) tracking in cluster mode: Redis records the keys a
/// *connection* reads, and the multiplexed connections are shared, so a
/// tracking client's single-slot reads run on connections of its own, one
/// per node, opened the first time it reads there: each has `CLIENT
/// TRACKING on REDIRECT <listener>` toward a listener on that node
/// (`listener.rs`) serving the target. Reads are sent one at a time
/// (the session waits for the reply), which keeps the structure simple;
/// writes and multi-slot commands stay on the shared path.
#[derive(Debug)]
pub struct PerRead {
    router: Arc<ClusterRouter>,
    /// Weak: the target may be the client itself, whose `ClientTracking`
    /// holds this (a strong reference would be a cycle that outlives it).
    target: Weak<ClientInfo>,
    /// CLIENT TRACKING on [NOLOOP] REDIRECT (the listener's id to come).
    args: Vec<Bytes>,
    deliver: bool,
    /// The client's connections, by node address.
    conns: tokio::sync::Mutex<HashMap<String, NodeConn>>,
}

/// One node's tracked connection and the listener its redirect names.
#[derive(Debug)]
struct NodeConn {
    stream: crate::tls::Stream,
    buf: BytesMut,
    proto: Protocol,
    /// The ACL user it is logged in as (`None`: strata's own).
    user: Option<Bytes>,
    listener: Link,
}

impl PerRead {
    /// Runs one read on the client's connection to `node` (opened if need
    /// be) and returns Redis's reply, in `proto`. `Err`: the error reply.
    pub async fn call(
        &self,
        node: &Arc<Node>,
        proto: Protocol,
        user: Option<&Credentials>,
        frame: &[u8],
    ) -> Result<Bytes, Bytes> {
        let mut conns = self.conns.lock().await;
        let addr = node.addr();
        let name = user.map(|u| &u.name);
        if conns
            .get(addr)
            .is_some_and(|c| c.proto != proto || c.user.as_ref() != name)
        {
            conns.remove(addr); // the client switched protocols or users
        }
        if !conns.contains_key(addr) {
            let conn = self.open(node, proto, user).await?;
            conns.insert(addr.to_string(), conn);
        }
        let Some(conn) = conns.get_mut(addr) else {
            return Err(reply::error("ERR backend connection broken"));
        };
        let io = async {
            conn.stream.write_all(frame).await?;
            conn.stream.flush().await?;
            loop {
                let f = handshake::read_frame(&mut conn.stream, &mut conn.buf).await?;
                if !reply::is_push(&f) {
                    return Ok::<Bytes, std::io::Error>(f);
                }
            }
        };
        match tokio::time::timeout(node.request_timeout(), io).await {
            Ok(Ok(f)) => Ok(f),
            Ok(Err(e)) => {
                conns.remove(addr);
                Err(unavailable(node, &e.to_string()))
            }
            Err(_) => {
                conns.remove(addr);
                Err(unavailable(node, "backend did not answer in time"))
            }
        }
    }

    async fn open(
        &self,
        node: &Arc<Node>,
        proto: Protocol,
        user: Option<&Credentials>,
    ) -> Result<NodeConn, Bytes> {
        let target = self
            .target
            .upgrade()
            .ok_or_else(|| reply::error("ERR The client ID you want redirect to does not exist"))?;
        let target_id = target.id;
        let (backend_id, task) = listener::open_with(node, target, None, self.deliver).await?;
        let listener = Link {
            target: target_id,
            backend_id,
            task,
        };
        let mut conn = node
            .dedicated(proto, user)
            .await
            .map_err(|e| e.to_reply())?;
        let mut stream = conn
            .stream
            .take()
            .ok_or_else(|| unavailable(node, "connection broken"))?;
        let mut buf = std::mem::take(&mut conn.buf);
        drop(conn); // out of the pool for good, as the listener's
        let id = backend_id.to_string();
        let mut full: Vec<&[u8]> = self.args.iter().map(|a| &a[..]).collect();
        full.push(id.as_bytes());
        handshake::call(&mut stream, &mut buf, &full, node.request_timeout())
            .await
            .map_err(|e| reply::error(&e.to_string()))?;
        Ok(NodeConn {
            stream,
            buf,
            proto,
            user: user.map(|u| u.name.clone()),
            listener,
        })
    }

    /// Closes every connection: true when there were some (their keys
    /// are forgotten by Redis, so the client must forget them too).
    async fn forget(&self) -> bool {
        let mut conns = self.conns.lock().await;
        let had = !conns.is_empty();
        conns.clear();
        had
    }

    /// True when a listener's connection was lost.
    fn lost(&self) -> bool {
        self.conns
            .try_lock()
            .is_ok_and(|c| c.values().any(|c| c.listener.task.is_finished()))
    }
}

fn unavailable(node: &Node, reason: &str) -> Bytes {
    BackendError::Unavailable {
        addr: node.addr().to_string(),
        reason: reason.to_string(),
    }
    .to_reply()
}

/// Default tracking: the client's [`PerRead`], and its supervisor.
async fn per_read(
    router: &Arc<ClusterRouter>,
    info: &Arc<ClientInfo>,
    target: Arc<ClientInfo>,
    mut args: Vec<Bytes>,
    redirect: Option<u64>,
) -> Bytes {
    if args[3..]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(b"optin") || a.eq_ignore_ascii_case(b"optout"))
    {
        return reply::error(
            "ERR CLIENT TRACKING OPTIN/OPTOUT is not supported by strata in cluster mode",
        );
    }
    args.push(Bytes::from_static(b"REDIRECT"));
    let state = Arc::new(PerRead {
        router: router.clone(),
        target: Arc::downgrade(&target),
        args,
        deliver: redirect.is_some() || info.resp() >= 3,
        conns: tokio::sync::Mutex::new(HashMap::new()),
    });
    let task = tokio::spawn(supervise_per_read(state.clone()));
    info.tracking.set_cluster(Some(Supervisor {
        target: redirect,
        per_read: Some(state),
        task,
    }));
    reply::ok()
}

/// Default tracking's supervisor: when the view changes or a listener is
/// lost, the client's connections close (Redis forgets what they read)
/// and the target gets one null invalidation; the next reads open them
/// anew on the current owners.
async fn supervise_per_read(state: Arc<PerRead>) {
    let mut reads = state.router.topology_reads();
    let mut seen = state.router.changes();
    let inbox = state.target.upgrade().and_then(|t| t.tracking.inbox());
    loop {
        if inbox.as_ref().is_none_or(|i| i.is_closed()) {
            return;
        }
        let now = state.router.changes();
        if (now != seen || state.lost()) && state.forget().await && state.deliver {
            let Some(target) = state.target.upgrade() else {
                return;
            };
            let all = encode::flush_all(target.resp(), target.is_pubsub());
            if let (Some(all), Some(inbox)) = (all, inbox.as_ref()) {
                if inbox.send(all).await.is_err() {
                    return;
                }
            }
        }
        seen = now;
        tokio::select! {
            r = reads.changed() => if r.is_err() { return },
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
    }
}
