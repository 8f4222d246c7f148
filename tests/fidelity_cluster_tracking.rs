//! CLIENT TRACKING in cluster mode: a client of strata in front of a real
//! Redis Cluster (3 primaries, 3 replicas) gets the invalidations it would
//! get from ONE redis-server in cluster mode owning all 16384 slots
//! (`support::redis_server::one_node_cluster`). Each test replays the same
//! byte exchange against both and asserts the same frames, with keys on
//! every real primary; the last one moves a slot under a tracking client,
//! which then gets the "invalidate everything" null Redis sends when it
//! cannot be precise.
//!
//! Default mode and BCAST mode, RESP2 (REDIRECT) and RESP3.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::clients::{show, RawConn};
use support::cluster;
use support::cluster_strata::{blocking, failover_healthy, fresh};
use support::redis_server::one_node_cluster;
use support::sentinel::Resp;

/// The clients of an exchange, on one server.
struct Side {
    /// The tracking client.
    t: RawConn,
    /// The REDIRECT target.
    r: RawConn,
    /// Another client, writing keys.
    w: RawConn,
}

impl Side {
    async fn connect(addr: &str) -> Side {
        Side {
            t: RawConn::connect(addr).await,
            r: RawConn::connect(addr).await,
            w: RawConn::connect(addr).await,
        }
    }
}

/// The reference and strata, driven in lockstep.
struct Pair {
    reference: Side,
    strata: Side,
}

#[derive(Clone, Copy)]
enum Who {
    T,
    R,
    W,
}

fn conn(side: &mut Side, who: Who) -> &mut RawConn {
    match who {
        Who::T => &mut side.t,
        Who::R => &mut side.r,
        Who::W => &mut side.w,
    }
}

impl Pair {
    async fn connect(reference: &str, strata: &str) -> Pair {
        Pair {
            reference: Side::connect(reference).await,
            strata: Side::connect(strata).await,
        }
    }

    /// Sends `line` (`{rid}` is the target's id on each server) from
    /// `who` on both; asserts the same reply.
    async fn same(&mut self, who: Who, line: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for side in [&mut self.reference, &mut self.strata] {
            let rid = {
                let r = conn(side, Who::R).cmd("CLIENT ID").await;
                String::from_utf8_lossy(&r[1..r.len() - 2]).to_string()
            };
            let line = line.replace("{rid}", &rid);
            out.push(conn(side, who).cmd(&line).await);
        }
        assert_eq!(show(&out[1]), show(&out[0]), "strata vs one Redis: {line}");
        out.remove(0)
    }

    /// Like `same`, without CLIENT ID (the target may be subscribed).
    async fn plain(&mut self, who: Who, line: &str) -> Vec<u8> {
        let r = conn(&mut self.reference, who).cmd(line).await;
        let s = conn(&mut self.strata, who).cmd(line).await;
        assert_eq!(show(&s), show(&r), "strata vs one Redis: {line}");
        r
    }

    /// The next frame `who` gets unasked, on both.
    async fn next(&mut self, who: Who, what: &str) -> Vec<u8> {
        let r = conn(&mut self.reference, who).read_frame().await;
        let s = conn(&mut self.strata, who).read_frame().await;
        assert_eq!(show(&s), show(&r), "strata vs one Redis: {what}");
        r
    }
}

/// Waits (generous deadline) until the primaries of `c` have `subs`
/// connections subscribed to `__redis__:invalidate` in all (a strata
/// client's own subscription) and none tracking keys: strata closed the
/// tracking client's listeners and tracked connections.
async fn wait_no_listeners(c: &cluster::Cluster, subs: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut total = 0;
        let mut tracking = 0;
        for p in c.primaries() {
            if let Resp::Array(a) = c.must(&p, &["PUBSUB", "NUMSUB", "__redis__:invalidate"]) {
                if let Some(Resp::Int(n)) = a.get(1) {
                    total += n;
                }
            }
            if let Resp::Str(text) = c.must(&p, &["CLIENT", "LIST"]) {
                tracking += text
                    .lines()
                    .filter(|l| {
                        l.split(' ')
                            .any(|f| f.starts_with("flags=") && f.contains('t'))
                    })
                    .count();
            }
        }
        if total == subs && tracking == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "listeners still open: {total} subscribed, {tracking} tracking"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A RESP3 push invalidating `key`.
fn push(key: &str) -> String {
    show(
        format!(
            ">2\r\n$10\r\ninvalidate\r\n*1\r\n${}\r\n{key}\r\n",
            key.len()
        )
        .as_bytes(),
    )
}

/// A RESP2 `__redis__:invalidate` message invalidating `key`.
fn message(key: &str) -> String {
    show(
        format!(
            "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n${}\r\n{key}\r\n",
            key.len()
        )
        .as_bytes(),
    )
}

/// RESP3, no redirect: BCAST PREFIX invalidations of keys on every primary
/// come as pushes on the client's own connection, only for its prefixes,
/// as from one Redis; Redis's own errors for bad option sets; OFF stops them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bcast_prefix_pushes_for_keys_on_every_primary() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let reference = blocking(one_node_cluster);
    let mut p = Pair::connect(&reference.addr(), &strata.addr.to_string()).await;
    let keys = place.key_per_primary("user:");
    assert_eq!(keys.len(), 3);

    for side in [&mut p.reference, &mut p.strata] {
        side.t.send(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n").await;
        let _ = side.t.read_frame().await;
    }

    // Redis's errors, in its order.
    p.plain(Who::T, "CLIENT TRACKING on PREFIX user:").await;
    p.plain(Who::T, "CLIENT TRACKING on BCAST PREFIX a PREFIX ab")
        .await;
    p.plain(Who::T, "CLIENT TRACKING on BCAST OPTIN").await;
    p.plain(Who::T, "CLIENT TRACKING maybe").await;
    p.plain(Who::T, "CLIENT TRACKING on REDIRECT 999999").await;

    assert_eq!(
        show(
            &p.plain(Who::T, "CLIENT TRACKING on BCAST PREFIX user:")
                .await
        ),
        "+OK\\r\\n"
    );
    for (primary, key) in &keys {
        p.plain(Who::W, &format!("SET {key} v")).await;
        let got = p
            .next(Who::T, &format!("invalidation of {key} on {primary}"))
            .await;
        assert_eq!(show(&got), push(key));
    }
    // A key outside the prefix invalidates nothing: the next push, for a
    // key of the same node, is the prefixed one.
    let (primary, _) = &keys[1];
    let other = place.key_on(primary, "other:");
    let last = place.keys_on(primary, "user:", 2).remove(1);
    p.plain(Who::W, &format!("SET {other} v")).await;
    p.plain(Who::W, &format!("SET {last} v")).await;
    assert_eq!(show(&p.next(Who::T, "after other:").await), push(&last));

    // OFF: no more pushes; the client's own commands are answered alone.
    p.plain(Who::T, "CLIENT TRACKING off").await;
    for (_, key) in &keys {
        p.plain(Who::W, &format!("SET {key} w")).await;
    }
    assert_eq!(show(&p.plain(Who::T, "PING").await), "+PONG\\r\\n");
    p.strata.t.expect_silence(Duration::from_millis(300)).await;
    wait_no_listeners(&c, 0).await;
}

/// RESP2 REDIRECT to a strata client subscribed to `__redis__:invalidate`:
/// its invalidations from every primary, as messages, as from one Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bcast_redirect_to_a_subscribed_resp2_target() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let reference = blocking(one_node_cluster);
    let mut p = Pair::connect(&reference.addr(), &strata.addr.to_string()).await;
    let keys = place.key_per_primary("k:");

    assert_eq!(
        show(
            &p.same(Who::T, "CLIENT TRACKING on BCAST REDIRECT {rid}")
                .await
        ),
        "+OK\\r\\n"
    );
    p.plain(Who::R, "SUBSCRIBE __redis__:invalidate").await;
    for (primary, key) in &keys {
        p.plain(Who::W, &format!("SET {key} v")).await;
        let got = p
            .next(Who::R, &format!("message for {key} on {primary}"))
            .await;
        assert_eq!(show(&got), message(key));
    }
    // The tracking client leaves: its listeners close, no more messages.
    drop(p.strata.t);
    drop(p.reference.t);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (_, key) in &keys {
        p.strata.w.cmd(&format!("SET {key} w")).await;
    }
    p.strata.r.expect_silence(Duration::from_millis(300)).await;
    wait_no_listeners(&c, 1).await;
}

/// A slot moves to another primary under a BCAST tracking client: it gets
/// one "invalidate everything" null push (tracking.c's frame when it cannot
/// be precise), then the moved slot's keys are invalidated from their new
/// owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_move_flushes_the_tracking_client() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let addr = strata.addr.to_string();
    let mut t = RawConn::connect(&addr).await;
    let mut w = RawConn::connect(&addr).await;
    t.send(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n").await;
    let _ = t.read_frame().await;
    assert_eq!(show(&t.cmd("CLIENT TRACKING on BCAST").await), "+OK\\r\\n");

    let primaries = place.primaries();
    let key = place.key_on(&primaries[0], "moving:");
    let slot = strata::command::slot::hash_slot(key.as_bytes());
    blocking(|| c.migrate_slot(slot, &primaries[1]));
    // The next command on the slot meets MOVED: strata reads the topology.
    assert_eq!(show(&w.cmd(&format!("SET {key} v")).await), "+OK\\r\\n");
    let mut frames = Vec::new();
    loop {
        let f = t.read_frame().await;
        let done = f == b">2\r\n$10\r\ninvalidate\r\n_\r\n";
        frames.push(show(&f));
        if done {
            break;
        }
        assert!(frames.len() < 4, "no null invalidation: {frames:?}");
    }
    // Then the key's changes come from its new owner.
    assert_eq!(show(&w.cmd(&format!("SET {key} w")).await), "+OK\\r\\n");
    assert_eq!(show(&t.read_frame().await), push(&key));
    // Put the slot back for the other tests.
    blocking(|| c.migrate_slot(slot, &primaries[0]));
}

/// RESP3 default tracking: GETs of keys on every primary, then another
/// client's SETs; the pushes arrive as from one Redis, only for keys the
/// client read, once per read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn default_tracking_pushes_for_keys_read_on_every_primary() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let reference = blocking(one_node_cluster);
    let mut p = Pair::connect(&reference.addr(), &strata.addr.to_string()).await;
    let keys = place.key_per_primary("d:");
    for side in [&mut p.reference, &mut p.strata] {
        side.t.send(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n").await;
        let _ = side.t.read_frame().await;
    }
    p.plain(Who::T, "CLIENT TRACKING on OPTIN PREFIX a").await;
    assert_eq!(
        show(&p.plain(Who::T, "CLIENT TRACKING on").await),
        "+OK\\r\\n"
    );
    for (_, key) in &keys {
        p.plain(Who::W, &format!("SET {key} v")).await;
        p.plain(Who::T, &format!("GET {key}")).await;
    }
    for (primary, key) in &keys {
        p.plain(Who::W, &format!("SET {key} w")).await;
        let got = p
            .next(Who::T, &format!("invalidation of {key} on {primary}"))
            .await;
        assert_eq!(show(&got), push(key));
    }
    // Not read since: a second change invalidates nothing; the next push
    // (same node) is for the key read again.
    let (_, key) = &keys[2];
    p.plain(Who::W, &format!("SET {} x", keys[2].1)).await;
    p.plain(Who::T, &format!("STRLEN {key}")).await;
    p.plain(Who::W, &format!("SET {key} y")).await;
    assert_eq!(show(&p.next(Who::T, "read again").await), push(key));
    p.plain(Who::T, "CLIENT TRACKING off").await;
    p.plain(Who::T, &format!("GET {key}")).await;
    p.plain(Who::W, &format!("SET {key} z")).await;
    assert_eq!(show(&p.plain(Who::T, "PING").await), "+PONG\\r\\n");
    p.strata.t.expect_silence(Duration::from_millis(300)).await;
    wait_no_listeners(&c, 0).await;
}

/// RESP2 default tracking redirected to a subscribed strata client; the
/// through strata the keys are read by one MGET across every primary
/// (split per slot, each part tracked on its node).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn default_tracking_redirect_to_a_subscribed_resp2_target() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let reference = blocking(one_node_cluster);
    let mut p = Pair::connect(&reference.addr(), &strata.addr.to_string()).await;
    let keys = place.key_per_primary("r:");
    assert_eq!(
        show(&p.same(Who::T, "CLIENT TRACKING on REDIRECT {rid}").await),
        "+OK\\r\\n"
    );
    p.plain(Who::R, "SUBSCRIBE __redis__:invalidate").await;
    // One MGET of keys on every primary: each is tracked on its node.
    let names: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
    p.plain(Who::W, &format!("SET {} v0", names[1])).await;
    // (One Redis Cluster node answers CROSSSLOT; it reads them one by one.)
    let got = p.strata.t.cmd(&format!("MGET {}", names.join(" "))).await;
    assert_eq!(show(&got), show(b"*3\r\n$-1\r\n$2\r\nv0\r\n$-1\r\n"));
    for name in &names {
        p.reference.t.cmd(&format!("GET {name}")).await;
    }
    for (primary, key) in &keys {
        p.plain(Who::W, &format!("SET {key} v")).await;
        let got = p
            .next(Who::R, &format!("message for {key} on {primary}"))
            .await;
        assert_eq!(show(&got), message(key));
    }
    // RESET turns tracking off: its connections close.
    assert_eq!(show(&p.strata.t.cmd("RESET").await), "+RESET\\r\\n");
    wait_no_listeners(&c, 1).await;
}

/// A slot moves under a default tracking client that read one of its
/// keys: one null push, then reads on the new owner are tracked there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_move_flushes_a_default_tracking_client() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let addr = strata.addr.to_string();
    let mut t = RawConn::connect(&addr).await;
    let mut w = RawConn::connect(&addr).await;
    t.send(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n").await;
    let _ = t.read_frame().await;
    assert_eq!(show(&t.cmd("CLIENT TRACKING on").await), "+OK\\r\\n");
    let primaries = place.primaries();
    let key = place.key_on(&primaries[2], "dm:");
    assert_eq!(show(&t.cmd(&format!("GET {key}")).await), "_\\r\\n");
    let slot = strata::command::slot::hash_slot(key.as_bytes());
    blocking(|| c.migrate_slot(slot, &primaries[0]));
    assert_eq!(show(&w.cmd(&format!("SET {key} v")).await), "+OK\\r\\n");
    let mut frames = Vec::new();
    loop {
        let f = t.read_frame().await;
        let done = f == b">2\r\n$10\r\ninvalidate\r\n_\r\n";
        frames.push(show(&f));
        if done {
            break;
        }
        assert!(frames.len() < 4, "no null invalidation: {frames:?}");
    }
    assert_eq!(show(&t.cmd(&format!("GET {key}")).await), "$1\\r\\nv\\r\\n");
    assert_eq!(show(&w.cmd(&format!("SET {key} w")).await), "+OK\\r\\n");
    assert_eq!(show(&t.read_frame().await), push(&key));
    blocking(|| c.migrate_slot(slot, &primaries[2]));
}

/// A primary fails over under a BCAST tracking client: one null push,
/// then the changes of that shard's keys come from the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_flushes_a_bcast_tracking_client() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let addr = strata.addr.to_string();
    let mut t = RawConn::connect(&addr).await;
    let mut w = RawConn::connect(&addr).await;
    t.send(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n").await;
    let _ = t.read_frame().await;
    assert_eq!(show(&t.cmd("CLIENT TRACKING on BCAST").await), "+OK\\r\\n");
    let old = place.primaries()[1].clone();
    let key = place.key_on(&old, "fo:");
    let replica = place.replica(&key).to_string();
    blocking(|| failover_healthy(&c, &replica));
    // The next command on the shard meets MOVED: strata reads the topology.
    assert_eq!(show(&w.cmd(&format!("SET {key} v")).await), "+OK\\r\\n");
    let mut frames = Vec::new();
    loop {
        let f = t.read_frame().await;
        let done = f == b">2\r\n$10\r\ninvalidate\r\n_\r\n";
        frames.push(show(&f));
        if done {
            break;
        }
        assert!(frames.len() < 4, "no null invalidation: {frames:?}");
    }
    assert_eq!(show(&w.cmd(&format!("SET {key} w")).await), "+OK\\r\\n");
    assert_eq!(show(&t.read_frame().await), push(&key));
    // Back as it was, for the other tests.
    blocking(|| failover_healthy(&c, &old));
}
